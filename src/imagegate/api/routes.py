"""The HTTP routes. Each handler authenticates, parses, calls one service, and shapes the answer."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from imagegate import __version__
from imagegate.api import openapi
from imagegate.api.auth import authenticate
from imagegate.api.errors import json_response
from imagegate.api.idempotency import Keep, edit_fingerprint, fingerprint, key_of, run_once
from imagegate.api.parsing import read_edit, read_form, upload_ref
from imagegate.core.errors import InvalidRequest, ModelNotFound, NotFound
from imagegate.core.idempotency import Reply
from imagegate.core.media import MIME_TYPES
from imagegate.core.service import EditResponse
from imagegate.core.tasks import TaskView
from imagegate.db.files import new_file_id
from imagegate.imaging import check_image
from imagegate.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

if TYPE_CHECKING:
    from imagegate.app import Gateway

FILE_PURPOSES = ("user_data", "vision")
PUBLIC_BLOBS = "outputs/"


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


async def create_edit(request: Request) -> Response:
    gw = _gateway(request)
    caller = await authenticate(request, gw.accounts)
    key = key_of(request)
    try:
        edit = await read_edit(request, gw.settings.limits)

        async def handle(keep: Keep | None) -> Response:
            if keep is None:
                return _edit_response(await gw.edits.edit(caller, edit))
            rendered: list[Response] = []  # the reply stored with the charge is the response sent

            def reply_for(outcome: EditResponse | TaskView) -> Reply:
                rendered.append(_edit_response(outcome))
                return keep(rendered[-1])

            outcome = await gw.edits.edit(caller, edit, reply_for=reply_for)
            return rendered[-1] if rendered else _edit_response(outcome)

        return await run_once(gw.idempotency, caller.account_id, key, "images.edits",
                              lambda: edit_fingerprint(edit), handle)
    finally:
        await request.close()


def _edit_response(outcome: EditResponse | TaskView) -> Response:
    if isinstance(outcome, TaskView):
        return json_response(outcome.body())
    return json_response(outcome.body(), headers={"X-Billing-Transaction-ID": outcome.billing_transaction_id})


async def get_task(request: Request) -> Response:
    gw = _gateway(request)
    caller = await authenticate(request, gw.accounts)
    task = await gw.tasks.get(request.path_params["task_id"], caller.account_id)
    if task is None:  # unknown, expired and someone else's look the same: no existence oracle
        raise NotFound("Task not found or no longer available.", param="task_id", code="async_task_not_found")
    headers = {"X-Billing-Transaction-ID": task.billing_transaction_id} if task.billing_transaction_id else None
    return json_response(task.body(), headers=headers)


# --- files ---------------------------------------------------------------------------------------
async def create_file(request: Request) -> Response:
    gw = _gateway(request)
    caller = await authenticate(request, gw.accounts)
    key = key_of(request)
    try:
        form = await read_form(request, gw.settings.limits, max_files=1)
        purpose = form.get("purpose")
        if not isinstance(purpose, str) or purpose not in FILE_PURPOSES:
            raise InvalidRequest(f"'purpose' must be one of {', '.join(FILE_PURPOSES)}.", param="purpose")
        if "file" not in form:
            raise InvalidRequest("'file' is required.", param="file")
        ref = upload_ref("file", form["file"], gw.settings.limits)

        async def handle(_: Keep | None) -> Response:
            image = await check_image(ref.file, param="file", filename=ref.filename, size=ref.size)
            blob_key = f"files/{secrets.token_urlsafe(24)}.{image.info.format}"
            await gw.blobs.put_file(blob_key, image.file, image.info.mime_type)
            record = await gw.files.add(file_id=new_file_id(), account_id=caller.account_id,
                                        filename=_safe_filename(ref.filename), purpose=purpose, size=ref.size,
                                        fmt=image.info.format, blob_key=blob_key,
                                        ttl=timedelta(seconds=gw.settings.storage.file_retention))
            return json_response(record.body())

        return await run_once(gw.idempotency, caller.account_id, key, "files",
                              lambda: fingerprint({"purpose": purpose, "filename": ref.filename}, [ref.file]),
                              handle)
    finally:
        await request.close()


def _safe_filename(name: str) -> str:
    cleaned = "".join(c for c in name.replace("\\", "/").rsplit("/", 1)[-1] if c.isprintable())
    return cleaned[:255] or "image"


async def _owned_file(request: Request) -> tuple[Gateway, Any]:
    gw = _gateway(request)
    caller = await authenticate(request, gw.accounts)
    record = await gw.files.get(request.path_params["file_id"], caller.account_id)
    if record is None:
        raise NotFound("No such file.", param="file_id", code="file_not_found")
    return gw, record


async def file_object(request: Request) -> Response:
    """GET or DELETE one file (one route, so that a 405 names both methods)."""
    return await (delete_file if request.method == "DELETE" else get_file)(request)


async def get_file(request: Request) -> Response:
    _, record = await _owned_file(request)
    return json_response(record.body())


async def get_file_content(request: Request) -> Response:
    gw, record = await _owned_file(request)
    file = await gw.blobs.open(record.blob_key)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await asyncio.to_thread(file.read, 256 * 1024):
                yield chunk
        finally:
            file.close()

    return StreamingResponse(chunks(), media_type=MIME_TYPES.get(record.format, "application/octet-stream"),
                             headers={"Content-Length": str(record.bytes)})


async def delete_file(request: Request) -> Response:
    gw = _gateway(request)
    caller = await authenticate(request, gw.accounts)
    record = await gw.files.remove(request.path_params["file_id"], caller.account_id)
    if record is None:
        raise NotFound("No such file.", param="file_id", code="file_not_found")
    await gw.blobs.delete(record.blob_key)
    return json_response({"id": record.id, "object": "file", "deleted": True})


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


ROUTES = [
    Route("/healthz", health, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi_document, methods=["GET"]),
    Route("/v1/images/edits", create_edit, methods=["POST"]),
    Route("/v1/tasks/{task_id}", get_task, methods=["GET"]),
    Route("/v1/images/generations/{task_id}", get_task, methods=["GET"]),
    Route("/v1/images/{task_id}", get_task, methods=["GET"]),
    Route("/v1/files", create_file, methods=["POST"]),
    Route("/v1/files/{file_id}", file_object, methods=["GET", "DELETE"]),
    Route("/v1/files/{file_id}/content", get_file_content, methods=["GET"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
    Route("/blobs/{key:path}", get_blob, methods=["GET"]),
]
