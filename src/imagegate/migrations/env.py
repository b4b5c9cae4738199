"""Alembic environment: runs migrations over the project's async engine.

Replicas started together on one database migrate one at a time: on PostgreSQL the migration transaction
first takes an advisory lock (released when it commits), so the next one finds the schema current; on
SQLite a lock file beside the database does the same (db.engine.migrate).
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import event
from sqlalchemy.engine import Connection

from imagegate.db.engine import create_engine
from imagegate.db.schema import Base

target_metadata = Base.metadata
MIGRATION_LOCK = 7_596_835_243_187_860_581  # the advisory lock key of imagegate's migrations (any fixed number)


def _foreign_keys_off(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=OFF")
    cursor.close()


def _run(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
        if connection.dialect.name == "sqlite" and connection.exec_driver_sql("PRAGMA foreign_key_check").first():
            raise RuntimeError("a migration left rows whose foreign keys point nowhere; nothing was changed")


async def _main() -> None:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "", null_pool=True)
    if engine.dialect.name == "sqlite":
        # Batch migrations rebuild a table (copy, drop, rename), which SQLite allows only with foreign key
        # enforcement off; it can be switched off only outside a transaction, so on connect.
        event.listen(engine.sync_engine, "connect", _foreign_keys_off)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


asyncio.run(_main())
