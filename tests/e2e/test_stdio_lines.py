"""Lines no client should send, sent to a real stdio server: a line of tens of MB, a nest 100,000
deep, a line that is not JSON. Each is answered with a JSON-RPC error, memory stays bounded, and the
next line is served."""

from __future__ import annotations

import re
from pathlib import Path

from luma_mcp.stdio.wire import MAX_LINE_BYTES

from ..helpers.stdio import RawStdioServer, server_env

MB = 1024 * 1024
# The line bound is 16 MiB; holding it (and its decoded copy) stays well below this. Reading the
# whole 50 MB line, as a plain readline does, goes above it.
PEAK_GROWTH_BOUND = 48 * MB


def peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmHWM:\s+(\d+) kB$", status, flags=re.MULTILINE)
    assert found, status
    return int(found[1]) * 1024


def started() -> RawStdioServer:
    server = RawStdioServer(server_env())
    server.initialize()
    assert server.call("tools/list", {})["result"]["tools"]
    return server


def test_a_50_mb_line_is_refused_with_bounded_memory_and_the_next_line_is_served() -> None:
    server = started()
    baseline = peak_rss(server.proc.pid)
    assert server.proc.stdin is not None
    # A request whose argument never ends: 50 MB with no newline, written in pieces as a pipe takes it.
    server.proc.stdin.write(
        '{"jsonrpc":"2.0","id":"huge","method":"tools/call","params":{"name":"get_task","arguments":'
    )
    server.proc.stdin.write('{"task_id":"')
    piece = "x" * MB
    for _ in range(50):
        server.proc.stdin.write(piece)
    server.proc.stdin.write('"}}}\n')
    server.proc.stdin.flush()

    refused = server.wait_for(lambda m: m.get("id") == "huge", timeout=60)
    assert refused["error"]["code"] == -32600
    assert refused["error"]["message"] == f"The message is over {MAX_LINE_BYTES // MB} MiB: send a smaller one."
    assert server.call("tools/list", {})["result"]["tools"]  # the next line is served
    growth = peak_rss(server.proc.pid) - baseline
    print(f"peak RSS grew {growth / MB:.1f} MB during the 50 MB line")
    assert growth < PEAK_GROWTH_BOUND, growth
    assert "refused a line from the client" in server.close()


def test_a_line_just_under_the_bound_is_still_read() -> None:
    server = started()
    assert server.proc.stdin is not None
    padding = "y" * (MAX_LINE_BYTES - 200)
    server.proc.stdin.write(
        f'{{"jsonrpc":"2.0","id":"big","method":"tools/list","params":{{"_meta":{{"pad":"{padding}"}}}}}}\n'
    )
    server.proc.stdin.flush()
    answer = server.wait_for(lambda m: m.get("id") == "big", timeout=60)
    assert answer["result"]["tools"], answer
    server.close()


def test_a_deep_nest_and_a_line_that_is_not_json_get_errors_and_the_server_reads_on() -> None:
    server = started()
    assert server.proc.stdin is not None
    depth = 100_000
    server.proc.stdin.write("[" * depth + "]" * depth + "\n")
    server.proc.stdin.flush()
    nest = server.wait_for(lambda m: "error" in m and m.get("id") is None)
    assert nest["error"]["code"] == -32700 and "recursion limit" in nest["error"]["message"], nest
    assert server.call("tools/list", {})["result"]["tools"]

    arguments = '{"task_id":' + "[" * depth + "]" * depth + "}"
    server.proc.stdin.write(
        '{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"get_task","arguments":' + arguments + "}}\n"
    )
    server.proc.stdin.write("this is not json\n")
    server.proc.stdin.write('{"jsonrpc":"2.0","id":13}\n')  # JSON, but no message
    server.proc.stdin.flush()
    assert server.wait_for(lambda m: m.get("id") == 12)["error"]["code"] == -32700
    garbage = server.wait_for(lambda m: "error" in m and m.get("id") is None)
    assert garbage["error"]["code"] == -32700
    assert garbage["error"]["message"].endswith(": send one JSON-RPC message a line.")
    shapeless = server.wait_for(lambda m: m.get("id") == 13)
    assert shapeless["error"] == {
        "code": -32600,
        "message": "The line is not a JSON-RPC 2.0 message: check its fields.",
    }
    assert server.call("tools/list", {})["result"]["tools"]
    server.close()
