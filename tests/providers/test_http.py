"""The shared HTTP helpers: Retry-After in any form, bounded excerpts, and result downloads."""

from __future__ import annotations

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
from imagegate.core.errors import UpstreamError
from imagegate.providers.http import EXCERPT_CHARS, download_image, excerpt, param_name, retry_after

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
