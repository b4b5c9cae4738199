"""The SQL ledger. Balance, holds and entries change together in one transaction.

Invariant, per account, at every commit: deposits = balance + held + spent.
A hold ends exactly once, in settle or release; a second attempt finds it closed and changes nothing.
Each operation is one short transaction (see db.transactions) of the statements in db.holds.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, select

from imagegate.core.accounts import Caller
from imagegate.core.idempotency import Reply
from imagegate.db.accounts import new_transaction_id
from imagegate.db.clock import utcnow
from imagegate.db.holds import close_hold, place_hold
from imagegate.db.idempotency import record_reply
from imagegate.db.schema import Hold
from imagegate.db.transactions import Transactions

_h = Hold.__table__.c


class SqlLedger:
    """`owner` names this process: a hold placed without a ttl (a synchronous request's) is released as
    soon as the process is found dead, not only after `hold_ttl`."""

    def __init__(self, transactions: Transactions, *, hold_ttl: timedelta = timedelta(hours=2),
                 owner: str | None = None) -> None:
        self._tx = transactions
        self._hold_ttl = hold_ttl
        self._owner = owner

    async def hold(self, caller: Caller, amount: int, *, model: str, ttl: float | None = None) -> str:
        hold_id = new_transaction_id()
        expires_at = utcnow() + (self._hold_ttl if ttl is None else timedelta(seconds=ttl))
        owner = self._owner if ttl is None else None
        await self._tx.run(lambda conn: place_hold(conn, hold_id, caller, amount, model=model,
                                                   expires_at=expires_at, owner=owner))
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
            return list(conn.scalars(select(_h.id).where(_h.status == "held", _h.expires_at < utcnow())
                                     .limit(limit)))

        released = 0
        for hold_id in await self._tx.run(expired):
            released += await self.release_one(hold_id, memo="expired")
        return released

    async def release_one(self, hold_id: str, *, memo: str | None = None) -> int:
        return await self._tx.run(lambda conn: close_hold(conn, hold_id, charge=0, settle=False, memo=memo))
