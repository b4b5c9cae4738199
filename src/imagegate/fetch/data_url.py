"""`data:image/...;base64,` URLs: decoded under the same byte limits as fetched images.

The declared media type is not trusted (the content check judges the bytes); it only has to say
`image/...`. Large payloads are decoded in a worker thread, in slices, straight into the spool file.
"""

from __future__ import annotations

import binascii
import io
import re
import tempfile
from dataclasses import dataclass
from typing import BinaryIO

from imagegate.core.errors import ImageTooLarge, InvalidImageURL
from imagegate.fetch.spool import Budget, open_in_thread

_HEADER = re.compile(r"data:image/[a-z0-9][a-z0-9.+-]{0,63}(?:;[a-z0-9-]{1,32}=[a-z0-9._+-]{1,64})*;base64,",
                     re.IGNORECASE)
_SLICE = 4 * 256 * 1024  # Base64 characters decoded per step (1 MiB of output)
_THREAD_THRESHOLD = 256 * 1024
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


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


@dataclass(frozen=True, slots=True)
class DataURL:
    """The Base64 payload of a data: URL whose syntax has been checked, not yet decoded."""

    payload: str

    @property
    def size(self) -> int:
        return decoded_length(self.payload)


def parse_data_url(text: str, param: str, *, max_length: int, max_bytes: int) -> DataURL:
    """Check a data: URL's syntax and length (cheap; before anything is fetched)."""
    if len(text) > max_length:
        raise ImageTooLarge(f"'{param}' is a data URL larger than {max_bytes} bytes.", param=param)
    header = _HEADER.match(text)
    if header is None:
        raise InvalidImageURL(f"'{param}' must be an http(s) URL or a data:image/...;base64, URL.",
                              param=param)
    payload = text[header.end():]
    if not payload or len(payload) % 4 or not payload.isascii():
        raise InvalidImageURL(f"'{param}' is not valid Base64.", param=param)
    # Small payloads are checked character by character here (~0.1 ms); large ones while being decoded
    # in a worker thread, so that a 67 MB string is never scanned on the event loop.
    if len(payload) <= _THREAD_THRESHOLD and payload.encode("ascii").translate(None, _ALPHABET):
        raise InvalidImageURL(f"'{param}' is not valid Base64.", param=param)
    return DataURL(payload)


async def decode_data_url(data: DataURL, param: str, *, budget: Budget, memory_bytes: int) -> BinaryIO:
    """Count the payload against the budget and decode it into a file. Raises InvalidImageURL/ImageTooLarge."""
    budget.take(param, data.size, 0)
    try:
        if len(data.payload) > _THREAD_THRESHOLD:
            return await open_in_thread(lambda: _decode(data.payload, memory_bytes))
        return _decode(data.payload, memory_bytes)
    except binascii.Error:
        raise InvalidImageURL(f"'{param}' is not valid Base64.", param=param) from None
