"""The built-in `local-edit` engine as a provider: no keys, no network, work in a worker thread."""

from __future__ import annotations

import asyncio
import time

from imagegate.core.edits import EditJob, EditResult
from imagegate.core.errors import InvalidRequest
from imagegate.core.media import ImageFormat
from imagegate.core.validation import parse_size
from imagegate.engine import UnsupportedPrompt, edit_images
from imagegate.imaging import output_image


class LocalProvider:
    """Runs edits on this machine's CPU with at most `concurrency` at once."""

    def __init__(self, *, concurrency: int = 2) -> None:
        self._slots = asyncio.Semaphore(concurrency)

    async def edit(self, job: EditJob) -> EditResult:
        fmt: ImageFormat = job.options.get("output_format", "png")
        size = parse_size(str(job.options.get("size", "")))

        def run() -> list[bytes]:
            return edit_images([image.read() for image in job.images], prompt=job.prompt,
                               mask=job.mask.read() if job.mask else None, n=job.n, size=size,
                               output_format=fmt, output_compression=job.options.get("output_compression"),
                               seed=job.options.get("seed"), background=job.options.get("background"))

        async with self._slots:
            try:
                outputs = await asyncio.to_thread(run)
            except UnsupportedPrompt as exc:
                raise InvalidRequest(
                    "The local-edit engine did not understand the prompt. It understands: "
                    + ", ".join(exc.understood) + ".", param="prompt", code="unsupported_prompt") from None
        return EditResult(images=[output_image(data) for data in outputs],
                          created=int(time.time()), echo={"output_format": fmt})

    async def aclose(self) -> None:
        return None
