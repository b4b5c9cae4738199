"""The whole edit path, files included, runs the same on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

from tests.conftest import png_bytes, running

from imagegate.config import DatabaseSettings, Settings


async def test_edit_and_files_on_each_database(settings: Settings, db_url: str) -> None:
    async with running(replace(settings, database=DatabaseSettings(url=db_url))) as h:
        up = await h.client.post("/v1/files", headers=h.auth, data={"purpose": "user_data"},
                                 files={"file": ("p.png", png_bytes(), "image/png")})
        assert up.status_code == 200, up.text
        file_id = up.json()["id"]
        meta = await h.client.get(f"/v1/files/{file_id}", headers=h.auth)
        assert meta.json()["bytes"] == len(png_bytes())
        content = await h.client.get(f"/v1/files/{file_id}/content", headers=h.auth)
        assert content.content == png_bytes() and content.headers["content-type"] == "image/png"
        r = await h.client.post("/v1/images/edits", headers=h.auth, json={
            "model": "local-edit", "prompt": "sharpen", "images": [{"file_id": file_id}]})
        assert r.status_code == 200, r.text
        assert await h.fetch_output(r.json()["data"][0]["url"])
        gone = await h.client.delete(f"/v1/files/{file_id}", headers=h.auth)
        assert gone.json() == {"id": file_id, "object": "file", "deleted": True}
        again = await h.client.get(f"/v1/files/{file_id}", headers=h.auth)
        assert again.status_code == 404 and again.json()["error"]["code"] == "file_not_found"
        s = await h.gateway.accounts.summary("alice")
        assert s.deposits_micros == s.balance_micros + s.held_micros + s.spent_micros
