"""The one content check: magic bytes, header dimensions, only the matching plugin, verify and decode."""

from __future__ import annotations

import asyncio
import io
import random
import struct
import time
import zlib
from typing import Any

import pytest
from PIL import Image

from imagegate.core.errors import ImageTooLarge, InvalidImage
from imagegate.imaging import MAX_PIXELS, check_image, inspect_image, sniff_format


def encode(fmt: str, size: tuple[int, int] = (24, 16), mode: str = "RGB", **save: Any) -> bytes:
    img = Image.new(mode, size, 7 if mode in ("L", "P", "I;16", "CMYK") else (10, 20, 30, 40)[: len(mode)])
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares its size and carries (almost) no pixel data: a bomb's header."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b"")


def jpeg_header_only(width: int, height: int) -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0" + sof + b"\xff\xd9"


def webp_vp8x_header(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (width - 1).to_bytes(3, "little") \
        + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


PNG = encode("PNG", mode="RGBA")
JPEG = encode("JPEG")
WEBP = encode("WEBP")

VALID = {
    "png-rgba": (PNG, "png", "RGBA", True),
    "png-rgb": (encode("PNG"), "png", "RGB", False),
    "png-gray": (encode("PNG", mode="L"), "png", "L", False),
    "png-16bit": (encode("PNG", mode="I;16"), "png", "I;16", False),
    "png-palette-transparent": (encode("PNG", mode="P", transparency=0), "png", "P", True),
    "png-interlaced": (encode("PNG", interlace=1), "png", "RGB", False),
    "jpeg": (JPEG, "jpeg", "RGB", False),
    "jpeg-gray": (encode("JPEG", mode="L"), "jpeg", "L", False),
    "jpeg-cmyk": (encode("JPEG", mode="CMYK"), "jpeg", "CMYK", False),
    "jpeg-progressive": (encode("JPEG", progressive=True), "jpeg", "RGB", False),
    "jpeg-big-app-segments": (encode("JPEG", exif=b"Exif\0\0" + bytes(60000), icc_profile=bytes(100000)),
                              "jpeg", "RGB", False),
    "webp-lossy": (WEBP, "webp", "RGB", False),
    "webp-lossless": (encode("WEBP", lossless=True), "webp", "RGB", False),
    "webp-alpha": (encode("WEBP", mode="RGBA"), "webp", "RGBA", True),
}


@pytest.mark.parametrize("name", list(VALID))
async def test_valid_images_are_described(name: str) -> None:
    data, fmt, mode, alpha = VALID[name]
    file = io.BytesIO(data)
    image = await check_image(file, param="image[0]", filename="upload.bin", size=len(data))
    assert (image.info.format, image.info.mode, image.info.has_alpha) == (fmt, mode, alpha)
    assert (image.info.width, image.info.height) == (24, 16)
    assert (image.param, image.filename, image.size, image.file) == ("image[0]", "upload.bin", len(data), file)
    assert file.tell() == 0
    assert inspect_image(io.BytesIO(data), param="x") == image.info


def test_the_format_comes_from_the_bytes_not_the_name() -> None:
    assert sniff_format(JPEG[:16]) == "jpeg" and sniff_format(PNG[:16]) == "png"
    assert sniff_format(WEBP[:16]) == "webp" and sniff_format(b"GIF89a") is None


TRUNCATED = [(n, d[:cut]) for n, d in (("png", PNG), ("jpeg", JPEG), ("webp", WEBP))
             for cut in (8, 20, 40, len(d) // 2, len(d) - 6)]
HOSTILE = {
    "empty": b"",
    "random": bytes(range(256)) * 4,
    "gif": encode("GIF", mode="P"),
    "bmp": encode("BMP"),
    "tiff": encode("TIFF"),
    "ico": encode("ICO", mode="RGBA"),
    "pdf": b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n",
    "svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    "html": b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
    "png-magic-only": b"\x89PNG\r\n\x1a\n",
    "jpeg-magic-only": b"\xff\xd8\xff",
    "webp-magic-only": b"RIFF\0\0\0\0WEBP",
    "png-magic-jpeg-body": b"\x89PNG\r\n\x1a\n" + JPEG[2:],
    "jpeg-magic-png-body": b"\xff\xd8\xff" + PNG[8:],
    "png-bad-ihdr-crc": PNG[:29] + bytes([PNG[29] ^ 1]) + PNG[30:],
    "png-bad-idat-data": PNG[:41] + b"\0" * 8 + PNG[49:],
    "png-zero-width": png_header_only(0, 10),
    "png-no-pixel-data": png_header_only(64, 64),
    "png-ztxt-bomb": PNG[:33] + png_chunk(b"zTXt", b"c\0\0" + zlib.compress(b"A" * (50 * 1024 * 1024))) + PNG[33:],
    "jpeg-scan-before-frame": b"\xff\xd8\xff\xda\x00\x08" + b"\0" * 40,
    "jpeg-endless-segments": b"\xff\xd8" + b"\xff\xfe\x00\x02" * 5000,
    "jpeg-corrupt-scan": JPEG[:-40] + b"\xff\x00" * 16 + JPEG[-8:],
    "webp-unknown-chunk": b"RIFF\x20\0\0\0WEBPABCD" + b"\0" * 24,
    "at-the-pixel-limit-but-no-data": png_header_only(8192, 8192),
}


@pytest.mark.parametrize(("name", "data"), [*HOSTILE.items(), *((f"{n}-cut{len(d)}", d) for n, d in TRUNCATED)])
async def test_fake_and_broken_images_are_unsupported_format(name: str, data: bytes) -> None:
    with pytest.raises(InvalidImage) as info:
        await check_image(io.BytesIO(data), param="image[2]", filename="a.png", size=len(data))
    assert info.value.code == "unsupported_image_format" and info.value.param == "image[2]"


@pytest.mark.parametrize("bomb", [
    png_header_only(8193, 8192), png_header_only(100_000, 100_000), png_header_only(2**31 - 1, 2**31 - 1),
    png_header_only(1, MAX_PIXELS + 1), jpeg_header_only(65535, 65535), jpeg_header_only(9000, 9000),
    webp_vp8x_header(16384, 16384), webp_vp8x_header(2**24, 2**24),
], ids=["png-just-over", "png-100k", "png-2^31", "png-thin", "jpeg-64k", "jpeg-9000", "webp-16k", "webp-2^24"])
async def test_pixel_bombs_are_image_too_large_before_decoding(bomb: bytes) -> None:
    started = time.monotonic()
    with pytest.raises(ImageTooLarge) as info:
        await check_image(io.BytesIO(bomb), param="mask", filename="m.png", size=len(bomb))
    assert info.value.code == "image_too_large" and info.value.param == "mask"
    assert time.monotonic() - started < 5  # refused on the header: decoding would take far longer


async def test_small_images_are_checked_inline_and_large_ones_in_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = asyncio.to_thread

    async def spy(fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(fn.__name__)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", spy)
    await check_image(io.BytesIO(PNG), param="a", filename="a", size=len(PNG))
    assert calls == []
    wide = encode("PNG", size=(600, 600))  # a small file, but too many pixels to decode on the loop
    await check_image(io.BytesIO(wide), param="b", filename="b", size=len(wide))
    big = Image.frombytes("RGB", (300, 300), random.Random(1).randbytes(300 * 300 * 3))  # ~270 KB
    buf = io.BytesIO()
    big.save(buf, "PNG")
    await check_image(buf, param="c", filename="c", size=len(buf.getvalue()))
    assert calls == ["_decode", "inspect_image"]


def test_the_check_is_cheap_for_small_images() -> None:
    started = time.perf_counter()
    for _ in range(200):
        inspect_image(io.BytesIO(PNG), param="x")
        inspect_image(io.BytesIO(JPEG), param="x")
    assert time.perf_counter() - started < 1.0  # ~0.1 ms each in practice
