"""Migrations: several processes migrating one empty database at once all succeed (PostgreSQL takes an
advisory lock; on SQLite, a lock file beside the database); the schema ends at the newest revision and is
exactly what db/schema.py declares."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from imagegate.db.engine import _alembic_config, create_engine, migrate
from imagegate.db.schema import Base

MIGRATE = "import asyncio, sys; from imagegate.db.engine import migrate; asyncio.run(migrate(sys.argv[1]))"


async def test_replicas_migrating_an_empty_database_together_all_succeed(db_url: str) -> None:
    processes = [await asyncio.create_subprocess_exec(sys.executable, "-c", MIGRATE, db_url,
                                                      stderr=asyncio.subprocess.PIPE) for _ in range(4)]
    results = await asyncio.gather(*(p.communicate() for p in processes))
    assert [p.returncode for p in processes] == [0] * 4, [err.decode()[-500:] for _, err in results]
    head = ScriptDirectory.from_config(_alembic_config(db_url)).get_current_head()
    engine = create_engine(db_url, null_pool=True)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all() == [head]
    finally:
        await engine.dispose()


async def test_the_migrated_schema_is_the_declared_one(db_url: str) -> None:
    await migrate(db_url)
    engine = create_engine(db_url, null_pool=True)

    def differences(conn: Connection) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))

    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(differences) == []
    finally:
        await engine.dispose()
