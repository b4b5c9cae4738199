"""File records: images uploaded through /v1/files, owned by one account, bytes in the blob store."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import async_sessionmaker

from imagegate.db.clock import aware, utcnow
from imagegate.db.schema import StoredFile

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def new_file_id() -> str:
    return "file-" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: str
    account_id: int
    filename: str
    purpose: str
    bytes: int
    format: str
    blob_key: str
    created_at: datetime
    expires_at: datetime | None

    def body(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": self.bytes,
                "created_at": int(self.created_at.timestamp()), "filename": self.filename,
                "purpose": self.purpose, "status": "processed",
                "expires_at": int(self.expires_at.timestamp()) if self.expires_at else None}


def _record(row: StoredFile) -> FileRecord:
    return FileRecord(id=row.id, account_id=row.account_id, filename=row.filename, purpose=row.purpose,
                      bytes=row.bytes, format=row.format, blob_key=row.blob_key,
                      created_at=aware(row.created_at),
                      expires_at=aware(row.expires_at) if row.expires_at else None)


class FileRepository:
    def __init__(self, sessions: async_sessionmaker[Any]) -> None:
        self._sessions = sessions

    async def add(self, *, file_id: str, account_id: int, filename: str, purpose: str, size: int, fmt: str,
                  blob_key: str, ttl: timedelta | None) -> FileRecord:
        now = utcnow()
        row = StoredFile(id=file_id, account_id=account_id, filename=filename, purpose=purpose, bytes=size,
                         format=fmt, blob_key=blob_key, created_at=now,
                         expires_at=now + ttl if ttl else None)
        async with self._sessions.begin() as session:
            session.add(row)
        return _record(row)

    async def get(self, file_id: str, account_id: int) -> FileRecord | None:
        """The account's file, or None when it is unknown, expired or someone else's."""
        async with self._sessions() as session:
            row = await session.scalar(select(StoredFile).where(StoredFile.id == file_id,
                                                                StoredFile.account_id == account_id))
        if row is None:
            return None
        record = _record(row)
        if record.expires_at is not None and record.expires_at <= utcnow():
            return None
        return record

    async def page(self, account_id: int, *, after: str | None = None, limit: int = 10000, order: str = "desc",
                   purpose: str | None = None) -> tuple[list[FileRecord], bool]:
        """The account's live files by creation time (`order` asc or desc), those after the file `after`, at
        most `limit`; and whether more follow. LookupError when the account has no file `after`."""
        f = StoredFile
        where = [f.account_id == account_id, (f.expires_at.is_(None)) | (f.expires_at > utcnow())]
        if purpose is not None:
            where.append(f.purpose == purpose)
        descending = order == "desc"
        async with self._sessions() as session:
            if after is not None:
                cursor = (await session.execute(select(f.created_at, f.id).where(
                    f.id == after, f.account_id == account_id))).one_or_none()
                if cursor is None:
                    raise LookupError(after)
                later = tuple_(f.created_at, f.id) < tuple_(*cursor) if descending else \
                    tuple_(f.created_at, f.id) > tuple_(*cursor)
                where.append(later)
            ordering = (f.created_at.desc(), f.id.desc()) if descending else (f.created_at.asc(), f.id.asc())
            rows = (await session.scalars(select(f).where(*where).order_by(*ordering).limit(limit + 1))).all()
        return [_record(row) for row in rows[:limit]], len(rows) > limit

    async def purge_expired(self, limit: int = 100) -> list[str]:
        """Delete expired files' records; returns their blob keys, to delete."""
        async with self._sessions.begin() as session:
            rows = (await session.execute(select(StoredFile.id, StoredFile.blob_key).where(
                StoredFile.expires_at <= utcnow()).limit(limit))).all()
            if rows:
                await session.execute(delete(StoredFile).where(StoredFile.id.in_([r.id for r in rows])))
        return [r.blob_key for r in rows]

    async def remove(self, file_id: str, account_id: int) -> FileRecord | None:
        async with self._sessions.begin() as session:
            row = await session.scalar(select(StoredFile).where(StoredFile.id == file_id,
                                                                StoredFile.account_id == account_id))
            if row is None:
                return None
            await session.execute(delete(StoredFile).where(StoredFile.id == file_id))
        return _record(row)
