"""Accounts and API keys. Keys are stored as SHA-256 hashes; the secret is shown once, at creation."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from imagegate.core.accounts import Caller
from imagegate.core.errors import AuthenticationFailed, KeyExpired, NotFound
from imagegate.db.clock import aware, utcnow
from imagegate.db.schema import Account, ApiKey, LedgerEntry

KEY_PREFIX = "sk-"
_CACHE_SECONDS = 10.0


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_transaction_id() -> str:
    return "txn_" + secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class AccountSummary:
    name: str
    balance_micros: int
    held_micros: int
    spent_micros: int
    deposits_micros: int


@dataclass(frozen=True, slots=True)
class _CachedKey:
    caller: Caller | None  # None: the key exists but is expired or revoked
    expires_at: datetime | None
    cached_until: float


class AccountStore:
    """Accounts, credit and keys, plus authentication with a short-lived key cache."""

    def __init__(self, sessions: async_sessionmaker[Any]) -> None:
        self._sessions = sessions
        self._cache: dict[str, _CachedKey] = {}

    async def ensure_account(self, name: str) -> int:
        async with self._sessions.begin() as session:
            account_id = await session.scalar(select(Account.id).where(Account.name == name))
            if account_id is None:
                account = Account(name=name, balance_micros=0, held_micros=0, spent_micros=0,
                                  deposits_micros=0, created_at=utcnow())
                session.add(account)
                await session.flush()
                account_id = account.id
            return int(account_id)

    async def add_credit(self, name: str, amount_micros: int, memo: str = "credit") -> str:
        """Deposit money into an account (created if needed); returns the transaction id."""
        if amount_micros <= 0:
            raise ValueError("a deposit must be positive")
        account_id = await self.ensure_account(name)
        transaction_id = new_transaction_id()
        async with self._sessions.begin() as session:
            await session.execute(update(Account).where(Account.id == account_id).values(
                balance_micros=Account.balance_micros + amount_micros,
                deposits_micros=Account.deposits_micros + amount_micros))
            session.add(LedgerEntry(account_id=account_id, transaction_id=transaction_id, kind="deposit",
                                    amount_micros=amount_micros, memo=memo, created_at=utcnow()))
        return transaction_id

    async def create_key(self, account: str, *, name: str | None = None, spend_limit_micros: int | None = None,
                         allowed_models: list[str] | None = None, expires_at: datetime | None = None) -> str:
        """Create a key for the account (created if needed); returns the secret, which is not stored."""
        account_id = await self.ensure_account(account)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        async with self._sessions.begin() as session:
            session.add(ApiKey(account_id=account_id, key_hash=hash_key(secret), prefix=secret[:10], name=name,
                               spend_limit_micros=spend_limit_micros, spent_micros=0, held_micros=0,
                               allowed_models=json.dumps(allowed_models) if allowed_models is not None else None,
                               expires_at=expires_at, created_at=utcnow()))
        return secret

    async def revoke_key(self, secret_or_prefix: str) -> bool:
        column = ApiKey.key_hash if len(secret_or_prefix) > 16 else ApiKey.prefix
        value = hash_key(secret_or_prefix) if len(secret_or_prefix) > 16 else secret_or_prefix
        async with self._sessions.begin() as session:
            result = await session.execute(update(ApiKey).where(column == value, ApiKey.revoked_at.is_(None))
                                           .values(revoked_at=utcnow()))
        self._cache.clear()
        return bool(getattr(result, "rowcount", 0))

    async def summary(self, name: str) -> AccountSummary:
        async with self._sessions() as session:
            account = await session.scalar(select(Account).where(Account.name == name))
        if account is None:
            raise NotFound(f"no account named {name!r}")
        return AccountSummary(name=account.name, balance_micros=account.balance_micros,
                              held_micros=account.held_micros, spent_micros=account.spent_micros,
                              deposits_micros=account.deposits_micros)

    async def ledger(self, name: str) -> list[LedgerEntry]:
        async with self._sessions() as session:
            account_id = await session.scalar(select(Account.id).where(Account.name == name))
            if account_id is None:
                raise NotFound(f"no account named {name!r}")
            rows = await session.scalars(select(LedgerEntry).where(LedgerEntry.account_id == account_id)
                                         .order_by(LedgerEntry.id))
            return list(rows)

    async def authenticate(self, secret: str) -> Caller:
        """The caller behind a bearer secret. Raises AuthenticationFailed or KeyExpired."""
        digest = hash_key(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is None or cached.cached_until < now:
            cached = await self._load(digest, now)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = cached
        if cached.caller is None or (cached.expires_at is not None and cached.expires_at <= utcnow()):
            raise KeyExpired("This API key has expired or was revoked.")
        return cached.caller

    async def _load(self, digest: str, now: float) -> _CachedKey:
        async with self._sessions() as session:
            key = await session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
        if key is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        if key.revoked_at is not None:
            return _CachedKey(None, None, now + _CACHE_SECONDS)
        models = frozenset(json.loads(key.allowed_models)) if key.allowed_models else None
        caller = Caller(account_id=key.account_id, key_id=key.id, allowed_models=models)
        expires = aware(key.expires_at) if key.expires_at is not None else None
        return _CachedKey(caller, expires, now + _CACHE_SECONDS)
