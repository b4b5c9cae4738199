"""The `Idempotency-Key` header on POST routes: fingerprint the request, replay a stored answer, or run once."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterable
from typing import BinaryIO

import orjson
from starlette.requests import Request
from starlette.responses import Response

from imagegate.core.errors import InvalidRequest
from imagegate.core.idempotency import Reply, StoredResponse
from imagegate.core.jobs import ImageRef, ImageRequest, UploadRef, UrlRef
from imagegate.db.idempotency import SqlIdempotencyStore

HEADER = "idempotency-key"
_MAX_KEY = 255
_REPLAYED_HEADERS = ("x-billing-transaction-id",)

Keep = Callable[[Response], Reply]  # the reply to store for a response, under the request's key


def key_of(request: Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 0 < len(key) <= _MAX_KEY or not key.isprintable() or not key.isascii():
        raise InvalidRequest(f"'Idempotency-Key' must be 1 to {_MAX_KEY} printable ASCII characters.",
                             param="Idempotency-Key", code="invalid_idempotency_key")
    return key


def _hash_file(digest: hashlib._Hash, file: BinaryIO) -> None:
    file.seek(0)
    while chunk := file.read(1024 * 1024):
        digest.update(chunk)
    file.seek(0)


async def fingerprint(fields: object, uploads: Iterable[BinaryIO] = ()) -> str:
    """A digest of what the request asks for: its fields as canonical JSON and its files' bytes.

    Multipart boundaries and field order do not count, so a client's retry of the same request matches.
    """
    digest = hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS))
    for file in uploads:
        await asyncio.to_thread(_hash_file, digest, file)
        digest.update(b"\0")
    return digest.hexdigest()


def _ref(ref: ImageRef) -> str:
    if isinstance(ref, UploadRef):
        return "upload"
    return f"url:{ref.url}" if isinstance(ref, UrlRef) else f"file:{ref.file_id}"


async def request_fingerprint(request: ImageRequest) -> str:
    fields = {"operation": request.operation, "model": request.model, "prompt": request.prompt, "n": request.n,
              "response_format": request.response_format, "async": request.run_async, "options": request.options,
              "images": [_ref(r) for r in request.images],
              "mask": _ref(request.mask) if request.mask is not None else None}
    return await fingerprint(fields, [r.file for r in request.refs if isinstance(r, UploadRef)])


async def run_once(store: SqlIdempotencyStore, account_id: int, key: str | None, route: str,
                   fingerprint: Callable[[], Awaitable[str]],
                   handle: Callable[[Keep | None], Awaitable[Response]]) -> Response:
    """`handle()` the request, unless `key` was seen with the same request: then the stored answer.

    `handle` gets a `Keep` (None without a key) so that a request that charges money can store its reply
    with the charge; a success that did not is stored when `handle` returns.
    """
    if key is None:
        return await handle(None)
    stored = await store.begin(account_id, key, route, await fingerprint())
    if stored is not None:
        return Response(stored.body, status_code=stored.status, media_type="application/json",
                        headers={**stored.headers, "Idempotent-Replayed": "true"})

    kept = False

    def reply(response: Response) -> Reply:
        headers = {name: response.headers[name] for name in _REPLAYED_HEADERS if name in response.headers}
        return Reply(account_id, key, StoredResponse(response.status_code, bytes(response.body), headers))

    def keep(response: Response) -> Reply:
        nonlocal kept
        kept = True
        return reply(response)

    try:
        response = await handle(keep)
    except BaseException:
        await asyncio.shield(store.abandon(account_id, key))
        raise
    if 200 <= response.status_code < 300:
        if not kept:  # a charged request's reply was committed with its charge
            await asyncio.shield(store.finish(reply(response)))
    else:
        await store.abandon(account_id, key)
    return response
