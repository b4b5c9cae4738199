"""What every HTTP provider shares: one pooled aiohttp session, posting a request and reading its answer,
Retry-After, bounded excerpts of vendor text, and downloading a result image from a signed URL.

An upstream's answer is read as untrusted input. The gateway asks for it uncompressed and refuses one that
comes compressed anyway (a small gzip body can inflate to gigabytes); it reads a body no further than a
cap derived from what the answer can legitimately hold (a declared Content-Length over the cap is refused
before any byte is read); an error answer is read to 64 KiB at most; large JSON is parsed, and Base64
decoded, on a worker thread; and every image passes the output check before anyone sees it.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import orjson

from imagegate.core.errors import GatewayError, ImageTooLarge, InvalidImage, UpstreamError, UpstreamTimeout
from imagegate.core.media import OutputImage, SourceImage
from imagegate.core.ports import ResultFetcher
from imagegate.imaging import output_image

MAX_RESULT_BYTES = 64 * 1024 * 1024  # largest result image downloaded from an upstream
ERROR_BODY_BYTES = 64 * 1024  # an error answer is read this far; the rest is left unread
JSON_OVERHEAD_BYTES = 1024 * 1024  # room in an answer for what is not image data (JSON, text, usage)
EXCERPT_CHARS = 200  # most characters of a vendor's message quoted back to a client
_INLINE_BYTES = 256 * 1024  # smaller sources are Base64-encoded, and answers parsed, on the event loop
_PARAM_NAME = re.compile(r"[A-Za-z0-9_.\[\]-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")

T = TypeVar("T")
# status, body, headers, provider name → imagegate's error
ErrorTranslator = Callable[[int, bytes, Mapping[str, str], str], GatewayError]


class UpstreamSession:
    """A keep-alive connection pool to one upstream, created inside the running loop on first use.

    The pool has no cap by default: each request in flight holds at most its own connection, and a cap
    would make requests over it wait a whole upstream call (often a minute for images) for a free one.
    An upstream's own concurrency limit answers 429, which routing handles.
    """

    def __init__(self, *, timeout: float, limit: int = 0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10)
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=60, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  trust_env=False, cookie_jar=aiohttp.DummyCookieJar(),
                                                  auto_decompress=False, skip_auto_headers=("User-Agent",),
                                                  headers={"Accept-Encoding": "identity"})
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def transport_error(exc: BaseException, provider: str) -> UpstreamError:
    """A connection failure or timeout talking to an upstream, as imagegate's error."""
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeout(f"The provider '{provider}' did not answer in time.", retryable=True)
    return UpstreamError(f"The provider '{provider}' could not be reached.", retryable=True)


async def post(session: aiohttp.ClientSession, url: str, *, data: Any, headers: Mapping[str, str], provider: str,
               translate: ErrorTranslator, max_bytes: int) -> bytes:
    """POST `data` and return the body of a 200 answer, read to at most `max_bytes` (see `read_body`).

    Any other status becomes `translate(status, body, headers, provider)`, with at most ERROR_BODY_BYTES of
    its body; a connection failure or timeout becomes `transport_error`.
    """
    try:
        async with session.post(url, data=data, headers=headers) as response:
            if response.status != 200:
                raise translate(response.status, await read_error_body(response), response.headers, provider)
            return await read_body(response, max_bytes=max_bytes, provider=provider)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise transport_error(exc, provider) from exc


async def read_body(response: aiohttp.ClientResponse, *, max_bytes: int, provider: str,
                    retryable: bool = True) -> bytes:
    """The whole body of an answer, refused (UpstreamError) when it is compressed or longer than `max_bytes`.

    A declared Content-Length over the cap is refused before anything is read; an undeclared length is
    counted as the bytes arrive, so at most `max_bytes` (plus one network read) is ever held.
    """
    if is_compressed(response):
        raise UpstreamError(f"The provider '{provider}' sent a compressed answer the gateway did not ask for.",
                            retryable=retryable)
    oversized = UpstreamError(f"The provider '{provider}' sent an oversized answer: more than the {max_bytes:,} "
                              "bytes this request can produce.", retryable=retryable)
    if (response.content_length or 0) > max_bytes:
        raise oversized
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > max_bytes:
            raise oversized
        chunks.append(chunk)
    return b"".join(chunks)


