"""The sweeper: a loop in every gateway process that ends what nobody will end otherwise.

Each pass fails overdue tasks that no worker holds, releases the holds of processes that died and holds
that outlived their request, purges
expired tasks, idempotency records and uploaded files, and deletes stored images past their retention,
including those a crash left without an owner. Every step is safe to run in several processes at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence

from imagegate.config import Settings
from imagegate.core.ports import BlobStore, Ledger, TaskStore
from imagegate.core.tasks import TIMED_OUT
from imagegate.db.files import FileRepository
from imagegate.db.idempotency import SqlIdempotencyStore
from imagegate.db.presence import Presence

log = logging.getLogger("imagegate.sweeper")
_ORPHAN_MARGIN = 3600.0  # seconds past its owner's end before a blob without an owner is deleted
_BLOB_SCAN_EVERY = 600.0  # seconds between scans of the blob store (retentions are hours to days)


class Sweeper:
    def __init__(self, settings: Settings, tasks: TaskStore, ledger: Ledger, blobs: BlobStore,
                 files: FileRepository, idempotency: SqlIdempotencyStore, presence: Presence,
                 discard: Callable[[Sequence[str]], Awaitable[None]], *,
                 ended: Callable[[str], None] = lambda outcome: None) -> None:
        self._settings = settings
        self._tasks = tasks
        self._ledger = ledger
        self._blobs = blobs
        self._files = files
        self._idempotency = idempotency
        self._presence = presence
        self._discard = discard
        self._ended = ended
        self._loop: asyncio.Task[None] | None = None
        self._blobs_scanned_at = -math.inf

    def start(self) -> None:
        self._loop = asyncio.create_task(self._forever(), name="sweeper")

    async def aclose(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None

    async def _forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep failed")
            await asyncio.sleep(self._settings.billing.sweep_interval)

    async def sweep(self) -> None:
        for task_id in await self._tasks.overdue():
            if await self._tasks.fail(task_id, None, code="timeout", message=TIMED_OUT):
                log.info("task %s failed: deadline passed while no worker held it", task_id)
                self._ended("timeout")
        released = await self._presence.reap()
        if released:
            log.warning("released %d hold(s) of processes that died", released)
        released = await self._ledger.release_expired()
        if released:
            log.warning("released %d hold(s) whose request outlived them", released)
        await self._discard(await self._tasks.purge_expired())
        await self._idempotency.purge_expired()
        await self._discard(await self._files.purge_expired())
        if time.monotonic() - self._blobs_scanned_at >= _BLOB_SCAN_EVERY:
            await self._remove_old_blobs()
            self._blobs_scanned_at = time.monotonic()

    async def _remove_old_blobs(self) -> None:
        """Images past their retention: sync results (which have no row), and blobs a crash left behind.

        An output outlives its task (it is written after the task began), an input its task's deadline
        (the deadline is shorter than the retention), and an uploaded file its row (written just before).
        """
        s = self._settings
        for prefix, age in (("outputs/", s.storage.output_retention), ("inputs/", s.tasks.retention),
                            ("files/", s.storage.file_retention + _ORPHAN_MARGIN)):
            removed = await self._blobs.remove_older_than(prefix, age)
            if removed:
                log.info("deleted %d stored image(s) under %s past their retention", removed, prefix)
