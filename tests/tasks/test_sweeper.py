"""The sweeper's storage duties: images past their retention, expired uploads, and what a crash left
without an owner, on both databases. (Overdue tasks and stale holds are covered with the runner.)"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from pathlib import Path

from tests.conftest import Harness, png_bytes, running, settings_on

from imagegate.config import TaskSettings

DAY = 86400.0


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


async def test_expired_uploads_lose_their_record_and_their_bytes(db_url: str, tmp_path: Path) -> None:
    settings = settings_on(db_url, tmp_path / "blobs", tasks=TaskSettings(workers=0))
    async with running(replace(settings, storage=replace(settings.storage, file_retention=0.5))) as h:
        upload = await h.client.post("/v1/files", headers=h.auth, data={"purpose": "vision"},
                                     files={"file": ("a.png", png_bytes(), "image/png")})
        assert upload.status_code == 200
        file_id = upload.json()["id"]
        blob = next((tmp_path / "blobs" / "files").iterdir())
        await h.gateway.sweeper.sweep()
        assert blob.exists()  # not expired yet
        await asyncio.sleep(0.6)
        assert (await h.client.get(f"/v1/files/{file_id}", headers=h.auth)).status_code == 404
        await h.gateway.sweeper.sweep()
        assert not blob.exists()
        assert await h.gateway.files.purge_expired() == []  # the record is gone too


async def test_blobs_a_crash_left_without_an_owner_are_deleted_once_old(db_url: str, tmp_path: Path) -> None:
    settings = settings_on(db_url, tmp_path / "blobs", tasks=TaskSettings(workers=0, retention=DAY))
    async with running(settings) as h:
        orphans = {"inputs/" + "i" * 24 + ".png": DAY + 60, "files/" + "f" * 24 + ".png": 31 * DAY + 60}
        young = {"inputs/" + "j" * 24 + ".png": DAY - 60, "files/" + "g" * 24 + ".png": 30 * DAY}
        for key, seconds in (orphans | young).items():
            await h.gateway.blobs.put(key, png_bytes(), "image/png")
            aged(h, key, seconds)
        await h.gateway.sweeper.sweep()
        assert not any(h.gateway.blobs.path(key).exists() for key in orphans)
        assert all(h.gateway.blobs.path(key).exists() for key in young)

