"""The Files API: upload an image for later use as `images[].file_id`, list, read and delete the caller's files."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from imagegate.api.auth import authenticate
from imagegate.api.errors import json_response
from imagegate.api.idempotency import Keep, fingerprint, key_of, run_once
from imagegate.api.parsing import read_form, upload_ref
from imagegate.core.errors import InvalidRequest, NotFound
from imagegate.core.media import MIME_TYPES
from imagegate.db.files import FileRecord, new_file_id
from imagegate.imaging import check_image

if TYPE_CHECKING:
    from imagegate.app import Gateway

PURPOSES = ("user_data", "vision")
EXPIRY_SECONDS = (3600, 30 * 86400)  # what `expires_after[seconds]` may be (OpenAI's range)
MAX_LIST = 10000


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def create_file(request: Request) -> Response:
    gw = _gateway(request)
    caller = await authenticate(request, gw.accounts)
    key = key_of(request)
    try:
        form = await read_form(request, gw.settings.limits, max_files=1)
        purpose = form.get("purpose")
        if not isinstance(purpose, str) or purpose not in PURPOSES:
            raise InvalidRequest(f"'purpose' must be one of {', '.join(PURPOSES)}.", param="purpose")
        if "file" not in form:
            raise InvalidRequest("'file' is required.", param="file")
        ref = upload_ref("file", form["file"], gw.settings.limits)
        ttl = _expiry(form.get("expires_after[anchor]"), form.get("expires_after[seconds]"),
                      gw.settings.storage.file_retention)

        async def handle(_: Keep | None) -> Response:
            image = await check_image(ref.file, param="file", filename=ref.filename, size=ref.size)
            blob_key = f"files/{secrets.token_urlsafe(24)}.{image.info.format}"
            await gw.blobs.put_file(blob_key, image.file, image.info.mime_type)
            record = await gw.files.add(file_id=new_file_id(), account_id=caller.account_id,
                                        filename=_safe_filename(ref.filename), purpose=purpose, size=ref.size,
                                        fmt=image.info.format, blob_key=blob_key, ttl=timedelta(seconds=ttl))
            return json_response(record.body())

        return await run_once(gw.idempotency, caller.account_id, key, "files",
                              lambda: fingerprint({"purpose": purpose, "filename": ref.filename, "ttl": ttl},
                                                  [ref.file]),
                              handle)
    finally:
        await request.close()


def _expiry(anchor: Any, seconds: Any, retention: float) -> float:
    """Seconds until an upload expires: `expires_after` when sent (at most the operator's retention)."""
    if anchor is None and seconds is None:
        return retention
    if anchor != "created_at":
        raise InvalidRequest("'expires_after[anchor]' must be 'created_at'.", param="expires_after[anchor]")
    low, high = EXPIRY_SECONDS
    if not isinstance(seconds, str) or not seconds.strip().isdigit() or not low <= int(seconds) <= high:
        raise InvalidRequest(f"'expires_after[seconds]' must be an integer from {low} to {high}.",
                             param="expires_after[seconds]")
    return min(float(seconds), retention)


def _safe_filename(name: str) -> str:
    cleaned = "".join(c for c in name.replace("\\", "/").rsplit("/", 1)[-1] if c.isprintable())
    return cleaned[:255] or "image"


async def list_files(request: Request) -> Response:
    gw = _gateway(request)
    caller = await authenticate(request, gw.accounts)
    query = request.query_params
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'.", param="order")
    limit_text = query.get("limit", str(MAX_LIST))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIST:
        raise InvalidRequest(f"'limit' must be an integer from 1 to {MAX_LIST}.", param="limit")
    try:
        records, more = await gw.files.page(caller.account_id, after=query.get("after"), limit=int(limit_text),
                                            order=order, purpose=query.get("purpose"))
    except LookupError:
        raise InvalidRequest("'after' names no file of yours.", param="after") from None
    data = [record.body() for record in records]
    return json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None, "has_more": more})


async def _owned_file(request: Request) -> tuple[Gateway, FileRecord]:
    gw = _gateway(request)
    caller = await authenticate(request, gw.accounts)
    record = await gw.files.get(request.path_params["file_id"], caller.account_id)
    if record is None:
        raise NotFound("No such file.", param="file_id", code="file_not_found")
    return gw, record


async def file_object(request: Request) -> Response:
    """GET or DELETE one file (one route, so that a 405 names both methods)."""
    if request.method == "DELETE":
        return await _delete_file(request)
    _, record = await _owned_file(request)
    return json_response(record.body())


async def _delete_file(request: Request) -> Response:
    gw = _gateway(request)
    caller = await authenticate(request, gw.accounts)
    record = await gw.files.remove(request.path_params["file_id"], caller.account_id)
    if record is None:
        raise NotFound("No such file.", param="file_id", code="file_not_found")
    await gw.blobs.delete(record.blob_key)
    return json_response({"id": record.id, "object": "file", "deleted": True})


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
