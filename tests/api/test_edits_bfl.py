"""Edits through a `bfl` route, as the gateway's client sees them and as the books record them.

The adapter's wire details are tested in tests/providers/test_bfl.py and crash recovery in
tests/tasks/test_runner.py; here the real app runs in-process against the BFL emulator (submit, regional
polling, expiring samples), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.conftest import Harness, png_bytes, running, settings_on
from tests.emulators.bfl_emulator import BflEmulator

from imagegate.config import ProviderSettings, TaskSettings

KEY = "bfl-upstream-key"
MODELS = ("flux-kontext-pro", "flux-2-pro")
MICROS_PER_CREDIT = 10_000  # 1 credit = $0.01


@pytest.fixture
async def emu() -> AsyncIterator[BflEmulator]:
    async with BflEmulator(KEY, steps=()) as emulator:  # Ready at the first poll; tests add steps as needed
        yield emulator


@pytest.fixture
async def gw(db_url: str, tmp_path: Path, emu: BflEmulator) -> AsyncIterator[Harness]:
    async with running(settings_on(
        db_url, tmp_path / "blobs",
        tasks=TaskSettings(workers=0),
        providers=(ProviderSettings(name="bfl", type="bfl", base_url=emu.base_url, api_key=KEY, models=MODELS,
                                    timeout=10.0),))) as h:
        yield h


async def edit(h: Harness, model: str = "flux-kontext-pro", size: tuple[int, int] = (96, 64),
               run_async: bool = False, **fields: str) -> Any:
    if run_async:
        fields["async"] = "true"
    return await h.client.post("/v1/images/edits", headers=h.auth, files={"image": ("a.png", png_bytes(size),
                                                                                     "image/png")},
                               data={"model": model, "prompt": "add a hat", **fields})


def credits(emu: BflEmulator) -> int:
    """What BFL reported for every task it accepted, in micro-USD."""
    return sum(round(task.cost * MICROS_PER_CREDIT) for task in emu.tasks.values())


async def test_sync_edit_submits_polls_and_hands_out_a_stored_copy(gw: Harness, emu: BflEmulator) -> None:
    emu.steps = ("Pending", "Generating")
    balance, _, _ = await gw.books()
    r = await edit(gw)
    assert r.status_code == 200, r.text
    [submit] = emu.submits
    assert submit.path == "/v1/flux-kontext-pro" and submit.headers["x-key"] == KEY
    assert [p.path for p in emu.polls] == ["/us1/v1/get_result"] * 3  # within the request, at the regional URL
    [download] = emu.downloads
    body = r.json()
    [item] = body["data"]
    assert item["url"].startswith("http://gateway.test/blobs/outputs/")
    assert emu.url not in r.text and "/delivery/" not in r.text  # never BFL's expiring sample URL
    stored = await gw.fetch_output(item["url"])
    assert Image.open(io.BytesIO(stored)).size == (96, 64)
    assert stored == emu.samples[download.path.rsplit("/", 1)[1]][0]
    cost = credits(emu)
    assert cost == 4 * MICROS_PER_CREDIT  # Kontext [pro]: 4 credits an image
    assert await gw.books() == (balance - cost, 0, cost)
    settled = [e for e in await gw.gateway.accounts.ledger("alice") if e.kind == "settle"]
    assert [(e.transaction_id, e.amount_micros, e.memo) for e in settled] == [
        (body["billing_transaction_id"], cost, "flux-kontext-pro")]


async def test_charged_the_credits_bfl_reports_not_the_catalog_estimate(gw: Harness, emu: BflEmulator) -> None:
    balance, _, _ = await gw.books()
    r = await edit(gw, model="flux-2-pro", size=(64, 64), n="2", output_format="png", response_format="b64_json")
    assert r.status_code == 200, r.text
    assert len(emu.submits) == 2 and len(r.json()["data"]) == 2
    assert all(set(item) == {"b64_json"} for item in r.json()["data"])
    cost = credits(emu)
    assert cost == 2 * 30_100  # 3 credits for the first MP + 1.5 per input MP (64x64) = 3.01 credits each
    assert await gw.books() == (balance - cost, 0, cost)


@pytest.mark.parametrize(("kind", "stage"), [("request_moderated", "input"), ("content_moderated", "output")])
async def test_moderated_task_is_a_400_and_free(gw: Harness, emu: BflEmulator, kind: str, stage: str) -> None:
    emu.inject(kind)
    balance, _, _ = await gw.books()
    r = await edit(gw)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "moderation_blocked" and error["type"] == "invalid_request_error"
    assert stage in error["message"]
    assert emu.downloads == [] and len(emu.submits) == 1
    assert await gw.books() == (balance, 0, 0)


@pytest.mark.parametrize("kind", [
    "error_status",  # nothing was produced; with one route there is nowhere else to go
    "task_not_found",  # the outcome is unknown and may be billed upstream: never resubmitted
])
async def test_failed_task_is_a_502_and_free(gw: Harness, emu: BflEmulator, kind: str) -> None:
    emu.inject(kind)
    balance, _, _ = await gw.books()
    r = await edit(gw)
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "upstream_error" and r.json()["error"]["type"] == "upstream_error"
    assert len(emu.submits) == 1 and emu.downloads == []
    assert await gw.books() == (balance, 0, 0)


@pytest.mark.parametrize(("kind", "status", "code"), [
    ("insufficient_credits", 502, "upstream_error"),  # the gateway's BFL account is empty: not the client's 402
    ("not_authenticated", 502, "upstream_error"),
    ("forbidden", 502, "upstream_error"),
    ("server_error", 502, "upstream_error"),
    ("unavailable", 502, "upstream_error"),
    ("rate_limit", 429, "rate_limit_exceeded"),
    ("validation", 400, "upstream_invalid_request"),
])
async def test_submit_errors_as_the_client_sees_them(gw: Harness, emu: BflEmulator, kind: str, status: int,
                                                     code: str) -> None:
    emu.inject(kind, retry_after=2)
    balance, _, _ = await gw.books()
    r = await edit(gw)
    assert r.status_code == status, r.text
    assert r.status_code != 402
    error = r.json()["error"]
    assert error["code"] == code
    assert "Please add credits" not in r.text and "Not authenticated" not in r.text and KEY not in r.text
    if kind == "rate_limit":
        assert r.headers["Retry-After"] == "2"
    if kind == "validation":
        assert error["param"] == "seed"
    assert emu.polls == [] and len(emu.submits) == 1
    assert await gw.books() == (balance, 0, 0)


@pytest.mark.parametrize("how", ["at_once", "while_retrying"])
async def test_sample_expired_before_download_is_a_clear_upstream_failure(gw: Harness, emu: BflEmulator,
                                                                          how: str) -> None:
    if how == "at_once":
        emu.sample_ttl = 0.0
    else:  # the first download fails; by the retry, the signed URL has expired
        emu.sample_ttl = 0.2
        emu.inject("server_error", on="sample")
    balance, _, _ = await gw.books()
    r = await edit(gw)
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert error["code"] == "upstream_error" and "expired" in error["message"]
    assert [d.status for d in emu.downloads] == ([403] if how == "at_once" else [500, 403])
    assert len(emu.submits) == 1
    assert await gw.books() == (balance, 0, 0)


async def test_async_kontext_returns_a_task_then_completes_with_a_url(gw: Harness, emu: BflEmulator) -> None:
    emu.steps = ("Pending",)
    balance, _, _ = await gw.books()
    r = await edit(gw, response_format="b64_json", run_async=True)
    assert r.status_code == 200, r.text
    accepted = r.json()
    assert accepted["status"] == "pending" and accepted["data"] == []
    assert accepted["poll_url"] == f"/v1/tasks/{accepted['id']}"
    assert emu.requests == []  # nothing sent before a worker runs it
    _, held, _ = await gw.books()
    assert held > 0

    assert await gw.gateway.runner.run_once() is True
    done = await gw.client.get(accepted["poll_url"], headers=gw.auth)
    assert done.status_code == 200
    task = done.json()
    assert task["status"] == "completed" and task["model"] == "flux-kontext-pro"
    [item] = task["data"]
    assert set(item) == {"url"} and item["url"].startswith("http://gateway.test/blobs/outputs/")
    assert Image.open(io.BytesIO(await gw.fetch_output(item["url"]))).size == (96, 64)
    assert len(emu.submits) == 1 and len(emu.polls) == 2
    cost = credits(emu)
    assert task["billing_transaction_id"] == done.headers["X-Billing-Transaction-ID"]
    assert await gw.books() == (balance - cost, 0, cost)
    settled = [e for e in await gw.gateway.accounts.ledger("alice") if e.kind == "settle"]
    assert [(e.transaction_id, e.amount_micros) for e in settled] == [(task["billing_transaction_id"], cost)]


async def test_async_task_failing_upstream_reports_its_error_and_is_released(gw: Harness,
                                                                             emu: BflEmulator) -> None:
    emu.inject("error_status")
    balance, _, _ = await gw.books()
    accepted = (await edit(gw, run_async=True)).json()
    assert await gw.gateway.runner.run_once() is True
    task = (await gw.client.get(accepted["poll_url"], headers=gw.auth)).json()
    assert task["status"] == "failed" and task["data"] == [] and "billing_transaction_id" not in task
    assert task["error"]["code"] == "upstream_error"
    assert len(emu.submits) == 1
    assert await gw.books() == (balance, 0, 0)


async def test_flux2_large_input_without_size_is_billed_what_bfl_reports(gw: Harness, emu: BflEmulator) -> None:
    balance, _, _ = await gw.books()
    r = await edit(gw, model="flux-2-pro", size=(2048, 2048))  # output follows the input: 4.19 MP
    assert r.status_code == 200, r.text
    cost = credits(emu)
    assert cost == 140_800  # 3 + 3.19 x 1.5 (further output MP) + 4.19 x 1.5 (input MP) = 14.08 credits
    assert await gw.books() == (balance - cost, 0, cost)


async def test_a_generation_through_bfl_runs_as_a_task(gw: Harness, emu: BflEmulator) -> None:
    r = await gw.client.post("/v1/images/generations", headers=gw.auth, json={
        "model": "flux-kontext-pro", "prompt": "a lake at dawn", "size": "1536x1024", "async": True})
    task_id = r.json()["id"]
    assert await gw.gateway.runner.run_once()
    task = (await gw.client.get(f"/v1/tasks/{task_id}", headers=gw.auth)).json()
    assert task["status"] == "completed" and len(task["data"]) == 1
    [sent] = emu.submits
    assert sent.json == {"prompt": "a lake at dawn", "aspect_ratio": "3:2"}  # no input image: text-to-image
    _, held, spent = await gw.books()
    assert held == 0 and spent == 40_000
