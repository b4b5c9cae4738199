"""imagegate's error tree.

Every failure the gateway reports is one of these. Foreign exceptions (aiohttp, SQLAlchemy, a vendor's
error body) are translated into them where they enter; the edge maps them to HTTP once, by class.
Domain errors carry no status codes.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base of every error imagegate reports to a client."""

    code: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.details = details


# 400 ------------------------------------------------------------------------------------------------
class InvalidRequest(GatewayError):
    code = "invalid_request"


class ModelNotFound(InvalidRequest):
    code = "model_not_found"


class TooManyImages(InvalidRequest):
    code = "too_many_images"


class InvalidImage(InvalidRequest):
    """The bytes are not an image the gateway accepts."""

    code = "unsupported_image_format"


class InvalidImageURL(InvalidRequest):
    code = "invalid_image_url"


class ImageFetchFailed(InvalidRequest):
    code = "image_fetch_failed"


class FileNotFoundInRequest(InvalidRequest):
    """A file id named in a request body that the caller does not own or that does not exist."""

    code = "file_not_found"


class ModerationBlocked(InvalidRequest):
    code = "moderation_blocked"


class Conflict(GatewayError):
    code = "conflict"


# 401 / 402 / 403 ----------------------------------------------------------------------------------
class AuthenticationFailed(GatewayError):
    code = "invalid_api_key"


class KeyExpired(AuthenticationFailed):
    code = "expired_api_key"


class InsufficientBalance(GatewayError):
    code = "insufficient_balance"


class QuotaExceeded(GatewayError):
    code = "quota_exceeded"


class ModelNotAllowed(GatewayError):
    code = "model_not_allowed"


# 404 ----------------------------------------------------------------------------------------------
class NotFound(GatewayError):
    code = "not_found"


# 408 / 413 / 429 ----------------------------------------------------------------------------------
class RequestTimeout(GatewayError):
    """The client stopped sending its request body."""

    code = "request_timeout"


class TooLarge(GatewayError):
    code = "payload_too_large"


class ImageTooLarge(TooLarge):
    code = "image_too_large"


class RateLimited(GatewayError):
    code = "rate_limit_exceeded"


# 5xx: the gateway or its upstreams failed ---------------------------------------------------------
class UpstreamError(GatewayError):
    """The provider failed. `retryable` says whether another route may succeed."""

    code = "upstream_error"

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retryable = retryable
        self.retry_after = retry_after


class UpstreamTimeout(UpstreamError):
    code = "timeout_error"


class UpstreamRateLimited(UpstreamError):
    code = "rate_limit_exceeded"


class AllChannelsFailed(GatewayError):
    code = "all_channels_failed"


class StorageUnavailable(GatewayError):
    code = "storage_unavailable"