async def read_error_body(response: aiohttp.ClientResponse) -> bytes:
    """Up to ERROR_BODY_BYTES of an error answer (empty when it came compressed): enough for its JSON."""
    if is_compressed(response):
        return b""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        chunks.append(chunk[: ERROR_BODY_BYTES - size])
        size += len(chunks[-1])
        if size >= ERROR_BODY_BYTES:
            break
    return b"".join(chunks)


def is_compressed(response: aiohttp.ClientResponse) -> bool:
    return response.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")


def answer_bytes(n: int, image_bytes: int) -> int:
    """The most an answer carrying `n` images as Base64 text can legitimately take."""
    return n * base64_length(image_bytes) + JSON_OVERHEAD_BYTES


def base64_length(size: int) -> int:
    return -(-size // 3) * 4


async def parse_json(body: bytes, provider: str) -> dict[str, Any]:
    """The answer as a JSON object (parsed on a worker thread when large); `unreadable` otherwise."""
    parsed = json_object(body) if len(body) <= _INLINE_BYTES else await asyncio.to_thread(json_object, body)
    if parsed is None:
        raise unreadable(provider)
    return parsed


def json_object(body: bytes) -> dict[str, Any] | None:
    """The answer as a JSON object, or None when it is not one."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def unreadable(provider: str) -> UpstreamError:
    return UpstreamError(f"The provider '{provider}' sent an unreadable answer.", retryable=True)


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


def excerpt(text: Any, limit: int = EXCERPT_CHARS) -> str:
    """A vendor's message cut to one line of at most `limit` characters, for quoting in a 4xx answer.

    Only invalid-request errors quote the vendor, and only this much; every other error is our own text.
    """
    if not isinstance(text, str):
        return ""
    line = " ".join(_CONTROL.sub(" ", text).split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def param_name(value: Any) -> str | None:
    """A vendor-named parameter, if it looks like one (a short identifier); None otherwise."""
    return value if isinstance(value, str) and _PARAM_NAME.fullmatch(value) else None


async def b64encode(image: SourceImage) -> str:
    """The image as Base64 text; large images are read and encoded on a worker thread."""
    def encode() -> str:
        return base64.b64encode(image.read()).decode("ascii")

    return encode() if image.size <= _INLINE_BYTES else await asyncio.to_thread(encode)


async def gather_all(coros: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently; on the first failure cancel the rest and wait for them to finish."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        pending = [t for t in tasks if not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def is_transient(status: int) -> bool:
    """Whether a status (0: no answer) is worth asking again: 408, 429 and 5xx."""
    return status in (0, 408, 429) or status >= 500


async def download_image(session: aiohttp.ClientSession, url: str, *, provider: str,
                         max_bytes: int = MAX_RESULT_BYTES, client_timeout: aiohttp.ClientTimeout | None = None,
                         retries: int = 0, pause: Callable[[int], float] = lambda attempt: 0.0,
                         retryable: bool = False) -> OutputImage:
    """A result image from a signed, short-lived URL, fetched without the provider's credentials.

    Transient failures (no answer, 408, 429, 5xx) are tried again up to `retries` times, `pause(attempt)`
    seconds apart; any other status, a compressed body or one over `max_bytes`, or bytes that fail the
    output check fail at once. `retryable` marks the errors raised: whether another route may still
    succeed (not when the upstream has already billed the work).
    """
    data: bytes | None = None
    status = 0
    for attempt in range(retries + 1):
        if attempt:
            await asyncio.sleep(pause(attempt - 1))
        try:
            async with session.get(url, timeout=client_timeout) as response:
                status = response.status
                if status == 200:
                    data = await read_body(response, max_bytes=max_bytes, provider=provider, retryable=retryable)
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        if data is not None or not is_transient(status):
            break
    if data is None:
        how = f"HTTP {status}" if status else "no answer"
        raise UpstreamError(f"The provider '{provider}' result could not be downloaded ({how}); its signed URL "
                            "may have expired.", retryable=retryable)
    return checked_image(data, provider=provider, retryable=retryable)


class ResultDownloads:
    """Where an upstream's result URLs are fetched from. A URL on the provider's own origin (its configured
    base URL's scheme, host and port: an operator's choice, whatever its address) is fetched with the
    provider's session, without its credentials; any other is fetched by `results` under the rules for
    user URLs (public addresses only, redirects re-checked), or refused when there is none. Either way the
    body is capped and the image checked."""

    def __init__(self, provider: str, session: UpstreamSession, base_url: str, results: ResultFetcher | None, *,
                 timeout: float) -> None:
        self._provider = provider
        self._session = session
        self._origin = _origin(base_url)
        self._results = results
        self._timeout = aiohttp.ClientTimeout(total=min(timeout, 60.0), sock_connect=10)

    async def image(self, url: str, *, max_bytes: int, retries: int = 0,
                    pause: Callable[[int], float] = lambda attempt: 0.0, retryable: bool = True) -> OutputImage:
        if _origin(url) == self._origin:
            return await download_image(self._session.get(), url, provider=self._provider, max_bytes=max_bytes,
                                        client_timeout=self._timeout, retries=retries, pause=pause,
                                        retryable=retryable)
        if self._results is None:
            raise UpstreamError(f"The provider '{self._provider}' answered with a URL on another host, which this "
                                "gateway does not fetch.", retryable=retryable)
        for attempt in range(retries + 1):
            try:
                data = await self._results.fetch_result(url, max_bytes=max_bytes)
            except GatewayError as exc:  # refused, unreachable or too large: the upstream's fault
                if attempt == retries:
                    raise UpstreamError(f"The provider '{self._provider}' result could not be fetched from its "
                                        f"URL ({exc.code}).", retryable=retryable) from exc
                await asyncio.sleep(pause(attempt))
                continue
            return checked_image(data, provider=self._provider, retryable=retryable)
        raise AssertionError("unreachable")  # pragma: no cover


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port


def checked_image(data: bytes, *, provider: str, retryable: bool = True, b64_json: str | None = None) -> OutputImage:
    """An upstream's image bytes through the output check; anything else is the upstream's error."""
    try:
        return output_image(data, b64_json=b64_json)
    except (InvalidImage, ImageTooLarge):
        raise UpstreamError(f"The provider '{provider}' returned something that is not an image.",
                            retryable=retryable) from None


async def image_from_b64(value: Any, *, provider: str, max_bytes: int, retryable: bool = True) -> OutputImage:
    """A Base64 image from an upstream's answer: decoded (on a worker thread when large) and checked.

    Text that is not Base64, decodes to more than `max_bytes`, or is not an image, is the upstream's error.
    """
    if not isinstance(value, str) or not value or len(value) > base64_length(max_bytes) + 4096:
        raise UpstreamError(f"The provider '{provider}' returned an image that is missing or too large.",
                            retryable=retryable)
    data = _b64decode(value) if len(value) <= _INLINE_BYTES else await asyncio.to_thread(_b64decode, value)
    if data is None:
        raise UpstreamError(f"The provider '{provider}' returned image data that is not Base64.",
                            retryable=retryable)
    exact = base64_length(len(data)) == len(value)  # no line breaks: the text can be passed on as it is
    return checked_image(data, provider=provider, retryable=retryable, b64_json=value if exact else None)


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        pass
    compact = "".join(text.split())  # line-wrapped Base64 (MIME style) is still Base64
    if compact == text:
        return None
    try:
        return base64.b64decode(compact, validate=True)
    except ValueError:
        return None
