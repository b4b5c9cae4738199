"""The one content check every incoming image passes, whatever route it came by (upload, file, URL).

An image is judged by its bytes, never by its name or declared Content-Type:

1. the magic bytes pick the format (PNG, JPEG or WebP; anything else is refused);
2. the dimensions are read from the format's own header, and more than MAX_PIXELS is refused as a
   decompression bomb (413) before Pillow allocates anything;
3. only that format's Pillow plugin opens the file, `verify()` checks its structure (PNG: every chunk's
   CRC), then a fresh open `load()`s it, which decodes the whole pixel stream. JPEG is decoded through
   `draft()` at 1/8 scale: every entropy-coded byte is still decoded (truncation and corruption are
   caught), at a fraction of the time and memory.

Cost (measured, Pillow 13): a 64x64 image takes ~0.1 ms and is checked inline; anything over 64 KiB or
256x256 pixels goes to a worker thread (a 1 MiB PNG ~5 ms, a 4096x4096 PNG ~200 ms), and decodes over
4096x4096 pixels share two process-wide slots so concurrent bombs-in-waiting cannot exhaust memory.

Output images (what an engine or upstream produced) get the cheap half of the check: magic bytes and the
dimensions their header declares, which must be plausible. That refuses noise, text and truncated headers
without decoding megapixels on every answer.
"""

from __future__ import annotations

import asyncio
import io
import struct
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import BinaryIO

from PIL import Image

from imagegate.core.errors import ImageTooLarge, InvalidImage
from imagegate.core.media import ImageFormat, ImageInfo, OutputImage, SourceImage

MAX_PIXELS = 8192 * 8192  # larger images are refused as decompression bombs (413)
_INLINE_BYTES = 64 * 1024
_INLINE_PIXELS = 256 * 256
_LARGE_PIXELS = 4096 * 4096
_LARGE_DECODES = threading.BoundedSemaphore(2)
_MAX_JPEG_SEGMENTS = 1024  # real files have a few dozen before the frame header

_PLUGIN_BY_FORMAT: dict[ImageFormat, str] = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def sniff_format(head: bytes) -> ImageFormat | None:
    """The image format named by the first bytes, or None when they are not PNG, JPEG or WebP."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _jpeg_size(file: BinaryIO) -> tuple[int, int] | None:
    file.seek(2)
    for _ in range(_MAX_JPEG_SEGMENTS):
        if file.read(1) != b"\xff":
            return None
        marker = file.read(1)
        while marker == b"\xff":  # fill bytes
            marker = file.read(1)
        if not marker or marker[0] in (0xD9, 0xDA):  # end of file, or scan data before a frame header
            return None
        if marker[0] == 0x01 or 0xD0 <= marker[0] <= 0xD8:  # markers without a length
            continue
        raw = file.read(2)
        if len(raw) < 2 or (length := int.from_bytes(raw, "big")) < 2:
            return None
        if marker[0] in _JPEG_SOF:
            frame = file.read(5)
            return (int.from_bytes(frame[3:5], "big"), int.from_bytes(frame[1:3], "big")) \
                if len(frame) == 5 else None
        file.seek(length - 2, io.SEEK_CUR)
    return None


def _declared_size(file: BinaryIO, fmt: ImageFormat, head: bytes) -> tuple[int, int] | None:
    """Width and height as the format's header states them, read without Pillow."""
    if fmt == "png":
        if head[8:16] != b"\x00\x00\x00\x0dIHDR" or len(head) < 24:
            return None
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    if fmt == "jpeg":
        return _jpeg_size(file)
    if len(head) < 30:
        return None
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        return (int.from_bytes(head[26:28], "little") & 0x3FFF,
                int.from_bytes(head[28:30], "little") & 0x3FFF)
    if chunk == b"VP8L" and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _probe(file: BinaryIO, param: str) -> tuple[ImageFormat, int, int]:
    """Magic bytes and header dimensions; cheap. Raises InvalidImage / ImageTooLarge."""
    file.seek(0)
    head = file.read(32)
    fmt = sniff_format(head)
    if fmt is None:
        raise InvalidImage(f"'{param}' is not a PNG, JPEG or WebP image.", param=param)
    size = _declared_size(file, fmt, head)
    if size is None:
        raise InvalidImage(f"'{param}' could not be decoded as a {fmt.upper()} image.", param=param)
    _check_pixels(size[0], size[1], param)
    return fmt, size[0], size[1]


def _check_pixels(width: int, height: int, param: str) -> None:
    if width <= 0 or height <= 0:
        raise InvalidImage(f"'{param}' has no pixels.", param=param)
    if width * height > MAX_PIXELS:
        raise ImageTooLarge(f"'{param}' has more than {MAX_PIXELS} pixels.", param=param)


def _decode(file: BinaryIO, fmt: ImageFormat, param: str) -> ImageInfo:
    """Open with only the format's plugin, verify, reopen and decode. Synchronous and CPU-bound."""
    plugins = [_PLUGIN_BY_FORMAT[fmt]]
    try:
        file.seek(0)
        with Image.open(file, formats=plugins) as img:
            width, height = img.size
            mode = img.mode
            has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
            _check_pixels(width, height, param)
            img.verify()
        file.seek(0)
        with Image.open(file, formats=plugins) as img:
            if fmt == "jpeg":
                img.draft(None, (max(1, width // 8), max(1, height // 8)))
            slot: AbstractContextManager[object] = (
                _LARGE_DECODES if width * height > _LARGE_PIXELS else nullcontext())
            with slot:
                img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"'{param}' has too many pixels.", param=param) from exc
    except (ImageTooLarge, InvalidImage, MemoryError):
        raise
    except Exception as exc:  # Pillow raises many types on hostile input; all mean "not a valid image"
        raise InvalidImage(f"'{param}' could not be decoded as a {fmt.upper()} image.",
                           param=param) from exc
    finally:
        file.seek(0)
    return ImageInfo(format=fmt, width=width, height=height, mode=mode, has_alpha=has_alpha)


def inspect_image(file: BinaryIO, *, param: str) -> ImageInfo:
    """Check that `file` holds a PNG, JPEG or WebP image and describe it. Synchronous; may be slow."""
    fmt, _, _ = _probe(file, param)
    return _decode(file, fmt, param)


async def check_image(file: BinaryIO, *, param: str, filename: str, size: int) -> SourceImage:
    """Run the content check and wrap the file as a SourceImage. Decodes off the event loop unless tiny."""
    if size <= _INLINE_BYTES:
        fmt, width, height = _probe(file, param)
        if width * height <= _INLINE_PIXELS:
            info = _decode(file, fmt, param)
        else:
            info = await asyncio.to_thread(_decode, file, fmt, param)
    else:
        info = await asyncio.to_thread(inspect_image, file, param=param)
    return SourceImage(param=param, filename=filename, size=size, info=info, file=file)


def output_image(data: bytes, *, b64_json: str | None = None) -> OutputImage:
    """`data` as an OutputImage once its header names PNG, JPEG or WebP and plausible dimensions.

    Raises InvalidImage (or ImageTooLarge); callers that received the bytes from an upstream translate it.
    """
    fmt, width, height = _probe(io.BytesIO(data), "output")
    return OutputImage(data=data, format=fmt, width=width, height=height, b64_json=b64_json)
