"""The image service: one image job (edit, generation or variation) from a validated request to a billed
answer, now, as an async task, or as a stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from imagegate.core.accounts import Caller
from imagegate.core.capabilities import ModelSpec
from imagegate.core.catalog import Catalog, Route
from imagegate.core.delivery import Delivery
from imagegate.core.errors import UpstreamError, UpstreamTimeout
from imagegate.core.idempotency import Reply
from imagegate.core.jobs import ImageJob, ImageRequest, ImageResult, StreamEvent
from imagegate.core.media import SourceImage
from imagegate.core.ports import BlobStore, ImageResolver, Ledger, ResumableProvider, StreamingProvider, TaskStore
from imagegate.core.pricing import CostInputs
from imagegate.core.routing import Router
from imagegate.core.tasks import StoredInput, TaskInput, TaskView, UpstreamJob, new_task_id
from imagegate.core.usage import TokenUsage, combined
from imagegate.core.validation import check_images, check_request, parse_size

log = logging.getLogger("imagegate.images")
T = TypeVar("T")
SUBMIT_GRACE = 30.0  # seconds a cancelled worker still gives a submission to be accepted and recorded
_HOLD_GRACE = 300.0  # seconds a task's hold outlives the task's deadline before the sweeper may release it


@dataclass(frozen=True, slots=True)
class ImageResponse:
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


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A request checked against its model, its images resolved: ready to hold money for and run."""

    spec: ModelSpec
    job: ImageJob
    costs: CostInputs


class ImageStream:
    """A streamed job whose hold is placed and whose first event has arrived. Iterate it once, and
    `aclose` it whatever happens (the edge does, when the answer ends).

    The hold settles from the final event's usage, in the iteration that yields it. A stream that ends
    otherwise (an upstream failure, the client leaving, never being iterated) is released by `aclose`,
    which also closes the upstream call.
    """

    def __init__(self, *, hold_id: str, first: StreamEvent, rest: AsyncGenerator[StreamEvent, None], model: str,
                 settle: Callable[[TokenUsage | None], Awaitable[None]], release: Callable[[], Awaitable[None]],
                 remaining: Callable[[], float]) -> None:
        self.billing_transaction_id = hold_id
        self._first, self._rest, self._model = first, rest, model
        self._settle, self._release, self._remaining = settle, release, remaining
        self._ended = False

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        """Each event as it arrives; a final image is held back until the next event (or the end) shows
        whether it was the last, so that the hold settles before the last image is handed over."""
        event: StreamEvent | None = self._first
        finals: list[StreamEvent] = []
        held: StreamEvent | None = None
        while event is not None:
            if held is not None:
                yield held
                held = None
            if event.final:
                finals.append(event)
                held = event
            else:
                yield event
            try:
                async with asyncio.timeout(max(0.0, self._remaining())):
                    event = await anext(self._rest)
            except TimeoutError:
                raise UpstreamTimeout(f"The stream for '{self._model}' ran out of time.") from None
            except StopAsyncIteration:
                event = None
        if held is None:
            raise UpstreamError(f"The stream for '{self._model}' ended without its final image.")
        await self._settle(combined([f.usage for f in finals]))
        self._ended = True
        yield held

    async def aclose(self) -> None:
        """End the stream: release the hold unless it settled, and close the upstream call."""
        try:
            if not self._ended:
                self._ended = True
                await asyncio.shield(self._release())
        finally:
            await self._rest.aclose()


ReplyFor = Callable[[ImageResponse | TaskView], Reply]


