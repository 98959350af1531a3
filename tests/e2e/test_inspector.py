"""An independent client: the MCP Inspector CLI (TypeScript) drives the real stdio server.

The Inspector is installed from the npm registry into .cache/inspector on first use; the
tests skip only when Node's npm/npx is not on the machine.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from luma_mcp.simulator.app import SimulatorServer

from ..helpers.common import CANARY_TOKEN

INSPECTOR_VERSION = "2.12.0"
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "inspector"


@pytest.fixture(scope="module")
def inspector() -> Path:
    if shutil.which("npx") is None or shutil.which("npm") is None:
        pytest.skip("npx/npm not found: install Node.js to run the MCP Inspector tests")
    binary = CACHE / "node_modules" / ".bin" / "mcp-inspector"
    if not binary.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--prefix", str(CACHE), "--save-exact", "--no-audit", "--no-fund",
             f"@modelcontextprotocol/inspector@{INSPECTOR_VERSION}"],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
    return binary


@pytest.fixture
def run(inspector: Path, sim_server: SimulatorServer) -> Iterator[Any]:
    env = {
        "ACEDATACLOUD_API_TOKEN": CANARY_TOKEN,
        "ACEDATACLOUD_API_BASE_URL": sim_server.url,
        "LUMA_POLL_INITIAL_SECONDS": "1",
        "LUMA_POLL_MAX_SECONDS": "1",
        # The Inspector passes its child only what -e names: the test's private folders too.
        "LUMA_LEDGER_PATH": os.environ["LUMA_LEDGER_PATH"],
        "LUMA_DOWNLOAD_DIR": os.environ["LUMA_DOWNLOAD_DIR"],
    }
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]

    def call(*args: str) -> tuple[int, Any]:
        done = subprocess.run(
            [str(inspector), "--cli", *env_args, sys.executable, "-m", "luma_mcp", *args],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert CANARY_TOKEN not in done.stdout
        return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None

    yield call


def test_tools_list(run: Any) -> None:
    code, body = run("--method", "tools/list")
    assert code == 0
    tools = {tool["name"]: tool for tool in body["tools"]}
    assert set(tools) == {"generate_video", "extend_video", "get_task", "list_tasks", "download_video"}
    assert tools["get_task"]["annotations"]["readOnlyHint"] is True
    assert tools["generate_video"]["annotations"]["idempotentHint"] is False
    assert "task_id" in tools["generate_video"]["outputSchema"]["properties"]


def test_generate_then_read_the_task_resource(run: Any) -> None:
    code, body = run(
        "--method", "tools/call", "--tool-name", "generate_video",
        "--tool-arg", "prompt=A paper boat drifting down a rainy street", "--tool-arg", "wait_seconds=10",
    )  # fmt: skip
    assert code == 0, body
    task = body["structuredContent"]
    assert task["status"] == "succeeded" and task["video_url"] in body["content"][0]["text"]
    code, body = run("--method", "resources/read", "--uri", f"luma://tasks/{task['task_id']}")
    assert code == 0 and json.loads(body["contents"][0]["text"])["video_url"] == task["video_url"]


def test_tool_error_reaches_the_inspector(run: Any) -> None:
    code, body = run("--method", "tools/call", "--tool-name", "extend_video", "--tool-arg", "prompt=more")
    assert code == 5  # the Inspector's exit code for a tool error
    assert body["isError"] and "exactly one of video_id" in body["content"][0]["text"]


def test_prompt_and_templates(run: Any) -> None:
    code, body = run("--method", "prompts/get", "--prompt-name", "video_prompt", "--prompt-args", "idea=a koi pond")
    assert code == 0 and "a koi pond" in body["messages"][0]["content"]["text"]
    code, body = run("--method", "resources/templates/list")
    assert code == 0 and "luma://tasks/{task_id}" in {t["uriTemplate"] for t in body["resourceTemplates"]}


def test_over_http_with_a_bearer_header(inspector: Path, sim_server: SimulatorServer) -> None:
    from ..helpers.http import KEY, TOKEN_A, HttpServer, http_env

    server = HttpServer(http_env(sim_server, ACEDATACLOUD_API_TOKEN=TOKEN_A, LUMA_MCP_API_KEYS=KEY)).wait_ready()
    try:
        base = [str(inspector), "--cli", f"{server.url}/mcp", "--transport", "http", "--method", "tools/list"]
        allowed = subprocess.run(
            [*base, "--header", f"Authorization: Bearer {KEY}"], capture_output=True, text=True, timeout=120
        )
        assert allowed.returncode == 0, allowed.stderr
        assert len(json.loads(allowed.stdout)["tools"]) == 5
        wrong = subprocess.run(
            [*base, "--header", "Authorization: Bearer nope", "--stored-auth-only"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert wrong.returncode == 3  # the Inspector's "authentication required"
    finally:
        server.stop()


def test_the_readmes_one_liner_shows_a_video(inspector: Path) -> None:
    # The command as the README prints it, so the test breaks when the README drifts.
    readme = (ROOT / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if line.startswith("npx @modelcontextprotocol/inspector")]
    assert line in (ROOT / "docs" / "simulator.md").read_text()  # the simulator page shows the same one
    words = shlex.split(line)
    assert words[:2] == ["npx", f"@modelcontextprotocol/inspector@{INSPECTOR_VERSION}"]
    assert "--simulate" in words  # no token, no network: the README promises both
    # `npx` runs that package; `inspector` is the same version, installed once for the suite. The
    # command after --cli is found on PATH, as after `. .venv/bin/activate`.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(
        [str(inspector), *words[2:]], env={**os.environ, "PATH": path},
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    task = body["structuredContent"]
    assert task["status"] == "succeeded", body
    assert task["video_url"].startswith("http://127.0.0.1:") and task["video_url"].endswith(".mp4")
    assert task["video_url"] in body["content"][0]["text"]
