"""Delivering output images: as Base64 in the answer, or stored in the blob store and answered as URLs."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Sequence

from imagegate.core.media import OutputImage
from imagegate.core.ports import BlobStore

log = logging.getLogger("imagegate.delivery")
_INLINE_ENCODE_BYTES = 256 * 1024  # larger outputs are Base64-encoded on a worker thread


class Delivery:
    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    async def deliver(self, outputs: Sequence[OutputImage], response_format: str) -> list[dict[str, str]]:
        """The answer's `data` items; for `url`, every image is stored first (all or none are kept)."""
        if response_format == "b64_json":
            return [_item(output, {"b64_json": await b64(output)}) for output in outputs]
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
        return [_item(o, {"url": self._blobs.public_url(k)}) for o, k in zip(outputs, keys, strict=True)], keys

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


def _item(output: OutputImage, item: dict[str, str]) -> dict[str, str]:
    if output.revised_prompt is not None:
        item["revised_prompt"] = output.revised_prompt
    return item


async def b64(output: OutputImage) -> str:
    """The image as Base64 text: as it arrived when it came so, else encoded (large ones on a worker thread)."""
    if output.b64_json is not None:
        return output.b64_json

    def encode() -> str:
        return base64.b64encode(output.data).decode("ascii")

    return encode() if len(output.data) <= _INLINE_ENCODE_BYTES else await asyncio.to_thread(encode)