class ImageService:
    def __init__(self, catalog: Catalog, inputs: ImageResolver, ledger: Ledger, blobs: BlobStore,
                 tasks: TaskStore, router: Router, *, request_timeout: float = 600.0, task_deadline: float = 900.0,
                 task_retention: float = 86400.0, task_accepted: Callable[[], None] = lambda: None,
                 default_model: str | None = None) -> None:
        self._catalog = catalog
        self._default_model = default_model
        self._inputs = inputs
        self._ledger = ledger
        self._blobs = blobs
        self._tasks = tasks
        self._router = router
        self.delivery = Delivery(blobs)
        self._request_timeout = request_timeout
        self._task_deadline = task_deadline
        self._task_retention = task_retention
        self._task_accepted = task_accepted

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    async def run(self, caller: Caller, request: ImageRequest, *,
                  reply_for: ReplyFor | None = None) -> ImageResponse | TaskView:
        """Run the job now and answer with its images, or, for `async: true`, accept it as a task.

        With `reply_for`, the reply made of the answer is stored in the transaction that commits the
        charge: the settle, or the creation of the task.
        """
        async with self._prepared(caller, request) as prepared:
            if request.run_async:
                return await self._accept(caller, prepared, reply_for)
            return await self._run_now(caller, prepared, reply_for)

    async def stream(self, caller: Caller, request: ImageRequest) -> ImageStream:
        """Hold the estimate and open the stream on the model's routes; failures up to the first event are
        raised here (and fail over like any request), later ones end the stream's iteration."""
        deadline = self._router.clock() + self._request_timeout
        async with self._prepared(caller, request) as p:
            hold_id = await self._ledger.hold(caller, p.spec.price.estimate(p.costs), model=p.spec.id)
            try:
                first, rest = await self._router.run(self._catalog.routes(p.spec.id, p.job.operation),
                                                     lambda route: _open_stream(route, p.job),
                                                     model=p.spec.id, deadline=deadline)
            except BaseException:
                await self._ledger.release(hold_id)
                raise

        async def settle(usage: TokenUsage | None) -> None:
            await self._ledger.settle(hold_id, p.spec.price.actual(p.costs, usage))

        return ImageStream(hold_id=hold_id, first=first, rest=rest, model=p.spec.id, settle=settle,
                           release=lambda: self._ledger.release(hold_id),
                           remaining=lambda: deadline - self._router.clock())

    @contextlib.asynccontextmanager
    async def _prepared(self, caller: Caller, request: ImageRequest) -> AsyncIterator[_Prepared]:
        """Check the request, resolve and check its images (closed again on leaving), price it."""
        spec = self._catalog.spec(request.model) if request.model else \
            self._catalog.default_for(request.operation, self._default_model)
        caller.check_model(spec.id)
        rules = spec.rules(request.operation)
        options = check_request(rules, spec.id, request)
        images: list[SourceImage] = []
        mask: SourceImage | None = None
        try:
            resolved = await self._inputs.resolve(request.refs, caller)
            images, mask = resolved[: len(request.images)], (resolved[-1] if request.mask else None)
            check_images(rules, spec.id, images, mask)
            size = parse_size(str(options.get("size", "")))
            costs = CostInputs(n=request.n, prompt_chars=len(request.prompt),
                               input_pixels=tuple(i.info.width * i.info.height for i in images),
                               size=size, quality=options.get("quality"),
                               partial_images=int(options.get("partial_images", 0)) if request.stream else 0)
            job = ImageJob(operation=request.operation, model=spec.id, upstream_model=spec.upstream_model,
                           prompt=request.prompt, n=request.n, images=images, mask=mask, options=options,
                           response_format=request.response_format, max_output_bytes=spec.output_bytes(size))
            yield _Prepared(spec, job, costs)
        finally:
            for image in (*images, *([mask] if mask else [])):
                image.close()

    async def _run_now(self, caller: Caller, p: _Prepared, reply_for: ReplyFor | None) -> ImageResponse:
        hold_id = await self._ledger.hold(caller, p.spec.price.estimate(p.costs), model=p.spec.id)
        try:
            result = await self.execute(p.spec, p.job, deadline=self._router.clock() + self._request_timeout)
            cost = self.cost(p.spec, p.costs, result)
            data = await self.delivery.deliver(result.images, p.job.response_format)
            response = ImageResponse(created=result.created or int(time.time()), data=data, usage=result.usage,
                                     billing_transaction_id=hold_id, echo=dict(result.echo))
            reply = reply_for(response) if reply_for is not None else None
        except BaseException:
            await self._ledger.release(hold_id)
            raise
        await self._ledger.settle(hold_id, cost, reply=reply)
        return response

    async def _accept(self, caller: Caller, p: _Prepared, reply_for: ReplyFor | None) -> TaskView:
        """Hold the estimate, copy the inputs into the blob store and persist the task for a worker."""
        hold_id = await self._ledger.hold(caller, p.spec.price.estimate(p.costs), model=p.spec.id,
                                          ttl=self._task_deadline + _HOLD_GRACE)
        keys: list[str] = []

        async def keep(image: SourceImage) -> StoredInput:
            key = f"inputs/{secrets.token_urlsafe(24)}.{image.info.format}"
            await self._blobs.put_file(key, image.file, image.info.mime_type)
            keys.append(key)
            return StoredInput(key=key, param=image.param, filename=image.filename, size=image.size)

        job = p.job
        try:
            stored = [await keep(image) for image in job.images]
            task = TaskInput(operation=job.operation, model=p.spec.id, prompt=job.prompt, n=job.n,
                             options=dict(job.options), images=tuple(stored),
                             mask=await keep(job.mask) if job.mask else None, costs=p.costs)
            view = await self._tasks.create(new_task_id(), caller, task, hold_id=hold_id,
                                            deadline=self._task_deadline, retention=self._task_retention,
                                            reply_for=reply_for)
        except BaseException:
            await self._ledger.release(hold_id)
            await self.delivery.discard(keys)
            raise
        self._task_accepted()
        return view

    async def execute(self, spec: ModelSpec, job: ImageJob, *, deadline: float | None = None,
                      resume: UpstreamJob | None = None,
                      started: Callable[[UpstreamJob], Awaitable[None]] | None = None) -> ImageResult:
        """Run one job on the model's routes, within `deadline` (the router's clock) when given.

        With `started`, a provider that runs jobs of its own reports each accepted job through it before
        following it; from then on nothing is resubmitted elsewhere. `resume` follows such a job again.
        A submission is seen through to `started` even when the caller is cancelled meanwhile (a worker
        stopping), for up to SUBMIT_GRACE seconds: a job the upstream accepted is recorded, not lost.
        """
        routes = self._catalog.routes(spec.id, job.operation)
        if resume is not None:
            provider = next((r.provider for r in routes if r.provider_name == resume.route), None)
            if not isinstance(provider, ResumableProvider):
                raise UpstreamError(f"The provider '{resume.route}' that accepted this job is no longer "
                                    "configured.")
            return await provider.resume(resume.state, job)

        async def call(route: Route) -> ImageResult:
            provider = route.provider
            if started is None or not isinstance(provider, ResumableProvider):
                return await provider.run(job)

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

    def cost(self, spec: ModelSpec, costs: CostInputs, result: ImageResult) -> int:
        """The actual cost: the upstream's own figure when it reports one, else priced from its usage."""
        return result.cost_micros if result.cost_micros is not None else spec.price.actual(costs, result.usage)


async def _open_stream(route: Route, job: ImageJob) -> tuple[StreamEvent, AsyncGenerator[StreamEvent, None]]:
    """Start the stream on one route and wait for its first event (what failover is decided on)."""
    provider = route.provider
    if not isinstance(provider, StreamingProvider):
        raise UpstreamError(f"The provider '{route.provider_name}' cannot stream.")
    events = provider.stream(job)
    try:
        return await anext(events), events
    except StopAsyncIteration:
        await events.aclose()
        raise UpstreamError(f"The provider '{route.provider_name}' ended the stream before any image.",
                            retryable=True) from None
    except BaseException:
        await events.aclose()
        raise


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
