"""Part of `make bench`: the HTTP latency figures as a PNG (p50 and p99 against concurrency)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LatencyPoint:
    clients: int
    p50_ms: float
    p99_ms: float
    calls_per_s: float


def plot_latency(points: Sequence[LatencyPoint], path: Path, subtitle: str) -> None:
    """Write the plot to `path` (beside, then renamed: an interrupted run leaves no half file)."""
    # Imported here: matplotlib is the optional `bench` extra, and the rest of the benchmark
    # (and `--skip-http`) runs without it. Agg: no display on a server or in CI.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, StrMethodFormatter

    clients = [p.clients for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    # p99 labelled above its points and p50 below, so that close values (at one client) stay legible.
    series = (([p.p99_ms for p in points], "p99", "s", (-8, 8)), ([p.p50_ms for p in points], "p50", "o", (4, -14)))
    for values, label, marker, offset in series:
        ax.plot(clients, values, marker=marker, label=label)
        for x, y in zip(clients, values, strict=True):
            ax.annotate(f"{y:.1f} ms", (x, y), textcoords="offset points", xytext=offset, fontsize=8)
    # Log scales: concurrency spans 1 to 50 and latency milliseconds to hundreds of them.
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(min(clients) / 1.5, max(clients) * 1.8)  # room for the labels at both ends
    ax.margins(y=0.15)  # and above and below
    ax.set_xticks(clients, [f"{p.clients}\n{p.calls_per_s:.0f} calls/s" for p in points])
    ax.xaxis.set_minor_locator(LogLocator(subs=()))
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
    ax.yaxis.set_minor_locator(LogLocator(subs=()))
    ax.set_xlabel("concurrent MCP sessions (and throughput)")
    ax.set_ylabel("latency per tool call (ms)")
    ax.set_title(f"luma-mcp over streamable HTTP: get_task and list_tasks\n{subtitle}", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)
