"""What every HTTP provider shares: one pooled aiohttp session, and reading Retry-After."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping

import aiohttp

from imagegate.core.errors import UpstreamError, UpstreamTimeout


class UpstreamSession:
    """A keep-alive connection pool to one upstream, created inside the running loop on first use."""

    def __init__(self, *, timeout: float, limit: int = 512) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10)
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=60, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  trust_env=False, cookie_jar=aiohttp.DummyCookieJar(),
                                                  auto_decompress=True, skip_auto_headers=("User-Agent",))
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def transport_error(exc: BaseException, provider: str) -> UpstreamError:
    """A connection failure or timeout talking to an upstream, as imagegate's error."""
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeout(f"The provider '{provider}' did not answer in time.", retryable=True)
    return UpstreamError(f"The provider '{provider}' could not be reached.", retryable=True)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from retry-after-ms or retry-after (seconds or an HTTP date)."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(parsed.timestamp() - time.time(), 0.0)
