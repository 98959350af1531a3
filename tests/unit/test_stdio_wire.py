"""The stdio wire's line bound and parse, on bytes in memory (tests/e2e/test_stdio_lines.py sends
the same through a real process)."""

from __future__ import annotations

import io

import mcp_types as types

from luma_mcp.stdio.wire import Oversized, Refused, bounded_lines, parse


def test_lines_up_to_the_bound_pass_and_longer_ones_are_dropped_to_their_newline() -> None:
    wire = io.BufferedReader(io.BytesIO(b"12345678\n" + b"x" * 100 + b"\nok\n" + b"y" * 20))
    lines = list(bounded_lines(wire, limit=9))
    assert lines == [b"12345678\n", Oversized(b"x" * 10), b"ok\n", Oversized(b"y" * 10)]


def test_a_refusal_names_the_request_when_its_id_leads_the_line() -> None:
    refused = parse(Oversized(b'{"jsonrpc": "2.0", "id": "call-7", "method": "tools/call", "params": {"a": "xxxx'))
    assert isinstance(refused, Refused)
    assert refused.answer.id == "call-7" and refused.answer.error.code == types.INVALID_REQUEST
    deep = parse(b'{"id": 12, "jsonrpc": "2.0", "method": "x", "params": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}\n")
    assert isinstance(deep, Refused) and deep.answer.id == 12 and deep.answer.error.code == types.PARSE_ERROR
    nameless = parse(b'{"method": "x", "id": 3, "params": [[[\n')  # the id not first: not looked for
    assert isinstance(nameless, Refused) and nameless.answer.id is None


def test_a_message_is_parsed_once_into_the_sdks_types() -> None:
    message = parse(b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}\n')
    assert isinstance(message, types.JSONRPCRequest) and message.id == 1 and message.method == "tools/list"
    answer = parse(b'{"jsonrpc":"2.0","id":5,"error":{"code":-32600,"message":"no"}}\n')  # a client's own error
    assert isinstance(answer, types.JSONRPCError)
