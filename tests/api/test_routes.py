"""The route table: no route shadows another, unknown paths and methods get the envelope, and the Files API
lists a caller's files as OpenAI's SDK pages them."""

from __future__ import annotations

import pytest
from tests.conftest import Harness, png_bytes


@pytest.mark.parametrize("path", ["/v1/images/edits", "/v1/images/generations", "/v1/images/variations"])
async def test_an_operation_path_is_never_a_task_lookup(harness: Harness, path: str) -> None:
    r = await harness.client.get(path, headers=harness.auth)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["error"]["code"] == "method_not_allowed"


async def test_unknown_task_ids_and_paths(harness: Harness) -> None:
    for path in ("/v1/images/ldtask_nope", "/v1/images/generations/ldtask_nope", "/v1/tasks/ldtask_nope"):
        r = await harness.client.get(path, headers=harness.auth)
        assert r.status_code == 404 and r.json()["error"]["code"] == "async_task_not_found", path
    unknown = await harness.client.post("/v1/paint", headers=harness.auth)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


async def upload(h: Harness, key: str | None = None, **fields: str) -> dict[str, object]:
    r = await h.client.post("/v1/files", headers={"Authorization": f"Bearer {key or h.key}"},
                            data={"purpose": "vision", **fields}, files={"file": ("a.png", png_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


async def test_files_are_listed_newest_first_in_pages(harness: Harness) -> None:
    ids = [(await upload(harness))["id"] for _ in range(5)]
    other = await harness.new_key("bob")
    await upload(harness, other)
    page = (await harness.client.get("/v1/files?limit=2", headers=harness.auth)).json()
    assert [f["id"] for f in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    assert page["object"] == "list" and page["first_id"] == ids[4] and page["last_id"] == ids[3]
    rest = (await harness.client.get(f"/v1/files?after={ids[3]}", headers=harness.auth)).json()
    assert [f["id"] for f in rest["data"]] == ids[::-1][2:] and rest["has_more"] is False  # bob's is not here
    ascending = (await harness.client.get("/v1/files?order=asc&purpose=vision", headers=harness.auth)).json()
    assert [f["id"] for f in ascending["data"]] == ids
    assert (await harness.client.get("/v1/files?purpose=user_data", headers=harness.auth)).json()["data"] == []
    assert "status_details" not in page["data"][0]


async def test_the_sdk_pages_through_files(harness: Harness) -> None:
    ids = {(await upload(harness))["id"] for _ in range(3)}
    async with harness.sdk() as client:
        listed = {f.id async for f in client.files.list(limit=2)}
    assert listed == ids


@pytest.mark.parametrize(("query", "param"), [("limit=0", "limit"), ("limit=x", "limit"), ("order=up", "order"),
                                              ("after=file-nope", "after")])
async def test_bad_list_parameters_are_named(harness: Harness, query: str, param: str) -> None:
    r = await harness.client.get(f"/v1/files?{query}", headers=harness.auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == param


async def test_expires_after_is_honoured(harness: Harness) -> None:
    made = await upload(harness, **{"expires_after[anchor]": "created_at", "expires_after[seconds]": "3600"})
    assert made["expires_at"] == made["created_at"] + 3600  # type: ignore[operator]
    for fields, param in (({"expires_after[anchor]": "now", "expires_after[seconds]": "3600"},
                           "expires_after[anchor]"),
                          ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "60"},
                           "expires_after[seconds]")):
        r = await harness.client.post("/v1/files", headers=harness.auth, data={"purpose": "vision", **fields},
                                      files={"file": ("a.png", png_bytes(), "image/png")})
        assert r.status_code == 400 and r.json()["error"]["param"] == param
