"""A simulator of Ace Data Cloud's Luma API, for tests, the demo and `luma-mcp --simulate`.

It behaves as the API is documented (see docs/simulator.md): bearer-token checks
with the real error bodies, validation errors, async submits that return a task id, tasks
that go from queued to processing to completed (or failed) after configurable times,
`{}` for unknown ids, batch retrieval, blocking submits, callbacks POSTed on completion,
and small media files at the result URLs. It is stricter than the real API in one way on
purpose: a null or unknown field is a 400, so a client that sends one is caught.

Prompts steer outcomes: one containing `sim:refuse` is refused by moderation (403), one
containing `sim:fail` fails while processing. Tests inject transport faults with
`Simulator.inject`. `SimulatorServer` runs it on a real loopback port in a background
thread; `python -m luma_mcp.simulator.app` runs it in the foreground.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, Self

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from luma_mcp.config import ASPECT_RATIOS

log = logging.getLogger(__name__)

FAIL_MARKER = "sim:fail"
REFUSE_MARKER = "sim:refuse"

FaultKind = Literal[
    # API answers: status codes, bodies that are not the JSON promised, connections that break
    "429", "500", "502", "503", "504", "html", "empty", "truncated", "not_json_object", "drop", "slow",
    # task reads that parse but say little: `{}` (as for an unknown id), or `response: null`
    "unknown_task", "null_response",
    # media downloads: the body cut off half way, or a page instead of a video; a redirect to
    # `location`; a video of `size` bytes sent in chunks with no announced length
    "drop_body", "not_video", "redirect", "large_video",
]  # fmt: skip

_VIDEO_FIELDS = {
    "action", "prompt", "aspect_ratio", "loop", "enhancement", "start_image_url", "end_image_url",
    "video_id", "video_url", "callback_url", "async", "timeout",
}  # fmt: skip

# A real one-second 64x36 H.264 MP4 and a JPEG, served at every result URL.
_MEDIA = resources.files("luma_mcp.simulator") / "media"
SAMPLE_MP4 = (_MEDIA / "sample.mp4").read_bytes()
SAMPLE_JPEG = (_MEDIA / "sample.jpg").read_bytes()


@dataclass
class Fault:
    """One injected failure for the next `times` requests to `path`."""

    kind: FaultKind
    path: str | None = None  # None: any /luma/ API path (media faults name their path)
    times: int = 1
    retry_after: float | None = None
    delay: float = 0.0  # for "slow"
    after_processing: bool = False  # handle the request first, then fail the answer
    location: str = ""  # for "redirect"
    size: int = 0  # for "large_video"
    status: int = 502  # for "html": the status of the error page (a proxy's 403, say)


@dataclass
class RecordedRequest:
    path: str
    body: Any
    authorization: str | None
    at: float
    client_port: int | None = None  # tells connections apart: a new one per submit, reads pooled


@dataclass
class SimTask:
    id: str
    created_at: float
    request: dict[str, Any]
    starts_at: float
    finishes_at: float
    fails: bool
    video_id: str
    trace_id: str
    media_base: str
    owner: str = ""  # the token that created it: tasks belong to an account, as upstream
    error_message: str = "The video provider failed to generate the video."

    def response(self, now: float) -> dict[str, Any] | None:
        if now < self.starts_at:
            return None
        if now < self.finishes_at:
            return {"task_id": self.id, "state": "processing"}
        if self.fails:
            return {
                "success": False,
                "task_id": self.id,
                "trace_id": self.trace_id,
                "error": {"code": "api_error", "message": self.error_message},
            }
        ratio = self.request.get("aspect_ratio", "16:9")
        width, height = _dimensions(ratio)
        return {
            "success": True,
            "task_id": self.id,
            "video_id": self.video_id,
            "prompt": self.request.get("prompt", ""),
            "video_url": f"{self.media_base}/media/{self.id}.mp4",
            "video_width": width,
            "video_height": height,
            "state": "completed",
            "thumbnail_url": f"{self.media_base}/media/{self.id}.jpg",
            "thumbnail_width": width,
            "thumbnail_height": height,
        }

    def record(self, now: float) -> dict[str, Any]:
        record: dict[str, Any] = {
            # Bookkeeping ids as the real API sends them: clients must not pass these on.
            "_id": uuid.uuid4().hex[:24],
            "id": self.id,
            "api_id": "94fc9028-5a9f-4875-aae4-38463bd30ac5",
            "application_id": "06484a45-9d04-498a-98a7-67086dee8166",
            "credential_id": "e6a879e5-a7c0-4f7b-9d6f-f9a837421a50",
            "user_id": "ad7afe47-cea9-4cda-980f-2ad8810e51cf",
            "trace_id": self.trace_id,
            "created_at": self.created_at,
            "request": self.request,
        }
        response = self.response(now)
        if response is not None:
            record["response"] = response
        if now >= self.starts_at:
            record["started_at"] = self.starts_at
        if now >= self.finishes_at:
            record["finished_at"] = self.finishes_at
            record["elapsed"] = round(self.finishes_at - self.created_at, 3)
        return record


def _dimensions(ratio: str) -> tuple[int, int]:
    w, h = (int(x) for x in ratio.split(":")) if ratio in ASPECT_RATIOS else (16, 9)
    scale = 1360 / max(w, h)
    return round(w * scale) // 8 * 8, round(h * scale) // 8 * 8


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message}, "trace_id": str(uuid.uuid4())}
    return JSONResponse(body, status_code=status, headers=headers)


class Simulator:
    """The simulated service's state and behaviour. Thread-safe to steer from tests."""

    def __init__(
        self,
        *,
        queue_seconds: float = 0.2,
        processing_seconds: float = 1.0,
        valid_tokens: set[str] | None = None,
        token_errors: dict[str, str] | None = None,
        media_base: str | None = None,
    ) -> None:
        self.queue_seconds = queue_seconds
        self.processing_seconds = processing_seconds
        self.valid_tokens = valid_tokens  # None: any non-empty token is accepted
        self.token_errors = dict(token_errors or {})  # token -> error code
        self.media_base = media_base  # None: result URLs point at this simulator
        self.tasks: dict[str, SimTask] = {}
        self.requests: list[RecordedRequest] = []
        self.callbacks: list[dict[str, Any]] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self.app = self._build_app()

    # --- steering from tests ---------------------------------------------------------

    def inject(self, kind: FaultKind, path: str | None = None, **options: Any) -> Fault:
        fault = Fault(kind=kind, path=path, **options)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def forget(self) -> None:
        """Forget every task, request and callback so far (what a warm-up left behind)."""
        with self._lock:
            self.tasks.clear()
            self.requests.clear()
            self.callbacks.clear()

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path == path)

    def submits(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.body for r in self.requests if r.path == "/luma/videos"]

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path == path or (fault.path is None and path.startswith("/luma/")):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # --- the ASGI app ------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        routes = [
            Route("/luma/videos", self._videos, methods=["POST"]),
            Route("/luma/tasks", self._tasks, methods=["POST"]),
            Route("/media/{name}", self._media, methods=["GET"]),
            Route("/health", lambda _: JSONResponse({"ok": True}), methods=["GET"]),
        ]
        return Starlette(routes=routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every API request is recorded on arrival; faults sit outside the app so they can
        break the HTTP exchange itself."""
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(("/luma/", "/media/")):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        raw = await request.body()
        self._record(path, raw, request.headers.get("authorization"), request.client.port if request.client else None)
        replay = _replay(raw)
        fault = self._take_fault(path)
        if fault is None:
            await self.app(scope, replay, send)
            return
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            await self.app(scope, replay, send)
            return
        if fault.after_processing:
            await self.app(scope, replay, _discard)
        await self._send_fault(fault, scope, send, raw)

    async def _send_fault(self, fault: Fault, scope: Scope, send: Send, raw: bytes = b"") -> None:
        kind = fault.kind
        if kind in ("unknown_task", "null_response"):
            await self._thin_records(kind, raw)(scope, _no_receive, send)
            return
        if kind == "drop":
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if transport is not None:
                transport.abort()  # close the socket with no answer at all
                return
            raise ConnectionAbortedError("simulated dropped connection")
        if kind == "drop_body":
            # Headers promise the whole file, half of it comes, then the connection dies.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"video/mp4"), (b"content-length", str(len(SAMPLE_MP4)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": SAMPLE_MP4[: len(SAMPLE_MP4) // 2], "more_body": True})
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if transport is not None:
                transport.abort()
            return
        if kind == "large_video":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"video/mp4")]})
            block = bytes(64 * 1024)
            for start in range(0, fault.size, len(block)):
                body = block[: min(len(block), fault.size - start)]
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        if kind == "redirect":
            response: Response = Response(b"", status_code=302, headers={"location": fault.location})
        elif kind == "not_video":
            response = Response(b"<html><body>Sign in to view</body></html>", media_type="text/html")
        elif kind == "truncated":
            body = b'{"task_id": "0f1e2d3c-4b5a-6978-8'
            response = Response(body, media_type="application/json")
        elif kind == "empty":
            response = Response(b"", status_code=200, media_type="application/json")
        elif kind == "not_json_object":
            response = Response(b'["unexpected"]', media_type="application/json")
        elif kind == "html":
            response = Response(
                b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>",
                status_code=fault.status,
                media_type="text/html",
            )
        elif kind == "429":
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
            response = _error(429, "too_many_requests", "You have exceeded the rate limit.", headers)
        elif kind == "500":
            response = _error(500, "api_error", "Internal server error.")
        elif kind == "504":
            response = _error(504, "timeout", "The request timed out.")
        else:  # 502, 503: a bare gateway answer
            response = Response(f"{kind} Service Unavailable".encode(), status_code=int(kind), media_type="text/plain")
        await response(scope, _no_receive, send)

    def _thin_records(self, kind: str, raw: bytes) -> JSONResponse:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        ids = body.get("ids") or [body.get("id")]
        now = time.time()
        records = (
            []
            if kind == "unknown_task"
            else [{**self.tasks[i].record(now), "response": None} for i in ids if i in self.tasks]
        )
        if body.get("action") == "retrieve_batch":
            return JSONResponse({"items": records, "count": len(records)})
        return JSONResponse(records[0] if records else {})

    def _record(self, path: str, raw: bytes, authorization: str | None, client_port: int | None) -> None:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        with self._lock:
            self.requests.append(RecordedRequest(path, body, authorization, time.time(), client_port))

    def _auth_error(self, authorization: str | None) -> JSONResponse | None:
        if not authorization or not authorization.lower().startswith("bearer "):
            return _error(400, "no_token", "The token is not provided in the header.")
        token = authorization[7:].strip()
        code = self.token_errors.get(token)
        if code == "token_mismatched":
            return _error(401, code, "The token is not matched with the API.")
        if code == "used_up":
            return _error(
                403,
                code,
                "Your balance is not sufficient for current request, please buy more in Ace Data Cloud "
                "https://platform.acedata.cloud",
            )
        if code == "disabled":
            return _error(403, code, "The credential is disabled.")
        if not token or code == "invalid_token" or (self.valid_tokens is not None and token not in self.valid_tokens):
            return _error(401, "invalid_token", "The specified token is invalid or wrong.")
        return None

    async def _read_json(self, request: Request) -> tuple[Any, JSONResponse | None]:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        denied = self._auth_error(request.headers.get("authorization"))
        if denied is not None:
            return body, denied
        if not isinstance(body, dict):
            return body, _error(400, "bad_request", "The json payload is not valid to request the API")
        return body, None

    async def _videos(self, request: Request) -> Response:
        body, problem = await self._read_json(request)
        if problem is not None:
            return problem
        invalid = _validate_video_request(body)
        if invalid is not None:
            return _error(400, "bad_request", invalid)
        if REFUSE_MARKER in (body.get("prompt") or ""):
            return _error(
                403,
                "forbidden",
                "Sorry! Our Al moderators feel your prompt might be against our community standards.",
            )
        task = self._create_task(
            body, media_base=self.media_base or str(request.base_url).rstrip("/"), owner=_bearer(request)
        )
        if body.get("callback_url"):
            self._spawn(self._deliver_callback(task, body["callback_url"]))
            return JSONResponse({"task_id": task.id})
        if body.get("async"):
            return JSONResponse({"success": True, "task_id": task.id, "trace_id": task.trace_id})
        # Blocking mode: answer when done, or 504 after `timeout` seconds.
        limit = float(body.get("timeout", 300))
        remaining = task.finishes_at - time.time()
        if remaining > limit:
            await asyncio.sleep(limit)
            return _error(504, "timeout", "The request timed out.")
        await asyncio.sleep(max(0.0, remaining))
        response = task.response(time.time())
        assert response is not None
        if response.get("success") is False:
            return JSONResponse(response, status_code=500)
        return JSONResponse(response)

    def _create_task(self, body: dict[str, Any], media_base: str, owner: str = "") -> SimTask:
        now = time.time()
        fails = FAIL_MARKER in (body.get("prompt") or "")
        message = None
        if body.get("action") == "extend" and body.get("video_id"):
            known = any(t.video_id == body["video_id"] and not t.fails for t in list(self.tasks.values()))
            if not known:
                fails, message = True, f"The video {body['video_id']} was not found."
        task = SimTask(
            id=str(uuid.uuid4()),
            created_at=now,
            request=body,
            starts_at=now + self.queue_seconds,
            finishes_at=now + self.queue_seconds + self.processing_seconds,
            fails=fails,
            video_id=str(uuid.uuid4()),
            trace_id=str(uuid.uuid4()),
            media_base=media_base,
            owner=owner,
        )
        if message:
            task.error_message = message
        with self._lock:
            self.tasks[task.id] = task
        return task

    async def _tasks(self, request: Request) -> Response:
        body, problem = await self._read_json(request)
        if problem is not None:
            return problem
        now = time.time()
        action = body.get("action")
        mine = {i: t for i, t in list(self.tasks.items()) if t.owner == _bearer(request)}
        if action == "retrieve":
            task = mine.get(str(body.get("id")))
            return JSONResponse(task.record(now) if task else {})
        if action == "retrieve_batch":
            ids = body.get("ids")
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                return _error(400, "bad_request", "ids must be a list of task ids")
            items = [mine[i].record(now) for i in ids if i in mine]
            return JSONResponse({"items": items, "count": len(items)})
        return _error(400, "bad_request", "action must be retrieve or retrieve_batch")

    async def _media(self, request: Request) -> Response:
        name = request.path_params["name"]
        task_id, _, ext = name.rpartition(".")
        task = self.tasks.get(task_id)
        if task is None or task.response(time.time()) is None or ext not in ("mp4", "jpg"):
            return Response(b"not found", status_code=404, media_type="text/plain")
        if ext == "mp4":
            return Response(SAMPLE_MP4, media_type="video/mp4")
        return Response(SAMPLE_JPEG, media_type="image/jpeg")

    # --- callbacks -------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _deliver_callback(self, task: SimTask, url: str) -> None:
        await asyncio.sleep(max(0.0, task.finishes_at - time.time()))
        payload = task.response(time.time())
        async with httpx.AsyncClient(timeout=5) as http:
            for attempt in range(3):
                try:
                    answer = await http.post(url, json=payload)
                    if answer.is_success:
                        break
                except httpx.HTTPError as exc:
                    log.info("simulator callback to %s failed: %s", url, type(exc).__name__)
                await asyncio.sleep(0.2 * (attempt + 1))
        with self._lock:
            self.callbacks.append({"url": url, "payload": payload})


def _bearer(request: Request) -> str:
    return request.headers.get("authorization", "")[7:].strip()


def _validate_video_request(body: dict[str, Any]) -> str | None:
    """The service's rules for a `/luma/videos` body; the message a 400 carries, or None."""
    for key, value in body.items():
        if key not in _VIDEO_FIELDS:
            return f"Unknown field '{key}'"
        if value is None:
            return f"Field '{key}' must not be null"
    action = body.get("action", "generate")
    if action not in ("generate", "extend"):
        return "action must be generate or extend"
    for key in ("prompt", "aspect_ratio", "video_id"):
        if key in body and not isinstance(body[key], str):
            return f"{key} must be a string"
    for key in ("loop", "enhancement", "async"):
        if key in body and not isinstance(body[key], bool):
            return f"{key} must be a boolean"
    for key in ("start_image_url", "end_image_url", "video_url", "callback_url"):
        if key in body and not (isinstance(body[key], str) and body[key].startswith(("http://", "https://"))):
            return f"{key} must be an http(s) URL"
    if "aspect_ratio" in body and body["aspect_ratio"] not in ASPECT_RATIOS:
        return f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}"
    if action == "generate" and not body.get("prompt"):
        return "prompt is required"
    if action == "extend" and not (body.get("video_id") or body.get("video_url")):
        return "video_id or video_url is required"
    return None


