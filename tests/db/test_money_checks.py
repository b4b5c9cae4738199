"""The database refuses broken money on its own: negative amounts, an unbalanced account, an overcharged hold."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.db.accounts import AccountStore
from imagegate.db.engine import create_engine, migrate, sessionmaker


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    await migrate(db_url)
    engine = create_engine(db_url)
    accounts = AccountStore(sessionmaker(engine))
    await accounts.add_credit("alice", 1_000)
    await accounts.create_key("alice")
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.mark.parametrize("statement", [
    "UPDATE accounts SET balance_micros = -1, deposits_micros = deposits_micros - 1001",
    "UPDATE accounts SET balance_micros = balance_micros - 1",  # money vanishing
    "UPDATE accounts SET balance_micros = balance_micros + 1",  # money from nowhere
    "UPDATE accounts SET held_micros = held_micros - 5, balance_micros = balance_micros + 5",
    "UPDATE api_keys SET held_micros = -1",
    "UPDATE api_keys SET spent_micros = -1",
])
async def test_broken_money_is_refused_by_the_database(engine: AsyncEngine, statement: str) -> None:
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT balance_micros, held_micros, spent_micros, deposits_micros "
                                       "FROM accounts"))).one()
    assert tuple(row) == (1_000, 0, 0, 1_000)


async def test_a_hold_cannot_be_charged_more_than_it_held(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO holds (id, account_id, model, amount_micros, status, created_at, "
                                "expires_at) VALUES ('h1', 1, 'm', 10, 'held', CURRENT_TIMESTAMP, "
                                "CURRENT_TIMESTAMP)"))
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE holds SET charged_micros = 11, status = 'settled'"))
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE holds SET charged_micros = 10, status = 'settled'"))


async def test_the_checks_are_added_to_a_database_that_already_holds_money(db_url: str) -> None:
    await migrate(db_url, "0001")
    engine = create_engine(db_url)
    try:
        await AccountStore(sessionmaker(engine)).add_credit("early", 2_500)
        await migrate(db_url)  # 0002 on a live table: rows kept, checks from now on
        async with engine.connect() as conn:
            row = (await conn.execute(text("SELECT balance_micros, deposits_micros FROM accounts"))).one()
        assert tuple(row) == (2_500, 2_500)
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE accounts SET balance_micros = balance_micros + 1"))
    finally:
        await engine.dispose()
