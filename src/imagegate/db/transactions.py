"""Running one short transaction with as little overhead as the driver allows.

A transaction is a plain function of a synchronous SQLAlchemy Connection. On PostgreSQL it runs over
the async engine (asyncpg, no threads); on SQLite it runs whole on one dedicated thread with the stdlib
driver, so a transaction costs one thread hop instead of one per statement (aiosqlite's cost).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.db.engine import is_sqlite, sqlite_connection_setup

T = TypeVar("T")


class Transactions:
    def __init__(self, url: str, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sync = None
        self._executor: ThreadPoolExecutor | None = None
        if is_sqlite(url):
            sync_url = make_url(url).set(drivername="sqlite")
            self._sync = create_sync_engine(sync_url, pool_size=1, max_overflow=0)
            event.listen(self._sync, "connect", sqlite_connection_setup)
            event.listen(self._sync, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imagegate-sqlite")

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction; committed when it returns, rolled back when it raises."""
        if self._sync is not None:
            sync = self._sync

            def run() -> T:
                with sync.begin() as conn:
                    return work(conn)

            return await asyncio.get_running_loop().run_in_executor(self._executor, run)
        async with self._engine.begin() as conn:
            return await conn.run_sync(work)

    async def aclose(self) -> None:
        if self._sync is not None:
            self._sync.dispose()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
