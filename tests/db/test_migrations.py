"""Migrations: several processes migrating one empty database at once all succeed (PostgreSQL takes an
advisory lock; SQLite's BEGIN IMMEDIATE serialises them), and the schema ends at the newest revision."""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy import text

from imagegate.db.engine import create_engine

MIGRATE = "import asyncio, sys; from imagegate.db.engine import migrate; asyncio.run(migrate(sys.argv[1]))"
HEAD = "0002"


async def test_replicas_migrating_an_empty_database_together_all_succeed(db_url: str) -> None:
    processes = [await asyncio.create_subprocess_exec(sys.executable, "-c", MIGRATE, db_url,
                                                      stderr=asyncio.subprocess.PIPE) for _ in range(4)]
    results = await asyncio.gather(*(p.communicate() for p in processes))
    assert [p.returncode for p in processes] == [0] * 4, [err.decode()[-500:] for _, err in results]
    engine = create_engine(db_url, null_pool=True)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all() == [HEAD]
    finally:
        await engine.dispose()
