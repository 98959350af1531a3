"""Callbacks in HTTP mode: the provider POSTs each finished video to a URL of ours.

HTTP-only (imported lazily by `hosting.app`; stdio never loads it). What it guarantees:
- Each submit gets its own unguessable secret (`core.callback_urls`), sent to the provider
  only inside the callback URL of the wire request; the route logs only task ids.
- `POST /callbacks/luma/{secret}` (`CallbackReceiver`) is reachable by anyone, so it holds
  little and trusts nothing: a secret of the wrong shape is refused before the database is
  asked; a well-formed one is looked up first (its hash, one indexed read: as cheap as the
  refusal), so that no amount of guessing, from any address, refuses a genuine delivery.
  Unknown secrets, and a body naming another task than the secret's, answer 404 and write
  nothing (an unknown secret's body is never read); beyond a budget of such misses per
  client address the answer to a miss is 429. A known secret's body must be a JSON object
  of at most 64 KiB. A known secret touches only its own row, through its tenant's ledger
  view (`Ledger.for_tenant`); a row whose submit's answer was lost takes the task id its
  callback names, if that task is not known.
- A finished result is recorded like a poll's (the same conversion `get_task` uses), which
  wakes waiting calls in this process and, on PostgreSQL, in every replica. The answer is
  2xx only once the result is durable (a failing ledger answers 503, and the provider tries
  again); a repeated delivery changes nothing. No upstream request is made on this path.
  A body whose shape we do not know only wakes the waits here, which then look upstream:
  the provider's real callback body is not documented, and polling stays the safety net.
  Only a delivery of a finished video counts as callbacks arriving (`CallbackIssuer.arrived`).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import ValidationError
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from luma_mcp.api.errors import LedgerError
from luma_mcp.api.models import SubmitState, TaskStatus, VideoResult
from luma_mcp.core.callback_urls import CALLBACK_PREFIX, CallbackIssuer, callback_hash
from luma_mcp.core.results import TaskResult, from_video_result
from luma_mcp.core.token_checks import KeyedBuckets, client_key

if TYPE_CHECKING:
    from luma_mcp.config import Settings
    from luma_mcp.core.ledger import Ledger, LedgerEntry

log = logging.getLogger(__name__)

SECRET_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")  # what CallbackIssuer.issue makes: token_urlsafe(32)
TASK_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,128}")  # what a task id may be to be written down
MAX_BODY_BYTES = 64 * 1024
# Misses (a malformed or unknown secret, a body for another task) one client address may
# cause before its misses answer 429 instead of 404: the provider never misses, so only
# guessing spends this, and it decides only what a miss is told. A guess costs no more
# than the lookup any request to the route costs (its secret is 32 random bytes: guessing
# one is hopeless), so no budget stands before the lookup, where it would refuse genuine
# deliveries too; connections and their rate are bounded by the HTTP layer (`http_limits`).
MISSES_PER_MINUTE = 30
RETRY_AFTER_SECONDS = 1  # a row still waiting for its task id, or a failing ledger
PRUNE_EVERY_SECONDS = 3600.0


class CallbackReceiver:
    """The endpoint the provider POSTs to (see the module's docstring for its rules)."""

    def __init__(self, ledger: Ledger, issuer: CallbackIssuer) -> None:
        self.ledger = ledger
        self.issuer = issuer
        self.misses = KeyedBuckets(per_minute=MISSES_PER_MINUTE, burst=MISSES_PER_MINUTE)
        self._pruned_at = 0.0

    def route(self) -> Route:
        return Route(CALLBACK_PREFIX + "{secret}", self.receive, methods=["POST"])

    async def receive(self, request: Request) -> Response:
        address = client_key(request.client.host if request.client else "")
        secret = str(request.path_params.get("secret", ""))
        if not SECRET_SHAPE.fullmatch(secret):  # no lookup for what no secret of ours looks like
            return self._missed(address) or _plain(400, "Not a callback address of this server.")
        try:
            entry = await self.ledger.by_callback(callback_hash(secret))
            if entry is None:
                return self._missed(address) or _plain(404, "Unknown callback.")
            # A known secret: the provider's delivery (or a leaked secret's), never refused by
            # what guesses have spent.
            body = await _bounded_body(request)
            if body is None:
                return _plain(413, f"A callback body is at most {MAX_BODY_BYTES} bytes.")
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[... nested deep
                payload = None
            if not isinstance(payload, dict):
                return _plain(400, "A callback body is a JSON object.")
            return await self._deliver(entry, payload, address)
        except LedgerError as exc:
            log.warning("A callback could not be recorded (%s); the provider will try again.", exc)
            return _busy()
        except Exception as exc:
            log.error("A callback failed inside luma-mcp (%s); polling will find the task.", type(exc).__name__)
            return _busy()

    def _missed(self, address: str) -> Response | None:
        """Count a miss of `address`: None (answer it as usual), or the 429 once its budget is spent."""
        wait = self.misses.wait(address)
        if wait > 0:
            return Response(status_code=429, headers={"Retry-After": str(math.ceil(wait))})
        self.misses.spend(address)
        return None

    async def _deliver(self, entry: LedgerEntry, payload: dict[str, Any], address: str) -> Response:
        named = payload.get("task_id")
        if entry.task_id is None:
            if entry.state is SubmitState.SENDING:  # the callback beat the submit's answer: send it again
                return _busy()
            # The submit's answer was lost (the row reads `lost`): the provider's delivery, by
            # this row's own secret, names the task that was paid for. Found again, not lost.
            found = await self._recover(entry, named)
            if found is None:
                return Response(status_code=204)  # nothing to recover it with: stop sending
            entry = found
        if named is not None and named != entry.task_id:  # one leaked secret writes one task, no other
            return self._missed(address) or _plain(404, "Unknown callback.")
        task_id = entry.task_id
        assert task_id is not None
        result = _result(task_id, payload, entry.prompt, entry.created_at)
        if result is None:
            # A shape we cannot read: the waits here look upstream, where the truth is (a woken
            # look is not a routine one). It proves nothing about callbacks, so no `arrived`.
            log.info("callback for task %s had a body luma-mcp does not know; waits look upstream", task_id)
            self.ledger.finishes.wake([task_id])
        elif result.status.finished:
            if not entry.finished:
                await self.ledger.for_tenant(entry.tenant).record([result])
                log.info("callback: task %s %s", task_id, result.status.value)
            self.issuer.arrived()  # a finished video, by a secret we issued: callbacks work
        return Response(status_code=204, background=self._prune_now_and_then())

    async def _recover(self, entry: LedgerEntry, named: object) -> LedgerEntry | None:
        """Give a `lost` row the task id its callback names, unless that task is already known."""
        if not isinstance(named, str) or not TASK_ID_SHAPE.fullmatch(named):
            return None
        view = self.ledger.for_tenant(entry.tenant)
        if await view.find([named]):
            return None
        pending = TaskResult(task_id=named, status=TaskStatus.PENDING, prompt=entry.prompt)
        await view.accept(entry.row_id, named, pending)
        log.warning("Task %s, whose submit's answer was lost, was found again through its callback.", named)
        return await view.entry(entry.row_id)

    def _prune_now_and_then(self) -> BackgroundTask | None:
        now = time.monotonic()
        if self._pruned_at and now - self._pruned_at < PRUNE_EVERY_SECONDS:
            return None
        self._pruned_at = now
        return BackgroundTask(self._prune)

    async def _prune(self) -> None:
        try:
            await self.ledger.prune_callbacks()
        except LedgerError as exc:
            log.warning("Old callback hashes were not pruned (%s); the next delivery tries again.", exc)
            self._pruned_at = 0.0


def _result(task_id: str, payload: dict[str, Any], prompt: str | None, created_at: float) -> TaskResult | None:
    """The callback body as a `TaskResult`, read as a task's `response` is; None when its
    shape says nothing we know (no success flag, no state, no video)."""
    try:
        response = VideoResult.model_validate(payload)
    except ValidationError:
        return None
    if response.success is None and response.state is None and response.video_url is None:
        return None
    result = from_video_result(task_id, response, fallback_prompt=prompt)
    result.elapsed_seconds = round(max(0.0, time.time() - created_at), 1)
    return result


async def _bounded_body(request: Request) -> bytes | None:
    """The body, or None when it is over `MAX_BODY_BYTES` (read no further than that)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def _plain(status: int, text: str) -> Response:
    return Response(text, status_code=status, media_type="text/plain")


def _busy() -> Response:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return Response("Not recorded yet; send it again.", status_code=503, media_type="text/plain", headers=headers)


def callbacks_issuer(settings: Settings, api_is_loopback: bool, public_is_loopback: bool) -> CallbackIssuer | None:
    """The issuer when callbacks are on: HTTP, `LUMA_MCP_PUBLIC_URL` set, `LUMA_MCP_CALLBACKS`
    not turned off, and a public URL the provider can reach (a loopback one only reaches a
    provider on this machine, i.e. the simulator)."""
    if not settings.callbacks or not settings.public_url:
        return None
    if public_is_loopback and not api_is_loopback:
        log.warning(
            "LUMA_MCP_PUBLIC_URL (%s) is a loopback address, which the API at %s cannot reach: callbacks are off "
            "and waits poll. Set LUMA_MCP_PUBLIC_URL to the address the provider reaches this server at, or "
            "LUMA_MCP_CALLBACKS=false to say so.",
            settings.public_url,
            settings.api_base_url,
        )
        return None
    return CallbackIssuer(settings.public_url)


def ledger_edge(ledger: Ledger, settings: Settings, *, close: bool) -> AbstractAsyncContextManager[None]:
    """For the HTTP lifespan: on PostgreSQL, the LISTEN loop that wakes this process's waits
    when any replica records a task finished (nothing to run on SQLite); `close`: the ledger
    was opened for the edge, and is closed with it."""

    @asynccontextmanager
    async def run() -> AsyncIterator[None]:
        try:
            if settings.ledger_url is None:
                yield
                return
            from luma_mcp.core.ledger.listen import listen_for_finishes

            async with anyio.create_task_group() as tg:
                tg.start_soon(listen_for_finishes, settings.ledger_url.get_secret_value(), ledger.finishes)
                try:
                    yield
                finally:
                    tg.cancel_scope.cancel()
        finally:
            if close:
                ledger.close()

    return run()
