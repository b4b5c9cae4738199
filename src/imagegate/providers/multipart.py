"""multipart/form-data bodies for upstream requests.

Small bodies are assembled in one buffer (one socket write); large ones stream from the spooled files in
1 MiB chunks with an exact Content-Length. aiohttp's FormData writes every part's headers, body and line
break separately, which costs a quarter of a forwarder's CPU on small requests.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from imagegate.core.media import SourceImage

_BUFFER_LIMIT = 4 * 1024 * 1024
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FilePart:
    name: str
    filename: str
    image: SourceImage


@dataclass(frozen=True, slots=True)
class MultipartBody:
    content_type: str
    length: int
    body: bytes | AsyncIterator[bytes]


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def build_multipart(fields: Sequence[tuple[str, str]], files: Sequence[FilePart]) -> MultipartBody:
    boundary = "imagegate" + secrets.token_hex(12)
    dash = f"--{boundary}\r\n".encode()
    heads: list[bytes] = []
    for name, value in fields:
        heads.append(dash + f'Content-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'.encode()
                     + value.encode() + b"\r\n")
    file_heads = [dash + (f'Content-Disposition: form-data; name="{_quote(p.name)}"; '
                          f'filename="{_quote(p.filename)}"\r\nContent-Type: {p.image.info.mime_type}\r\n\r\n'
                          ).encode() for p in files]
    tail = f"--{boundary}--\r\n".encode()
    length = (sum(map(len, heads)) + sum(map(len, file_heads)) + sum(p.image.size + 2 for p in files)
              + len(tail))
    content_type = f"multipart/form-data; boundary={boundary}"
    if length <= _BUFFER_LIMIT:
        pieces = list(heads)
        for head, part in zip(file_heads, files, strict=True):
            pieces += (head, part.image.read(), b"\r\n")
        pieces.append(tail)
        body = b"".join(pieces)
        return MultipartBody(content_type, len(body), body)
    return MultipartBody(content_type, length, _stream(b"".join(heads), file_heads, files, tail))


async def _stream(fields: bytes, file_heads: Sequence[bytes], files: Sequence[FilePart],
                  tail: bytes) -> AsyncIterator[bytes]:
    yield fields
    for head, part in zip(file_heads, files, strict=True):
        yield head
        file = part.image.file
        await asyncio.to_thread(file.seek, 0)
        while chunk := await asyncio.to_thread(file.read, _CHUNK):
            yield chunk
        yield b"\r\n"
    yield tail