def _replay(raw: bytes) -> Receive:
    """A `receive` that hands the app the body the fault layer already read."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return receive


async def _no_receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


async def _discard(message: Any) -> None:
    return None


class ServerThread:
    """Runs an ASGI app with uvicorn on a loopback port in a background thread (a real socket)."""

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 0, *, lifespan: bool = False, **uvicorn_options: Any
    ) -> None:
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
        # and without it every kept-alive answer waits ~40 ms for a delayed ACK.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(
            app,
            log_config=None,  # uvicorn's default config would log access lines to stdout
            access_log=False,
            log_level="warning",
            lifespan="on" if lifespan else "off",  # an app with a lifespan (the MCP server's) needs it run
            timeout_graceful_shutdown=1,
            **uvicorn_options,  # e.g. TLS files, for tests that need https
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="luma-server-thread", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server thread did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SimulatorServer(ServerThread):
    """A `Simulator` served on a loopback port; `.simulator` steers it, `.url` reaches it."""

    def __init__(self, simulator: Simulator | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator or Simulator()
        super().__init__(self.simulator, host, port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the Luma API simulator on a loopback port.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--queue-seconds", type=float, default=2.0)
    parser.add_argument("--processing-seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sim = Simulator(queue_seconds=args.queue_seconds, processing_seconds=args.processing_seconds)
    log.info("Luma simulator on http://%s:%d (any bearer token is accepted)", args.host, args.port)
    uvicorn.run(sim, host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
