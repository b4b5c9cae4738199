"""Where fetched bytes go while they arrive: a byte budget and a memory-then-disk spool."""

from __future__ import annotations

import asyncio
import contextlib
import io
import tempfile
from collections.abc import Callable
from typing import BinaryIO

from imagegate.core.errors import ImageTooLarge

_FLUSH_BYTES = 1024 * 1024  # once on disk, write in batches of this size (one thread hop each)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


async def open_in_thread(make: Callable[[], BinaryIO]) -> BinaryIO:
    """Run `make` (which opens a file) in a worker thread without leaking the file on cancellation.

    A cancelled `to_thread` leaves the thread running; its result would be dropped unclosed. Here the
    work is shielded and, if the caller is cancelled, the thread is waited for and its file closed
    before the cancellation goes on.
    """
    task = asyncio.ensure_future(asyncio.to_thread(make))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_close_result)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([task])
        raise


def _close_result(done: asyncio.Future[BinaryIO]) -> None:
    if not done.cancelled() and done.exception() is None:
        done.result().close()


class Budget:
    """Bytes counted as they stream: per image, and for all images of one request together."""

    def __init__(self, per_image: int, total: int) -> None:
        self.per_image = per_image
        self.total = total
        self.used = 0

    def image_too_large(self, param: str) -> ImageTooLarge:
        return ImageTooLarge(f"'{param}' is larger than {_mb(self.per_image)}.", param=param)

    def total_too_large(self, param: str) -> ImageTooLarge:
        return ImageTooLarge(f"The images of this request are larger than {_mb(self.total)} in total "
                             f"('{param}' crossed the limit).", param=param)

    def take(self, param: str, n: int, image_so_far: int) -> None:
        """Count `n` more bytes of an image that already has `image_so_far`."""
        if image_so_far + n > self.per_image:
            raise self.image_too_large(param)
        if self.used + n > self.total:
            raise self.total_too_large(param)
        self.used += n


class Spool:
    """Keeps a body in memory up to `memory_bytes`, then in an anonymous temporary file.

    Disk writes run in a worker thread, batched, so the event loop never blocks on the disk.
    """

    def __init__(self, memory_bytes: int) -> None:
        self._memory_bytes = memory_bytes
        self._pending = bytearray()
        self._file: BinaryIO | None = None
        self.size = 0

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        self._pending += data
        if self._file is None and len(self._pending) <= self._memory_bytes:
            return
        if self._file is None or len(self._pending) >= _FLUSH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if self._file is None:
            self._file = await open_in_thread(tempfile.TemporaryFile)
        data = bytes(self._pending)
        self._pending.clear()
        await asyncio.to_thread(self._file.write, data)

    async def finish(self) -> BinaryIO:
        """The whole body as a seekable file positioned at 0. The caller owns (and closes) it."""
        if self._file is None:
            file: BinaryIO = io.BytesIO(bytes(self._pending))
            self._pending.clear()
            return file
        if self._pending:
            await self._flush()
        file, self._file = self._file, None
        file.seek(0)
        return file

    def close(self) -> None:
        self._pending.clear()
        if self._file is not None:
            self._file.close()
            self._file = None
