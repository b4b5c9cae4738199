"""Idempotency records on SQLite and PostgreSQL: begin, replay, conflicts, takeover, expiry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from imagegate.core.errors import Conflict
from imagegate.core.idempotency import Reply, StoredResponse
from imagegate.db.accounts import AccountStore
from imagegate.db.engine import create_engine, migrate, sessionmaker
from imagegate.db.idempotency import SqlIdempotencyStore
from imagegate.db.transactions import Transactions


@pytest.fixture
async def parts(db_url: str) -> AsyncIterator[tuple[Transactions, AccountStore]]:
    await migrate(db_url)
    engine = create_engine(db_url)
    tx = Transactions(db_url, engine)
    try:
        yield tx, AccountStore(sessionmaker(engine))
    finally:
        await tx.aclose()
        await engine.dispose()


async def test_begin_finish_replay_and_conflicts(parts: tuple[Transactions, AccountStore]) -> None:
    tx, accounts = parts
    account = await accounts.ensure_account("alice")
    store = SqlIdempotencyStore(tx, stale_after=60.0)
    assert await store.begin(account, "k1", "images.edits", "aaa") is None
    with pytest.raises(Conflict) as busy:
        await store.begin(account, "k1", "images.edits", "aaa")
    assert busy.value.code == "idempotency_request_in_progress" and busy.value.param == "Idempotency-Key"
    answer = StoredResponse(200, b'{"ok": true}', {"x-billing-transaction-id": "txn_1"})
    await store.finish(Reply(account, "k1", answer))
    assert await store.begin(account, "k1", "images.edits", "aaa") == answer
    for route, digest in (("images.edits", "bbb"), ("files", "aaa")):
        with pytest.raises(Conflict) as reused:
            await store.begin(account, "k1", route, digest)
        assert reused.value.code == "idempotency_key_reused"
    other = await accounts.ensure_account("bob")
    assert await store.begin(other, "k1", "images.edits", "bbb") is None  # keys are per account


async def test_abandoned_and_stale_keys_run_again(parts: tuple[Transactions, AccountStore]) -> None:
    tx, accounts = parts
    account = await accounts.ensure_account("alice")
    store = SqlIdempotencyStore(tx, stale_after=0.2)
    assert await store.begin(account, "k", "files", "h") is None
    await store.abandon(account, "k")  # the request failed: a retry runs
    assert await store.begin(account, "k", "files", "h") is None
    await asyncio.sleep(0.3)  # its process died mid-request: taken over once stale
    assert await store.begin(account, "k", "files", "h") is None
    with pytest.raises(Conflict):
        await store.begin(account, "k", "files", "h")


async def test_records_expire_after_retention(parts: tuple[Transactions, AccountStore]) -> None:
    tx, accounts = parts
    account = await accounts.ensure_account("alice")
    store = SqlIdempotencyStore(tx, stale_after=60.0, retention=0.2)
    assert await store.begin(account, "k", "files", "h") is None
    await store.finish(Reply(account, "k", StoredResponse(200, b"{}", {})))
    await asyncio.sleep(0.3)
    assert await store.begin(account, "k", "files", "other") is None  # expired: a new request
    await asyncio.sleep(0.3)
    assert await store.purge_expired() == 1


async def test_concurrent_begins_let_exactly_one_through(parts: tuple[Transactions, AccountStore]) -> None:
    tx, accounts = parts
    account = await accounts.ensure_account("alice")
    store = SqlIdempotencyStore(tx, stale_after=60.0)

    async def attempt() -> str:
        try:
            return "run" if await store.begin(account, "same", "images.edits", "h") is None else "replay"
        except Conflict as exc:
            return exc.code

    outcomes = await asyncio.gather(*(attempt() for _ in range(20)))
    assert outcomes.count("run") == 1
    assert set(outcomes) == {"run", "idempotency_request_in_progress"}
