"""POST /v1/images/edits, /generations and /variations: one handler, made per operation.

Each authenticates, parses the body into an ImageRequest, and hands it to the image service: run now (with
`Idempotency-Key`, answered once), accepted as a task, or streamed as server-sent events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from imagegate.api.auth import authenticate
from imagegate.api.errors import json_response
from imagegate.api.events import EventStreamResponse
from imagegate.api.idempotency import Keep, key_of, request_fingerprint, run_once
from imagegate.api.parsing import read_image_request
from imagegate.core.errors import InvalidRequest
from imagegate.core.idempotency import Reply
from imagegate.core.jobs import Operation
from imagegate.core.service import ImageResponse
from imagegate.core.tasks import TaskView

if TYPE_CHECKING:
    from imagegate.app import Gateway

ENDPOINT_NAMES: dict[Operation, str] = {"edit": "create_edit", "generate": "create_generation",
                                        "variation": "create_variation"}
_IDEMPOTENCY_ROUTES: dict[Operation, str] = {"edit": "images.edits", "generate": "images.generations",
                                             "variation": "images.variations"}


def image_endpoint(operation: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        gw: Gateway = request.app.state.gateway
        caller = await authenticate(request, gw.accounts)
        key = key_of(request)
        try:
            job = await read_image_request(operation, request, gw.settings.limits, gw.settings.api)
            if job.stream:
                if key is not None:
                    raise InvalidRequest("'Idempotency-Key' cannot be used with 'stream': a stream cannot be "
                                         "replayed.", param="Idempotency-Key")
                return EventStreamResponse(await gw.images.stream(caller, job), operation, job.options)

            async def handle(keep: Keep | None) -> Response:
                if keep is None:
                    return answer(await gw.images.run(caller, job))
                rendered: list[Response] = []  # the reply stored with the charge is the response sent

                def reply_for(outcome: ImageResponse | TaskView) -> Reply:
                    rendered.append(answer(outcome))
                    return keep(rendered[-1])

                outcome = await gw.images.run(caller, job, reply_for=reply_for)
                return rendered[-1] if rendered else answer(outcome)

            return await run_once(gw.idempotency, caller.account_id, key, _IDEMPOTENCY_ROUTES[operation],
                                  lambda: request_fingerprint(job), handle)
        finally:
            await request.close()

    endpoint.__name__ = endpoint.__qualname__ = ENDPOINT_NAMES[operation]  # how /metrics names it
    return endpoint


def answer(outcome: ImageResponse | TaskView) -> Response:
    if isinstance(outcome, TaskView):
        return json_response(outcome.body())
    return json_response(outcome.body(), headers={"X-Billing-Transaction-ID": outcome.billing_transaction_id})
