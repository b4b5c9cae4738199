"""The local blob store: writes, keys, and removing what is past its retention."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from imagegate.core.errors import NotFound
from imagegate.storage.local import LocalBlobStore


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs", "http://gateway.test")


def age(store: LocalBlobStore, key_or_path: str | Path, seconds: float) -> None:
    path = store.path(key_or_path) if isinstance(key_or_path, str) else key_or_path
    then = time.time() - seconds
    os.utime(path, (then, then))


async def test_put_open_delete_and_public_url(store: LocalBlobStore) -> None:
    await store.put("outputs/" + "a" * 24 + ".png", b"png bytes", "image/png")
    await store.put_file("files/" + "b" * 24 + ".png", io.BytesIO(b"file bytes"), "image/png")
    with await store.open("outputs/" + "a" * 24 + ".png") as f:
        assert f.read() == b"png bytes"
    with await store.open("files/" + "b" * 24 + ".png") as f:
        assert f.read() == b"file bytes"
    assert store.public_url("outputs/" + "a" * 24 + ".png") == "http://gateway.test/blobs/outputs/" + "a" * 24 + ".png"
    await store.delete("outputs/" + "a" * 24 + ".png")
    with pytest.raises(NotFound):
        await store.open("outputs/" + "a" * 24 + ".png")
    for bad in ("../etc/passwd", "outputs/short", "outputs/" + "a" * 24 + "/x", "Outputs/" + "a" * 24):
        with pytest.raises(NotFound):
            store.path(bad)


async def test_only_old_objects_under_the_prefix_are_removed(store: LocalBlobStore) -> None:
    old, fresh, other = "outputs/" + "o" * 24 + ".png", "outputs/" + "f" * 24 + ".png", "files/" + "o" * 24 + ".png"
    for key in (old, fresh, other):
        await store.put(key, b"x", "image/png")
    unfinished = store.path(old).with_name("u" * 24 + ".png.part")  # a write cut short by a crash
    unfinished.write_bytes(b"half")
    for path in (old, other, unfinished):
        age(store, path, 3600)
    assert await store.remove_older_than("outputs/", 600) == 2
    assert not store.path(old).exists() and not unfinished.exists()
    assert store.path(fresh).exists() and store.path(other).exists()  # too young; another prefix
    assert await store.remove_older_than("outputs/", 600) == 0


async def test_removal_is_bounded_per_call(store: LocalBlobStore) -> None:
    keys = [f"inputs/{i:024d}.png" for i in range(5)]
    for key in keys:
        await store.put(key, b"x", "image/png")
        age(store, key, 100)
    assert await store.remove_older_than("inputs/", 10, limit=3) == 3
    assert await store.remove_older_than("inputs/", 10, limit=3) == 2
    assert not any(store.path(key).exists() for key in keys)


async def test_a_prefix_never_written_and_bad_prefixes(store: LocalBlobStore) -> None:
    assert await store.remove_older_than("outputs/", 0) == 0  # nothing stored yet
    for bad in ("", "/", "../", "outputs", "outputs/../", "a/b/"):
        with pytest.raises(ValueError):
            await store.remove_older_than(bad, 0)
