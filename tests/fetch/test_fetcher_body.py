"""What the fetcher reads: deadlines, framing, byte limits, compression, and the content of the bytes.

The test settings (support.settings_for) allow 256 KiB per image and 600 KiB per request, with a 5 s
deadline unless a test shortens it; drip and stall cases use 1 s.
"""

from __future__ import annotations

import asyncio
import gzip
import time

import pytest

from imagegate.core.errors import ImageFetchFailed, ImageTooLarge, InvalidImage

from .conftest import Fetch, MakeFetcher
from .support import (
    JPEG,
    PNG,
    PUBLIC,
    Handler,
    Origin,
    Tripwire,
    chunked,
    drip,
    head,
    image_bytes,
    raw,
    redirect,
    refused,
    reply,
    slow,
    stall,
)

KiB = 1024
BIG_PNG = image_bytes("PNG", size=(200, 200), mode="RGB", noise=True)  # ~120 KiB, spooled to disk


# --- one deadline -------------------------------------------------------------------------------
@pytest.mark.parametrize("handler", [
    drip(PNG, 0.5),  # a byte every half second: each read is quick, the whole is not
    stall(),  # accepts, never answers
    stall(head(200, [("Content-Length", str(len(PNG)))]) + PNG[:20]),  # stalls mid-body
    stall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"),  # stalls mid-headers
], ids=["drip", "stall-before-headers", "stall-mid-body", "stall-mid-headers"])
async def test_slow_servers_hit_the_single_deadline(handler: Handler, origin: Origin, make_fetcher: MakeFetcher,
                                                    fetch: Fetch) -> None:
    origin.route("/slow", handler)
    started = time.monotonic()
    error = await refused(fetch, origin.url("/slow"), using=make_fetcher(timeout=1.0))
    assert isinstance(error, ImageFetchFailed) and "longer than 1 s" in error.message
    assert time.monotonic() - started < 4  # the slowest case would run for minutes


async def test_the_deadline_covers_every_redirect_together(origin: Origin, make_fetcher: MakeFetcher,
                                                           fetch: Fetch) -> None:
    """Three hops of 0.4 s each: every hop is well inside 1 s, the whole fetch is not."""
    for i in range(3):
        origin.route(f"/h{i}", slow(0.4, redirect(f"/h{i + 1}")))
    origin.route("/h3", reply(PNG))
    error = await refused(fetch, origin.url("/h0"), using=make_fetcher(timeout=1.0))
    assert isinstance(error, ImageFetchFailed) and "longer than" in error.message


# --- framing and size ---------------------------------------------------------------------------
async def test_a_huge_declared_length_is_refused_before_reading(origin: Origin, fetch: Fetch) -> None:
    origin.route("/huge", stall(head(200, [("Content-Type", "image/png"), ("Content-Length", str(10**12))])))
    started = time.monotonic()
    error = await refused(fetch, origin.url("/huge"))
    assert isinstance(error, ImageTooLarge) and error.code == "image_too_large"
    assert time.monotonic() - started < 3  # did not wait for the body (5 s deadline)


async def test_a_small_declared_length_is_not_trusted(origin: Origin, fetch: Fetch) -> None:
    """Content-Length says 100 bytes; 300 KiB follow. Nothing past the declared bytes is taken as body
    (aiohttp refuses data after `Connection: close` outright; the 100 bytes alone are no image)."""
    origin.route("/lie", raw(head(200, [("Content-Length", "100")]) + PNG + b"\0" * 300 * KiB))
    assert isinstance(await refused(fetch, origin.url("/lie")), InvalidImage | ImageFetchFailed)


async def test_a_body_shorter_than_declared_fails(origin: Origin, fetch: Fetch) -> None:
    origin.route("/short", reply(PNG, length=len(PNG) + 500))
    error = await refused(fetch, origin.url("/short"))
    assert isinstance(error, ImageFetchFailed) and "truncated" in error.message


@pytest.mark.parametrize("total", [256 * KiB + 1, 5 * 1024 * KiB])
async def test_a_chunked_body_past_the_image_limit_is_cut_off(total: int, origin: Origin, fetch: Fetch) -> None:
    origin.route("/big", chunked(total))
    error = await refused(fetch, origin.url("/big"))
    assert isinstance(error, ImageTooLarge) and "256 KiB" not in error.message
    assert error.param == "image_urls[0]"


