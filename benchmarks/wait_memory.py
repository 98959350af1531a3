"""Part of `make bench` (skipped by `--skip-http`): the server's resident memory while many tool
calls wait at once over streamable HTTP.

HTTP_WAITING_CALLS generate_video calls (HTTP_WAITING_SESSIONS sessions, each with its share at
once) each wait on a video that takes far longer than the wait, so every one is answered as
unfinished; the server's VmRSS is sampled throughout. http_load.py runs this on its server
process, after the throughput levels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio
from mcp import Client
from mcp.types import CallToolResult

from harness import Figure, http_figure
from servers import mcp_client, rss_mb

HTTP_WAITING_CALLS = 200
HTTP_WAITING_SESSIONS = 50
WAITING_VIDEO_SECONDS = 600  # far longer than the waits, so every waiting call times out
RSS_SAMPLE_SECONDS = 0.05


@dataclass
class Waiting:
    calls: int
    wait_seconds: int
    sessions: int
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    max_in_flight: int = 0
    unfinished_answers: int = 0  # answered with a task still running and its next call, as expected
    errors: int = 0
    submits: int = 0
    wall_s: float = 0.0


async def run_waiting(url: str, pid: int, waiting: Waiting, prompt: str) -> None:
    """`waiting.calls` generate_video calls at once, each waiting `wait_seconds` on a video that
    takes far longer; the server's resident memory sampled throughout."""
    per_session = waiting.calls // waiting.sessions
    in_flight = 0
    waiting.rss_before_mb = await rss_mb(pid)
    samples = [waiting.rss_before_mb]

    async def one_call(client: Client, n: int) -> None:
        nonlocal in_flight
        in_flight += 1
        waiting.max_in_flight = max(waiting.max_in_flight, in_flight)
        # A distinct prompt each: an identical one would be answered with the earlier task (paying once).
        arguments = {"prompt": f"{prompt} (take {n})", "wait_seconds": waiting.wait_seconds}
        result = await client.call_tool("generate_video", arguments)
        in_flight -= 1
        record_waiting_answer(waiting, result)

    async def session(first: int) -> None:
        async with mcp_client(url) as client, anyio.create_task_group() as tg:
            for n in range(first, first + per_session):
                tg.start_soon(one_call, client, n)

    start = time.perf_counter()
    all_answered = anyio.Event()
    with anyio.fail_after(waiting.wait_seconds + 120):
        async with anyio.create_task_group() as outer:
            outer.start_soon(sample_rss, pid, samples, all_answered)
            async with anyio.create_task_group() as tg:
                for first in range(0, waiting.calls, per_session):
                    tg.start_soon(session, first)
            all_answered.set()
    waiting.wall_s = time.perf_counter() - start
    waiting.rss_peak_mb = max(samples)


def record_waiting_answer(waiting: Waiting, result: CallToolResult) -> None:
    status = (result.structured_content or {}).get("status")
    if result.is_error:
        waiting.errors += 1
    elif status in ("pending", "processing"):
        waiting.unfinished_answers += 1


async def sample_rss(pid: int, samples: list[float], done: anyio.Event) -> None:
    # Sampled on a timer, not only when calls return: the peak is while they are all waiting.
    while not done.is_set():
        samples.append(await rss_mb(pid))
        await anyio.sleep(RSS_SAMPLE_SECONDS)


def waiting_figures(w: Waiting) -> list[Figure]:
    return [
        http_figure(
            "http_rss_before_wait_mb",
            "HTTP: server memory, before the waiting calls",
            "MB",
            "VmRSS after the throughput levels, just before the waiting calls",
            w.rss_before_mb,
        ),
        http_figure(
            "http_rss_peak_mb",
            f"HTTP: server memory, peak with {w.calls} calls waiting",
            "MB",
            f"highest VmRSS sampled every 50 ms while {w.calls} generate_video(wait_seconds={w.wait_seconds}) "
            f"calls ({w.sessions} sessions x {w.calls // w.sessions}) waited on videos that take 600 s",
            w.rss_peak_mb,
        ),
        http_figure(
            "http_rss_growth_mb",
            "HTTP: memory growth while waiting",
            "MB",
            "peak minus before, i.e. what the waiting calls cost",
            w.rss_peak_mb - w.rss_before_mb,
        ),
        http_figure(
            "http_waiting_in_flight",
            "HTTP: calls in flight at once, peak",
            "calls",
            "most waiting calls sent and not yet answered at one time",
            w.max_in_flight,
        ),
        http_figure(
            "http_waiting_answers",
            "HTTP: waiting calls answered as unfinished",
            "calls",
            "answered with the task still running and its next call (none refused, none lost)",
            w.unfinished_answers,
        ),
        http_figure(
            "http_waiting_errors",
            "HTTP: waiting calls answered with an error",
            "calls",
            "isError results among the waiting calls",
            w.errors,
        ),
        http_figure(
            "http_waiting_submits",
            "HTTP: upstream submits for the waiting calls",
            "req",
            "/luma/videos requests they made (one each: distinct prompts)",
            w.submits,
        ),
        http_figure(
            "http_waiting_wall_s",
            "HTTP: waiting phase, wall time",
            "s",
            "from the first session opened to the last answer",
            w.wall_s,
        ),
    ]
