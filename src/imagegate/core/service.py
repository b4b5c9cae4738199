"""The edit service: one image edit from a validated request to a billed response."""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from imagegate.core.accounts import Caller
from imagegate.core.catalog import Catalog, Route
from imagegate.core.edits import EditJob, EditRequest, EditResult
from imagegate.core.errors import AllChannelsFailed, UpstreamError
from imagegate.core.media import MIME_TYPES, OutputImage, SourceImage
from imagegate.core.ports import BlobStore, ImageResolver, Ledger
from imagegate.core.pricing import CostInputs
from imagegate.core.validation import check_images, check_request, parse_size

log = logging.getLogger("imagegate.edits")


@dataclass(frozen=True, slots=True)
class EditResponse:
    created: int
    data: list[dict[str, str]]
    usage: Any
    billing_transaction_id: str
    echo: dict[str, Any]

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"created": self.created, "data": self.data}
        out.update(self.echo)
        if self.usage is not None:
            out["usage"] = self.usage
        out["billing_transaction_id"] = self.billing_transaction_id
        return out


class EditService:
    def __init__(self, catalog: Catalog, inputs: ImageResolver, ledger: Ledger, blobs: BlobStore) -> None:
        self._catalog = catalog
        self._inputs = inputs
        self._ledger = ledger
        self._blobs = blobs

    async def edit(self, caller: Caller, request: EditRequest) -> EditResponse:
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
            hold_id = await self._ledger.hold(caller, spec.price.estimate(costs), model=spec.id)
            try:
                job = EditJob(model=spec.id, upstream_model=spec.upstream_model, prompt=request.prompt,
                              n=request.n, images=images, mask=mask, options=options,
                              response_format=request.response_format)
                result = await self._run(self._catalog.routes(spec.id), job)
                data = await self._deliver(result.images, request.response_format)
            except BaseException:
                await self._ledger.release(hold_id)
                raise
            cost = result.cost_micros if result.cost_micros is not None else spec.price.actual(
                costs, result.usage)
            transaction_id = await self._ledger.settle(hold_id, cost)
        finally:
            for image in (*images, *([mask] if mask else [])):
                image.close()
        return EditResponse(created=result.created or int(time.time()), data=data, usage=result.usage,
                            billing_transaction_id=transaction_id, echo=dict(result.echo))

    async def _run(self, routes: Sequence[Route], job: EditJob) -> EditResult:
        """Try the routes in priority order; move on only after a retryable failure."""
        failures: list[UpstreamError] = []
        for route in routes:
            try:
                return await route.provider.edit(job)
            except UpstreamError as exc:
                log.warning("route %s failed for %s: %s", route.provider_name, job.model, exc.code)
                if not exc.retryable:
                    raise
                failures.append(exc)
        if len(failures) == 1:
            raise failures[0]
        retry_after = min((f.retry_after for f in failures if f.retry_after is not None), default=None)
        raise AllChannelsFailed(f"No provider could serve '{job.model}' right now. Try again later.",
                                retryable=True, retry_after=retry_after)

    async def _deliver(self, outputs: Sequence[OutputImage], response_format: str) -> list[dict[str, str]]:
        if response_format == "b64_json":
            return [{"b64_json": o.b64_json if o.b64_json is not None
                     else base64.b64encode(o.data or b"").decode()} for o in outputs]
        return [{"url": await self.store_output(o)} for o in outputs]

    async def store_output(self, output: OutputImage) -> str:
        """Put one output image in the blob store under an unguessable key; return its public URL."""
        data = output.data if output.data is not None else base64.b64decode(output.b64_json or "")
        key = f"outputs/{secrets.token_urlsafe(24)}.{output.format}"
        await self._blobs.put(key, data, MIME_TYPES[output.format])
        return self._blobs.public_url(key)
