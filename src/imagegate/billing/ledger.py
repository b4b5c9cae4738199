"""The SQL ledger. Balance, holds and entries change together in one transaction.

Invariant, per account, at every commit: deposits = balance + held + spent.
A hold ends exactly once, in settle or release; a second attempt finds it closed and changes nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from imagegate.core.accounts import Caller
from imagegate.core.errors import InsufficientBalance, QuotaExceeded
from imagegate.core.pricing import micros_to_usd
from imagegate.db.accounts import new_transaction_id
from imagegate.db.clock import utcnow
from imagegate.db.schema import Account, ApiKey, Hold, LedgerEntry

log = logging.getLogger("imagegate.billing")


class SqlLedger:
    def __init__(self, sessions: async_sessionmaker[Any], *, hold_ttl: timedelta = timedelta(hours=2)) -> None:
        self._sessions = sessions
        self._hold_ttl = hold_ttl

    async def hold(self, caller: Caller, amount: int, *, model: str) -> str:
        hold_id = new_transaction_id()
        now = utcnow()
        async with self._sessions.begin() as session:
            keys = await session.execute(
                update(ApiKey)
                .where(ApiKey.id == caller.key_id,
                       (ApiKey.spend_limit_micros.is_(None))
                       | (ApiKey.spent_micros + ApiKey.held_micros + amount <= ApiKey.spend_limit_micros))
                .values(held_micros=ApiKey.held_micros + amount))
            if _rows(keys) == 0:
                raise QuotaExceeded("This API key has reached its spend limit.",
                                    estimated_cost_usd=micros_to_usd(amount))
            accounts = await session.execute(
                update(Account)
                .where(Account.id == caller.account_id, Account.balance_micros >= amount)
                .values(balance_micros=Account.balance_micros - amount,
                        held_micros=Account.held_micros + amount))
            if _rows(accounts) == 0:
                balance = await session.scalar(select(Account.balance_micros)
                                               .where(Account.id == caller.account_id))
                raise InsufficientBalance(
                    f"Insufficient balance: this request may cost up to ${micros_to_usd(amount):.6f}; the "
                    f"available balance is ${micros_to_usd(balance or 0):.6f}.",
                    estimated_cost_usd=micros_to_usd(amount), balance_usd=micros_to_usd(balance or 0))
            session.add(Hold(id=hold_id, account_id=caller.account_id, key_id=caller.key_id, model=model,
                             amount_micros=amount, status="held", created_at=now,
                             expires_at=now + self._hold_ttl))
            session.add(LedgerEntry(account_id=caller.account_id, transaction_id=hold_id, kind="hold",
                                    amount_micros=amount, hold_id=hold_id, memo=model, created_at=now))
        return hold_id

    async def settle(self, hold_id: str, amount: int) -> str:
        async with self._sessions.begin() as session:
            await self._close(session, hold_id, charge=amount, settle=True)
        return hold_id

    async def release(self, hold_id: str) -> None:
        async with self._sessions.begin() as session:
            await self._close(session, hold_id, charge=0, settle=False)

    async def release_expired(self, limit: int = 100) -> int:
        """Release holds whose request outlived them (a crash, a lost worker). Returns how many."""
        async with self._sessions() as session:
            ids = list(await session.scalars(select(Hold.id).where(Hold.status == "held",
                                                                   Hold.expires_at < utcnow()).limit(limit)))
        released = 0
        for hold_id in ids:
            async with self._sessions.begin() as session:
                released += await self._close(session, hold_id, charge=0, settle=False, memo="expired")
        return released

    async def _close(self, session: AsyncSession, hold_id: str, *, charge: int, settle: bool,
                     memo: str | None = None) -> int:
        hold = await session.get(Hold, hold_id)
        if hold is None or hold.status != "held":
            return 0
        if charge > hold.amount_micros:
            log.warning("hold %s: actual cost %d exceeds the hold %d; charging the hold", hold_id, charge,
                        hold.amount_micros)
            charge = hold.amount_micros
        charge = max(charge, 0)
        now = utcnow()
        closed = await session.execute(
            update(Hold).where(Hold.id == hold_id, Hold.status == "held")
            .values(status="settled" if settle else "released", charged_micros=charge, closed_at=now))
        if _rows(closed) == 0:
            return 0
        refund = hold.amount_micros - charge
        await session.execute(update(Account).where(Account.id == hold.account_id).values(
            held_micros=Account.held_micros - hold.amount_micros,
            spent_micros=Account.spent_micros + charge,
            balance_micros=Account.balance_micros + refund))
        if hold.key_id is not None:
            await session.execute(update(ApiKey).where(ApiKey.id == hold.key_id).values(
                held_micros=ApiKey.held_micros - hold.amount_micros,
                spent_micros=ApiKey.spent_micros + charge))
        session.add(LedgerEntry(account_id=hold.account_id, transaction_id=hold_id,
                                kind="settle" if settle else "release",
                                amount_micros=charge if settle else hold.amount_micros, hold_id=hold_id,
                                memo=memo or hold.model, created_at=now))
        return 1


def _rows(result: Any) -> int:
    return int(getattr(result, "rowcount", 0))
