"""Idempotency keys: a retried request with the same key and body gets the first answer, not a second run.

A key is scoped to its account. `begin` records the key as in progress, owned by this process (or
returns the stored answer); `finish` (or `record_reply`, inside the transaction that charges for the
request) stores the answer of a request that succeeded; `abandon` forgets a key whose request failed, so
a retry runs again (a failed request charged nothing). A key in progress in a process that has died (no
heartbeat for its lease, see db.presence) is taken over by the next retry, and the dead process's holds
are released in the same transaction; the retry then runs again, safely, since nothing was charged.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import cast

from sqlalchemy import Connection, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from imagegate.core.errors import Conflict
from imagegate.core.idempotency import Reply, StoredResponse
from imagegate.db.clock import aware, utcnow
from imagegate.db.presence import alive, bury
from imagegate.db.schema import IdempotencyRecord
from imagegate.db.transactions import Transactions

log = logging.getLogger("imagegate.idempotency")
_records = cast(Table, IdempotencyRecord.__table__)
r = _records.c


def _in_progress() -> Conflict:
    return Conflict("A request with this Idempotency-Key is still being processed; retry it later.",
                    param="Idempotency-Key", code="idempotency_request_in_progress")


class SqlIdempotencyStore:
    """`owner` is this process's id and `lease` how long a silent process counts as alive; a key without an
    owner (recorded before owners were) is taken over once it is older than `stale_after`."""

    def __init__(self, transactions: Transactions, *, owner: str, lease: float, stale_after: float,
                 retention: float = 86400.0) -> None:
        self._tx = transactions
        self._owner = owner
        self._lease = lease
        self._stale_after = timedelta(seconds=stale_after)
        self._retention = timedelta(seconds=retention)

    async def begin(self, account_id: int, key: str, route: str, fingerprint: str) -> StoredResponse | None:
        """None: go ahead (the key is now in progress). A stored response: send it again. Conflict: refuse."""
        def work(conn: Connection) -> StoredResponse | None:
            now = utcnow()
            where = (r.account_id == account_id) & (r.key == key)
            row = conn.execute(select(_records).where(where).with_for_update()).one_or_none()
            if row is not None and aware(row.created_at) <= now - self._retention:
                conn.execute(delete(_records).where(where))
                row = None
            if row is None:
                conn.execute(insert(_records).values(account_id=account_id, key=key, route=route,
                                                     body_hash=fingerprint, created_at=now, owner=self._owner))
                return None
            if row.route != route or row.body_hash != fingerprint:
                raise Conflict("This Idempotency-Key was already used with a different request.",
                               param="Idempotency-Key", code="idempotency_key_reused")
            if row.status is not None:
                stored = json.loads(row.response)
                return StoredResponse(row.status, stored["body"].encode(), stored["headers"])
            if row.owner is not None:
                if alive(conn, row.owner, self._lease):
                    raise _in_progress()
                released = bury(conn, row.owner)  # its process died: so did the request
                log.warning("Idempotency-Key of account %d taken over from dead process %s (%d hold(s) "
                            "released)", account_id, row.owner, released)
            elif aware(row.created_at) > now - self._stale_after:
                raise _in_progress()
            conn.execute(update(_records).where(where).values(created_at=now, owner=self._owner))
            return None

        try:
            return await self._tx.run(work)
        except IntegrityError:  # the same key inserted by a concurrent request a moment ago
            raise _in_progress() from None

    async def finish(self, reply: Reply) -> None:
        """Store the answer of a request that succeeded (unless it was stored with its charge already)."""
        await self._tx.run(lambda conn: record_reply(conn, reply))

    async def abandon(self, account_id: int, key: str) -> None:
        await self._tx.run(lambda conn: conn.execute(delete(_records).where(
            r.account_id == account_id, r.key == key, r.status.is_(None))))

    async def purge_expired(self) -> int:
        def work(conn: Connection) -> int:
            return conn.execute(delete(_records).where(r.created_at <= utcnow() - self._retention)).rowcount

        return await self._tx.run(work)


def record_reply(conn: Connection, reply: Reply) -> None:
    """Store `reply` under its key, inside the caller's transaction; a key already answered is left alone."""
    response = reply.response
    stored = json.dumps({"body": response.body.decode(), "headers": dict(response.headers)})
    conn.execute(update(_records).where(r.account_id == reply.account_id, r.key == reply.key, r.status.is_(None))
                 .values(status=response.status, response=stored))
