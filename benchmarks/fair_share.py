"""Part of `make bench`: another tenant's latency while one tenant asks for more than every connection.

One `luma-mcp --transport http` process with two access keys (two tenants) and
`LUMA_MCP_MAX_CONNECTIONS=64`. Tenant A opens WANTED long `get_task` waits (its video takes
ten minutes), each on its own connection, more than the server holds, and asks again
about half a second after each refusal. Meanwhile tenant B, on fresh connections, opens a session and
calls `list_tasks`, ROUNDS times; the same before A starts is the baseline. Run alone
(`python benchmarks/fair_share.py`) it prints the figures.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from harness import Figure, http_figure
from luma_mcp.simulator.app import Simulator, SimulatorServer
from servers import KEY, http_env, http_server

SECOND_KEY = "bench-key-tenant-b"
CONNECTIONS = 64
WANTED = 80  # A's waits: more than all the connections
ROUNDS = 40
WAIT = 40  # seconds each of A's waits lasts
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
}


@dataclass
class FairShareReport:
    b_idle_s: list[float] = field(default_factory=list)  # B's round with A idle
    b_busy_s: list[float] = field(default_factory=list)  # B's round while A asks for every connection
    b_failures: int = 0  # B's rounds that did not get 200s (before the fix: all of them)
    a_held: int = 0
    a_refused: dict[int | str, int] = field(default_factory=dict)

    @staticmethod
    def ms(values: list[float], p: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


def _headers(key: str, session: str | None = None) -> dict[str, str]:
    return {**HEADERS, "Authorization": f"Bearer {key}", **({"Mcp-Session-Id": session} if session else {})}


async def _session(http: httpx.AsyncClient, key: str) -> str | None:
    opened = await http.post("/mcp", json=INITIALIZE, headers=_headers(key))
    session = opened.headers.get("mcp-session-id")
    if opened.status_code == 200 and session:
        await http.post(
            "/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=_headers(key, session)
        )
    return session if opened.status_code == 200 else None


async def _b_round(url: str, report: FairShareReport, into: list[float]) -> None:
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_tasks", "arguments": {}}}
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as b:
            session = await _session(b, SECOND_KEY)
            called = await b.post("/mcp", json=call, headers=_headers(SECOND_KEY, session)) if session else None
            health = await b.get("/health")
            ok = called is not None and called.status_code == 200 and health.status_code == 200
            if session:
                await b.delete("/mcp", headers=_headers(SECOND_KEY, session))
    except httpx.TransportError:
        ok = False
    if ok:
        into.append(time.monotonic() - started)
    else:
        report.b_failures += 1


async def _slow_task(http: httpx.AsyncClient, session: str | None) -> str:
    submit = {"name": "generate_video", "arguments": {"prompt": "A slow one", "wait_seconds": 0}}
    body = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": submit}
    answer = await http.post("/mcp", json=body, headers=_headers(KEY, session))
    data = [line[6:] for line in answer.text.splitlines() if line.startswith("data: ")]
    return str(json.loads(data[-1] if data else answer.text)["result"]["structuredContent"]["task_id"])


async def measure_fair_share(sim_url: str, data_dir: Path, say: Callable[[str], None]) -> FairShareReport:
    report = FairShareReport()
    env = {**http_env(sim_url, "bench-token", data_dir), "LUMA_MCP_API_KEYS": f"{KEY},{SECOND_KEY}"}
    env |= {"LUMA_MCP_MAX_CONNECTIONS": str(CONNECTIONS), "LUMA_MCP_READ_TIMEOUT_SECONDS": "60"}
    env.pop("LUMA_MCP_MAX_REQUESTS_PER_TENANT", None)  # the default: a tenth of the connections
    say(f"fair share: tenant B's calls while tenant A asks for {WANTED} waits of {CONNECTIONS} connections ...")
    async with http_server(env, data_dir) as server:
        for _ in range(ROUNDS):
            await _b_round(server.url, report, report.b_idle_s)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:  # closed before A starts: A may take all
            sessions = [await _session(http, KEY) for _ in range(WANTED // 8)]
            task_id = await _slow_task(http, sessions[0])
        stop = anyio.Event()

        async def a_wait(session: str | None) -> None:
            """One of A's waits; refused, it asks again about half a second later (sooner than Retry-After)."""
            wait: dict[str, Any] = {"name": "get_task", "arguments": {"task_id": task_id, "wait_seconds": WAIT}}
            body = {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": wait}
            async with httpx.AsyncClient(base_url=server.url, timeout=WAIT + 30) as a:
                while not stop.is_set():
                    try:
                        async with a.stream("POST", "/mcp", json=body, headers=_headers(KEY, session)) as held:
                            if held.status_code == 200:
                                report.a_held += 1
                                await stop.wait()
                                return
                            outcome: int | str = held.status_code
                    except httpx.TransportError as exc:
                        outcome = type(exc).__name__
                    report.a_refused[outcome] = report.a_refused.get(outcome, 0) + 1
                    await anyio.sleep(random.uniform(0.3, 0.7))

        async with anyio.create_task_group() as tg:
            for n in range(WANTED):
                tg.start_soon(a_wait, sessions[n % len(sessions)])
            await anyio.sleep(5)  # A's waits are held, or refused and asked again, by now
            for _ in range(ROUNDS):
                await _b_round(server.url, report, report.b_busy_s)
            stop.set()
    return report


def fair_share_figures(report: FairShareReport) -> list[Figure]:
    what = (
        f"tenant B opens a session, calls list_tasks and probes /health on fresh connections, {ROUNDS} rounds, "
        f"while tenant A asks for {WANTED} long get_task waits of {CONNECTIONS} connections (retrying refusals)"
    )
    return [
        http_figure(
            "fair_b_median_ms", "Fair share: B's round, median", "ms", what, FairShareReport.ms(report.b_busy_s, 50)
        ),
        http_figure("fair_b_p99_ms", "Fair share: B's round, p99", "ms", what, FairShareReport.ms(report.b_busy_s, 99)),
        http_figure(
            "fair_b_idle_median_ms",
            "Fair share: B's round with A idle (baseline)",
            "ms",
            f"the same {ROUNDS} rounds before A starts: median",
            FairShareReport.ms(report.b_idle_s, 50),
        ),
        http_figure("fair_b_failures", "Fair share: B's rounds failed", "calls", what, report.b_failures),
        http_figure(
            "fair_a_held", "Fair share: A's waits held", "calls", f"of the {WANTED} A asked for", report.a_held
        ),
    ]


def summary(report: FairShareReport) -> str:
    idle, busy = report.b_idle_s, report.b_busy_s
    ms = FairShareReport.ms
    return (
        f"B idle: median {ms(idle, 50):.0f} ms, p99 {ms(idle, 99):.0f} ms; B while A saturates: median "
        f"{ms(busy, 50):.0f} ms, p99 {ms(busy, 99):.0f} ms, {report.b_failures} of {2 * ROUNDS} rounds failed; "
        f"A held {report.a_held} waits; its refusals (and closed connections): {report.a_refused}"
    )


async def _main() -> None:
    with (
        SimulatorServer(Simulator(queue_seconds=0, processing_seconds=600)) as sim,
        tempfile.TemporaryDirectory() as tmp,
    ):
        print(summary(await measure_fair_share(sim.url, Path(tmp), print)))


if __name__ == "__main__":
    anyio.run(_main)
