"""Async tasks as the core sees them: what is persisted to run an image job later, and what a client is shown."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from imagegate.core.jobs import Operation
from imagegate.core.pricing import CostInputs

TASK_PREFIX = "ldtask_"
TaskStatus = Literal["pending", "processing", "completed", "failed"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed"})
TIMED_OUT = "The task did not finish before its deadline; it was not billed."


def new_task_id() -> str:
    return TASK_PREFIX + secrets.token_hex(16)


def poll_url(task_id: str) -> str:
    return f"/v1/tasks/{task_id}"


class LeaseLost(Exception):
    """The task's lease passed to another worker; this one must stop without touching it."""


@dataclass(frozen=True, slots=True)
class StoredInput:
    """A source image (or mask) copied into the blob store when the task was accepted."""

    key: str
    param: str
    filename: str
    size: int


@dataclass(frozen=True, slots=True)
class TaskInput:
    """Everything a worker needs to run the job again from scratch, in any gateway process."""

    operation: Operation
    model: str
    prompt: str
    n: int
    options: Mapping[str, Any]
    images: tuple[StoredInput, ...]
    mask: StoredInput | None
    costs: CostInputs

    def to_json(self) -> dict[str, Any]:
        return {"operation": self.operation, "model": self.model, "prompt": self.prompt, "n": self.n,
                "options": dict(self.options),
                "images": [asdict(i) for i in self.images], "mask": asdict(self.mask) if self.mask else None,
                "costs": asdict(self.costs)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> TaskInput:
        costs = dict(raw["costs"])
        costs["input_pixels"] = tuple(costs["input_pixels"])
        costs["size"] = tuple(costs["size"]) if costs.get("size") else None
        return cls(operation=raw.get("operation", "edit"), model=raw["model"], prompt=raw["prompt"],
                   n=int(raw["n"]), options=dict(raw["options"]),
                   images=tuple(StoredInput(**i) for i in raw["images"]),
                   mask=StoredInput(**raw["mask"]) if raw.get("mask") else None, costs=CostInputs(**costs))

    def blob_keys(self) -> list[str]:
        return [i.key for i in (*self.images, *([self.mask] if self.mask else []))]


@dataclass(frozen=True, slots=True)
class UpstreamJob:
    """A job an upstream accepted (its id, where to poll it): resumed after a restart, never resubmitted."""

    route: str  # provider name
    state: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    """A task a worker holds the lease on."""

    id: str
    account_id: int
    hold_id: str
    input: TaskInput
    upstream: UpstreamJob | None
    attempts: int
    deadline: float  # Unix time


@dataclass(frozen=True, slots=True)
class TaskView:
    """A task as its owner sees it through GET /v1/tasks/{id}."""

    id: str
    model: str
    status: TaskStatus
    created: int
    updated: int
    data: list[dict[str, str]] = field(default_factory=list)
    usage: Mapping[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    billing_transaction_id: str | None = None

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "task_id": self.id, "object": "image.task", "poll_url": poll_url(self.id),
                               "created": self.created, "updated": self.updated, "model": self.model,
                               "status": self.status, "data": self.data}
        if self.status == "failed":
            out["error"] = {"code": self.error_code or "task_failed", "message": self.error_message or ""}
        if self.usage is not None:
            out["usage"] = self.usage
        if self.billing_transaction_id is not None:
            out["billing_transaction_id"] = self.billing_transaction_id
        return out
