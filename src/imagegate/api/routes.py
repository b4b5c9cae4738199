"""The HTTP routes. Each handler authenticates, parses, calls one service, and shapes the answer.

The image operations are in images.py and the Files API in files.py; this module holds the table and the
small read-only handlers (tasks, models, output images, health, metrics, this API's own description).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from imagegate import __version__
from imagegate.api import files, openapi
from imagegate.api.auth import authenticate
from imagegate.api.errors import json_response
from imagegate.api.images import image_endpoint
from imagegate.core.errors import ModelNotFound, NotFound
from imagegate.core.media import MIME_TYPES
from imagegate.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

if TYPE_CHECKING:
    from imagegate.app import Gateway

PUBLIC_BLOBS = "outputs/"


class TaskIdConvertor(Convertor[str]):
    """A task id in a path under /v1/images/: any segment but an operation's name, so that
    `GET /v1/images/edits` is the edits route answering 405, not a task lookup."""

    regex = "(?!(?:edits|generations|variations)$)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("task_id", TaskIdConvertor())


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


_OPENAPI = orjson.dumps(openapi.document(__version__))


async def openapi_document(request: Request) -> Response:
    return Response(_OPENAPI, media_type="application/json")


async def metrics(request: Request) -> Response:
    return Response(_gateway(request).metrics.render(), media_type=METRICS_CONTENT_TYPE)


async def get_task(request: Request) -> Response:
    gw = _gateway(request)
    caller = await authenticate(request, gw.accounts)
    task = await gw.tasks.get(request.path_params["task_id"], caller.account_id)
    if task is None:  # unknown, expired and someone else's look the same: no existence oracle
        raise NotFound("Task not found or no longer available.", param="task_id", code="async_task_not_found")
    headers = {"X-Billing-Transaction-ID": task.billing_transaction_id} if task.billing_transaction_id else None
    return json_response(task.body(), headers=headers)


# --- models --------------------------------------------------------------------------------------
def _model_body(gw: Gateway, model_id: str) -> dict[str, Any]:
    spec = gw.catalog.spec(model_id)
    return {"id": spec.id, "object": "model", "created": 0, "owned_by": "imagegate",
            "capabilities": spec.describe(), "pricing": spec.price.describe()}


async def list_models(request: Request) -> Response:
    gw = _gateway(request)
    await authenticate(request, gw.accounts)
    return json_response({"object": "list", "data": [_model_body(gw, spec.id) for spec in gw.catalog]})


async def get_model(request: Request) -> Response:
    gw = _gateway(request)
    await authenticate(request, gw.accounts)
    model_id = request.path_params["model_id"]
    if model_id not in gw.catalog:
        try:
            gw.catalog.spec(model_id)
        except ModelNotFound as exc:
            raise NotFound(exc.message, param="model", code=exc.code, **exc.details) from None
    return json_response(_model_body(gw, model_id))


# --- output images -------------------------------------------------------------------------------
async def get_blob(request: Request) -> Response:
    gw = _gateway(request)
    key = request.path_params["key"]
    if not key.startswith(PUBLIC_BLOBS):  # uploaded files and task inputs are served only to their owner
        raise NotFound("No such object.")
    file = await gw.blobs.open(key)
    data = await asyncio.to_thread(file.read)
    file.close()
    ext = key.rsplit(".", 1)[-1]
    return Response(data, media_type=MIME_TYPES.get(ext, "application/octet-stream"),
                    headers={"Cache-Control": "public, max-age=31536000, immutable"})


async def files_collection(request: Request) -> Response:
    """POST (upload) or GET (list) /v1/files: one route, so that a 405 names both methods."""
    return await (files.list_files if request.method == "GET" else files.create_file)(request)


ROUTES = [
    Route("/healthz", health, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi_document, methods=["GET"]),
    Route("/v1/images/edits", image_endpoint("edit"), methods=["POST"]),
    Route("/v1/images/generations", image_endpoint("generate"), methods=["POST"]),
    Route("/v1/images/variations", image_endpoint("variation"), methods=["POST"]),
    Route("/v1/tasks/{task_id}", get_task, methods=["GET"]),
    Route("/v1/images/generations/{task_id}", get_task, methods=["GET"]),
    Route("/v1/images/{task_id:task_id}", get_task, methods=["GET"]),
    Route("/v1/files", files_collection, methods=["GET", "POST"]),
    Route("/v1/files/{file_id}", files.file_object, methods=["GET", "DELETE"]),
    Route("/v1/files/{file_id}/content", files.get_file_content, methods=["GET"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
    Route("/blobs/{key:path}", get_blob, methods=["GET"]),
]
