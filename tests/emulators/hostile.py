"""A hostile upstream: an OpenAI-style images server on a loopback port that answers in every wrong way.

    async with HostileUpstream() as up:
        up.behaviour = "gzip_bomb"
        ...  # point an `openai` provider at up.base_url

Every behaviour answers `POST /v1/images/edits` (and `/v1/images/generations`); `GET /sample/{name}` serves
the same behaviours as a result download (a BFL sample, an xAI URL). `behaviour = "ok"` answers a real
image, so a test can show the gateway healthy first. `requests` counts what arrived.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import struct
import zlib
from functools import lru_cache
from typing import Any, ClassVar

import orjson
from aiohttp import web
from PIL import Image

from .base import LoopbackEmulator

BEHAVIOURS = (
    "ok",  # a real image and real usage
    "usage_not_numbers",  # a real image; token counts that are text
    "random_b64",  # Base64 of random bytes
    "not_b64",  # b64_json that is not Base64
    "not_json",  # 200 with an HTML page
    "missing_data",  # 200 with JSON and no `data`
    "endless",  # a chunked body that never ends
    "gzip_bomb",  # Content-Encoding: gzip, a few MB that inflate to 1 GiB
    "huge_length",  # Content-Length: 2 GB, then nothing
    "drip",  # a valid-looking body, one byte every `drip_interval` seconds
    "reset_mid_body",  # half the declared body, then the connection is cut
    "hang",  # never answers
)
BOMB_INFLATED = 1024 * 1024 * 1024


@lru_cache(maxsize=1)
def gzip_bomb() -> bytes:
    """1 GiB of zeros as one gzip member of about 1 MB.

    Deflate restarted by a full flush compresses every further 16 MiB of zeros to the same bytes, so the
    member is built from one such block repeated, with the real CRC and length in its trailer.
    """
    zeros = bytes(16 * 1024 * 1024)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    count = BOMB_INFLATED // len(zeros)
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + first + block * (count - 1) + packer.flush() + struct.pack("<II", crc, BOMB_INFLATED % 2**32)


def png(size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


class HostileUpstream(LoopbackEmulator):
    shutdown_timeout: ClassVar[float] = 0.2
    failure_route: ClassVar[str | None] = "answer"

    def __init__(self, *, behaviour: str = "ok", drip_interval: float = 0.05, noise_bytes: int = 4096,
                 endless_limit: int = 512 * 1024 * 1024, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.behaviour = behaviour
        self.drip_interval = drip_interval
        self.noise_bytes = noise_bytes  # how much random data `random_b64` sends
        self.endless_limit = endless_limit  # `endless` stalls after this much: a broken client cannot eat the machine
        self.sent_bytes = 0  # body bytes written by the last streaming answer

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def sample_url(self, name: str = "result.png") -> str:
        return f"{self.url}/sample/{name}"

    def _routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/images/edits", self._answer)
        router.add_post("/v1/images/generations", self._answer)
        router.add_get("/sample/{name}", self._sample)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        canned = await self._failure(request, "answer")
        return canned if canned is not None else await self._play(request, json_answer=True)

    async def _sample(self, request: web.Request) -> web.StreamResponse:
        return await self._play(request, json_answer=False)

    def _images_response(self, b64: str, usage: Any) -> bytes:
        return orjson.dumps({"created": 1_700_000_000, "data": [{"b64_json": b64}], "usage": usage,
                             "output_format": "png", "size": "1024x1024", "quality": "low"})

    async def _play(self, request: web.Request, *, json_answer: bool) -> web.StreamResponse:
        kind = self.behaviour
        good = png()
        usage = {"input_tokens": 50, "output_tokens": 272, "total_tokens": 322,
                 "input_tokens_details": {"text_tokens": 10, "image_tokens": 40}}

        def body(b64: str, usage: Any = usage, raw: bytes = good) -> bytes:
            return self._images_response(b64, usage) if json_answer else raw

        if kind == "ok":
            return web.Response(body=body(base64.b64encode(good).decode()), content_type=_ctype(json_answer))
        if kind == "usage_not_numbers":
            bad = {"input_tokens": "many", "output_tokens": {"n": 1}, "total_tokens": None}
            return web.Response(body=body(base64.b64encode(good).decode(), bad), content_type=_ctype(json_answer))
        if kind == "random_b64":
            noise = os.urandom(self.noise_bytes)
            return web.Response(body=body(base64.b64encode(noise).decode(), raw=noise),
                                content_type=_ctype(json_answer))
        if kind == "not_b64":
            return web.Response(body=body("<<this is not base64>>", raw=b"<<not an image>>"),
                                content_type=_ctype(json_answer))
        if kind == "not_json":
            return web.Response(text="<html><body>Bad gateway</body></html>", content_type="text/html")
        if kind == "missing_data":
            return web.Response(body=orjson.dumps({"created": 1_700_000_000}), content_type="application/json")
        if kind == "hang":
            await self._hang()
        self.sent_bytes = 0
        response = web.StreamResponse(status=200, headers={"Content-Type": _ctype(json_answer)})
        if kind == "gzip_bomb":
            bomb = gzip_bomb()
            response.headers["Content-Encoding"] = "gzip"
            response.content_length = len(bomb)
            await response.prepare(request)
            for start in range(0, len(bomb), 256 * 1024):
                await self._write(response, bomb[start:start + 256 * 1024])
            return response
        if kind == "huge_length":
            response.content_length = 2 * 1024 ** 3
            await response.prepare(request)
            await self._hang()
        if kind == "reset_mid_body":
            whole = body(base64.b64encode(png((512, 512))).decode())
            response.content_length = len(whole)
            await response.prepare(request)
            await self._write(response, whole[: len(whole) // 2])
            assert request.transport is not None
            request.transport.abort()
            return response
        await response.prepare(request)
        if kind == "endless":
            chunk = b'{"data": [{"b64_json": "' + b"A" * (1024 * 1024 - 24)
            while self.sent_bytes < self.endless_limit:
                await self._write(response, chunk)
            await self._hang()
        if kind == "drip":
            while True:
                await self._write(response, b" ")
                await asyncio.sleep(self.drip_interval)
        raise ValueError(f"unknown behaviour {kind!r}")

    async def _write(self, response: web.StreamResponse, data: bytes) -> None:
        try:
            await response.write(data)
        except ConnectionError:  # the client gave up on the answer, as it should
            await self._hang()
        self.sent_bytes += len(data)


def _ctype(json_answer: bool) -> str:
    return "application/json" if json_answer else "image/png"
