"""The seams between the core and its adapters. Each port has one implementation per backend and a fake."""

from __future__ import annotations

from collections.abc import Sequence
from typing import BinaryIO, Protocol

from imagegate.core.accounts import Caller
from imagegate.core.edits import EditJob, EditResult, ImageRef, UrlRef
from imagegate.core.media import SourceImage


class Provider(Protocol):
    """One upstream (or the built-in engine) that can edit images in its own wire format."""

    async def edit(self, job: EditJob) -> EditResult: ...

    async def aclose(self) -> None: ...


class Fetcher(Protocol):
    """Downloads user-supplied image URLs safely, all of one request together.

    Returns one checked SourceImage per reference, in order. Raises InvalidImageURL, ImageFetchFailed,
    InvalidImage or ImageTooLarge naming the reference's `param`; a failure cancels the other fetches.
    """

    async def fetch_all(self, refs: Sequence[UrlRef]) -> list[SourceImage]: ...

    async def aclose(self) -> None: ...


class BlobStore(Protocol):
    """Bytes under opaque keys: uploaded files and output images."""

    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def put_file(self, key: str, file: BinaryIO, content_type: str) -> None: ...

    async def open(self, key: str) -> BinaryIO: ...

    async def delete(self, key: str) -> None: ...

    def public_url(self, key: str) -> str: ...


class Ledger(Protocol):
    """Two-phase money movement: hold an estimate, then settle the actual cost or release it."""

    async def hold(self, caller: Caller, amount: int, *, model: str) -> str:
        """Reserve `amount` micro-dollars; returns the hold id. Raises InsufficientBalance/QuotaExceeded."""
        ...

    async def settle(self, hold_id: str, amount: int) -> str:
        """Charge `amount` (at most the hold) and release the rest; returns the billing transaction id."""
        ...

    async def release(self, hold_id: str) -> None: ...


class ImageResolver(Protocol):
    """Turns image references (uploads, file ids, URLs) into checked SourceImages, in order."""

    async def resolve(self, refs: Sequence[ImageRef], caller: Caller) -> list[SourceImage]: ...
