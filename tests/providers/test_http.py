"""The shared HTTP helpers: Retry-After in any form, bounded excerpts, result downloads, and reading an
upstream's answer as untrusted input (caps, compression, Base64, the output check)."""

from __future__ import annotations

import base64
import email.utils
import io
import os
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from PIL import Image

from emulators.bfl_emulator import BflEmulator
from emulators.hostile import HostileUpstream
from imagegate.core.errors import UpstreamError
from imagegate.providers.http import (
    ERROR_BODY_BYTES,
    EXCERPT_CHARS,
    UpstreamSession,
    answer_bytes,
    download_image,
    excerpt,
    image_from_b64,
    param_name,
    parse_json,
    read_body,
    read_error_body,
    retry_after,
)

from .conftest import image_bytes


def test_retry_after_forms() -> None:
    assert retry_after({"retry-after-ms": "1500"}) == 1.5
    assert retry_after({"retry-after": "12"}) == 12.0
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after({"retry-after": future}) or 0) <= 31
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({"retry-after-ms": "x", "retry-after": "-4"}) == 0.0
    assert retry_after({}) is None


def test_excerpt_is_one_bounded_line() -> None:
    assert excerpt("Argument not supported: size") == "Argument not supported: size"
    assert excerpt("a\nb\r\n\tc\x00d") == "a b c d"
    long = excerpt("word " * 1000)
    assert len(long) <= EXCERPT_CHARS and long.endswith("…")
    assert excerpt(None) == excerpt({"message": "x"}) == ""


def test_param_name_accepts_only_short_identifiers() -> None:
    assert param_name("input_fidelity") == "input_fidelity" and param_name("image[2]") == "image[2]"
    assert param_name("p" * 65) is None and param_name("a b") is None and param_name(3) is None


@pytest.fixture
async def delivery() -> AsyncIterator[BflEmulator]:
    async with BflEmulator() as emulator:  # its delivery host serves signed samples
        yield emulator


def serve(emu: BflEmulator, name: str, data: bytes, ttl: float = 60.0) -> str:
    emu.samples[name] = (data, time.time() + ttl)
    return f"{emu.base_url}/delivery/{name}?sig=x"


async def test_download_image_sniffs_the_format(delivery: BflEmulator) -> None:
    url = serve(delivery, "a.jpeg", image_bytes(fmt="JPEG"))
    async with aiohttp.ClientSession() as session:
        image = await download_image(session, url, provider="p")
    assert image.format == "jpeg" and image.data == delivery.samples["a.jpeg"][0]


async def test_download_image_retries_transient_failures(delivery: BflEmulator) -> None:
    url = serve(delivery, "a.png", image_bytes())
    delivery.inject("server_error", on="sample")
    delivery.inject("rate_limit", on="sample")
    pauses: list[int] = []
    async with aiohttp.ClientSession() as session:
        image = await download_image(session, url, provider="p", retries=2,
                                     pause=lambda attempt: pauses.append(attempt) or 0.0)
    assert image.format == "png" and pauses == [0, 1]
    assert [r.status for r in delivery.downloads] == [500, 429, 200]


@pytest.mark.parametrize(("case", "message"), [("expired", "could not be downloaded (HTTP 403)"),
                                               ("missing", "could not be downloaded (HTTP 404)"),
                                               ("not_image", "not an image"), ("oversized", "oversized"),
                                               ("still_failing", "could not be downloaded (HTTP 503)")])
async def test_download_image_failures(case: str, message: str, delivery: BflEmulator) -> None:
    url = serve(delivery, "a.png", image_bytes(), ttl=0.0 if case == "expired" else 60.0)
    if case == "missing":
        url = url.replace("a.png", "b.png")
    elif case == "not_image":
        url = serve(delivery, "a.png", b"<html>signed URL error</html>")
    elif case == "still_failing":
        delivery.inject("unavailable", on="sample", times=3)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(UpstreamError, match=re.escape(message)) as caught:
            await download_image(session, url, provider="p", max_bytes=100 if case == "oversized" else 10**6,
                                 retries=1, retryable=True)
    assert caught.value.retryable
    assert len(delivery.downloads) == (2 if case == "still_failing" else 1)  # only transient failures retry


