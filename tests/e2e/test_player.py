"""The player view in a real browser: headless Chromium, a host page built on ext-apps' own
AppBridge and the official MCP client, our HTTP server as a subprocess, the simulator.

The host page does what an MCP Apps host does: it lists our tools, reads the `ui://` view a
tool names over MCP, renders it in a sandboxed iframe under the CSP the resource declares,
hands it the result of a real tool call, and relays the view's own tool calls to the server.
Screenshots land in test-output/player/.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from luma_mcp.server.player import STATUS_TOOL
from luma_mcp.simulator.app import FAIL_MARKER, ServerThread, Simulator, SimulatorServer

from ..helpers.browser import LAUNCH_ARGS, ROOT, chromium, host_script, npm_ext_apps_bundle
from ..helpers.http import KEY, HttpServer

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is in the dev extra: pip install -e '.[dev]'"
)

SHOTS = ROOT / "test-output" / "player"
HOST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>luma-mcp test host</title></head>
<body style="margin: 16px; background: #f4f4f6; font-family: sans-serif">
<div id="views"></div><script type="module" src="/host.js"></script></body></html>"""
# Queued 1 s, generating 2.5 s: long enough to see the pending view, short enough for the suite.
QUEUE_SECONDS, PROCESSING_SECONDS = 1.0, 2.5
FINISH_TIMEOUT_MS = 30_000  # the video is done after 3.5 s; a busy 2-core machine gets ample room


@dataclass
class Stage:
    sim: Simulator
    sim_port: int
    server: HttpServer
    host_url: str
    browser: Any


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    executable = chromium()
    script = host_script()
    folder = tmp_path_factory.mktemp("player")
    sim_server = SimulatorServer(Simulator(queue_seconds=QUEUE_SECONDS, processing_seconds=PROCESSING_SECONDS)).start()

    async def page(_: Any) -> Response:
        return HTMLResponse(HOST_PAGE)

    async def bundle(_: Any) -> Response:
        return Response(script, media_type="text/javascript")

    host = ServerThread(Starlette(routes=[Route("/", page), Route("/host.js", bundle)])).start()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ACEDATACLOUD_", "LUMA_"))},
        "ACEDATACLOUD_API_BASE_URL": sim_server.url,
        "ACEDATACLOUD_API_TOKEN": "sk-player-test",
        "LUMA_LEDGER_PATH": str(folder / "ledger.sqlite3"),
        "LUMA_DOWNLOAD_DIR": str(folder / "videos"),
        "LUMA_MCP_API_KEYS": KEY,
        "LUMA_MCP_CORS_ORIGINS": host.url,  # the host page calls the server from the browser
        "LUMA_POLL_INITIAL_SECONDS": "1",
        "LUMA_POLL_MAX_SECONDS": "1",
    }
    server = HttpServer(env).wait_ready()
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=LAUNCH_ARGS, headless=True)
        try:
            yield Stage(sim_server.simulator, sim_server.port, server, host.url, browser)
        finally:
            browser.close()
            server.stop()
            host.stop()
            sim_server.stop()


