"""Accounts and keys on SQLite and PostgreSQL: hashed storage, expiry, revocation, allow-lists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from imagegate.core.errors import AuthenticationFailed, KeyExpired, ModelNotAllowed
from imagegate.db.accounts import AccountStore, hash_key
from imagegate.db.clock import utcnow
from imagegate.db.engine import create_engine, migrate, sessionmaker
from imagegate.db.schema import ApiKey


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[AccountStore]:
    await migrate(db_url)
    engine = create_engine(db_url)
    try:
        yield AccountStore(sessionmaker(engine))
    finally:
        await engine.dispose()


async def test_key_is_stored_hashed(store: AccountStore) -> None:
    secret = await store.create_key("acme")
    assert secret.startswith("sk-") and len(secret) > 40
    async with store._sessions() as session:
        rows = list(await session.scalars(select(ApiKey)))
    assert [r.key_hash for r in rows] == [hash_key(secret)]
    assert secret not in {r.prefix for r in rows}
    caller = await store.authenticate(secret)
    assert caller.allowed_models is None


async def test_unknown_key(store: AccountStore) -> None:
    with pytest.raises(AuthenticationFailed):
        await store.authenticate("sk-nothing")


async def test_expired_and_revoked_keys(store: AccountStore) -> None:
    expired = await store.create_key("acme", expires_at=utcnow() - timedelta(seconds=1))
    with pytest.raises(KeyExpired):
        await store.authenticate(expired)
    live = await store.create_key("acme")
    await store.authenticate(live)
    assert await store.revoke_key(live)
    with pytest.raises(KeyExpired):
        await store.authenticate(live)


async def test_model_allow_list(store: AccountStore) -> None:
    caller = await store.authenticate(await store.create_key("acme", allowed_models=["local-edit"]))
    caller.check_model("local-edit")
    with pytest.raises(ModelNotAllowed):
        caller.check_model("gpt-image-2")


async def test_credit(store: AccountStore) -> None:
    await store.add_credit("acme", 5_000_000)
    await store.add_credit("acme", 2_500_000)
    s = await store.summary("acme")
    assert s.balance_micros == s.deposits_micros == 7_500_000
    with pytest.raises(ValueError):
        await store.add_credit("acme", 0)
