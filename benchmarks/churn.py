"""Part of `make bench` (or alone: `python benchmarks/churn.py --minutes 10`): ten minutes of churn
over HTTP against one server process, and what it left behind.

The churn is tests/helpers/churn.py's (tests/e2e/test_churn.py runs it for half a minute): MCP
sessions opened and closed, waits abandoned midway, 2025-era sessions ended with DELETE, OAuth
sign-ins each from its own loopback address, the provider's callbacks and forged ones. The server's
RSS and open descriptors are sampled idle after a one-minute warm-up and idle at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the driver lives with the tests' helpers

from tests.helpers.churn import ChurnReport, churn_server, measure_churn

WARMUP_SECONDS = 60
RSS_GROWTH_TARGET_MB = 20.0
FD_GROWTH_TARGET = 4

# key, label, unit, description, value, target (at most)
ChurnFigure = tuple[str, str, str, str, float, float | None]


async def measure(minutes: float, say: Callable[[str], None]) -> ChurnReport:
    say(f"churn over HTTP: {WARMUP_SECONDS} s warm-up, then {minutes:g} min ...")
    with tempfile.TemporaryDirectory(prefix="luma-bench-churn-") as tmp, churn_server(Path(tmp)) as (server, provider):
        report = await measure_churn(
            server.url, server.proc.pid, warmup_seconds=WARMUP_SECONDS, churn_seconds=minutes * 60
        )
        say(f"churn: the provider delivered {len(provider.callbacks)} callbacks")
    if report.failures:
        say(f"churn: {sum(report.failures.values())} action(s) failed: {dict(report.failures)}")
    return report


def figures(report: ChurnReport) -> list[ChurnFigure]:
    done = ", ".join(f"{count} {name.replace('_', ' ')}s" for name, count in sorted(report.actions.items()))
    during = max((s.rss_mb for s in report.samples), default=report.end.rss_mb)
    return [
        ("churn_rss_warm_mb", "Churn: RSS idle after warm-up", "MB", "The server's VmRSS, idle.", report.warm.rss_mb,
         None),
        ("churn_rss_end_mb", "Churn: RSS idle at the end", "MB", f"After {report.seconds / 60:.1f} min: {done}.",
         report.end.rss_mb, None),
        ("churn_rss_peak_mb", "Churn: RSS at most while churning", "MB", "Sampled 20 times.", during, None),
        ("churn_rss_growth_mb", "Churn: RSS growth", "MB", "Idle at the end less idle after warm-up.",
         report.rss_growth_mb, RSS_GROWTH_TARGET_MB),
        ("churn_fd_growth", "Churn: open descriptors gained", "", f"{report.warm.fds} -> {report.end.fds}, idle.",
         report.end.fds - report.warm.fds, FD_GROWTH_TARGET),
        ("churn_failures", "Churn: actions that failed", "", "Out of all the churn's actions.",
         sum(report.failures.values()), 0),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description="Churn over HTTP and the memory and descriptors it leaves.")
    parser.add_argument("--minutes", type=float, default=10)
    args = parser.parse_args()
    report = anyio.run(measure, args.minutes, print)
    for _, label, unit, description, value, target in figures(report):
        bound = "" if target is None else f" (target <= {target:g})"
        print(f"{label}: {value:.1f} {unit}{bound}. {description}")


if __name__ == "__main__":
    main()