async def test_a_body_of_exactly_the_limit_is_read(origin: Origin, make_fetcher: MakeFetcher,
                                                   fetch: Fetch) -> None:
    origin.route("/exact", chunked(len(BIG_PNG), prefix=BIG_PNG))
    images = await fetch(origin.url("/exact"), using=make_fetcher(max_image_bytes=len(BIG_PNG)))
    assert images[0].size == len(BIG_PNG)
    error = await refused(fetch, origin.url("/exact"), using=make_fetcher(max_image_bytes=len(BIG_PNG) - 1))
    assert isinstance(error, ImageTooLarge)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd", "compress", "x-gzip", "GZIP",
                                    "identity, gzip", "chunked"])
async def test_compressed_bodies_are_refused(coding: str, origin: Origin, fetch: Fetch) -> None:
    origin.route("/z", reply(gzip.compress(PNG), headers=[("Content-Encoding", coding)]))
    error = await refused(fetch, origin.url("/z"))
    assert isinstance(error, ImageFetchFailed) and "Content-Encoding" in error.message


async def test_identity_encoding_is_accepted(origin: Origin, fetch: Fetch) -> None:
    origin.route("/i", reply(PNG, headers=[("Content-Encoding", "identity")]))
    assert len(await fetch(origin.url("/i"))) == 1


async def test_a_compressed_transfer_coding_is_refused(origin: Origin, fetch: Fetch) -> None:
    body = gzip.compress(PNG)
    framed = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    origin.route("/te", raw(head(200, [("Transfer-Encoding", "gzip, chunked")]) + framed))
    assert isinstance(await refused(fetch, origin.url("/te")), ImageFetchFailed)


@pytest.mark.parametrize("response", [
    head(200, [("X-Long", "a" * 9000)]) + PNG,  # one header line too long
    head(200, [(f"X-{i}", "v") for i in range(200)]) + PNG,  # too many headers
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 500\r\n\r\n" + PNG,  # conflicting lengths
    b"SSH-2.0-OpenSSH_9.6\r\n",  # not HTTP at all
    b"\x89PNG\r\n\x1a\n" + PNG,  # an HTTP/0.9-style bare body
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n" + PNG,
    head(200, [("Transfer-Encoding", "chunked"), ("Content-Length", "5")]) + b"6c\r\n" + PNG + b"\r\n0\r\n\r\n",
    b"",  # closes at once
], ids=["long-header", "many-headers", "two-lengths", "not-http", "http09", "negative-length", "te-and-cl",
        "empty"])
async def test_malformed_responses_fail_cleanly(response: bytes, origin: Origin, fetch: Fetch) -> None:
    origin.route("/bad", raw(response))
    assert isinstance(await refused(fetch, origin.url("/bad")), ImageFetchFailed)


@pytest.mark.parametrize("status", [201, 204, 206, 400, 401, 403, 404, 429, 500, 502, 503])
async def test_any_status_but_200_fails_without_echoing_the_body(status: int, origin: Origin,
                                                                 fetch: Fetch) -> None:
    body = b"" if status == 204 else b"SECRET internal stack trace 10.1.2.3"
    origin.route("/s", reply(body, status, content_type="text/html"))
    error = await refused(fetch, origin.url("/s"))
    assert isinstance(error, ImageFetchFailed) and f"HTTP {status}" in error.message
    assert "SECRET" not in error.message and "10.1.2.3" not in error.message


