"""Every failure luma-mcp explains to its caller, in one tree.

    LumaMcpError                 the root; the tool boundary turns it into the tool's error text
    ├── LumaError                the Luma API said no, or could not be reached
    │   ├── LumaConfigError      no API token configured
    │   ├── LumaAuthError        the token was refused (401/403)
    │   ├── LumaRequestError     the arguments were refused (400), or the request could not be built
    │   ├── LumaModerationError  the prompt or image was refused
    │   ├── LumaBalanceError     no credits left
    │   ├── LumaRateLimitError   429 (transient; `retry_after`)
    │   ├── LumaServerError      5xx (transient)
    │   ├── LumaTimeoutError     no answer in time (transient; a submit may have started)
    │   ├── LumaResponseError    an answer that could not be understood
    │   └── LumaConnectionError  no connection, or it broke (`request_sent` says which)
    ├── LedgerError              the ledger will not let a submit through (a reused key, a bad cursor)
    │   ├── SpendingLimitError   LUMA_MAX_SUBMITS_PER_HOUR / _PER_DAY reached
    │   └── LedgerUnavailable    the store itself failed (missing, corrupt, full, unreachable)
    ├── DownloadError            a download did not happen; no file was left
    └── ServiceError             a request that cannot be served as asked

Each error's text is a whole sentence for the person or model reading it: what happened
and what to do next (for API errors followed by the HTTP status, error code and trace id
when known: the provider's support asks for the trace id). No message ever contains the
API token: the client redacts it from anything the provider sends back before it gets here.
"""

from __future__ import annotations

import json
import re
from typing import ClassVar

from luma_mcp.api.models import ErrorBody
from luma_mcp.config import TOKEN_ENV

CONSOLE_URL = "https://platform.acedata.cloud"

# An extend naming a video the provider does not have. Keyed on the provider's words (a video
# "not found"), as no body for this case is published: other refusals and failures, and the
# image-URL advice for "fetch failed", are left as they are.
_UNKNOWN_VIDEO = re.compile(r"\bvideo\b.*\b(?:not found|does not exist|no longer exists)\b", re.IGNORECASE | re.DOTALL)
UNKNOWN_VIDEO_ADVICE = (
    "The provider has no such video (a mistyped video_id, an expired one, or one from another account): "
    "extend the video_id of a finished generate_video, extend_video or get_task result (list_tasks lists them)."
)


def says_video_unknown(message: str | None) -> bool:
    """Whether a provider's error message says the video to extend does not exist."""
    return bool(message) and _UNKNOWN_VIDEO.search(message or "") is not None


class LumaMcpError(Exception):
    """Base of every failure whose text is meant for the caller (the tree above)."""


class LedgerError(LumaMcpError):
    """A request the ledger will not let through; the message says why and what to do."""


class SpendingLimitError(LedgerError):
    pass


class LedgerUnavailable(LedgerError):
    """The store itself failed (cannot be opened, corrupt, read-only, full, unreachable)."""


class DownloadError(LumaMcpError):
    """The download did not happen; the message says why and what to do. No file was left."""


class ServiceError(LumaMcpError):
    """A request that cannot be served as asked; the message says what to do instead."""


class LumaError(LumaMcpError):
    """Base of every Luma API failure."""

    advice: str = "Retry later."
    #: True when a retry of the same request can succeed without changing anything.
    transient: ClassVar[bool] = False

    def __init__(
        self,
        summary: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        trace_id: str | None = None,
        advice: str | None = None,
    ) -> None:
        self.summary = summary
        self.status_code = status_code
        self.code = code
        self.trace_id = trace_id
        if advice is not None:
            self.advice = advice
        super().__init__(self.message)

    @property
    def message(self) -> str:
        facts = [
            f"HTTP {self.status_code}" if self.status_code is not None else None,
            f"code {self.code}" if self.code else None,
            f"trace_id {self.trace_id}" if self.trace_id else None,
        ]
        known = ", ".join(f for f in facts if f)
        text = f"{self.summary.rstrip('.')}. {self.advice}"
        return f"{text} ({known})" if known else text

    def __str__(self) -> str:
        return self.message

    @property
    def submit_may_have_started(self) -> bool:
        """For a failed submit: could a (paid) task exist upstream all the same? True only
        when the request went out and no readable answer came back."""
        return False


class LumaConfigError(LumaError):
    advice = f"Set {TOKEN_ENV} in the server's environment (get a token at {CONSOLE_URL}) and restart it."


class LumaAuthError(LumaError):
    advice = f"Check {TOKEN_ENV}: it must be a valid Ace Data Cloud token with access to Luma ({CONSOLE_URL})."


class LumaRequestError(LumaError):
    advice = "Fix the arguments and try again."


class LumaModerationError(LumaError):
    advice = "Rephrase the prompt or use another image, then try again."


class LumaBalanceError(LumaError):
    advice = f"Buy more credits at {CONSOLE_URL}, then try again."


