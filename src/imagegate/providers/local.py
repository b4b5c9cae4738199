"""The built-in engine as a provider (`type = "local"`): no keys, no network, work in a worker thread.

`local-edit` edits (and makes variations of) images with classic operations; `local-draw` generates a
deterministic picture from the prompt, and can stream it: each partial image is one more layer drawn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from imagegate.core.errors import InvalidRequest
from imagegate.core.jobs import ImageJob, ImageResult, StreamEvent
from imagegate.core.media import ImageFormat
from imagegate.core.validation import parse_size
from imagegate.engine import (
    LAYERS,
    UnsupportedPrompt,
    draw_images,
    draw_layers,
    edit_images,
    encode,
    finish,
    vary_images,
)
from imagegate.imaging import output_image


class LocalProvider:
    """Runs jobs on this machine's CPU with at most `concurrency` at once."""

    def __init__(self, *, concurrency: int = 2) -> None:
        self._slots = asyncio.Semaphore(concurrency)

    async def run(self, job: ImageJob) -> ImageResult:
        fmt: ImageFormat = job.options.get("output_format", "png")
        size = parse_size(str(job.options.get("size", "")))
        common: dict[str, Any] = {"n": job.n, "size": size, "output_format": fmt,
                                  "output_compression": job.options.get("output_compression"),
                                  "seed": job.options.get("seed"), "background": job.options.get("background")}

        def run() -> list[bytes]:
            if job.operation == "generate":
                return draw_images(job.prompt, **common)
            if job.operation == "variation":
                return vary_images(job.images[0].read(), **common)
            return edit_images([image.read() for image in job.images], prompt=job.prompt,
                               mask=job.mask.read() if job.mask else None, **common)

        outputs = await self._work(run)
        return ImageResult(images=[output_image(data) for data in outputs], created=int(time.time()),
                           echo={"output_format": fmt})

    async def stream(self, job: ImageJob) -> AsyncGenerator[StreamEvent, None]:
        """A generation drawn layer by layer: `partial_images` partial images of the first picture (at most
        the layers before the last), then each of the n pictures finished."""
        fmt: ImageFormat = job.options.get("output_format", "png")
        size = parse_size(str(job.options.get("size", "")))
        partials = min(int(job.options.get("partial_images", 0)), LAYERS - 1)
        compression = job.options.get("output_compression")
        echo = {"output_format": fmt, "size": f"{size[0]}x{size[1]}" if size else "auto", "quality": "auto",
                "background": job.options.get("background", "auto")}
        for variant in range(job.n):
            def draw(variant: int = variant) -> list[bytes]:
                layers = draw_layers(job.prompt, variant=variant, size=size, seed=job.options.get("seed"))
                shown = layers[LAYERS - 1 - partials: LAYERS - 1] if variant == 0 else []
                return [*(encode(layer, fmt, compression) for layer in shown),
                        encode(finish(layers, job.options.get("background")), fmt, compression)]

            *partial, final = await self._work(draw)
            for index, data in enumerate(partial):
                yield StreamEvent(image=output_image(data), final=False, index=index, created_at=int(time.time()),
                                  echo=echo)
            yield StreamEvent(image=output_image(final), final=True, created_at=int(time.time()), echo=echo)

    async def _work(self, work: Callable[[], list[bytes]]) -> list[bytes]:
        async with self._slots:
            try:
                return await asyncio.to_thread(work)
            except UnsupportedPrompt as exc:
                raise InvalidRequest(
                    "The local-edit engine did not understand the prompt. It understands: "
                    + ", ".join(exc.understood) + ".", param="prompt", code="unsupported_prompt") from None

    async def aclose(self) -> None:
        return None
