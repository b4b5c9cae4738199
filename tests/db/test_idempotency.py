"""Idempotency records on SQLite and PostgreSQL: begin, replay, conflicts, takeover from a dead process
(its holds released with it), expiry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import Connection, delete, insert, text

from imagegate.billing.ledger import SqlLedger
from imagegate.core.errors import Conflict
from imagegate.core.idempotency import Reply, StoredResponse
from imagegate.db.accounts import AccountStore
from imagegate.db.clock import utcnow
from imagegate.db.engine import create_engine, migrate, sessionmaker
from imagegate.db.idempotency import SqlIdempotencyStore
from imagegate.db.presence import Presence
from imagegate.db.schema import Instance
from imagegate.db.transactions import Transactions

ME = "host:1:me"


@pytest.fixture
async def parts(db_url: str) -> AsyncIterator[tuple[Transactions, AccountStore]]:
    await migrate(db_url)
    engine = create_engine(db_url)
    tx = Transactions(db_url, engine)
    presence = Presence(tx, ME, lease=60.0)
    await presence.start()
    try:
        yield tx, AccountStore(sessionmaker(engine))
    finally:
        await presence.aclose()
        await tx.aclose()
        await engine.dispose()


def store_of(tx: Transactions, owner: str = ME, **options: float) -> SqlIdempotencyStore:
    return SqlIdempotencyStore(tx, owner=owner, lease=60.0, **{"stale_after": 60.0, **options})


async def test_begin_finish_replay_and_conflicts(parts: tuple[Transactions, AccountStore]) -> None:
    tx, accounts = parts
    account = await accounts.ensure_account("alice")
    store = store_of(tx)
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


async def test_abandoned_keys_run_again(parts: tuple[Transactions, AccountStore]) -> None:
    tx, accounts = parts
    account = await accounts.ensure_account("alice")
    store = store_of(tx)
    assert await store.begin(account, "k", "files", "h") is None
    await store.abandon(account, "k")  # the request failed: a retry runs
    assert await store.begin(account, "k", "files", "h") is None
    with pytest.raises(Conflict):
        await store.begin(account, "k", "files", "h")


async def test_a_key_of_a_dead_process_is_taken_over_and_its_holds_released(
        parts: tuple[Transactions, AccountStore]) -> None:
    tx, accounts = parts
    other = "host:2:other"
    await beat(tx, other, ago=0.0)
    await accounts.add_credit("alice", 1_000_000)
    caller = await accounts.authenticate(await accounts.create_key("alice"))
    hold = await SqlLedger(tx, owner=other).hold(caller, 300_000, model="m")  # its request's hold
    assert await store_of(tx, other).begin(caller.account_id, "k", "images.edits", "h") is None
    mine = store_of(tx)
    with pytest.raises(Conflict):  # its process is alive: the request is still running
        await mine.begin(caller.account_id, "k", "images.edits", "h")
    assert (await accounts.summary("alice")).held_micros == 300_000

    await beat(tx, other, ago=61.0)  # then it died: no heartbeat for longer than the lease
    assert await mine.begin(caller.account_id, "k", "images.edits", "h") is None  # taken over
    summary = await accounts.summary("alice")
    assert summary.held_micros == 0 and summary.balance_micros == 1_000_000  # released with it
    entries = [e for e in await accounts.ledger("alice") if e.transaction_id == hold]
    assert [(e.kind, e.memo) for e in entries] == [("hold", "m"), ("release", "process died")]
    with pytest.raises(Conflict):  # now this process's, and it is alive
        await store_of(tx, "host:3:third").begin(caller.account_id, "k", "images.edits", "h")


async def beat(tx: Transactions, owner: str, *, ago: float) -> None:
    """Record that process `owner` heart-beat `ago` seconds ago."""
    when = utcnow() - timedelta(seconds=ago)

    def work(conn: Connection) -> None:
        conn.execute(delete(Instance).where(Instance.id == owner))
        conn.execute(insert(Instance).values(id=owner, started_at=when, heartbeat_at=when))

    await tx.run(work)


async def test_a_key_without_an_owner_is_taken_over_once_stale(parts: tuple[Transactions, AccountStore]) -> None:
    tx, accounts = parts
    account = await accounts.ensure_account("alice")
    store = store_of(tx, stale_after=0.2)
    assert await store.begin(account, "k", "files", "h") is None
    await tx.run(lambda conn: conn.execute(text("UPDATE idempotency_keys SET owner = NULL")))  # an older release's
    with pytest.raises(Conflict):
        await store.begin(account, "k", "files", "h")
    await asyncio.sleep(0.3)
    assert await store.begin(account, "k", "files", "h") is None


async def test_records_expire_after_retention(parts: tuple[Transactions, AccountStore]) -> None:
    tx, accounts = parts
    account = await accounts.ensure_account("alice")
    store = store_of(tx, retention=0.2)
    assert await store.begin(account, "k", "files", "h") is None
    await store.finish(Reply(account, "k", StoredResponse(200, b"{}", {})))
    await asyncio.sleep(0.3)
    assert await store.begin(account, "k", "files", "other") is None  # expired: a new request
    await asyncio.sleep(0.3)
    assert await store.purge_expired() == 1


async def test_concurrent_begins_let_exactly_one_through(parts: tuple[Transactions, AccountStore]) -> None:
    tx, accounts = parts
    account = await accounts.ensure_account("alice")
    store = store_of(tx)

    async def attempt() -> str:
        try:
            return "run" if await store.begin(account, "same", "images.edits", "h") is None else "replay"
        except Conflict as exc:
            return exc.code

    outcomes = await asyncio.gather(*(attempt() for _ in range(20)))
    assert outcomes.count("run") == 1
    assert set(outcomes) == {"run", "idempotency_request_in_progress"}
