"""Answers kept under an `Idempotency-Key`: what a retry of the same request is sent instead of a second run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to keep for one account's key. Where a request charges money, the answer is stored in
    the same transaction as the charge (the settle, or the task that will be settled), so a crash can
    never leave a charge whose retry would run and charge again."""

    account_id: int
    key: str
    response: StoredResponse
