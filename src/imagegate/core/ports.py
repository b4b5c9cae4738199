"""The seams between the core and its adapters. Each port has one implementation per backend and a fake."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any, BinaryIO, Protocol, runtime_checkable

from imagegate.core.accounts import Caller
from imagegate.core.idempotency import Reply
from imagegate.core.jobs import ImageJob, ImageRef, ImageResult, StreamEvent, UrlRef
from imagegate.core.media import SourceImage
from imagegate.core.tasks import ClaimedTask, TaskInput, TaskView, UpstreamJob


class Provider(Protocol):
    """One upstream (or the built-in engine): runs image jobs (edits, generations, variations, whichever
    its models serve) in its own wire format."""

    async def run(self, job: ImageJob) -> ImageResult: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class StreamingProvider(Protocol):
    """A provider that can stream a job: partial images as they are made, then the final one."""

    def stream(self, job: ImageJob) -> AsyncGenerator[StreamEvent, None]: ...


@runtime_checkable
class ResumableProvider(Protocol):
    """A provider whose upstream runs jobs of its own (submit, then poll).

    `start` submits and returns the job's state as plain JSON data once the upstream has accepted it;
    `resume` follows that state to the result, in this process or another one after a restart.
    """

    async def start(self, job: ImageJob) -> Mapping[str, Any]: ...

    async def resume(self, state: Mapping[str, Any], job: ImageJob) -> ImageResult: ...


class Fetcher(Protocol):
    """Downloads user-supplied image URLs safely, all of one request together.

    Returns one checked SourceImage per reference, in order. Raises InvalidImageURL, ImageFetchFailed,
    InvalidImage or ImageTooLarge naming the reference's `param`; a failure cancels the other fetches.
    """

    async def fetch_all(self, refs: Sequence[UrlRef]) -> list[SourceImage]: ...

    async def aclose(self) -> None: ...


class ResultFetcher(Protocol):
    """Downloads a result image an upstream answered with a URL of, under the rules for user URLs (public
    addresses only). Raises ImageFetchFailed, InvalidImageURL, or ImageTooLarge (over `max_bytes`)."""

    async def fetch_result(self, url: str, *, max_bytes: int) -> bytes: ...


class BlobStore(Protocol):
    """Bytes under opaque keys: uploaded files and output images."""

    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def put_file(self, key: str, file: BinaryIO, content_type: str) -> None: ...

    async def open(self, key: str) -> BinaryIO: ...

    async def delete(self, key: str) -> None: ...

    async def remove_older_than(self, prefix: str, age: float, *, limit: int = 1000) -> int:
        """Delete up to `limit` objects under `prefix` (and unfinished writes there) last written more than
        `age` seconds ago; returns how many."""
        ...

    def public_url(self, key: str) -> str: ...


class Ledger(Protocol):
    """Two-phase money movement: hold an estimate, then settle the actual cost or release it."""

    async def hold(self, caller: Caller, amount: int, *, model: str, ttl: float | None = None) -> str:
        """Reserve `amount` micro-dollars; returns the hold id. Raises InsufficientBalance/QuotaExceeded.

        A hold still open `ttl` seconds later (its request died with its process) is released by the sweeper.
        """
        ...

    async def settle(self, hold_id: str, amount: int, *, reply: Reply | None = None) -> str:
        """Charge `amount` (at most the hold) and release the rest, storing `reply` in the same transaction;
        returns the billing transaction id, which is the hold id."""
        ...

    async def release(self, hold_id: str) -> None: ...

    async def release_expired(self, limit: int = 100) -> int:
        """Release holds still open past their ttl; returns how many."""
        ...


class ImageResolver(Protocol):
    """Turns image references (uploads, file ids, URLs) into checked SourceImages, in order."""

    async def resolve(self, refs: Sequence[ImageRef], caller: Caller) -> list[SourceImage]: ...


class TaskStore(Protocol):
    """Persisted async tasks. Every change made under a lease names its owner and is refused without it."""

    async def create(self, task_id: str, caller: Caller, task: TaskInput, *, hold_id: str, deadline: float,
                     retention: float, reply_for: Callable[[TaskView], Reply] | None = None) -> TaskView:
        """Store a pending task, and the reply made of its view in the same transaction."""
        ...

    async def get(self, task_id: str, account_id: int) -> TaskView | None:
        """The task if it exists, belongs to the account and has not expired."""
        ...

    async def claim(self, owner: str, lease: float) -> ClaimedTask | None:
        """Take the oldest runnable task (pending, or whose worker's lease ran out) for `lease` seconds."""
        ...

    async def heartbeat(self, task_id: str, owner: str, lease: float) -> bool: ...

    async def save_upstream(self, task_id: str, owner: str, upstream: UpstreamJob) -> bool: ...

    async def complete(self, task_id: str, owner: str, *, data: list[dict[str, str]],
                       usage: Mapping[str, Any] | None, output_keys: list[str], cost: int) -> bool:
        """Mark the task completed and settle its hold for `cost`, in one transaction."""
        ...

    async def fail(self, task_id: str, owner: str | None, *, code: str, message: str) -> bool:
        """Mark the task failed and release its hold, in one transaction. `owner=None`: whoever holds it."""
        ...

    async def hand_back(self, owner: str) -> int:
        """Give up every lease `owner` holds, so other workers may claim those tasks at once."""
        ...

    async def overdue(self, limit: int = 100) -> list[str]:
        """Live tasks past their deadline that no worker holds."""
        ...

    async def purge_expired(self, limit: int = 100) -> list[str]:
        """Delete ended tasks past their retention; returns the blob keys they leave behind."""
        ...
