"""The one place errors become HTTP: status and OpenAI-style JSON, by error class."""

from __future__ import annotations

import math
from typing import Any

import orjson
from starlette.responses import Response

from imagegate.core import errors as e

# (status, type) by class; the most specific class wins (looked up along the MRO).
_TABLE: dict[type[e.GatewayError], tuple[int, str]] = {
    e.InvalidRequest: (400, "invalid_request_error"),
    e.Conflict: (409, "invalid_request_error"),
    e.AuthenticationFailed: (401, "authentication_error"),
    e.InsufficientBalance: (402, "insufficient_balance"),
    e.QuotaExceeded: (402, "insufficient_quota"),
    e.ModelNotAllowed: (403, "permission_error"),
    e.NotFound: (404, "invalid_request_error"),
    e.RequestTimeout: (408, "invalid_request_error"),
    e.TooLarge: (413, "invalid_request_error"),
    e.RateLimited: (429, "rate_limit_error"),
    e.UpstreamError: (502, "upstream_error"),
    e.UpstreamRateLimited: (429, "rate_limit_error"),
    e.UpstreamTimeout: (504, "timeout_error"),
    e.AllChannelsFailed: (503, "service_unavailable_error"),
    e.StorageUnavailable: (503, "service_unavailable_error"),
    e.GatewayError: (500, "server_error"),
}


def status_and_type(exc: e.GatewayError) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in _TABLE:
            return _TABLE[cls]
    return 500, "server_error"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


def error_body(message: str, type_: str, code: str, param: str | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": type_, "code": code, "param": param}
    error.update({k: v for k, v in extra.items() if v is not None})
    return {"error": error}


def error_payload(exc: e.GatewayError) -> dict[str, Any]:
    """The error as OpenAI's envelope, `{"error": {...}}`."""
    _, type_ = status_and_type(exc)
    extra = dict(exc.details)
    retry = extra.get("retry_after", getattr(exc, "retry_after", None))
    if isinstance(exc, e.UpstreamError | e.AllChannelsFailed):
        extra.setdefault("retryable", getattr(exc, "retryable", True))
    if retry is not None:
        extra["retry_after"] = retry
    return error_body(exc.message, type_, exc.code, exc.param, **extra)


def error_response(exc: e.GatewayError) -> Response:
    status, _ = status_and_type(exc)
    payload = error_payload(exc)
    headers: dict[str, str] = {}
    retry = payload["error"].get("retry_after")
    if retry is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry)))
    if isinstance(exc, e.TooLarge | e.RequestTimeout):  # the rest of the body will not be read
        headers["Connection"] = "close"
    if isinstance(exc, e.Conflict):  # the same request again would meet the same conflict: SDKs, don't
        headers["x-should-retry"] = "false"
    return json_response(payload, status, headers)


def internal_error_response() -> Response:
    return json_response(error_body("The gateway failed to handle the request.", "server_error",
                                    "internal_error"), 500)