class LumaRateLimitError(LumaError):
    transient = True

    def __init__(self, summary: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        wait = f"{retry_after:g} seconds" if retry_after is not None else "a few seconds"
        super().__init__(summary, advice=f"Wait {wait} and try again.", **kw)  # type: ignore[arg-type]


class LumaServerError(LumaError):
    advice = "The provider had a problem; try again in a minute."
    transient = True


class LumaTimeoutError(LumaError):
    advice = "Try again in a minute."
    transient = True

    @property
    def submit_may_have_started(self) -> bool:
        return self.status_code is None  # we stopped waiting; a 504 answer is the API's own no


class LumaResponseError(LumaError):
    """The body was not the JSON the API documents (an HTML proxy page, empty, cut short)."""

    advice = "This is usually a proxy or an outage between here and the API; try again in a minute."
    transient = True

    @property
    def submit_may_have_started(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300  # accepted, but unreadable


class LumaConnectionError(LumaError):
    """No answer. `request_sent` says whether the request may have reached the server."""

    transient = True

    def __init__(self, summary: str, *, request_sent: bool, **kw: object) -> None:
        self.request_sent = request_sent
        super().__init__(summary, **kw)  # type: ignore[arg-type]

    @property
    def submit_may_have_started(self) -> bool:
        return self.request_sent


# code -> (exception class, summary used when the provider sends no message)
_BY_CODE: dict[str, tuple[type[LumaError], str]] = {
    "no_token": (LumaAuthError, "The request carried no API token"),
    "invalid_token": (LumaAuthError, "The API token is invalid or was revoked"),
    "token_expired": (LumaAuthError, "The API token has expired or was revoked"),
    "token_mismatched": (LumaAuthError, "The API token belongs to another Ace Data Cloud service"),
    "disabled": (LumaAuthError, "The credential or application is disabled"),
    "bad_request": (LumaRequestError, "The API rejected the request as invalid"),
    "api_not_implemented": (LumaRequestError, "The API is not available"),
    "no_api": (LumaRequestError, "The API path is not registered"),
    "forbidden": (LumaModerationError, "Content moderation refused the prompt or image"),
    "used_up": (LumaBalanceError, "The Ace Data Cloud balance is used up"),
    "too_many_requests": (LumaRateLimitError, "The API is rate limiting requests"),
    "api_error": (LumaServerError, "The video provider reported an error"),
    "timeout": (LumaTimeoutError, "The API timed out"),
}

_SPECIFIC_ADVICE: dict[str, str] = {
    "token_mismatched": "Use a token issued for the Luma service, or a global token.",
    "disabled": f"Enable the credential or application in the console ({CONSOLE_URL}) or use another token.",
    "api_not_implemented": "Check ACEDATACLOUD_API_BASE_URL points at Ace Data Cloud.",
    "no_api": "Check ACEDATACLOUD_API_BASE_URL points at Ace Data Cloud.",
}


def _by_status(status: int) -> tuple[type[LumaError], str]:
    if status == 429:
        return LumaRateLimitError, "The API is rate limiting requests"
    if status in (401, 407):
        return LumaAuthError, "The API token was rejected"
    if status == 504:
        return LumaTimeoutError, "The API timed out"
    if status >= 500:
        return LumaServerError, f"The API failed with HTTP {status}"
    return LumaRequestError, f"The API refused the request with HTTP {status}"


def error_from_response(
    status: int, content: bytes, content_type: str = "", retry_after: float | None = None
) -> LumaError:
    """Map an error answer (any status, any body) to the right `LumaError`."""
    body = parse_error_body(content)
    if body is None:
        kind = content_type.split(";")[0].strip() or "no content type"
        detail = "an empty body" if not content.strip() else f"a body that is not JSON ({kind})"
        cls, summary = _by_status(status)
        if cls in (LumaRequestError, LumaAuthError):
            return cls(f"{summary} and sent {detail}", status_code=status)
        return LumaResponseError(f"The API answered HTTP {status} with {detail}", status_code=status)
    code = body.code
    cls, default_summary = _BY_CODE.get(code or "", _by_status(status))
    summary = default_summary
    if body.message and body.message.strip() != default_summary:
        summary = f"{default_summary}: {body.message.strip()}"
    if says_video_unknown(body.message):
        # Not the provider's trouble, whatever the status: the same video_id would fail again.
        return LumaRequestError(
            summary, status_code=status, code=code, trace_id=body.trace_id, advice=UNKNOWN_VIDEO_ADVICE
        )
    if code == "api_error" and body.message and "fetch failed" in body.message.lower():
        advice: str | None = (
            "The provider could not download an input image or video: make sure every URL is "
            "public (no login, no localhost) and try again."
        )
    else:
        advice = _SPECIFIC_ADVICE.get(code or "")
    if cls is LumaRateLimitError:
        return LumaRateLimitError(
            summary, retry_after=retry_after, status_code=status, code=code, trace_id=body.trace_id
        )
    return cls(summary, status_code=status, code=code, trace_id=body.trace_id, advice=advice)


def parse_error_body(content: bytes) -> ErrorBody | None:
    """The error envelope, tolerant of a bare string error; None when the body is not JSON."""
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(data, str):
        return ErrorBody(error=data)
    if not isinstance(data, dict):
        return None
    try:
        return ErrorBody.model_validate(data)
    except ValueError:
        return ErrorBody(trace_id=data.get("trace_id") if isinstance(data.get("trace_id"), str) else None)
