"""`data:image/...;base64,` URLs: decoded under the same byte limits as fetched images.

The declared media type is not trusted (the content check judges the bytes); it only has to say
`image/...`. Large payloads are decoded in a worker thread, in slices, straight into the spool file.
"""

from __future__ import annotations

import asyncio
import binascii
import io
import re
import tempfile
from typing import BinaryIO

from imagegate.core.errors import ImageTooLarge, InvalidImageURL
from imagegate.fetch.spool import Budget

_HEADER = re.compile(r"data:image/[a-z0-9][a-z0-9.+-]{0,63}(?:;[a-z0-9-]{1,32}=[a-z0-9._+-]{1,64})*;base64,",
                     re.IGNORECASE)
_SLICE = 4 * 256 * 1024  # Base64 characters decoded per step (1 MiB of output)
_THREAD_THRESHOLD = 256 * 1024


def is_data_url(text: str) -> bool:
    return text[:5].lower() == "data:"


def decoded_length(payload: str) -> int:
    """The byte length `payload` decodes to (exact for valid, padded Base64)."""
    return len(payload) // 4 * 3 - payload[-2:].count("=")


def _decode(payload: str, memory_bytes: int) -> BinaryIO:
    out: BinaryIO = io.BytesIO() if decoded_length(payload) <= memory_bytes else tempfile.TemporaryFile()
    try:
        for start in range(0, len(payload), _SLICE):
            out.write(binascii.a2b_base64(payload[start:start + _SLICE], strict_mode=True))
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out


async def decode_data_url(text: str, param: str, *, max_length: int, budget: Budget,
                          memory_bytes: int) -> tuple[BinaryIO, int]:
    """Decode a data: URL into a file; returns it with its size. Raises InvalidImageURL/ImageTooLarge."""
    if len(text) > max_length:
        raise ImageTooLarge(f"'{param}' is a data URL larger than {budget.per_image} bytes.", param=param)
    header = _HEADER.match(text)
    if header is None:
        raise InvalidImageURL(f"'{param}' must be an http(s) URL or a data:image/...;base64, URL.",
                              param=param)
    payload = text[header.end():]
    if not payload or len(payload) % 4 or not payload.isascii():
        raise InvalidImageURL(f"'{param}' is not valid Base64.", param=param)
    size = decoded_length(payload)
    budget.take(param, size, 0)
    try:
        if len(payload) > _THREAD_THRESHOLD:
            file = await asyncio.to_thread(_decode, payload, memory_bytes)
        else:
            file = _decode(payload, memory_bytes)
    except binascii.Error:
        raise InvalidImageURL(f"'{param}' is not valid Base64.", param=param) from None
    return file, size
