"""Holds in SQL: placing one and ending it, inside a caller's transaction.

A hold moves money from an account's (and its key's) balance to `held`; ending it moves the charge to
`spent` and the rest back. Both are a few prepared statements run in the caller's transaction, so that a
hold ends in the same commit as whatever it paid for (a settle, a task's end, a dead process's cleanup).
A sync request's hold names the process that placed it (`owner`): when that process dies, its holds are
released as soon as another one notices.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, bindparam, insert, select, update

from imagegate.core.accounts import Caller
from imagegate.core.errors import InsufficientBalance, QuotaExceeded
from imagegate.core.pricing import micros_to_usd
from imagegate.db.clock import utcnow
from imagegate.db.schema import Account, ApiKey, Hold, LedgerEntry

log = logging.getLogger("imagegate.billing")

_accounts = cast(Table, Account.__table__)
_keys = cast(Table, ApiKey.__table__)
_holds = cast(Table, Hold.__table__)
_entries = cast(Table, LedgerEntry.__table__)
_k, _a, _h = _keys.c, _accounts.c, _holds.c

# The statements of a hold and of its end, built once: a request pays for executing them, not for
# constructing and keying SQL expressions each time.
_HOLD_ON_KEY = update(_keys).where(
    _k.id == bindparam("key"),
    _k.spend_limit_micros.is_(None) | (_k.spent_micros + _k.held_micros + bindparam("amount") <= _k.spend_limit_micros),
).values(held_micros=_k.held_micros + bindparam("amount"))
_HOLD_ON_ACCOUNT = update(_accounts).where(
    _a.id == bindparam("account"), _a.balance_micros >= bindparam("amount"),
).values(balance_micros=_a.balance_micros - bindparam("amount"), held_micros=_a.held_micros + bindparam("amount"))
_BALANCE = select(_a.balance_micros).where(_a.id == bindparam("account"))
_OPEN_HOLD = select(_h.account_id, _h.key_id, _h.model, _h.amount_micros).where(
    _h.id == bindparam("hold"), _h.status == "held")
_CLOSE_HOLD = update(_holds).where(_h.id == bindparam("hold"), _h.status == "held").values(
    status=bindparam("outcome"), charged_micros=bindparam("charge"), closed_at=bindparam("now"))
_CLOSE_ON_KEY = update(_keys).where(_k.id == bindparam("key")).values(
    held_micros=_k.held_micros - bindparam("amount"), spent_micros=_k.spent_micros + bindparam("charge"))
_CLOSE_ON_ACCOUNT = update(_accounts).where(_a.id == bindparam("account")).values(
    held_micros=_a.held_micros - bindparam("amount"), spent_micros=_a.spent_micros + bindparam("charge"),
    balance_micros=_a.balance_micros + bindparam("amount") - bindparam("charge"))
_INSERT_HOLD = insert(_holds)
_INSERT_ENTRY = insert(_entries)
_OWNED_HOLDS = select(_h.id).where(_h.owner == bindparam("owner"), _h.status == "held")


def place_hold(conn: Connection, hold_id: str, caller: Caller, amount: int, *, model: str, expires_at: datetime,
               owner: str | None) -> None:
    """Hold `amount` of the caller's money, or raise QuotaExceeded / InsufficientBalance (the transaction then rolls
    back)."""
    if conn.execute(_HOLD_ON_KEY, {"key": caller.key_id, "amount": amount}).rowcount == 0:
        raise QuotaExceeded("This API key has reached its spend limit.", estimated_cost_usd=micros_to_usd(amount))
    if conn.execute(_HOLD_ON_ACCOUNT, {"account": caller.account_id, "amount": amount}).rowcount == 0:
        balance = conn.scalar(_BALANCE, {"account": caller.account_id}) or 0
        raise InsufficientBalance(
            f"Insufficient balance: this request may cost up to ${micros_to_usd(amount):.6f}; the "
            f"available balance is ${micros_to_usd(balance):.6f}.",
            estimated_cost_usd=micros_to_usd(amount), balance_usd=micros_to_usd(balance))
    now = utcnow()
    conn.execute(_INSERT_HOLD, {"id": hold_id, "account_id": caller.account_id, "key_id": caller.key_id,
                                "model": model, "amount_micros": amount, "status": "held", "created_at": now,
                                "expires_at": expires_at, "owner": owner})
    conn.execute(_INSERT_ENTRY, {"account_id": caller.account_id, "transaction_id": hold_id, "kind": "hold",
                                 "amount_micros": amount, "hold_id": hold_id, "memo": model, "created_at": now})


def close_hold(conn: Connection, hold_id: str, *, charge: int, settle: bool, memo: str | None = None) -> int:
    """Settle (charge `charge`, release the rest) or release a hold inside the caller's transaction.

    Returns 1 if this call closed the hold, 0 if it was already closed: a hold ends exactly once.
    """
    hold = conn.execute(_OPEN_HOLD, {"hold": hold_id}).one_or_none()
    if hold is None:
        return 0
    if charge > hold.amount_micros:
        log.warning("hold %s: actual cost %d exceeds the hold %d; charging the hold", hold_id, charge,
                    hold.amount_micros)
    charge = min(max(charge, 0), hold.amount_micros)
    now = utcnow()
    closed = conn.execute(_CLOSE_HOLD, {"hold": hold_id, "outcome": "settled" if settle else "released",
                                        "charge": charge, "now": now})
    if closed.rowcount == 0:
        return 0
    moved = {"amount": hold.amount_micros, "charge": charge}
    if hold.key_id is not None:  # key before account, the order `hold` locks them in: no deadlock
        conn.execute(_CLOSE_ON_KEY, {"key": hold.key_id, **moved})
    conn.execute(_CLOSE_ON_ACCOUNT, {"account": hold.account_id, **moved})
    conn.execute(_INSERT_ENTRY, {"account_id": hold.account_id, "transaction_id": hold_id,
                                 "kind": "settle" if settle else "release",
                                 "amount_micros": charge if settle else hold.amount_micros, "hold_id": hold_id,
                                 "memo": memo or hold.model, "created_at": now})
    return 1


def release_owned(conn: Connection, owner: str) -> int:
    """Release every hold still open that `owner` (a process now dead) placed; returns how many."""
    held = list(conn.scalars(_OWNED_HOLDS, {"owner": owner}))
    return sum(close_hold(conn, hold_id, charge=0, settle=False, memo="process died") for hold_id in held)
