"""The HTML a person's browser gets from the sign-in's routes: the headers every page carries,
the notice page (an error, with nothing to click), untrusted text made safe to show, and
/authorize's errors as that notice instead of a redirect (`AuthorizeErrorsAsPages`)."""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from luma_mcp.checks.plain_text import without_hidden_controls

SHOWN_DETAILS_CHARS = 300


def shown(text: str, limit: int) -> str:
    """Untrusted `text` as a page may show it (escape it still): without control or
    bidirectional characters (`client_rules` refuses them at registration; this holds even
    for a record that slipped through), and at most `limit` characters, a cut marked with "…"."""
    clean = without_hidden_controls(text)
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def html_response(
    body: str, status: int, redirect_source: str = "", headers: dict[str, str] | None = None
) -> HTMLResponse:
    """A page that loads nothing, cannot be framed, and may post only here (and, with
    `redirect_source`, be redirected there after the post)."""
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; frame-ancestors 'none'; "
        f"form-action 'self' {redirect_source}".rstrip()
    )
    return HTMLResponse(
        body,
        status_code=status,
        headers={
            "Content-Security-Policy": csp,
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
            **(headers or {}),
        },
    )


def notice(status: int, message: str, *, details: str = "", headers: dict[str, str] | None = None) -> HTMLResponse:
    """The page that says why not, in `message` (ours); `details` (possibly a stranger's words,
    such as an error description quoting a client id) shown apart, bounded and isolated."""
    extra = ""
    if details:
        shown_details = html.escape(shown(details, SHOWN_DETAILS_CHARS))
        extra = f'<p class="details">Details: <code><bdi>{shown_details}</bdi></code></p>'
    return html_response(NOTICE.format(message=html.escape(message), details=extra), status, headers=headers)


NOTICE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Sign in · luma-mcp</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1d1d1f}}
.details{{color:#515154;font-size:.9rem}}code{{word-break:break-all}}</style>
</head><body><main><h1>Cannot sign in</h1><p role="alert">{message}</p>{details}</main></body></html>
"""

AUTHORIZE_REFUSED = (
    "The app that sent you here asked for a sign-in this server cannot give, so nothing happened and you were "
    "not sent anywhere. You can close this page; connecting again from the app may help, or tell its developer."
)


class AuthorizeErrorsAsPages:
    """/authorize answers every error with our own page, never with a redirect.

    The SDK's handler (mcp/server/auth/handlers/authorize.py, its `error_response`) sends an
    error back to the client's redirect URI as soon as it knows the client and that URI: for a
    bad response_type, a missing code_challenge, a bad scope, or an error the provider raises.
    Every client here is a stranger's (registered anonymously, or named by its own document),
    so that is an open redirect on this domain: a link to /authorize with one bad parameter
    would send the browser straight to any site the stranger registered (RFC 9700 §4.11.2).
    A provider hook cannot prevent it (most of these errors are found before the provider is
    called), so this wraps the SDK's route, reading what it answers: the one redirect let
    through is the success, to our sign-in page (`success_prefix`); any other
    answer (the error redirect, or the SDK's JSON 400 when the client or its redirect URI is
    unknown) becomes this page, with no Location and no link. Once the person has seen our
    sign-in page, its Cancel still sends them back to the app with access_denied.
    """

    def __init__(self, app: ASGIApp, success_prefix: str) -> None:
        self.app, self.success_prefix = app, success_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None  # an error's start, held until its body is read
        body = bytearray()

        async def page_for_errors(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                location = _header(message, b"location")
                if message["status"] not in (302, 303) or not location.startswith(self.success_prefix):
                    held = message
                    return
            elif held is not None and message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    await _error_page(held, bytes(body))(scope, receive, send)
                return
            await send(message)

        await self.app(scope, receive, page_for_errors)


def _header(message: Message, name: bytes) -> str:
    return next((value.decode("latin-1") for key, value in message["headers"] if key.lower() == name), "")


def _error_page(start: Message, body: bytes) -> HTMLResponse:
    """Our page for the SDK's error answer `start` + `body`: its error code and description as
    details, its status if a server error, else 400."""
    error: dict[str, Any]
    if location := _header(start, b"location"):
        error = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
    else:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        error = parsed if isinstance(parsed, dict) else {}
    code, description = str(error.get("error", "invalid_request")), str(error.get("error_description") or "")
    status = 500 if code == "server_error" else 400
    return notice(status, AUTHORIZE_REFUSED, details=f"{code}: {description}" if description else code)
