"""Resolving image references: uploads as they are, file ids from the blob store, URLs via the fetcher."""

from __future__ import annotations

from collections.abc import Sequence

from imagegate.core.accounts import Caller
from imagegate.core.errors import FileNotFoundInRequest
from imagegate.core.jobs import FileRef, ImageRef, UploadRef, UrlRef
from imagegate.core.media import SourceImage
from imagegate.core.ports import BlobStore, Fetcher
from imagegate.db.files import FileRepository
from imagegate.imaging import check_image


class InputResolver:
    def __init__(self, files: FileRepository, blobs: BlobStore, fetcher: Fetcher) -> None:
        self._files = files
        self._blobs = blobs
        self._fetcher = fetcher

    async def resolve(self, refs: Sequence[ImageRef], caller: Caller) -> list[SourceImage]:
        resolved: dict[int, SourceImage] = {}
        try:
            for index, ref in enumerate(refs):
                if isinstance(ref, UploadRef):
                    resolved[index] = await check_image(ref.file, param=ref.param, filename=ref.filename,
                                                        size=ref.size)
                elif isinstance(ref, FileRef):
                    resolved[index] = await self._load_file(ref, caller)
            urls = [(i, r) for i, r in enumerate(refs) if isinstance(r, UrlRef)]
            if urls:
                fetched = await self._fetcher.fetch_all([r for _, r in urls])
                resolved.update((i, image) for (i, _), image in zip(urls, fetched, strict=True))
        except BaseException:
            for image in resolved.values():
                image.close()
            raise
        return [resolved[i] for i in range(len(refs))]

    async def _load_file(self, ref: FileRef, caller: Caller) -> SourceImage:
        record = await self._files.get(ref.file_id, caller.account_id)
        if record is None:
            raise FileNotFoundInRequest(f"No file with id '{ref.file_id}' was found.", param=ref.param)
        return await load_image(self._blobs, record.blob_key, param=ref.param, filename=record.filename,
                                size=record.bytes)


async def load_image(blobs: BlobStore, key: str, *, param: str, filename: str, size: int) -> SourceImage:
    """An image kept in the blob store, content-checked again as it comes out."""
    file = await blobs.open(key)
    try:
        return await check_image(file, param=param, filename=filename, size=size)
    except BaseException:
        file.close()
        raise
