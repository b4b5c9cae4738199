"""The one content check every incoming image passes, whatever route it came by.

An image is judged by its bytes, never by its name or declared Content-Type: the magic bytes pick the
format, only that Pillow plugin opens it, and its header must decode. Large images are checked in a worker
thread so the event loop never decodes.
"""

from __future__ import annotations

import asyncio
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from imagegate.core.errors import ImageTooLarge, InvalidImage
from imagegate.core.media import ImageFormat, ImageInfo, SourceImage

MAX_PIXELS = 8192 * 8192  # larger images are refused as decompression bombs
_THREAD_THRESHOLD = 256 * 1024

_PLUGIN_BY_FORMAT: dict[ImageFormat, str] = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def sniff_format(head: bytes) -> ImageFormat | None:
    """The image format named by the first bytes, or None when they are not PNG, JPEG or WebP."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def inspect_image(file: BinaryIO, *, param: str) -> ImageInfo:
    """Check that `file` holds a PNG, JPEG or WebP image and describe it. Synchronous."""
    file.seek(0)
    fmt = sniff_format(file.read(16))
    if fmt is None:
        raise InvalidImage(f"'{param}' is not a PNG, JPEG or WebP image.", param=param)
    file.seek(0)
    try:
        with Image.open(file, formats=[_PLUGIN_BY_FORMAT[fmt]]) as img:
            width, height = img.size
            mode = img.mode
            has_alpha = mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"'{param}' could not be decoded as a {fmt.upper()} image.", param=param) from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"'{param}' has too many pixels.", param=param) from exc
    if width <= 0 or height <= 0:
        raise InvalidImage(f"'{param}' has no pixels.", param=param)
    if width * height > MAX_PIXELS:
        raise ImageTooLarge(f"'{param}' has more than {MAX_PIXELS} pixels.", param=param)
    file.seek(0)
    return ImageInfo(format=fmt, width=width, height=height, mode=mode, has_alpha=has_alpha)


async def check_image(file: BinaryIO, *, param: str, filename: str, size: int) -> SourceImage:
    """Run the content check and wrap the file as a SourceImage. Off the event loop when large."""
    if size > _THREAD_THRESHOLD:
        info = await asyncio.to_thread(inspect_image, file, param=param)
    else:
        info = inspect_image(file, param=param)
    return SourceImage(param=param, filename=filename, size=size, info=info, file=file)
