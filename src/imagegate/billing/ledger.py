"""The SQL ledger. Balance, holds and entries change together in one transaction.

Invariant, per account, at every commit: deposits = balance + held + spent.
A hold ends exactly once, in settle or release; a second attempt finds it closed and changes nothing.
Each operation is one short transaction (see db.transactions) built from Core statements.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import cast

from sqlalchemy import Connection, Table, insert, select, update

from imagegate.core.accounts import Caller
from imagegate.core.errors import InsufficientBalance, QuotaExceeded
from imagegate.core.idempotency import Reply
from imagegate.core.pricing import micros_to_usd
from imagegate.db.accounts import new_transaction_id
from imagegate.db.clock import utcnow
from imagegate.db.idempotency import record_reply
from imagegate.db.schema import Account, ApiKey, Hold, LedgerEntry
from imagegate.db.transactions import Transactions

log = logging.getLogger("imagegate.billing")

_accounts = cast(Table, Account.__table__)
_keys = cast(Table, ApiKey.__table__)
_holds = cast(Table, Hold.__table__)
_entries = cast(Table, LedgerEntry.__table__)


class SqlLedger:
    def __init__(self, transactions: Transactions, *, hold_ttl: timedelta = timedelta(hours=2)) -> None:
        self._tx = transactions
        self._hold_ttl = hold_ttl

    async def hold(self, caller: Caller, amount: int, *, model: str, ttl: float | None = None) -> str:
        hold_id = new_transaction_id()
        now = utcnow()
        expires_at = now + (self._hold_ttl if ttl is None else timedelta(seconds=ttl))

        def work(conn: Connection) -> None:
            c = _keys.c
            keys = conn.execute(update(_keys).where(
                c.id == caller.key_id,
                c.spend_limit_micros.is_(None) | (c.spent_micros + c.held_micros + amount <= c.spend_limit_micros))
                .values(held_micros=c.held_micros + amount))
            if keys.rowcount == 0:
                raise QuotaExceeded("This API key has reached its spend limit.",
                                    estimated_cost_usd=micros_to_usd(amount))
            a = _accounts.c
            accounts = conn.execute(update(_accounts).where(a.id == caller.account_id, a.balance_micros >= amount)
                                    .values(balance_micros=a.balance_micros - amount,
                                            held_micros=a.held_micros + amount))
            if accounts.rowcount == 0:
                balance = conn.scalar(select(a.balance_micros).where(a.id == caller.account_id)) or 0
                raise InsufficientBalance(
                    f"Insufficient balance: this request may cost up to ${micros_to_usd(amount):.6f}; the "
                    f"available balance is ${micros_to_usd(balance):.6f}.",
                    estimated_cost_usd=micros_to_usd(amount), balance_usd=micros_to_usd(balance))
            conn.execute(insert(_holds).values(id=hold_id, account_id=caller.account_id, key_id=caller.key_id,
                                               model=model, amount_micros=amount, status="held", created_at=now,
                                               expires_at=expires_at))
            conn.execute(insert(_entries).values(account_id=caller.account_id, transaction_id=hold_id,
                                                 kind="hold", amount_micros=amount, hold_id=hold_id, memo=model,
                                                 created_at=now))

        await self._tx.run(work)
        return hold_id

    async def settle(self, hold_id: str, amount: int, *, reply: Reply | None = None) -> str:
        def work(conn: Connection) -> None:
            close_hold(conn, hold_id, charge=amount, settle=True)
            if reply is not None:
                record_reply(conn, reply)

        await self._tx.run(work)
        return hold_id

    async def release(self, hold_id: str) -> None:
        await self.release_one(hold_id)

    async def release_expired(self, limit: int = 100) -> int:
        """Release holds whose request outlived them (a crash, a lost worker). Returns how many."""
        def expired(conn: Connection) -> list[str]:
            h = _holds.c
            return list(conn.scalars(select(h.id).where(h.status == "held", h.expires_at < utcnow())
                                     .limit(limit)))

        released = 0
        for hold_id in await self._tx.run(expired):
            released += await self.release_one(hold_id, memo="expired")
        return released

    async def release_one(self, hold_id: str, *, memo: str | None = None) -> int:
        return await self._tx.run(lambda conn: close_hold(conn, hold_id, charge=0, settle=False, memo=memo))


def close_hold(conn: Connection, hold_id: str, *, charge: int, settle: bool, memo: str | None = None) -> int:
    """Settle (charge `charge`, release the rest) or release a hold inside the caller's transaction.

    Returns 1 if this call closed the hold, 0 if it was already closed: a hold ends exactly once.
    """
    h = _holds.c
    hold = conn.execute(select(h.account_id, h.key_id, h.model, h.amount_micros)
                        .where(h.id == hold_id, h.status == "held")).one_or_none()
    if hold is None:
        return 0
    if charge > hold.amount_micros:
        log.warning("hold %s: actual cost %d exceeds the hold %d; charging the hold", hold_id, charge,
                    hold.amount_micros)
    charge = min(max(charge, 0), hold.amount_micros)
    now = utcnow()
    closed = conn.execute(update(_holds).where(h.id == hold_id, h.status == "held")
                          .values(status="settled" if settle else "released", charged_micros=charge,
                                  closed_at=now))
    if closed.rowcount == 0:
        return 0
    if hold.key_id is not None:  # key before account, the order `hold` locks them in: no deadlock
        k = _keys.c
        conn.execute(update(_keys).where(k.id == hold.key_id).values(
            held_micros=k.held_micros - hold.amount_micros, spent_micros=k.spent_micros + charge))
    a = _accounts.c
    conn.execute(update(_accounts).where(a.id == hold.account_id).values(
        held_micros=a.held_micros - hold.amount_micros, spent_micros=a.spent_micros + charge,
        balance_micros=a.balance_micros + hold.amount_micros - charge))
    conn.execute(insert(_entries).values(
        account_id=hold.account_id, transaction_id=hold_id, kind="settle" if settle else "release",
        amount_micros=charge if settle else hold.amount_micros, hold_id=hold_id, memo=memo or hold.model,
        created_at=now))
    return 1