@dataclass
class Host:
    page: Any
    console: list[str]

    def call(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.page.evaluate("([t, a]) => host.call(t, a)", [tool, args])
        assert not result.get("isError"), result
        return result

    def show(self, tool: str, args: dict[str, Any], result: dict[str, Any]) -> Any:
        """Render the view for a result; returns the view's frame."""
        frame_id = self.page.evaluate("([t, a, r]) => host.show(t, a, r)", [tool, args, result])
        return self.page.locator(f"#{frame_id}").element_handle().content_frame()

    def counts(self) -> dict[str, list[str]]:
        calls: dict[str, list[str]] = self.page.evaluate("({model: host.modelCalls, view: host.viewCalls})")
        return calls


@pytest.fixture
def host(stage: Stage) -> Iterator[Host]:
    context = stage.browser.new_context(viewport={"width": 700, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(stage.host_url)
    page.wait_for_function("() => window.host !== undefined", timeout=10_000)
    tools = page.evaluate("([s, k]) => host.connect(s, k)", [stage.server.url, KEY])
    # This host negotiated Apps, so it is also given the app-only tool, marked as such.
    by_name = {t["name"]: t["meta"] for t in tools}
    assert by_name[STATUS_TOOL]["ui"]["visibility"] == ["app"]
    try:
        yield Host(page, console)
    finally:
        context.close()


VIDEO = "article[data-status=succeeded] video"
METADATA_READ = (
    f"() => {{ const v = document.querySelector('{VIDEO}'); return !!v && v.readyState >= 1 && v.duration > 0; }}"
)


def shoot(host: Host, frame_id: str, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    host.page.locator(f"#{frame_id}").screenshot(path=str(path))
    return path


def test_pending_view_becomes_the_player_without_a_model_call(stage: Stage, host: Host) -> None:
    args = {"prompt": "A paper boat drifting down a rainy street at night, neon reflections", "wait_seconds": 0}
    result = host.call("generate_video", args)
    task = result["structuredContent"]
    assert task["status"] in ("pending", "processing")
    frame = host.show("generate_video", args, result)

    tile = f"article[data-task-id='{task['task_id']}']"
    frame.wait_for_selector(f"{tile}[data-status=pending], {tile}[data-status=processing]", timeout=10_000)
    frame.wait_for_function("() => /next check in/.test(document.body.innerText)", timeout=10_000)
    shoot(host, "view-1", "pending.png")

    frame.wait_for_selector(VIDEO, timeout=FINISH_TIMEOUT_MS)
    frame.wait_for_function(METADATA_READ, timeout=15_000)
    video = frame.evaluate(
        f"() => {{ const v = document.querySelector('{VIDEO}'); "
        "return {src: v.currentSrc, poster: v.poster, duration: v.duration, "
        "ratio: v.parentElement.style.aspectRatio}; }"
    )
    final = stage.sim.tasks[task["task_id"]].response(time.time())  # what the API says now
    assert final is not None
    assert video["src"] == final["video_url"]
    assert video["poster"] == final["thumbnail_url"]
    assert video["duration"] > 0
    width, height = final["video_width"], final["video_height"]
    assert video["ratio"].replace(" ", "") == f"{width}/{height}"

    # It got there by itself: the page (the "model") made one call, the view only its status calls.
    calls = host.counts()
    assert calls["model"] == ["generate_video"]
    assert calls["view"] and set(calls["view"]) == {STATUS_TOOL}
    # ... and never read the task upstream more often than the politeness floor (1 s).
    reads = [r.at for r in stage.sim.requests if r.path == "/luma/tasks" and task["task_id"] in json.dumps(r.body)]
    assert reads, "the view's status calls never reached the API"
    gaps = [later - earlier for earlier, later in itertools.pairwise(reads)]
    assert all(gap >= 0.9 for gap in gaps), gaps

    frame.evaluate(f"async () => {{ const v = document.querySelector('{VIDEO}'); v.muted = true; await v.play(); }}")
    frame.wait_for_function(f"() => document.querySelector('{VIDEO}').currentTime > 0.3", timeout=10_000)
    frame.evaluate(f"() => document.querySelector('{VIDEO}').pause()")
    shoot(host, "view-1", "playing.png")

    # Continuing is paid: the view only puts the request to the assistant, after two clicks.
    frame.get_by_role("button", name="Continue this video…").click()
    frame.get_by_label("What happens next").fill("the boat sails into the sunrise")
    frame.get_by_role("button", name="Ask the assistant to continue").click()
    frame.wait_for_selector("text=Sent to the assistant.", timeout=5_000)
    message = host.page.evaluate("host.messages[0].content[0].text")
    assert f'extend_video(video_id="{final["video_id"]}"' in message and "sunrise" in message
    assert host.counts()["model"] == ["generate_video"]  # nothing paid was called


def test_media_on_an_undeclared_domain_is_blocked(stage: Stage, host: Host) -> None:
    # The same simulator, named differently: http://localhost:PORT is not the declared 127.0.0.1 origin.
    stage.sim.media_base = f"http://localhost:{stage.sim_port}"
    try:
        args = {"prompt": "A red kite over green hills", "wait_seconds": 20}
        result = host.call("generate_video", args)
    finally:
        stage.sim.media_base = None
    task = result["structuredContent"]
    assert task["status"] == "succeeded" and task["video_url"].startswith("http://localhost:")
    frame = host.show("generate_video", args, result)
    frame.wait_for_selector(VIDEO, timeout=10_000)
    frame.wait_for_function(
        f"() => {{ const v = document.querySelector('{VIDEO}'); return v.error !== null || v.networkState === 3; }}",
        timeout=10_000,
    )
    blocked = [m for m in host.console if "Content Security Policy" in m and task["video_url"] in m]
    assert blocked and "media-src" in blocked[0], host.console
    fetched = [r.path for r in stage.sim.requests if r.path.startswith(f"/media/{task['task_id']}")]
    assert fetched == [], "the browser fetched media the CSP should have blocked"


def test_batch_shows_a_grid_of_every_task(stage: Stage, host: Host) -> None:
    prompts = ["A koi pond in the rain", "A lighthouse at dusk", f"A storm at sea {FAIL_MARKER}"]
    ids = [
        host.call("generate_video", {"prompt": p, "wait_seconds": 0})["structuredContent"]["task_id"] for p in prompts
    ]
    args = {"task_ids": [*ids, "no-such-task"]}
    listing = host.call("get_task", args)
    frame = host.show("get_task", args, listing)

    for task_id in ids:
        frame.wait_for_selector(f"article[data-task-id='{task_id}']", timeout=10_000)
    assert frame.evaluate("() => document.getElementById('root').classList.contains('grid')")
    good, failing = ids[:2], ids[2]
    for task_id in good:
        frame.wait_for_selector(
            f"article[data-task-id='{task_id}'][data-status=succeeded] video", timeout=FINISH_TIMEOUT_MS
        )
    failed = frame.wait_for_selector(
        f"article[data-task-id='{failing}'][data-status=failed]", timeout=FINISH_TIMEOUT_MS
    )
    text = failed.inner_text()
    assert "Failed tasks are not charged" in text
    assert stage.sim.tasks[failing].error_message.rstrip(".") in text
    assert frame.evaluate("() => document.querySelectorAll('article[data-task-id]').length") == 3
    assert "Task no-such-task: not found" in frame.inner_text("#root")
    shoot(host, "view-1", "batch.png")
    assert set(host.counts()["view"]) == {STATUS_TOOL}


def test_a_javascript_url_or_a_bidi_control_in_a_result_cannot_reach_the_person(host: Host) -> None:
    """A result from anywhere (an older server, a row written before it checked, a provider's
    echo): a `javascript:` video or thumbnail URL becomes no source, poster, link or openLink,
    and a right-to-left override in a prompt or message cannot reorder what is shown."""
    evil = "javascript:parent.postMessage('pwned', '*')"
    override = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: what follows would read backwards
    tasks = [
        {"task_id": "t-js", "status": "succeeded", "video_url": evil, "thumbnail_url": evil, "video_id": "v-1",
         "prompt": "A fox"},
        {"task_id": "t-bidi", "status": "failed", "prompt": f"A cat {override}gnikrap",
         "error": {"code": "api_error", "message": f"Refused {override}txet"}},
    ]  # fmt: skip
    listing = {"tasks": tasks, "not_found": []}
    result = {"content": [{"type": "text", "text": "two tasks"}], "structuredContent": listing}
    frame = host.show("get_task", {"task_ids": ["t-js", "t-bidi"]}, result)
    frame.wait_for_selector("article[data-task-id='t-bidi']", timeout=10_000)
    js = frame.wait_for_selector("article[data-task-id='t-js']", timeout=10_000)
    carried = frame.evaluate(
        """() => [...document.querySelectorAll('*')].flatMap((node) =>
            ['src', 'href', 'poster'].map((name) => node.getAttribute(name)).filter(Boolean))"""
    )
    assert not [value for value in carried if "javascript" in value.lower()], carried
    assert frame.query_selector("video") is None and frame.query_selector("a[href]") is None
    assert "not an http(s) address" in js.inner_text()
    for link in frame.query_selector_all("a, button"):  # whatever there is to press, pressed
        if link.is_visible():
            link.click()
    assert host.page.evaluate("host.links") == []
    shown = frame.evaluate(
        """() => [...document.querySelectorAll("article[data-task-id='t-bidi'] p")].map(
            (p) => ({text: p.textContent, dir: p.getAttribute('dir')}))"""
    )
    texts = [p["text"] for p in shown]
    assert any("gnikrap" in t for t in texts) and any("txet" in t for t in texts), shown
    assert all(override not in t for t in texts), shown  # drawn as U+FFFD, reordering nothing
    assert all(p["dir"] == "auto" for p in shown if "gnikrap" in p["text"] or "txet" in p["text"]), shown


def test_the_shipped_ext_apps_client_is_the_pinned_release(stage: Stage) -> None:
    # `stage` installed the pinned @modelcontextprotocol/ext-apps from npm for the host page.
    shipped = (ROOT / "src" / "luma_mcp" / "server" / "ui" / "ext-apps" / "app-with-deps.js").read_bytes()
    assert shipped == npm_ext_apps_bundle(), (
        "src/luma_mcp/server/ui/ext-apps differs from npm's release: run make ext-apps"
    )