async def test_download_image_reads_a_large_image_whole(delivery: BflEmulator) -> None:
    buf = io.BytesIO()
    Image.frombytes("RGB", (1024, 1024), os.urandom(1024 * 1024 * 3)).save(buf, "PNG", compress_level=0)
    data = buf.getvalue()
    url = serve(delivery, "big.png", data)
    async with aiohttp.ClientSession() as session:
        image = await download_image(session, url, provider="p")
        assert image.data == data
        with pytest.raises(UpstreamError, match="oversized"):  # announced too large: not read at all
            await download_image(session, url, provider="p", max_bytes=len(data) - 1)


# --- answers as untrusted input ---------------------------------------------------------------------
async def test_image_from_b64_decodes_and_checks() -> None:
    png = image_bytes((40, 30))
    text = base64.b64encode(png).decode()
    image = await image_from_b64(text, provider="p", max_bytes=10**6)
    assert (image.format, image.width, image.height, image.data) == ("png", 40, 30, png)
    assert image.b64_json == text  # passed on as it came
    wrapped = "\n".join(text[i:i + 76] for i in range(0, len(text), 76))
    again = await image_from_b64(wrapped, provider="p", max_bytes=10**6)
    assert again.data == png and again.b64_json is None  # line-wrapped Base64 is decoded, not passed on


@pytest.mark.parametrize(("value", "message"), [
    (None, "missing"), ("", "missing"), (12, "missing"), ("!!not base64!!", "not Base64"),
    (base64.b64encode(b"<html>denied</html>").decode(), "not an image"),
    (base64.b64encode(os.urandom(3000)).decode(), "not an image"),
    (base64.b64encode(image_bytes((8, 8)) * 2000).decode(), "too large"),
])
async def test_image_from_b64_refuses(value: object, message: str) -> None:
    with pytest.raises(UpstreamError, match=message) as caught:
        await image_from_b64(value, provider="p", max_bytes=100_000)
    assert caught.value.retryable


async def test_a_large_answer_is_parsed_off_the_event_loop() -> None:
    body = b'{"data": [{"b64_json": "' + b"A" * 2_000_000 + b'"}]}'
    assert len((await parse_json(body, "p"))["data"][0]["b64_json"]) == 2_000_000
    with pytest.raises(UpstreamError, match="unreadable"):
        await parse_json(b"[1, 2]", "p")


def test_answer_cap_counts_base64_and_room_for_json() -> None:
    assert answer_bytes(1, 3) == 4 + 1024 * 1024
    assert answer_bytes(3, 4 * 1024 * 1024) == 3 * (-(-4 * 1024 * 1024 // 3) * 4) + 1024 * 1024


@pytest.fixture
async def hostile() -> AsyncIterator[HostileUpstream]:
    async with HostileUpstream() as up:
        yield up


@pytest.mark.parametrize(("behaviour", "message"), [("gzip_bomb", "compressed"), ("huge_length", "oversized"),
                                                    ("endless", "oversized")])
async def test_read_body_refuses_what_it_cannot_hold(hostile: HostileUpstream, behaviour: str, message: str) -> None:
    hostile.behaviour = behaviour
    session = UpstreamSession(timeout=5.0)
    try:
        async with session.get().post(f"{hostile.base_url}/images/edits", data=b"{}") as response:
            with pytest.raises(UpstreamError, match=message):
                await read_body(response, max_bytes=4 * 1024 * 1024, provider="p")
    finally:
        await session.aclose()
    assert hostile.requests[0].headers["Accept-Encoding"] == "identity"
    assert hostile.sent_bytes < 64 * 1024 * 1024  # the reader stopped (what is left sat in socket buffers)


async def test_an_error_body_is_read_only_so_far(hostile: HostileUpstream) -> None:
    hostile.fail_next(500, "x" * (10 * ERROR_BODY_BYTES), on=None)
    session = UpstreamSession(timeout=5.0)
    try:
        async with session.get().post(f"{hostile.base_url}/images/edits", data=b"{}") as response:
            assert len(await read_error_body(response)) == ERROR_BODY_BYTES
    finally:
        await session.aclose()


@pytest.mark.parametrize("behaviour", ["random_b64", "not_b64", "gzip_bomb", "endless", "reset_mid_body"])
async def test_download_image_refuses_hostile_results(hostile: HostileUpstream, behaviour: str) -> None:
    hostile.behaviour = behaviour
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        with pytest.raises(UpstreamError):
            await download_image(session, hostile.sample_url(), provider="p", max_bytes=2 * 1024 * 1024)
