"""A blob store in a local directory, served by the gateway itself under unguessable keys."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from pathlib import Path
from typing import BinaryIO

from imagegate.core.errors import NotFound, StorageUnavailable

_KEY = re.compile(r"^[a-z]+/[A-Za-z0-9_-]{16,64}(\.[a-z0-9]{1,5})?$")
_PREFIX = re.compile(r"^[a-z]+/$")


def valid_key(key: str) -> bool:
    return bool(_KEY.match(key))


class LocalBlobStore:
    def __init__(self, root: str | Path, public_base_url: str, *, url_prefix: str = "/blobs/") -> None:
        self._root = Path(root).resolve()
        self._public = public_base_url.rstrip("/") + url_prefix

    def path(self, key: str) -> Path:
        if not valid_key(key):
            raise NotFound("No such object.")
        return self._root / key

    def public_url(self, key: str) -> str:
        return self._public + key

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self._write(key, lambda f: f.write(data))

    async def put_file(self, key: str, file: BinaryIO, content_type: str) -> None:
        def copy(f: BinaryIO) -> None:
            file.seek(0)
            shutil.copyfileobj(file, f, 1024 * 1024)
        await self._write(key, copy)

    async def _write(self, key: str, write: object) -> None:
        path = self.path(key)

        def run() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            with open(tmp, "wb") as f:
                write(f)  # type: ignore[operator]
            os.replace(tmp, path)

        try:
            await asyncio.to_thread(run)
        except OSError as exc:
            raise StorageUnavailable("The image store is unavailable; nothing was billed.") from exc

    async def open(self, key: str) -> BinaryIO:
        try:
            return await asyncio.to_thread(open, self.path(key), "rb")
        except FileNotFoundError:
            raise NotFound("No such object.") from None
        except OSError as exc:
            raise StorageUnavailable("The image store is unavailable.") from exc

    async def delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(self.path(key).unlink, True)
        except OSError as exc:
            raise StorageUnavailable("The image store is unavailable.") from exc

    async def remove_older_than(self, prefix: str, age: float, *, limit: int = 1000) -> int:
        if not _PREFIX.match(prefix):
            raise ValueError(f"not a blob prefix: {prefix!r}")
        folder = self._root / prefix
        cutoff = time.time() - age

        def run() -> int:
            removed = 0
            try:
                entries = os.scandir(folder)
            except FileNotFoundError:
                return 0
            with entries:
                for entry in entries:
                    if removed >= limit:
                        break
                    try:
                        if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                            os.unlink(entry.path)
                            removed += 1
                    except FileNotFoundError:  # deleted meanwhile by its owner or another process
                        continue
            return removed

        try:
            return await asyncio.to_thread(run)
        except OSError as exc:
            raise StorageUnavailable("The image store is unavailable.") from exc
