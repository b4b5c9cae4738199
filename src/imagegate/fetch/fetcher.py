"""`SafeFetcher`: the Fetcher port, downloading user-supplied image URLs without becoming an SSRF proxy.

Every URL is parsed and validated before anything is dialled (`url.py`); the connector dials only what
`PolicyResolver` approved and its socket factory re-checks each address (`resolver.py`); redirects are
followed by hand and validated again; one deadline covers DNS, connect, every redirect and the body;
bytes are counted while they stream (`spool.py`) and the result passes the one content check
(`imagegate.imaging`). Foreign exceptions are translated here, by type, into the gateway's error tree.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import BinaryIO

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from imagegate.core.errors import GatewayError, ImageFetchFailed, InvalidImageURL
from imagegate.core.jobs import UrlRef
from imagegate.core.media import SourceImage
from imagegate.fetch.data_url import DataURL, decode_data_url, is_data_url, parse_data_url
from imagegate.fetch.policy import AddressPolicy, FetchSettings
from imagegate.fetch.resolver import BlockedAddress, PolicyResolver, guarded_socket_factory
from imagegate.fetch.spool import Budget, Spool
from imagegate.fetch.url import parse_url, resolve_redirect
from imagegate.imaging import check_image

log = logging.getLogger("imagegate.fetch")

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
REQUEST_HEADERS = {
    "Accept": "image/png, image/jpeg, image/webp",
    "Accept-Encoding": "identity",
    "User-Agent": "imagegate-fetch/1",
}
_CHUNK = 64 * 1024
_MAX_HEADER_LINE = 8190
_MAX_HEADERS = 64


class SafeFetcher:
    """Fetches the images of one request concurrently, under per-request and process-wide caps.

    `resolver` is the inner DNS resolver (default: aiohttp's); the fetcher wraps it in the policy check
    and owns it from then on (closes it in `aclose`). `policy` defaults to one built from
    `settings.allow_cidrs`. Tests inject both; production code passes neither.
    """

    def __init__(self, settings: FetchSettings, *, resolver: AbstractResolver | None = None,
                 policy: AddressPolicy | None = None) -> None:
        self._settings = settings
        self._policy = policy if policy is not None else AddressPolicy.from_settings(settings)
        self._inner_resolver = resolver
        self._resolver: PolicyResolver | None = None
        self._session: aiohttp.ClientSession | None = None
        self._process_slots: asyncio.Semaphore | None = None
        self._closed = False

    # --- the port ------------------------------------------------------------------------------
    async def fetch_all(self, refs: Sequence[UrlRef]) -> list[SourceImage]:
        if self._closed:
            raise RuntimeError("SafeFetcher is closed")
        # Every URL is refused on syntax before anything is dialled or decoded for any of them.
        targets = [self._parse(ref) for ref in refs]
        budget = Budget(self._settings.max_image_bytes, self._settings.max_total_bytes)
        request_slots = asyncio.Semaphore(self._settings.per_request_concurrency)
        results: list[SourceImage | None] = [None] * len(refs)

        async def one(i: int, ref: UrlRef) -> None:
            results[i] = await self._fetch_one(ref, targets[i], budget, request_slots)

        failure: BaseException | None = None
        try:
            async with asyncio.TaskGroup() as group:
                for i, ref in enumerate(refs):
                    group.create_task(one(i, ref))
        except BaseExceptionGroup as errors:
            failure = errors.exceptions[0]  # the first failure; it cancelled the others
        except BaseException:
            _close_all(results)
            raise
        if failure is not None:
            _close_all(results)
            raise failure
        return [image for image in results if image is not None]

    async def fetch_result(self, url: str, *, max_bytes: int) -> bytes:
        """A result image an upstream answered with a URL of, under the rules of user URLs, read to at most
        `max_bytes` (ImageTooLarge beyond). The bytes are not checked here: the caller checks them as an
        upstream's output."""
        if self._closed:
            raise RuntimeError("SafeFetcher is closed")
        ref = UrlRef(param="result", url=url)
        target = self._parse(ref)
        budget = Budget(max_bytes, max_bytes)
        if isinstance(target, DataURL):
            file = await decode_data_url(target, ref.param, budget=budget,
                                         memory_bytes=self._settings.spool_memory_bytes)
        else:
            async with self._slots():
                file, _ = await self._download(target, ref.param, budget)
        try:
            return await asyncio.to_thread(_read_all, file)
        finally:
            file.close()

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:
            await self._resolver.close()
        elif self._inner_resolver is not None:
            await self._inner_resolver.close()
        self._resolver = self._inner_resolver = None

    # --- one image -----------------------------------------------------------------------------
    def _parse(self, ref: UrlRef) -> URL | DataURL:
        s = self._settings
        if is_data_url(ref.url):
            return parse_data_url(ref.url, ref.param, max_length=s.max_data_url_length,
                                  max_bytes=s.max_image_bytes)
        return parse_url(ref.url, ref.param, s, self._policy)

    async def _fetch_one(self, ref: UrlRef, target: URL | DataURL, budget: Budget,
                         request_slots: asyncio.Semaphore) -> SourceImage:
        if isinstance(target, DataURL):
            file = await decode_data_url(target, ref.param, budget=budget,
                                         memory_bytes=self._settings.spool_memory_bytes)
            size = target.size
        else:
            async with request_slots, self._slots():
                file, size = await self._download(target, ref.param, budget)
        try:
            image = await check_image(file, param=ref.param, filename="image", size=size)
        except BaseException:
            file.close()
            raise
        image.filename = f"image.{image.info.format}"
        return image

    def _slots(self) -> asyncio.Semaphore:
        if self._process_slots is None:
            self._process_slots = asyncio.Semaphore(self._settings.process_concurrency)
        return self._process_slots

    async def _download(self, url: URL, param: str, budget: Budget) -> tuple[BinaryIO, int]:
        spool = Spool(self._settings.spool_memory_bytes)
        try:
            try:
                async with asyncio.timeout(self._settings.timeout):
                    response = await self._follow(url, param)
                    try:
                        await self._read_body(response, param, budget, spool)
                    except BaseException:
                        response.close()  # never return a half-read connection to the pool
                        raise
                    response.release()
            except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
                raise _translate(exc, param, self._settings.timeout) from exc
            return await spool.finish(), spool.size
        except BaseException:
            spool.close()
            raise

    async def _follow(self, url: URL, param: str) -> aiohttp.ClientResponse:
        session = self._ensure_session()
        for hop in range(self._settings.max_redirects + 1):
            response = await session.get(url, allow_redirects=False)
            if response.status not in REDIRECT_STATUSES:
                return response
            locations = response.headers.getall("Location", [])
            response.close()
            if hop == self._settings.max_redirects:
                raise ImageFetchFailed(f"'{param}' redirected more than {self._settings.max_redirects} "
                                       "times.", param=param)
            if len(locations) != 1:
                raise ImageFetchFailed(f"'{param}' redirected without a single Location.", param=param)
            url = resolve_redirect(url, locations[0], param, self._settings, self._policy)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read_body(self, response: aiohttp.ClientResponse, param: str, budget: Budget,
                         spool: Spool) -> None:
        if response.status != 200:
            raise ImageFetchFailed(f"'{param}' could not be fetched: the server answered HTTP "
                                   f"{response.status}.", param=param)
        codings = [c.strip().lower() for v in response.headers.getall("Content-Encoding", [])
                   for c in v.split(",")]
        if any(c not in ("", "identity") for c in codings):
            raise ImageFetchFailed(f"'{param}' was sent compressed (Content-Encoding); only "
                                   "uncompressed images are accepted.", param=param)
        framing = [c.strip().lower() for v in response.headers.getall("Transfer-Encoding", [])
                   for c in v.split(",")]
        if any(c != "chunked" for c in framing):
            raise ImageFetchFailed(f"'{param}' was sent with an unsupported Transfer-Encoding.",
                                   param=param)
        counted = 0
        if response.content_length is not None:
            # A declared length is counted at once, so a body that stalls still holds its share.
            budget.take(param, response.content_length, 0)
            counted = response.content_length
        size = 0
        async for chunk in response.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > counted:
                budget.take(param, size - counted, counted)
                counted = size
            await spool.write(chunk)

    def _ensure_session(self) -> aiohttp.ClientSession:
        """The one session of this fetcher, created inside the running loop on first use."""
        if self._session is None:
            s = self._settings
            # aiohttp's default resolver binds to the running loop, hence built here, not in __init__.
            inner = self._inner_resolver if self._inner_resolver is not None else aiohttp.DefaultResolver()
            self._resolver = PolicyResolver(inner, self._policy)
            connector = aiohttp.TCPConnector(
                resolver=self._resolver,
                socket_factory=guarded_socket_factory(self._policy, s.allowed_ports),
                limit=s.process_concurrency,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=False,
                headers=REQUEST_HEADERS,
                timeout=aiohttp.ClientTimeout(total=s.timeout),
                max_line_size=_MAX_HEADER_LINE,
                max_field_size=_MAX_HEADER_LINE,
                max_headers=_MAX_HEADERS,
                requote_redirect_url=False,
            )
        return self._session


def _read_all(file: BinaryIO) -> bytes:
    file.seek(0)
    return file.read()


def _close_all(images: Sequence[SourceImage | None]) -> None:
    for image in images:
        if image is not None:
            image.close()


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        os_error = getattr(current, "os_error", None)
        current = os_error if isinstance(os_error, BaseException) else current.__cause__
    return False


def _translate(exc: BaseException, param: str, timeout: float) -> GatewayError:
    """Map an aiohttp/OS failure to a client error whose message reveals no address and no body."""
    if _caused_by(exc, BlockedAddress):
        log.info("refused to fetch %s: %s", param, exc)
        return InvalidImageURL(f"'{param}' points to an address that is not allowed.", param=param)
    if isinstance(exc, TimeoutError):
        why = f"it took longer than {timeout:g} s"
    elif isinstance(exc, aiohttp.ClientConnectorDNSError):
        why = "its host name could not be resolved"
    elif isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        why = "the TLS connection could not be verified"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        why = "the server could not be reached"
    elif isinstance(exc, aiohttp.InvalidURL):
        return InvalidImageURL(f"'{param}' is not an allowed image URL.", param=param)
    elif isinstance(exc, aiohttp.ClientPayloadError):
        why = "the response body was malformed or truncated"
    elif isinstance(exc, aiohttp.ClientResponseError):
        why = "the server sent a malformed response"
    else:
        why = "the connection failed"
    return ImageFetchFailed(f"'{param}' could not be fetched: {why}.", param=param)
