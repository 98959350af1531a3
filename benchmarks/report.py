"""What `make bench` writes: the results of a run (raw numbers and figures) as
benchmarks/results/latest.json, and as the tables and sections of benchmarks/RESULTS.md, each
section rendered by the module that measured it.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

from callbacks_vs_polling import CallbackRun, callbacks_section
from context_economy import EconomyRun, economy_section
from harness import HERE, Figure, describe, fmt
from http_load import HttpReport, http_section
from luma_mcp import __version__
from model_loop import Scenario
from ninety_second_video import scenario_lines

RESULTS_JSON = HERE / "results" / "latest.json"
RESULTS_MD = HERE / "RESULTS.md"


@dataclass
class Results:
    figures: list[Figure]
    raw: dict[str, Any]
    scenario: Scenario | None = None
    economy: list[EconomyRun] = field(default_factory=list)
    callbacks: list[CallbackRun] = field(default_factory=list)
    http: HttpReport | None = None
    plot_written: bool = False


def markdown_table(figures: list[Figure]) -> str:
    lines = ["| Figure | Ours | Bare | Ours/bare | Target | Met |", "|---|---:|---:|---:|---|:-:|"]
    for f in figures:
        met = {True: "yes", False: "**no**", None: ""}[f.met]
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else "—"
        lines.append(
            f"| {f.label} | {fmt(f.ours, f.unit)} | {fmt(f.bare, f.unit)} | {ratio} | {f.target or ''} | {met} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "mcp": version("mcp"),
        "luma_mcp": __version__,
    }


METHOD = (
    "Both servers run as real stdio subprocesses of the MCP SDK's Client, against the built-in API "
    "simulator on a loopback port (tasks finish at once, except in the 90-s scenario). Timed figures are "
    "medians; runs alternate between the two servers (A, B then B, A), after one untimed start each and "
    "{warmup} warm-up calls each, so machine noise hits both alike. Ratios are ours / bare, both measured "
    "in this same run. The bare server (benchmarks/bare_server.py) is one MCPServer tool that makes the "
    "same single httpx request as our get_task and returns the raw answer; both log at WARNING."
)


def render_markdown(report: dict[str, Any], results: Results) -> str:
    m = report["machine"]
    stdio = [f for f in results.figures if f.section == "stdio"]
    parts = [
        "# luma-mcp benchmarks",
        "",
        f"Run {report['date']} on {m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}, "
        f"mcp {m['mcp']}, luma-mcp {m['luma_mcp']}. Written by `make bench` (benchmarks/run.py); "
        "raw numbers in benchmarks/results/latest.json.",
        "",
        markdown_table(stdio),
        "",
        "## Method",
        "",
        report["method"],
        "",
        "## Figures",
        "",
        *describe(stdio),
    ]
    if results.scenario is None:
        parts += ["", "The 90-second generation was skipped (`--quick`)."]
    else:
        parts += ["", "## The 90-second generation, call by call", "", *scenario_lines(results.scenario)]
    parts += ["", *economy_section(results.figures, results.economy, results.scenario)]
    if results.callbacks:
        parts += ["", *callbacks_section(results.figures, results.callbacks)]
    else:
        parts += ["", "The callbacks-against-polling run was skipped (`--quick` or `--skip-http`)."]
    if results.http is None:
        parts += ["", "The HTTP measurements were skipped (`--skip-http`)."]
    else:
        parts += ["", *http_section(results.figures, results.http, results.plot_written, int(m["cpu_count"] or 0))]
    return "\n".join(parts) + "\n"


def write_outputs(report: dict[str, Any], markdown: str) -> None:
    # Written beside and renamed: an interrupted run never leaves half a file.
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((RESULTS_JSON, json.dumps(report, indent=2) + "\n"), (RESULTS_MD, markdown)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
