"""This process's presence: a row in `instances` it refreshes while it lives.

A gateway process registers when it is built and heart-beats every third of `lease`; a clean stop
removes its row. A process whose heartbeat is older than `lease` (or whose row is gone) is dead: what it
owned that nothing else will end — the holds of its synchronous requests, its in-progress
Idempotency-Keys — is taken over at once, by the next retry of such a key or by any process's sweeper,
instead of waiting out `hold_ttl`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from datetime import timedelta
from typing import cast

from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update

from imagegate.db.clock import aware, utcnow
from imagegate.db.holds import release_owned
from imagegate.db.schema import Instance
from imagegate.db.transactions import Transactions

log = logging.getLogger("imagegate.presence")
_instances = cast(Table, Instance.__table__)
_i = _instances.c
_HEARTBEAT = select(_i.heartbeat_at).where(_i.id == bindparam("owner"))


def new_instance_id() -> str:
    """A name for this process, unique among every replica's: host, pid and a random part."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"


def alive(conn: Connection, owner: str, lease: float) -> bool:
    """Whether the process `owner` heart-beat within the last `lease` seconds."""
    beat = conn.scalar(_HEARTBEAT, {"owner": owner})
    return beat is not None and aware(beat) > utcnow() - timedelta(seconds=lease)


def bury(conn: Connection, owner: str) -> int:
    """Release what the dead process `owner` held and forget it; returns how many holds were released."""
    released = release_owned(conn, owner)
    conn.execute(delete(_instances).where(_i.id == owner))
    return released


class Presence:
    def __init__(self, transactions: Transactions, instance_id: str, *, lease: float) -> None:
        self._tx = transactions
        self.id = instance_id
        self.lease = lease
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Register this process and keep its heartbeat going until `aclose`."""
        await self._tx.run(self._heartbeat)
        self._loop = asyncio.create_task(self._beat(), name="presence")

    def _heartbeat(self, conn: Connection) -> None:
        now = utcnow()
        if conn.execute(update(_instances).where(_i.id == self.id).values(heartbeat_at=now)).rowcount == 0:
            conn.execute(insert(_instances).values(id=self.id, started_at=now, heartbeat_at=now))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self._tx.run(self._heartbeat)  # registers again if another process buried this one
            except Exception:
                log.warning("heartbeat of %s failed", self.id, exc_info=True)

    async def aclose(self) -> None:
        """Stop heart-beating and remove this process's row (a clean stop: nothing of it is left open)."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
            await self._tx.run(lambda conn: conn.execute(delete(_instances).where(_i.id == self.id)))

    async def reap(self, limit: int = 100) -> int:
        """Bury processes whose heartbeat stopped; returns how many holds that released."""
        def work(conn: Connection) -> int:
            cutoff = utcnow() - timedelta(seconds=self.lease)
            dead = list(conn.scalars(select(_i.id).where(_i.heartbeat_at < cutoff).limit(limit)
                                     .with_for_update(skip_locked=True)))
            return sum(bury(conn, owner) for owner in dead)

        return await self._tx.run(work)
