"""SafeFetcher as the Fetcher port: results, request hygiene, data: URLs, caps and lifecycle."""

from __future__ import annotations

import asyncio
import base64
import warnings

import aiohttp
import pytest

from imagegate.core.errors import ImageTooLarge, InvalidImage, InvalidImageURL
from imagegate.core.jobs import UrlRef
from imagegate.core.ports import Fetcher
from imagegate.fetch import AddressPolicy, FetchSettings, SafeFetcher

from .conftest import Fetch, MakeFetcher
from .support import (
    JPEG,
    PNG,
    PUBLIC,
    WEBP,
    FakeResolver,
    Origin,
    Tripwire,
    image_bytes,
    refused,
    reply,
    settings_for,
    slow,
)


def data_url(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


async def test_images_come_back_checked_and_in_order(origin: Origin, fetch: Fetch, tripwire: Tripwire,
                                                     resolver: FakeResolver) -> None:
    origin.route("/a.png", reply(PNG))
    origin.route("/b.jpg", reply(JPEG, content_type="image/jpeg"))
    origin.route("/c", reply(WEBP, content_type="application/octet-stream"))
    images = await fetch(f"http://img.test:{origin.port}/a.png", origin.url("/b.jpg"), origin.url("/c"),
                         data_url(WEBP, "image/webp"))
    assert [(i.param, i.info.format, i.filename) for i in images] == [
        ("image_urls[0]", "png", "image.png"), ("image_urls[1]", "jpeg", "image.jpeg"),
        ("image_urls[2]", "webp", "image.webp"), ("image_urls[3]", "webp", "image.webp")]
    assert [i.size for i in images] == [len(PNG), len(JPEG), len(WEBP), len(WEBP)]
    assert set(tripwire.dialled) == {(PUBLIC, origin.port)} and resolver.queries == ["img.test"]


async def test_the_file_holds_exactly_the_bytes_served(origin: Origin, fetcher: SafeFetcher) -> None:
    big = image_bytes("PNG", size=(150, 150), mode="RGB", noise=True)
    origin.route("/big.png", reply(big))
    [image] = await fetcher.fetch_all([UrlRef("image_url", origin.url("/big.png"))])
    try:
        assert await asyncio.to_thread(image.read) == big
    finally:
        image.close()


async def test_an_empty_request_fetches_nothing(fetcher: SafeFetcher, tripwire: Tripwire) -> None:
    assert await fetcher.fetch_all([]) == []
    assert tripwire.dialled == []


def test_safe_fetcher_implements_the_port() -> None:
    fetcher: Fetcher = SafeFetcher(FetchSettings())
    assert fetcher is not None


async def test_the_request_is_fixed_minimal_and_identity_encoded(origin: Origin, fetch: Fetch,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    origin.route("/a.png", reply(PNG))
    monkeypatch.setenv("HTTP_PROXY", "http://10.9.9.9:3128")  # would be dialled if env proxies were used
    monkeypatch.setenv("ALL_PROXY", "http://10.9.9.9:3128")
    await fetch(f"http://img.test:{origin.port}/a.png?x=1")
    [request] = origin.requests
    assert request.method == "GET" and request.target == "/a.png?x=1"
    assert request.headers["accept-encoding"] == "identity"
    assert request.headers["host"] == f"img.test:{origin.port}"
    assert set(request.headers) == {"host", "accept", "accept-encoding", "user-agent"}


async def test_the_url_validated_is_the_url_requested(origin: Origin, fetch: Fetch) -> None:
    origin.route("/%C3%B6.png", reply(PNG))
    await fetch(f"http://img.test:{origin.port}/\u00f6.png?q=\u00e4")
    assert origin.requests[0].target == "/%C3%B6.png?q=%C3%A4"


async def test_messages_name_the_param_and_never_the_resolved_address(origin: Origin, fetch: Fetch) -> None:
    origin.route("/a.png", reply(PNG))
    ok = f"http://img.test:{origin.port}/a.png"
    error = await refused(fetch, ok, ok, f"http://metadata.test:{origin.port}/latest/meta-data/")
    assert error.param == "image_urls[2]" and error.message.startswith("'image_urls[2]'")
    assert "169.254" not in error.message and "metadata" not in error.message


# --- data: URLs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("data", [PNG, JPEG, WEBP])
async def test_data_urls_pass_the_same_content_check(data: bytes, fetch: Fetch, tripwire: Tripwire) -> None:
    [image] = await fetch(data_url(data, "image/gif"))  # the declared type is not trusted either way
    assert image.size == len(data)
    assert tripwire.dialled == []


@pytest.mark.parametrize(("url", "error"), [
    (data_url(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"), InvalidImage),
    (data_url(image_bytes("GIF", mode="P"), "image/gif"), InvalidImage),
    (data_url(PNG[:40]), InvalidImage),
    (data_url(PNG, "text/html"), InvalidImageURL),
    (data_url(PNG, "application/octet-stream"), InvalidImageURL),
    ("data:image/png," + PNG.decode("latin-1"), InvalidImageURL),  # not base64
    ("data:image/png;base64,", InvalidImageURL),
    ("data:image/png;base64,iVBORw0KGgo", InvalidImageURL),  # bad padding
    ("data:image/png;base64,iVBO Rw0K", InvalidImageURL),  # whitespace
    ("data:image/png;base64,iVBO\nRw0K", InvalidImageURL),
    ("data:image/png;base64,iVBO%52w0K", InvalidImageURL),
    ("data:image/png;base64,iVBORw0KGgo=AAAA", InvalidImageURL),  # data after padding
    ("data:;base64," + base64.b64encode(PNG).decode(), InvalidImageURL),
    ("data:image/png;charset=utf-8;base64" + base64.b64encode(PNG).decode(), InvalidImageURL),
])
async def test_bad_data_urls_are_refused(url: str, error: type[Exception], fetch: Fetch,
                                         tripwire: Tripwire) -> None:
    assert isinstance(await refused(fetch, url), error)
    assert tripwire.dialled == []


@pytest.mark.parametrize("bad", ["data:text/html;base64,PGgxPg==", "data:image/png;base64,%%%%",
                                 "data:image/png;base64," + "A" * 400_000])
async def test_a_bad_data_url_refuses_the_request_before_any_fetch(bad: str, origin: Origin, fetch: Fetch,
                                                                   tripwire: Tripwire) -> None:
    origin.route("/a.png", reply(PNG))
    error = await refused(fetch, origin.url("/a.png"), bad)
    assert error.param == "image_urls[1]" and tripwire.dialled == [] and origin.requests == []


async def test_a_data_url_larger_than_the_image_limit_is_413(fetch: Fetch, make_fetcher: MakeFetcher) -> None:
    huge = "data:image/png;base64," + "A" * (4 * 256 * 1024 // 3 + 400)  # over 256 KiB decoded
    error = await refused(fetch, huge)
    assert isinstance(error, ImageTooLarge) and error.code == "image_too_large"
    at_limit = "data:image/png;base64," + "AAAA" * (256 * 1024 // 3)  # under it: decoded, then judged
    assert isinstance(await refused(fetch, at_limit), InvalidImage)


async def test_data_urls_count_against_the_request_budget(origin: Origin, fetch: Fetch) -> None:
    big = image_bytes("PNG", size=(200, 200), mode="RGB", noise=True)  # ~120 KiB
    origin.route("/big.png", reply(big))
    error = await refused(fetch, *[data_url(big)] * 3, *[origin.url("/big.png")] * 3)
    assert isinstance(error, ImageTooLarge) and "in total" in error.message


# --- caps -------------------------------------------------------------------------------------------
async def test_fetches_of_one_request_run_concurrently_under_the_per_request_cap(
        origin: Origin, make_fetcher: MakeFetcher, fetch: Fetch) -> None:
    origin.route("/slow.png", slow(0.1, reply(PNG)))
    await fetch(*[origin.url("/slow.png")] * 6, using=make_fetcher(per_request_concurrency=2))
    assert origin.max_active == 2
    origin.max_active = 0
    await fetch(*[origin.url("/slow.png")] * 6, using=make_fetcher(per_request_concurrency=6))
    assert origin.max_active == 6


async def test_the_process_wide_cap_holds_across_requests(origin: Origin, make_fetcher: MakeFetcher,
                                                          fetch: Fetch) -> None:
    origin.route("/slow.png", slow(0.1, reply(PNG)))
    shared = make_fetcher(per_request_concurrency=4, process_concurrency=3)
    await asyncio.gather(*(fetch(*[origin.url("/slow.png")] * 4, using=shared) for _ in range(3)))
    assert origin.max_active == 3 and len(origin.requests) == 12


# --- lifecycle --------------------------------------------------------------------------------------
async def test_one_session_is_shared_and_closed_cleanly(origin: Origin, resolver: FakeResolver) -> None:
    origin.route("/a.png", reply(PNG))
    fetcher = SafeFetcher(settings_for(origin.port), resolver=resolver, policy=AddressPolicy([f"{PUBLIC}/32"]))
    for _ in range(3):
        images = await fetcher.fetch_all([UrlRef("image_url", origin.url("/a.png"))])
        images[0].close()
    session = fetcher._session
    assert session is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        await fetcher.aclose()
    assert session.closed and resolver.closed
    with pytest.raises(RuntimeError):
        await fetcher.fetch_all([UrlRef("image_url", origin.url("/a.png"))])


async def test_an_unused_fetcher_closes_without_a_session(resolver: FakeResolver) -> None:
    fetcher = SafeFetcher(FetchSettings(), resolver=resolver)
    await fetcher.aclose()
    assert resolver.closed


async def test_the_default_resolver_is_used_and_policed(tripwire: Tripwire, monkeypatch: pytest.MonkeyPatch) -> None:
    """Production wiring (no injection): names go to the system resolver, whose getaddrinfo the tripwire
    refuses here, so the lookup fails locally; nothing is dialled. (aiohttp's default would be c-ares if
    aiodns were installed, which the tripwire cannot see: pin the getaddrinfo-based one.)"""
    monkeypatch.setattr(aiohttp, "DefaultResolver", aiohttp.ThreadedResolver)
    fetcher = SafeFetcher(FetchSettings(timeout=2.0))
    try:
        error = await refused(fetcher.fetch_all, [UrlRef("image_url", "http://img.example.com/a.png")])
        assert error.code == "image_fetch_failed" and "could not be resolved" in error.message
        literal = await refused(fetcher.fetch_all, [UrlRef("image_url", "http://127.0.0.2/a.png")])
        assert isinstance(literal, InvalidImageURL)  # the production policy refuses the test origin
    finally:
        await fetcher.aclose()
    assert tripwire.dialled == []
    assert tripwire.violations == ["name lookup of 'img.example.com'"]
    tripwire.violations.clear()
