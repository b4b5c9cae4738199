"""The database engine: one pool per process, SQLite tuned for concurrent readers, Alembic migrations."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


def async_url(url: str) -> str:
    """The configured URL with the async driver this project uses."""
    parsed = make_url(url)
    driver = _DRIVERS.get(parsed.drivername, parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_connection_setup(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun explicitly (see create_engine)
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(url: str, *, null_pool: bool = False, **kwargs: Any) -> AsyncEngine:
    """An async engine for `url`; `null_pool` opens a connection per use (migrations, one-shot CLI work)."""
    if null_pool:
        kwargs["poolclass"] = NullPool
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(async_url(url), **kwargs)
        event.listen(engine.sync_engine, "connect", sqlite_connection_setup)
        # SQLite allows one writer: BEGIN IMMEDIATE takes the write lock up front so concurrent
        # read-then-write transactions queue instead of failing with "database is locked".
        event.listen(engine.sync_engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    if not null_pool:
        kwargs.setdefault("pool_size", 20)
        kwargs.setdefault("max_overflow", 20)
    return create_async_engine(async_url(url), **kwargs)


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent.parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _upgrade(url: str, revision: str) -> None:
    from alembic import command

    with _sqlite_migration_lock(url):
        command.upgrade(_alembic_config(url), revision)


@contextlib.contextmanager
def _sqlite_migration_lock(url: str) -> Iterator[None]:
    """Processes migrating one SQLite file take turns, by an exclusive lock on a file beside it. (SQLite
    runs Alembic's DDL outside a transaction, so two would both find the schema old and both upgrade it.
    PostgreSQL takes an advisory lock instead: see migrations/env.py.)"""
    database = make_url(url).database if is_sqlite(url) else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


async def migrate(url: str, revision: str = "head") -> None:
    """Bring the database schema up to date, or to `revision` (Alembic, in a worker thread)."""
    await asyncio.to_thread(_upgrade, url, revision)
