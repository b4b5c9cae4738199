"""Workers that run persisted async tasks.

Each gateway process runs `workers` loops. A loop claims a task with a lease, keeps the lease alive with a
heartbeat while the edit runs, and ends the task exactly once: completed (hold settled) or failed (hold
released). A worker that loses its lease stops and leaves the task to its new owner. A process that dies
leaves its leases to run out; one that stops in good order stops claiming at once (`stop_claiming`, on
the stop signal), lets a submission in flight finish and record its upstream job (see
ImageService.execute), then hands its leases back. Either way the task is then claimed again, and a job
the upstream had already accepted is followed again rather than submitted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from imagegate.config import TaskSettings
from imagegate.core.errors import GatewayError
from imagegate.core.jobs import ImageJob
from imagegate.core.media import SourceImage
from imagegate.core.ports import BlobStore, TaskStore
from imagegate.core.service import ImageService
from imagegate.core.tasks import TIMED_OUT, ClaimedTask, LeaseLost, UpstreamJob
from imagegate.db.presence import new_instance_id
from imagegate.inputs import load_image

log = logging.getLogger("imagegate.tasks")


class TaskRunner:
    def __init__(self, store: TaskStore, images: ImageService, blobs: BlobStore, settings: TaskSettings, *,
                 wake: asyncio.Event | None = None, ended: Callable[[str], None] = lambda outcome: None,
                 owner: str | None = None) -> None:
        self._store = store
        self._images = images
        self._blobs = blobs
        self._settings = settings
        self._ended = ended  # told "completed" or the error code of every task this process ends
        self.owner = owner or new_instance_id()
        self._wake = wake or asyncio.Event()  # set when a task is created: idle workers look at once
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False

    def start(self) -> None:
        self._loops = [asyncio.create_task(self._work(), name=f"task-worker-{i}")
                       for i in range(self._settings.workers)]

    def stop_claiming(self) -> None:
        """Take no new task from now on; the tasks running go on until `aclose`."""
        self._stopping = True
        self._wake.set()

    async def aclose(self) -> None:
        """Stop the loops and hand back the tasks they were running, for another worker to take at once."""
        self.stop_claiming()
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []
        try:
            handed = await self._store.hand_back(self.owner)
        except Exception:
            log.warning("could not hand back the tasks of %s; their leases will run out", self.owner, exc_info=True)
            return
        if handed:
            log.info("handed back %d task(s) of %s", handed, self.owner)

    # --- workers -----------------------------------------------------------------------------------
    async def _work(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                ran = await self.run_once()
            except Exception:
                log.exception("task worker %s: claiming failed", self.owner)
                ran = False
            if not ran:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._settings.poll_interval):
                        await self._wake.wait()

    async def run_once(self) -> bool:
        """Claim one runnable task and run it to an end (or until the lease is lost). False: none."""
        if self._stopping:
            return False
        task = await self._store.claim(self.owner, self._settings.lease)
        if task is None:
            return False
        log.info("task %s claimed by %s (attempt %d)", task.id, self.owner, task.attempts)
        if task.attempts > self._settings.max_attempts:
            await self._fail(task, "task_interrupted", "The task was interrupted too many times and was stopped; "
                             "it was not billed.")
            return True
        work = asyncio.create_task(self._run(task))
        beat = asyncio.create_task(self._heartbeat(task.id, work))
        try:
            await asyncio.wait([work])  # unlike awaiting `work`, not ended by the heartbeat cancelling it
        except asyncio.CancelledError:
            work.cancel()
            await asyncio.wait([work])  # ended before the caller goes on: nothing is saved after a hand-back
            raise
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        if not work.cancelled() and work.exception() is not None:
            log.error("task %s: worker error", task.id, exc_info=work.exception())
        return True

    async def _heartbeat(self, task_id: str, work: asyncio.Task[None]) -> None:
        while True:
            await asyncio.sleep(self._settings.lease / 3)
            try:
                kept = await self._store.heartbeat(task_id, self.owner, self._settings.lease)
            except Exception:
                log.warning("task %s: heartbeat failed", task_id, exc_info=True)
                continue
            if not kept:
                log.warning("task %s: lease lost by %s; stopping", task_id, self.owner)
                work.cancel()
                return

    async def _run(self, task: ClaimedTask) -> None:
        try:
            async with asyncio.timeout(task.deadline - time.time()):
                await self._execute(task)
        except LeaseLost:
            log.warning("task %s: lease lost by %s before it could be saved", task.id, self.owner)
        except TimeoutError:
            await self._fail(task, "timeout", TIMED_OUT)
        except GatewayError as exc:
            await self._fail(task, exc.code, exc.message)
        except Exception:
            log.exception("task %s failed unexpectedly", task.id)
            await self._fail(task, "internal_error", "The gateway failed to run the task; it was not billed.")

    async def _execute(self, task: ClaimedTask) -> None:
        spec = self._images.catalog.spec(task.input.model)
        sources: list[SourceImage] = []
        try:
            for stored in (*task.input.images, *([task.input.mask] if task.input.mask else [])):
                sources.append(await load_image(self._blobs, stored.key, param=stored.param,
                                                filename=stored.filename, size=stored.size))
            images, mask = (sources[:-1], sources[-1]) if task.input.mask else (sources, None)
            job = ImageJob(operation=task.input.operation, model=spec.id, upstream_model=spec.upstream_model,
                           prompt=task.input.prompt, n=task.input.n, images=images, mask=mask,
                           options=task.input.options, response_format="url",
                           max_output_bytes=spec.output_bytes(task.input.costs.size))

            async def started(upstream: UpstreamJob) -> None:
                if not await self._store.save_upstream(task.id, self.owner, upstream):
                    raise LeaseLost(task.id)

            result = await self._images.execute(spec, job, resume=task.upstream, started=started)
        finally:
            for source in sources:
                source.close()
        cost = self._images.cost(spec, task.input.costs, result)
        data, keys = await self._images.delivery.deliver_urls(result.images)
        usage = result.usage.to_json() if result.usage is not None else None
        if not await self._store.complete(task.id, self.owner, data=data, usage=usage, output_keys=keys,
                                          cost=cost):
            await self._images.delivery.discard(keys)
            raise LeaseLost(task.id)
        log.info("task %s completed; charged %d micro-USD", task.id, cost)
        self._ended("completed")
        await self._images.delivery.discard(task.input.blob_keys())

    async def _fail(self, task: ClaimedTask, code: str, message: str) -> None:
        if await self._store.fail(task.id, self.owner, code=code, message=message):
            log.info("task %s failed: %s", task.id, code)
            self._ended(code)
            await self._images.delivery.discard(task.input.blob_keys())
