"""What every part of `make bench` shares: figures and their targets, ratios and formatting, the
simulator, and reading tool results.

A figure is one measured number with its label, unit and description; with a `bare` value it is
reported as a ratio against the bare server measured in the same run. The `section` says which
table of RESULTS.md shows it.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from mcp import Client
from mcp.types import CallToolResult, TextContent

from luma_mcp.simulator.app import Simulator, SimulatorServer

HERE = Path(__file__).resolve().parent

TOKEN = "bench-token-123456"  # noqa: S105 (the simulator accepts any token)
PROMPT = "A red fox trots through fresh snow at dawn, slow tracking shot, soft golden light"


class BenchmarkError(Exception):
    """Something did not work (as opposed to a target missed)."""


# --- figures --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    op: Literal["<=", ">="]
    value: float
    on: Literal["ratio", "value"] = "value"

    def met(self, measured: float) -> bool:
        return measured <= self.value if self.op == "<=" else measured >= self.value

    def __str__(self) -> str:
        return f"{'ratio ' if self.on == 'ratio' else ''}{self.op} {self.value:g}"


@dataclass
class Figure:
    key: str
    label: str
    unit: str
    description: str
    ours: float
    bare: float | None = None
    target: Target | None = None
    section: Literal["stdio", "economy", "callbacks", "http"] = "stdio"  # which table of RESULTS.md shows it

    @property
    def ratio(self) -> float | None:
        return self.ours / self.bare if self.bare else None

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        measured = self.ratio if self.target.on == "ratio" else self.ours
        return None if measured is None else self.target.met(measured)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = str(self.target) if self.target else None
        data.update(ratio=self.ratio, met=self.met)
        return data


def p90(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def by_key(figures: list[Figure]) -> dict[str, Figure]:
    return {f.key: f for f in figures}


def http_figure(key: str, label: str, unit: str, description: str, value: float) -> Figure:
    return Figure(key=key, label=label, unit=unit, description=description, ours=value, section="http")


def say(text: str) -> None:
    # Progress goes to stderr: stdout carries only the final table.
    print(text, file=sys.stderr, flush=True)


# --- the simulator --------------------------------------------------------------------


def simulator(queue_seconds: float, processing_seconds: float) -> SimulatorServer:
    """A simulator server, not yet started."""
    return SimulatorServer(Simulator(queue_seconds=queue_seconds, processing_seconds=processing_seconds))


# --- tool results ---------------------------------------------------------------------


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def result_bytes(result: CallToolResult) -> int:
    """What the model reads of a result: its text plus its structured JSON (compact)."""
    structured = result.structured_content
    json_bytes = 0 if structured is None else len(json.dumps(structured, separators=(",", ":")).encode())
    return len(text_of(result).encode()) + json_bytes


def task_of(result: CallToolResult) -> dict[str, Any]:
    """The one task of a generate_video (a TaskResult) or get_task (a TaskList) result."""
    data = result.structured_content or {}
    return dict(data["tasks"][0] if "tasks" in data else data)


def status_of(result: CallToolResult) -> str:
    return str(task_of(result).get("status"))


async def call(client: Client, name: str, arguments: dict[str, Any]) -> CallToolResult:
    result = await client.call_tool(name, arguments)
    if result.is_error:
        raise BenchmarkError(f"{name}({arguments}) failed: {text_of(result)}")
    return result


# --- formatting -----------------------------------------------------------------------


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit in ("B", "calls", "req"):
        return f"{value:.0f} {unit}"
    return f"{value:.3g} {unit}".strip() if value < 10 else f"{value:.1f} {unit}".strip()


def count(value: float) -> str:
    return f"{value:.0f}"


def describe(figures: list[Figure]) -> list[str]:
    return [f"- **{f.label}**: {f.description}." for f in figures]


def met_cell(figure: Figure) -> str:
    return {True: "yes", False: "**no**", None: ""}[figure.met]


def value_table(figures: list[Figure]) -> str:
    lines = ["| Figure | Value | Target | Met |", "|---|---:|---|:-:|"]
    lines += [f"| {f.label} | {fmt(f.ours, f.unit)} | {f.target or ''} | {met_cell(f)} |" for f in figures]
    return "\n".join(lines)
