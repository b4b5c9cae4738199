"""Async tasks in SQL. Workers of any number of processes claim them with a lease.

A claim is `SELECT … FOR UPDATE SKIP LOCKED` then an update on PostgreSQL (so two processes never take
the same task), and the same statements under SQLite's single writer. Every later change names the
lease owner and changes nothing once the lease has passed to another worker. Completing a task settles
its hold, and failing it releases the hold, in the same transaction as the status change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, delete, insert, or_, select, update

from imagegate.core.accounts import Caller
from imagegate.core.idempotency import Reply
from imagegate.core.tasks import TERMINAL, ClaimedTask, TaskInput, TaskStatus, TaskView, UpstreamJob
from imagegate.db.clock import aware, utcnow
from imagegate.db.holds import close_hold
from imagegate.db.idempotency import record_reply
from imagegate.db.schema import Task
from imagegate.db.transactions import Transactions

_tasks = cast(Table, Task.__table__)
t = _tasks.c
_LIVE = ("pending", "processing")


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _view(row: Row[Any]) -> TaskView:
    result = json.loads(row.result) if row.result else {}
    return TaskView(id=row.id, model=row.model, status=cast(TaskStatus, row.status),
                    created=int(aware(row.created_at).timestamp()), updated=int(aware(row.updated_at).timestamp()),
                    data=result.get("data", []) if row.status == "completed" else [], usage=result.get("usage"),
                    error_code=row.error_code, error_message=row.error_message,
                    billing_transaction_id=row.billing_transaction_id)


def _owned(task_id: str, owner: str) -> Any:
    return (t.id == task_id) & (t.lease_owner == owner) & (t.status == "processing")


class SqlTaskStore:
    def __init__(self, transactions: Transactions) -> None:
        self._tx = transactions

    async def create(self, task_id: str, caller: Caller, task: TaskInput, *, hold_id: str, deadline: float,
                     retention: float, reply_for: Callable[[TaskView], Reply] | None = None) -> TaskView:
        now = utcnow()
        values = {"id": task_id, "account_id": caller.account_id, "key_id": caller.key_id, "model": task.model,
                  "status": "pending", "request": json.dumps(task.to_json()), "hold_id": hold_id, "attempts": 0,
                  "deadline_at": now + _seconds(deadline), "created_at": now, "updated_at": now,
                  "expires_at": now + _seconds(retention)}
        stamp = int(now.timestamp())
        view = TaskView(id=task_id, model=task.model, status="pending", created=stamp, updated=stamp)
        reply = reply_for(view) if reply_for is not None else None

        def work(conn: Connection) -> None:
            conn.execute(insert(_tasks).values(**values))
            if reply is not None:
                record_reply(conn, reply)

        await self._tx.run(work)
        return view

    async def get(self, task_id: str, account_id: int) -> TaskView | None:
        def work(conn: Connection) -> Row[Any] | None:
            return conn.execute(select(_tasks).where(t.id == task_id, t.account_id == account_id,
                                                     t.expires_at > utcnow())).one_or_none()

        row = await self._tx.run(work)
        return None if row is None else _view(row)

    async def claim(self, owner: str, lease: float) -> ClaimedTask | None:
        def work(conn: Connection) -> Row[Any] | None:
            now = utcnow()
            runnable = (t.status.in_(_LIVE) & or_(t.lease_expires_at.is_(None), t.lease_expires_at < now)
                        & (t.deadline_at > now))
            task_id = conn.scalar(select(t.id).where(runnable).order_by(t.created_at).limit(1)
                                  .with_for_update(skip_locked=True))
            if task_id is None:
                return None
            claimed = conn.execute(update(_tasks).where(t.id == task_id, runnable).values(
                status="processing", lease_owner=owner, lease_expires_at=now + _seconds(lease),
                attempts=t.attempts + 1, updated_at=now))
            if claimed.rowcount == 0:
                return None
            return conn.execute(select(_tasks).where(t.id == task_id)).one()

        row = await self._tx.run(work)
        if row is None:
            return None
        upstream = json.loads(row.upstream_job) if row.upstream_job else None
        return ClaimedTask(id=row.id, account_id=row.account_id, hold_id=row.hold_id,
                           input=TaskInput.from_json(json.loads(row.request)),
                           upstream=UpstreamJob(upstream["route"], upstream["state"]) if upstream else None,
                           attempts=row.attempts, deadline=aware(row.deadline_at).timestamp())

    async def heartbeat(self, task_id: str, owner: str, lease: float) -> bool:
        return await self._update(task_id, owner, lease_expires_at=utcnow() + _seconds(lease))

    async def save_upstream(self, task_id: str, owner: str, upstream: UpstreamJob) -> bool:
        state = json.dumps({"route": upstream.route, "state": dict(upstream.state)})
        return await self._update(task_id, owner, upstream_job=state, updated_at=utcnow())

    async def _update(self, task_id: str, owner: str, **values: Any) -> bool:
        def work(conn: Connection) -> bool:
            return conn.execute(update(_tasks).where(_owned(task_id, owner)).values(**values)).rowcount == 1

        return await self._tx.run(work)

    async def complete(self, task_id: str, owner: str, *, data: list[dict[str, str]],
                       usage: Mapping[str, Any] | None, output_keys: list[str], cost: int) -> bool:
        result = json.dumps({"data": data, "usage": usage, "output_keys": output_keys})

        def work(conn: Connection) -> bool:
            hold_id = conn.scalar(select(t.hold_id).where(_owned(task_id, owner)))
            if hold_id is None:
                return False
            conn.execute(update(_tasks).where(_owned(task_id, owner)).values(
                status="completed", result=result, billing_transaction_id=hold_id, lease_owner=None,
                lease_expires_at=None, updated_at=utcnow()))
            close_hold(conn, hold_id, charge=cost, settle=True)
            return True

        return await self._tx.run(work)

    async def fail(self, task_id: str, owner: str | None, *, code: str, message: str) -> bool:
        def work(conn: Connection) -> bool:
            where = _owned(task_id, owner) if owner is not None else (t.id == task_id) & t.status.in_(_LIVE)
            hold_id = conn.scalar(select(t.hold_id).where(where))
            if hold_id is None:
                return False
            conn.execute(update(_tasks).where(where).values(
                status="failed", error_code=code, error_message=message[:1000], lease_owner=None,
                lease_expires_at=None, updated_at=utcnow()))
            close_hold(conn, hold_id, charge=0, settle=False, memo=f"task {code}")
            return True

        return await self._tx.run(work)

    async def hand_back(self, owner: str) -> int:
        """End `owner`'s leases at once (a process stopping in good order); the interrupted claims are not
        counted as attempts. Returns how many tasks were handed back."""
        def work(conn: Connection) -> int:
            return conn.execute(update(_tasks).where(t.lease_owner == owner, t.status == "processing").values(
                lease_owner=None, lease_expires_at=None, attempts=t.attempts - 1, updated_at=utcnow())).rowcount

        return await self._tx.run(work)

    async def overdue(self, limit: int = 100) -> list[str]:
        """Live tasks past their deadline that no worker holds (a running worker times out by itself)."""
        def work(conn: Connection) -> list[str]:
            now = utcnow()
            return list(conn.scalars(select(t.id).where(
                t.status.in_(_LIVE), t.deadline_at <= now,
                or_(t.lease_expires_at.is_(None), t.lease_expires_at < now)).limit(limit)))

        return await self._tx.run(work)

    async def purge_expired(self, limit: int = 100) -> list[str]:
        """Delete ended tasks past their retention; returns the blob keys (inputs, outputs) to delete."""
        def work(conn: Connection) -> list[str]:
            rows = conn.execute(select(t.id, t.request, t.result).where(
                t.expires_at <= utcnow(), t.status.in_(TERMINAL)).limit(limit)).all()
            if rows:
                conn.execute(delete(_tasks).where(t.id.in_([r.id for r in rows])))
            keys: list[str] = []
            for row in rows:
                keys.extend(TaskInput.from_json(json.loads(row.request)).blob_keys())
                keys.extend(json.loads(row.result).get("output_keys", []) if row.result else [])
            return keys

        return await self._tx.run(work)
