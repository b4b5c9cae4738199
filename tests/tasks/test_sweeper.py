"""The sweeper's storage duties: images past their retention, expired uploads, and what a crash left
without an owner, on both databases. (Overdue tasks and stale holds are covered with the runner.)"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from tests.conftest import Harness, png_bytes, running, settings_on

from imagegate.config import TaskSettings

DAY = 86400.0


@pytest.fixture
async def harness_on(db_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(settings_on(db_url, tmp_path / "blobs", tasks=TaskSettings(workers=0))) as h:
        yield h


def aged(h: Harness, key: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(h.gateway.blobs.path(key), (then, then))


def blob_key(url: str) -> str:
    return url.split("/blobs/", 1)[1]


async def sync_edit(h: Harness) -> str:
    response = await h.client.post("/v1/images/edits", headers=h.auth, data={"model": "local-edit",
                                                                              "prompt": "sepia"},
                                   files={"image": ("a.png", png_bytes(), "image/png")})
    assert response.status_code == 200
    return str(response.json()["data"][0]["url"])


async def test_output_images_past_their_retention_are_deleted(db_url: str, tmp_path: Path) -> None:
    settings = settings_on(db_url, tmp_path / "blobs", tasks=TaskSettings(workers=0, retention=DAY))
    async with running(replace(settings, storage=replace(settings.storage, output_retention=2 * DAY))) as h:
        old, recent = await sync_edit(h), await sync_edit(h)
        aged(h, blob_key(old), 2 * DAY + 60)
        aged(h, blob_key(recent), 2 * DAY - 60)
        await h.gateway.sweeper.sweep()
        assert (await h.client.get(old.removeprefix("http://gateway.test"))).status_code == 404
        assert (await h.client.get(recent.removeprefix("http://gateway.test"))).status_code == 200


async def test_expired_uploads_lose_their_record_and_their_bytes(harness_on: Harness) -> None:
    h = harness_on
    live = await h.client.post("/v1/files", headers=h.auth, data={"purpose": "vision"},
                               files={"file": ("a.png", png_bytes(), "image/png")})
    assert live.status_code == 200
    expired_key = "files/" + "e" * 24 + ".png"
    await h.gateway.blobs.put(expired_key, png_bytes(), "image/png")
    account = await h.gateway.accounts.ensure_account("alice")
    expired = await h.gateway.files.add(file_id="file-" + "e" * 24, account_id=account, filename="old.png",
                                        purpose="vision", size=1, fmt="png", blob_key=expired_key,
                                        ttl=timedelta(seconds=-1))
    assert (await h.client.get(f"/v1/files/{expired.id}", headers=h.auth)).status_code == 404
    await h.gateway.sweeper.sweep()
    assert not h.gateway.blobs.path(expired_key).exists()
    assert await h.gateway.files.purge_expired() == []  # its record is gone too
    assert (await h.client.get(f"/v1/files/{live.json()['id']}/content", headers=h.auth)).status_code == 200


async def test_blobs_a_crash_left_without_an_owner_are_deleted_once_old(harness_on: Harness) -> None:
    h = harness_on  # default retentions: a day for inputs, 30 days (and an hour's margin) for files
    orphans = {"inputs/" + "i" * 24 + ".png": DAY + 60, "files/" + "f" * 24 + ".png": 31 * DAY + 60}
    young = {"inputs/" + "j" * 24 + ".png": DAY - 60, "files/" + "g" * 24 + ".png": 30 * DAY}
    for key, seconds in (orphans | young).items():
        await h.gateway.blobs.put(key, png_bytes(), "image/png")
        aged(h, key, seconds)
    await h.gateway.sweeper.sweep()
    assert not any(h.gateway.blobs.path(key).exists() for key in orphans)
    assert all(h.gateway.blobs.path(key).exists() for key in young)
