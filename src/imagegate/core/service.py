"""The edit service: one image edit from a validated request to a billed response."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from imagegate.core.accounts import Caller
from imagegate.core.capabilities import ModelSpec
from imagegate.core.catalog import Catalog, Route
from imagegate.core.edits import EditJob, EditRequest, EditResult
from imagegate.core.errors import UpstreamError
from imagegate.core.idempotency import Reply
from imagegate.core.media import OutputImage, SourceImage
from imagegate.core.ports import BlobStore, ImageResolver, Ledger, ResumableProvider, TaskStore
from imagegate.core.pricing import CostInputs
from imagegate.core.routing import Router
from imagegate.core.tasks import StoredInput, TaskInput, TaskView, UpstreamJob, new_task_id
from imagegate.core.usage import TokenUsage
from imagegate.core.validation import check_images, check_request, parse_size

log = logging.getLogger("imagegate.edits")
T = TypeVar("T")
_INLINE_ENCODE_BYTES = 256 * 1024  # larger outputs are Base64-encoded on a worker thread
SUBMIT_GRACE = 30.0  # seconds a cancelled worker still gives a submission to be accepted and recorded
_HOLD_GRACE = 300.0  # seconds a task's hold outlives the task's deadline before the sweeper may release it


@dataclass(frozen=True, slots=True)
class EditResponse:
    created: int
    data: list[dict[str, str]]
    usage: TokenUsage | None
    billing_transaction_id: str
    echo: dict[str, Any]

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"created": self.created, "data": self.data}
        out.update(self.echo)
        if self.usage is not None:
            out["usage"] = self.usage.to_json()
        out["billing_transaction_id"] = self.billing_transaction_id
        return out


ReplyFor = Callable[[EditResponse | TaskView], Reply]


class EditService:
    def __init__(self, catalog: Catalog, inputs: ImageResolver, ledger: Ledger, blobs: BlobStore,
                 tasks: TaskStore, router: Router, *, request_timeout: float = 600.0, task_deadline: float = 900.0,
                 task_retention: float = 86400.0, task_accepted: Callable[[], None] = lambda: None) -> None:
        self._catalog = catalog
        self._inputs = inputs
        self._ledger = ledger
        self._blobs = blobs
        self._tasks = tasks
        self._router = router
        self._request_timeout = request_timeout
        self._task_deadline = task_deadline
        self._task_retention = task_retention
        self._task_accepted = task_accepted

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    async def edit(self, caller: Caller, request: EditRequest, *,
                   reply_for: ReplyFor | None = None) -> EditResponse | TaskView:
        """Run the edit now and answer with its images, or, for `async: true`, accept it as a task.

        With `reply_for`, the reply made of the answer is stored in the transaction that commits the
        charge: the settle, or the creation of the task.
        """
        spec = self._catalog.spec(request.model)
        caller.check_model(spec.id)
        options = check_request(spec, prompt=request.prompt, image_count=len(request.images),
                                has_mask=request.mask is not None, run_async=request.run_async,
                                options=request.options)
        images: list[SourceImage] = []
        mask: SourceImage | None = None
        try:
            refs = [*request.images, *([request.mask] if request.mask is not None else [])]
            resolved = await self._inputs.resolve(refs, caller)
            images, mask = resolved[: len(request.images)], (resolved[-1] if request.mask else None)
            check_images(spec, images, mask)
            size = parse_size(str(options.get("size", "")))
            costs = CostInputs(n=request.n, prompt_chars=len(request.prompt),
                               input_pixels=tuple(i.info.width * i.info.height for i in images),
                               size=size, quality=options.get("quality"))
            job = EditJob(model=spec.id, upstream_model=spec.upstream_model, prompt=request.prompt,
                          n=request.n, images=images, mask=mask, options=options,
                          response_format=request.response_format, max_output_bytes=spec.output_bytes(size))
            if request.run_async:
                return await self._accept(caller, spec, job, costs, reply_for)
            return await self._run_now(caller, spec, job, costs, reply_for)
        finally:
            for image in (*images, *([mask] if mask else [])):
                image.close()

    async def _run_now(self, caller: Caller, spec: ModelSpec, job: EditJob, costs: CostInputs,
                       reply_for: ReplyFor | None) -> EditResponse:
        hold_id = await self._ledger.hold(caller, spec.price.estimate(costs), model=spec.id)
        try:
            result = await self.execute(spec, job, deadline=self._router.clock() + self._request_timeout)
            cost = self.cost(spec, costs, result)
            data = await self._deliver(result.images, job.response_format)
            response = EditResponse(created=result.created or int(time.time()), data=data, usage=result.usage,
                                    billing_transaction_id=hold_id, echo=dict(result.echo))
            reply = reply_for(response) if reply_for is not None else None
        except BaseException:
            await self._ledger.release(hold_id)
            raise
        await self._ledger.settle(hold_id, cost, reply=reply)
        return response

    async def _accept(self, caller: Caller, spec: ModelSpec, job: EditJob, costs: CostInputs,
                      reply_for: ReplyFor | None) -> TaskView:
        """Hold the estimate, copy the inputs into the blob store and persist the task for a worker."""
        hold_id = await self._ledger.hold(caller, spec.price.estimate(costs), model=spec.id,
                                          ttl=self._task_deadline + _HOLD_GRACE)
        keys: list[str] = []

        async def keep(image: SourceImage) -> StoredInput:
            key = f"inputs/{secrets.token_urlsafe(24)}.{image.info.format}"
            await self._blobs.put_file(key, image.file, image.info.mime_type)
            keys.append(key)
            return StoredInput(key=key, param=image.param, filename=image.filename, size=image.size)

        try:
            stored = [await keep(image) for image in job.images]
            task = TaskInput(model=spec.id, prompt=job.prompt, n=job.n, options=dict(job.options),
                             images=tuple(stored), mask=await keep(job.mask) if job.mask else None, costs=costs)
            view = await self._tasks.create(new_task_id(), caller, task, hold_id=hold_id,
                                            deadline=self._task_deadline, retention=self._task_retention,
                                            reply_for=reply_for)
        except BaseException:
            await self._ledger.release(hold_id)
            await self.discard(keys)
            raise
        self._task_accepted()
        return view

    async def execute(self, spec: ModelSpec, job: EditJob, *, deadline: float | None = None,
                      resume: UpstreamJob | None = None,
                      started: Callable[[UpstreamJob], Awaitable[None]] | None = None) -> EditResult:
        """Run one job on the model's routes, within `deadline` (the router's clock) when given.

        With `started`, a provider that runs jobs of its own reports each accepted job through it before
        following it; from then on nothing is resubmitted elsewhere. `resume` follows such a job again.
        A submission is seen through to `started` even when the caller is cancelled meanwhile (a worker
        stopping), for up to SUBMIT_GRACE seconds: a job the upstream accepted is recorded, not lost.
        """
        routes = self._catalog.routes(spec.id)
        if resume is not None:
            provider = next((r.provider for r in routes if r.provider_name == resume.route), None)
            if not isinstance(provider, ResumableProvider):
                raise UpstreamError(f"The provider '{resume.route}' that accepted this job is no longer "
                                    "configured.")
            return await provider.resume(resume.state, job)

        async def call(route: Route) -> EditResult:
            provider = route.provider
            if started is None or not isinstance(provider, ResumableProvider):
                return await provider.edit(job)

            async def submit() -> Mapping[str, Any]:
                state = await provider.start(job)
                await started(UpstreamJob(route.provider_name, state))
                return state

            state = await _despite_cancel(submit(), SUBMIT_GRACE)
            try:
                return await provider.resume(state, job)
            except UpstreamError as exc:
                exc.retryable = False  # accepted upstream, maybe billed there: never resubmitted elsewhere
                raise

        return await self._router.run(routes, call, model=job.model, deadline=deadline)

    def cost(self, spec: ModelSpec, costs: CostInputs, result: EditResult) -> int:
        """The actual cost: the upstream's own figure when it reports one, else priced from its usage."""
        return result.cost_micros if result.cost_micros is not None else spec.price.actual(costs, result.usage)

    async def _deliver(self, outputs: Sequence[OutputImage], response_format: str) -> list[dict[str, str]]:
        if response_format == "b64_json":
            return [{"b64_json": await _b64(o)} for o in outputs]
        return (await self.deliver_urls(outputs))[0]

    async def deliver_urls(self, outputs: Sequence[OutputImage]) -> tuple[list[dict[str, str]], list[str]]:
        """Store every output; the `{"url": …}` items and their blob keys. All or none are kept."""
        keys: list[str] = []
        try:
            for output in outputs:
                keys.append(await self.store_output(output))
        except BaseException:
            await self.discard(keys)
            raise
        return [{"url": self._blobs.public_url(key)} for key in keys], keys

    async def store_output(self, output: OutputImage) -> str:
        """Put one output image in the blob store under an unguessable key; return the key."""
        key = f"outputs/{secrets.token_urlsafe(24)}.{output.format}"
        await self._blobs.put(key, output.data, output.mime_type)
        return key

    async def discard(self, keys: Sequence[str]) -> None:
        """Delete blobs nobody will be shown; a failure here is logged, never raised."""
        for key in keys:
            try:
                await self._blobs.delete(key)
            except Exception:
                log.warning("could not delete blob %s", key, exc_info=True)


async def _b64(output: OutputImage) -> str:
    """The image as Base64 text: as it arrived when it came so, else encoded (large ones on a worker thread)."""
    if output.b64_json is not None:
        return output.b64_json

    def encode() -> str:
        return base64.b64encode(output.data).decode("ascii")

    return encode() if len(output.data) <= _INLINE_ENCODE_BYTES else await asyncio.to_thread(encode)


async def _despite_cancel(work: Coroutine[Any, Any, T], grace: float) -> T:
    """Await `work`; if the caller is cancelled meanwhile, let `work` finish first (at most `grace` seconds
    more), then pass the cancellation on."""
    inner = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(inner)
    except asyncio.CancelledError:
        done, _ = await asyncio.wait([inner], timeout=grace)
        if not done:
            inner.cancel()
            await asyncio.wait([inner])
        raise
