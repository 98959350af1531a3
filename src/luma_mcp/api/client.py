"""The Luma API client: one pooled `httpx.AsyncClient`, typed bodies, one error family.

Reads (`POST /luma/tasks`) and submits (`POST /luma/videos`, a paid generation) are tried
again by the rules in `retries`.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from luma_mcp import __version__
from luma_mcp.api.errors import (
    CONSOLE_URL,
    LumaAuthError,
    LumaBalanceError,
    LumaConfigError,
    LumaConnectionError,
    LumaError,
    LumaRequestError,
    LumaResponseError,
    LumaTimeoutError,
    error_from_response,
)
from luma_mcp.api.models import Accepted, RetrieveBatchRequest, RetrieveRequest, TaskBatch, TaskRecord, VideoRequest
from luma_mcp.api.retries import RetryPolicy, never_reached_server, retry_after, transient, with_retries
from luma_mcp.checks.bearer import MAX_BEARER_LENGTH, acceptable_bearer
from luma_mcp.config import Settings

VIDEOS_PATH = "/luma/videos"
TASKS_PATH = "/luma/tasks"
MAX_BATCH = 50
# A task id no generation ever has: reading it costs nothing and shows whether the token is good.
TOKEN_CHECK_ID = "00000000-0000-0000-0000-000000000000"  # noqa: S105 (a task id, not a secret)
_MIN_REDACTED_LENGTH = 8

_M = TypeVar("_M", bound=BaseModel)


# A caller's own token (bring your own token, or sealed by an OAuth sign-in) that the API refuses.
CALLERS_TOKEN_REFUSED = (
    "Ace Data Cloud does not accept your API token (any more): sign in again with a current token from "
    f"{CONSOLE_URL} (in a connector: disconnect and connect again), or send the current one as the bearer."
)


class LumaClient:
    """Talks to Ace Data Cloud's Luma endpoints. Knows nothing of MCP."""

    def __init__(
        self,
        *,
        token: SecretStr | None,
        base_url: str,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
        submit_http: httpx.AsyncClient | None = None,
    ) -> None:
        self._token = token
        self._refusal_advice: str | None = None  # None: LumaAuthError's own (about ACEDATACLOUD_API_TOKEN)
        self._base_url = base_url.rstrip("/")
        self._retry = retry or RetryPolicy()
        self._timeout = timeout
        self._owns_http = http is None
        self._http = http
        self._submit_http = submit_http

    def _new_http(self, limits: httpx.Limits) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout, connect=min(self._timeout, 10.0)),
            limits=limits,
            headers={"User-Agent": f"luma-mcp/{__version__}"},
        )

    def _client(self) -> httpx.AsyncClient:
        # Made on first use: building it (TLS context, transport modules) costs tens of
        # milliseconds that a host listing tools at start-up should not wait for.
        if self._http is None:
            self._http = self._new_http(httpx.Limits(max_connections=100, max_keepalive_connections=20))
        return self._http

    def _submit_client(self) -> httpx.AsyncClient:
        # Every submit on a new connection. A pooled one may be closed by the server's
        # keep-alive timer just as the request goes out, and a submit broken after sending
        # must be reported as possibly paid. One handshake per video is cheap; that doubt is not.
        if self._submit_http is None:
            self._submit_http = self._new_http(httpx.Limits(max_connections=100, max_keepalive_connections=0))
        return self._submit_http

    @classmethod
    def from_settings(cls, settings: Settings) -> LumaClient:
        return cls(
            token=settings.api_token,
            base_url=settings.api_base_url,
            timeout=settings.request_timeout,
            retry=RetryPolicy.from_settings(settings),
        )

    def with_token(self, token: SecretStr) -> LumaClient:
        """The same API, settings and connections, spending another caller's token (a refusal
        of it then tells them to use a current token, not to fix the server's setting)."""
        client = LumaClient(
            token=token,
            base_url=self._base_url,
            timeout=self._timeout,
            retry=self._retry,
            http=self._client(),
            submit_http=self._submit_client(),
        )
        client._refusal_advice = CALLERS_TOKEN_REFUSED
        return client

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def has_token(self) -> bool:
        return bool(self._token and self._token.get_secret_value())

    def __repr__(self) -> str:
        return f"LumaClient(base_url={self._base_url!r}, token={'set' if self.has_token else 'missing'})"

    async def aclose(self) -> None:
        if self._owns_http:
            for http in (self._http, self._submit_http):
                if http is not None:
                    await http.aclose()

    async def __aenter__(self) -> LumaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- the API -------------------------------------------------------------------

    async def submit(self, request: VideoRequest) -> Accepted:
        """Start a generation in async mode and return its task id. Never retried once sent."""
        body = request.model_copy(update={"async_": True}).to_body()
        data = await with_retries(
            self._retry, lambda: self._post(VIDEOS_PATH, body, starts_work=True), retryable=never_reached_server
        )
        return self._parse(Accepted, data, "the submit answer has no task_id")

    async def get_task(self, task_id: str) -> TaskRecord | None:
        """One task, or None when the API does not know the id (it answers `{}`)."""
        body = RetrieveRequest(id=task_id).to_body()
        data = await with_retries(self._retry, lambda: self._post(TASKS_PATH, body), retryable=transient)
        if not data:
            return None
        return self._parse(TaskRecord, data, "the task record is malformed")

    async def get_tasks(self, task_ids: list[str]) -> dict[str, TaskRecord]:
        """Up to 50 tasks in one request, keyed by id; unknown ids are simply absent."""
        if not task_ids:
            return {}
        if len(task_ids) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} task ids per batch")
        body = RetrieveBatchRequest(ids=task_ids).to_body()
        data = await with_retries(self._retry, lambda: self._post(TASKS_PATH, body), retryable=transient)
        batch = self._parse(TaskBatch, data, "the batch answer is malformed")
        return {record.id: record for record in batch.items}

    async def check_token(self) -> LumaError | None:
        """Whether the API accepts this token: None if so, else its refusal (HTTP 401 or 403).

        One unbilled read of a task id that cannot exist (a good token gets `{}`), never
        retried. Raises the LumaError when the API could not say (unreachable, 429, 5xx).
        """
        try:
            await self._post(TASKS_PATH, RetrieveRequest(id=TOKEN_CHECK_ID).to_body())
        except LumaError as exc:
            # A refusal of the token says so: a 401, or an error code of the token or balance
            # family. A bare 403 (a proxy's or firewall's page) says nothing about the token.
            if isinstance(exc, LumaAuthError | LumaBalanceError) and (exc.status_code == 401 or exc.code):
                return exc
            raise
        return None

    # --- plumbing ------------------------------------------------------------------

    async def _post(self, path: str, body: dict[str, Any], starts_work: bool = False) -> dict[str, Any]:
        if not self.has_token:
            raise LumaConfigError("No Ace Data Cloud API token is configured")
        assert self._token is not None
        url = self._base_url + path
        # After a broken exchange a submit may have started a paid video: say so, don't invite a resubmit.
        unsure = (
            "The video may have been started: look for it before submitting again."
            if starts_work
            else "Try again in a moment."
        )
        token = self._token.get_secret_value()
        if not acceptable_bearer(token):
            raise LumaAuthError(
                "The API token has a space, control or non-ASCII character, or is over "
                f"{MAX_BEARER_LENGTH} characters: it cannot be sent as a bearer token, so nothing was sent"
            )
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        http = self._submit_client() if starts_work else self._client()
        try:
            request = http.build_request("POST", url, json=body, headers=headers)
        except Exception as exc:  # nothing has left yet; the text is not shown, it may quote the token
            raise LumaRequestError(
                f"The request could not be built ({type(exc).__name__}), so nothing was sent",
                advice="Check ACEDATACLOUD_API_BASE_URL and the arguments, then try again.",
            ) from None
        try:
            response = await http.send(request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise LumaConnectionError(
                f"Could not connect to the API at {self._base_url} ({type(exc).__name__})",
                request_sent=False,
                advice="Check the network and ACEDATACLOUD_API_BASE_URL, then try again.",
            ) from None
        except httpx.TimeoutException as exc:
            raise LumaTimeoutError(
                f"The API did not answer in time ({type(exc).__name__})",
                advice=unsure,
            ) from None
        except httpx.TransportError as exc:
            raise LumaConnectionError(
                f"The connection to the API broke before an answer came ({type(exc).__name__})",
                request_sent=True,
                advice=unsure,
            ) from None
        content = self._redact(response.content)
        content_type = response.headers.get("content-type", "")
        if response.is_success:
            try:
                data = json.loads(content)
            except (ValueError, UnicodeDecodeError):
                data = None
            if not isinstance(data, dict):
                kind = "an empty body" if not content.strip() else "a body that is not a JSON object"
                raise LumaResponseError(
                    f"The API answered HTTP {response.status_code} with {kind}",
                    status_code=response.status_code,
                )
            if data.get("success") is False and data.get("error"):
                raise self._advised(error_from_response(response.status_code, content, content_type))
            return data
        raise self._advised(
            error_from_response(response.status_code, content, content_type, retry_after=retry_after(response.headers))
        )

    def _advised(self, error: LumaError) -> LumaError:
        if isinstance(error, LumaAuthError) and self._refusal_advice is not None:
            error.advice = self._refusal_advice
        return error

    def _redact(self, content: bytes) -> bytes:
        # Defence in depth: should the API ever echo the token, it must not travel further.
        # (Real tokens are long; a toy token of a few characters would mangle every body.)
        if self._token:
            secret = self._token.get_secret_value().encode()
            if len(secret) >= _MIN_REDACTED_LENGTH and secret in content:
                content = content.replace(secret, b"[redacted]")
        return content

    @staticmethod
    def _parse(model: type[_M], data: dict[str, Any], what: str) -> _M:
        try:
            return model.model_validate(data)
        except ValidationError:
            trace = data.get("trace_id") if isinstance(data.get("trace_id"), str) else None
            # It was a 200: for a submit, a task may exist that this answer failed to name.
            raise LumaResponseError(
                f"The API answer was not understood: {what}", status_code=200, trace_id=trace
            ) from None
