"""The ledger on SQLite and PostgreSQL: holds, settle/release exactly once, limits, concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from imagegate.billing.ledger import SqlLedger
from imagegate.core.accounts import Caller
from imagegate.core.errors import InsufficientBalance, QuotaExceeded
from imagegate.db.accounts import AccountStore
from imagegate.db.engine import create_engine, migrate, sessionmaker
from imagegate.db.transactions import Transactions


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    await migrate(db_url)
    engine = create_engine(db_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def accounts(engine: AsyncEngine) -> AccountStore:
    return AccountStore(sessionmaker(engine))


@pytest.fixture
async def transactions(engine: AsyncEngine, db_url: str) -> AsyncIterator[Transactions]:
    tx = Transactions(db_url, engine)
    try:
        yield tx
    finally:
        await tx.aclose()


@pytest.fixture
def ledger(transactions: Transactions) -> SqlLedger:
    return SqlLedger(transactions)


async def caller_for(accounts: AccountStore, name: str, credit: int, **key: object) -> Caller:
    if credit:
        await accounts.add_credit(name, credit)
    secret = await accounts.create_key(name, **key)  # type: ignore[arg-type]
    return await accounts.authenticate(secret)


async def assert_balanced(accounts: AccountStore, name: str) -> None:
    s = await accounts.summary(name)
    assert s.deposits_micros == s.balance_micros + s.held_micros + s.spent_micros
    assert min(s.balance_micros, s.held_micros, s.spent_micros) >= 0


async def test_hold_then_settle(accounts: AccountStore, ledger: SqlLedger) -> None:
    caller = await caller_for(accounts, "a", 1_000_000)
    hold = await ledger.hold(caller, 300_000, model="m")
    s = await accounts.summary("a")
    assert (s.balance_micros, s.held_micros, s.spent_micros) == (700_000, 300_000, 0)
    assert await ledger.settle(hold, 120_000) == hold
    s = await accounts.summary("a")
    assert (s.balance_micros, s.held_micros, s.spent_micros) == (880_000, 0, 120_000)
    await ledger.settle(hold, 120_000)  # a second settle changes nothing
    await ledger.release(hold)  # nor does a release after it
    s = await accounts.summary("a")
    assert (s.balance_micros, s.held_micros, s.spent_micros) == (880_000, 0, 120_000)
    kinds = [e.kind for e in await accounts.ledger("a")]
    assert kinds == ["deposit", "hold", "settle"]


async def test_release_returns_everything_once(accounts: AccountStore, ledger: SqlLedger) -> None:
    caller = await caller_for(accounts, "a", 1_000_000)
    hold = await ledger.hold(caller, 400_000, model="m")
    await ledger.release(hold)
    await ledger.release(hold)
    await ledger.settle(hold, 400_000)
    s = await accounts.summary("a")
    assert (s.balance_micros, s.held_micros, s.spent_micros) == (1_000_000, 0, 0)


async def test_settle_never_exceeds_the_hold(accounts: AccountStore, ledger: SqlLedger) -> None:
    caller = await caller_for(accounts, "a", 1_000_000)
    hold = await ledger.hold(caller, 100_000, model="m")
    await ledger.settle(hold, 250_000)
    s = await accounts.summary("a")
    assert s.spent_micros == 100_000 and s.balance_micros == 900_000


async def test_insufficient_balance(accounts: AccountStore, ledger: SqlLedger) -> None:
    caller = await caller_for(accounts, "a", 50_000)
    with pytest.raises(InsufficientBalance) as info:
        await ledger.hold(caller, 60_000, model="m")
    assert info.value.details == {"estimated_cost_usd": 0.06, "balance_usd": 0.05}
    await assert_balanced(accounts, "a")
    assert (await accounts.summary("a")).held_micros == 0


async def test_key_spend_limit(accounts: AccountStore, ledger: SqlLedger) -> None:
    caller = await caller_for(accounts, "a", 1_000_000, spend_limit_micros=150_000)
    first = await ledger.hold(caller, 100_000, model="m")
    with pytest.raises(QuotaExceeded):
        await ledger.hold(caller, 100_000, model="m")
    await ledger.settle(first, 40_000)
    second = await ledger.hold(caller, 100_000, model="m")  # 40k spent + 100k held ≤ 150k
    await ledger.release(second)
    with pytest.raises(QuotaExceeded):
        await ledger.hold(caller, 120_000, model="m")
    await assert_balanced(accounts, "a")


async def test_concurrent_holds_never_overdraw(accounts: AccountStore, ledger: SqlLedger) -> None:
    caller = await caller_for(accounts, "a", 2_000_000)

    async def attempt() -> str | None:
        try:
            hold = await ledger.hold(caller, 100_000, model="m")
        except InsufficientBalance:
            return None
        await ledger.settle(hold, 100_000)
        return hold

    results = await asyncio.gather(*(attempt() for _ in range(60)))
    assert sum(r is not None for r in results) == 20
    s = await accounts.summary("a")
    assert (s.balance_micros, s.held_micros, s.spent_micros) == (0, 0, 2_000_000)


async def test_expired_holds_are_released(accounts: AccountStore, transactions: Transactions) -> None:
    from datetime import timedelta

    ledger = SqlLedger(transactions, hold_ttl=timedelta(seconds=-1))
    caller = await caller_for(accounts, "a", 1_000_000)
    await ledger.hold(caller, 300_000, model="m")
    assert await ledger.release_expired() == 1
    assert await ledger.release_expired() == 0
    s = await accounts.summary("a")
    assert (s.balance_micros, s.held_micros) == (1_000_000, 0)