# --- the bytes are judged, not the Content-Type ---------------------------------------------------
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
FAKES = {
    "svg": SVG,
    "html": b"<!doctype html><html><body>SECRET admin page</body></html>",
    "gif": image_bytes("GIF", mode="P"),
    "bmp": image_bytes("BMP", mode="RGB"),
    "tiff": image_bytes("TIFF", mode="RGB"),
    "ico": image_bytes("ICO", mode="RGBA"),
    "png-magic-only": b"\x89PNG\r\n\x1a\n",
    "png-truncated": PNG[: len(PNG) // 2],
    "png-bad-crc": PNG[:29] + bytes([PNG[29] ^ 0xFF]) + PNG[30:],
    "png-no-idat": PNG[:33] + PNG[-12:],
    "jpeg-magic-only": b"\xff\xd8\xff\xe0",
    "jpeg-truncated": JPEG[: len(JPEG) - 200],
    "webp-riff-only": b"RIFF\x10\x00\x00\x00WEBPVP8 ",
    "png-then-html": b"\x89PNG\r\n\x1a\n<html>not an image</html>" * 3,
    "empty": b"",
}


@pytest.mark.parametrize("name", list(FAKES))
async def test_fake_and_broken_images_served_as_png_are_refused(name: str, origin: Origin, fetch: Fetch) -> None:
    origin.route("/fake.png", reply(FAKES[name], content_type="image/png"))
    error = await refused(fetch, origin.url("/fake.png"))
    assert isinstance(error, InvalidImage) and error.code == "unsupported_image_format"
    assert "SECRET" not in error.message


async def test_a_real_image_with_a_wrong_content_type_is_accepted(origin: Origin, fetch: Fetch) -> None:
    origin.route("/a.txt", reply(JPEG, content_type="text/html"))
    assert (await fetch(origin.url("/a.txt")))[0].info.format == "jpeg"


@pytest.mark.parametrize("size", [(9000, 9000), (100_000, 100_000), (65535, 1)])
async def test_pixel_bombs_are_413(size: tuple[int, int], origin: Origin, fetch: Fetch) -> None:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", *size, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    bomb = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + zlib.compress(b"\0" * 1024))
    origin.route("/bomb.png", reply(bomb))
    error = await refused(fetch, origin.url("/bomb.png"))
    if size[0] * size[1] > 8192 * 8192:
        assert isinstance(error, ImageTooLarge) and error.code == "image_too_large"
    else:
        assert isinstance(error, InvalidImage)


# --- the request's total budget, and cancellation ------------------------------------------------
async def test_the_total_budget_counts_all_images_of_a_request(origin: Origin, fetch: Fetch) -> None:
    origin.route("/big.png", reply(BIG_PNG))  # ~120 KiB each; 600 KiB per request
    urls = [origin.url("/big.png")] * 6
    error = await refused(fetch, *urls)
    assert isinstance(error, ImageTooLarge) and "in total" in error.message
    assert len(await fetch(*urls[:4])) == 4  # a fresh request has a fresh budget


async def test_declared_lengths_count_against_the_total_budget(origin: Origin, fetch: Fetch) -> None:
    origin.route("/big.png", reply(BIG_PNG))
    origin.route("/lying", stall(head(200, [("Content-Length", str(250 * KiB))])))
    error = await refused(fetch, *[origin.url("/big.png")] * 3, origin.url("/lying"), origin.url("/lying"))
    assert isinstance(error, ImageTooLarge)


async def test_a_failure_cancels_the_other_fetches(origin: Origin, fetch: Fetch, tripwire: Tripwire) -> None:
    origin.route("/stall", stall())
    origin.route("/missing", slow(0.1, reply(b"", 404)))
    started = time.monotonic()
    error = await refused(fetch, origin.url("/stall"), origin.url("/stall"), origin.url("/missing"))
    assert error.param == "image_urls[2]"
    assert time.monotonic() - started < 3  # the stalled fetches did not run to their 5 s deadline
    await asyncio.sleep(0.05)
    assert origin.active == 0  # their connections were closed


async def test_large_bodies_are_spooled_to_disk(origin: Origin, fetch: Fetch, tripwire: Tripwire) -> None:
    origin.route("/big.png", reply(BIG_PNG))
    origin.route("/small.png", reply(PNG))
    fetcher_images = await fetch(origin.url("/big.png"), origin.url("/small.png"))
    big, small = fetcher_images
    assert big.size == len(BIG_PNG) and small.size == len(PNG)
    assert hasattr(big.file, "fileno") and not hasattr(big.file, "getvalue")  # a temporary file
    assert hasattr(small.file, "getvalue")  # in memory
    assert set(tripwire.dialled) == {(PUBLIC, origin.port)}
