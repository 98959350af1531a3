"""Every documented error becomes the right exception with an actionable, complete message."""

from __future__ import annotations

import json

import pytest

from luma_mcp.api.errors import (
    LumaAuthError,
    LumaBalanceError,
    LumaError,
    LumaModerationError,
    LumaRateLimitError,
    LumaRequestError,
    LumaResponseError,
    LumaServerError,
    LumaTimeoutError,
    error_from_response,
)

from ..helpers.common import EXAMPLES


@pytest.mark.parametrize(
    ("name", "status", "cls", "advice"),
    [
        ("error-400-bad-request.json", 400, LumaRequestError, "Fix the arguments"),
        ("error-401-invalid-token.json", 401, LumaAuthError, "ACEDATACLOUD_API_TOKEN"),
        ("error-403-forbidden-moderation.json", 403, LumaModerationError, "Rephrase the prompt"),
        ("error-403-used-up.json", 403, LumaBalanceError, "Buy more credits"),
        ("error-429-too-many-requests.json", 429, LumaRateLimitError, "Wait"),
        ("error-500-api-error.json", 500, LumaServerError, "try again"),
        ("error-500-api-error-fetch-failed.json", 500, LumaServerError, "URL is public"),
    ],
)
def test_example_error_bodies(name: str, status: int, cls: type[LumaError], advice: str) -> None:
    raw = (EXAMPLES / name).read_bytes()
    body = json.loads(raw)
    error = error_from_response(status, raw, "application/json")
    assert type(error) is cls
    assert error.status_code == status
    assert error.code == body["error"]["code"]
    assert error.trace_id == body["trace_id"]
    text = str(error)
    assert advice in text
    assert body["error"]["message"] in text  # the provider's own words are kept
    assert f"HTTP {status}" in text and f"trace_id {body['trace_id']}" in text


@pytest.mark.parametrize(
    ("status", "code", "cls", "advice"),
    [
        (400, "no_token", LumaAuthError, "ACEDATACLOUD_API_TOKEN"),
        (400, "token_mismatched", LumaAuthError, "issued for the Luma service"),
        (401, "token_mismatched", LumaAuthError, "issued for the Luma service"),
        (401, "token_expired", LumaAuthError, "ACEDATACLOUD_API_TOKEN"),
        (400, "api_not_implemented", LumaRequestError, "ACEDATACLOUD_API_BASE_URL"),
        (404, "no_api", LumaRequestError, "ACEDATACLOUD_API_BASE_URL"),
        (403, "disabled", LumaAuthError, "Enable the credential"),
        (504, "timeout", LumaTimeoutError, "Try again"),
        (418, "teapot", LumaRequestError, "Fix the arguments"),  # unknown code: judged by status
        (503, "mystery", LumaServerError, "try again"),
    ],
)
def test_every_documented_code(status: int, code: str, cls: type[LumaError], advice: str) -> None:
    raw = json.dumps({"error": {"code": code, "message": "m"}, "trace_id": "tr-1"}).encode()
    error = error_from_response(status, raw)
    assert type(error) is cls and error.code == code and error.trace_id == "tr-1"
    assert advice in str(error)


def test_retry_after_is_carried_and_told() -> None:
    raw = (EXAMPLES / "error-429-too-many-requests.json").read_bytes()
    error = error_from_response(429, raw, retry_after=7)
    assert isinstance(error, LumaRateLimitError) and error.retry_after == 7
    assert "Wait 7 seconds" in str(error)


@pytest.mark.parametrize(
    ("status", "content", "cls"),
    [
        (502, b"<html><body>Bad gateway</body></html>", LumaResponseError),
        (500, b"", LumaResponseError),
        (500, b'{"error": {"code": "api_', LumaResponseError),
        (401, b"Unauthorized", LumaAuthError),
        (400, b"", LumaRequestError),
    ],
)
def test_bodies_that_are_not_json(status: int, content: bytes, cls: type[LumaError]) -> None:
    error = error_from_response(status, content, "text/html; charset=utf-8")
    assert type(error) is cls and error.status_code == status
    assert f"HTTP {status}" in str(error)


def test_bare_string_error_and_missing_error() -> None:
    error = error_from_response(500, b'{"error": "upstream exploded", "trace_id": "t9"}')
    assert isinstance(error, LumaServerError) and "upstream exploded" in str(error) and error.trace_id == "t9"
    error = error_from_response(429, b'{"trace_id": "t8"}')
    assert isinstance(error, LumaRateLimitError) and error.trace_id == "t8"


@pytest.mark.parametrize(
    ("status", "code", "message", "cls", "advice"),
    [
        (400, "bad_request", "The video 0105c090 was not found.", LumaRequestError, "no such video"),
        # Whatever the status: the same video_id would fail again, so it is no server trouble to retry.
        (500, "api_error", "Video does not exist", LumaRequestError, "no such video"),
        # Other refusals keep their own advice: only the provider saying the video is missing counts.
        (400, "bad_request", "The json payload is not valid to request the API", LumaRequestError, "Fix the"),
        (400, "bad_request", "video_id or video_url is required", LumaRequestError, "Fix the arguments"),
        (500, "api_error", "fetch failed", LumaServerError, "URL is public"),
        (404, "no_api", "Not found", LumaRequestError, "ACEDATACLOUD_API_BASE_URL"),
    ],
)
def test_an_unknown_video_gets_advice_about_the_video_id(
    status: int, code: str, message: str, cls: type[LumaError], advice: str
) -> None:
    raw = json.dumps({"error": {"code": code, "message": message}, "trace_id": "tr-1"}).encode()
    error = error_from_response(status, raw)
    assert type(error) is cls and advice in str(error) and message in str(error)
    assert ("list_tasks lists them" in str(error)) == (advice == "no such video")
    assert not (advice == "no such video" and error.transient)
