"""Fixtures for the provider adapter tests: checked source images and edit jobs."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import pytest
from PIL import Image

from imagegate.core.jobs import ImageJob, Operation, ResponseFormat
from imagegate.core.media import SourceImage
from imagegate.imaging import check_image

SourceFactory = Callable[..., Awaitable[SourceImage]]
JobFactory = Callable[..., ImageJob]


def image_bytes(size: tuple[int, int] = (64, 64), fmt: str = "PNG", colour: tuple[int, ...] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    mode = "RGBA" if fmt == "PNG" else "RGB"
    Image.new(mode, size, colour[:3] + ((255,) if mode == "RGBA" else ())).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
async def source() -> AsyncIterator[SourceFactory]:
    """`await source(size=(w, h), fmt="PNG", param="image")`: a checked SourceImage, closed after the test."""
    made: list[SourceImage] = []

    async def make(size: tuple[int, int] = (64, 64), fmt: str = "PNG", param: str = "image") -> SourceImage:
        data = image_bytes(size, fmt, colour=(len(made) * 40 % 256, 30, 30))
        image = await check_image(io.BytesIO(data), param=param, filename=f"{param}.{fmt.lower()}", size=len(data))
        made.append(image)
        return image

    yield make
    for image in made:
        image.close()


@pytest.fixture
def make_job() -> JobFactory:
    def make(images: Sequence[SourceImage], *, model: str, upstream_model: str | None = None,
             prompt: str = "add a hat", n: int = 1, mask: SourceImage | None = None,
             options: Mapping[str, Any] | None = None, response_format: ResponseFormat = "b64_json",
             operation: Operation = "edit") -> ImageJob:
        return ImageJob(operation=operation, model=model, upstream_model=upstream_model or model, prompt=prompt,
                        n=n, images=images, mask=mask, options=dict(options or {}), response_format=response_format)

    return make
