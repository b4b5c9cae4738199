"""Async tasks end to end: accepted at once, claimed with a lease, run once, billed once, on both databases."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image
from tests.conftest import Harness, png_bytes, running, settings_on
from tests.emulators.bfl_emulator import BflEmulator
from tests.emulators.openai_emulator import OpenAIEmulator

from imagegate.app import Gateway, build_gateway
from imagegate.config import ProviderSettings, Settings, TaskSettings
from imagegate.core.pricing import usd_to_micros
from imagegate.tasks.runner import TaskRunner

PRICE = 0.01  # local-edit, per image, in these tests
NOT_FOUND = "Task not found or no longer available."


def gateway_with(db_url: str, tmp_path: Any, *routes: ProviderSettings,
                 **tasks: Any) -> contextlib.AbstractAsyncContextManager[Harness]:
    """A gateway on the test database with `local-edit` plus `routes`, and these [tasks] settings."""
    return running(settings_on(db_url, tmp_path / "blobs", tasks=TaskSettings(**{"workers": 0, "lease": 5.0, **tasks}),
                               prices={"local-edit": {"kind": "per_image", "per_image": PRICE}},
                               providers=(*Settings().providers, *routes)))


@contextlib.asynccontextmanager
async def gateway_process(settings: Settings) -> AsyncIterator[Gateway]:
    """Another gateway on the same database: its own engine, pool and workers, as a second process has."""
    gateway = await build_gateway(settings)
    try:
        yield gateway
    finally:
        await gateway.aclose()


def bfl_route(emu: BflEmulator) -> ProviderSettings:
    return ProviderSettings(name="bfl", type="bfl", base_url=emu.base_url, api_key=emu.api_key,
                            models=("flux-kontext-pro",))


@pytest.fixture
async def gw(db_url: str, tmp_path: Any) -> AsyncIterator[Harness]:
    async with gateway_with(db_url, tmp_path) as h:
        yield h


async def submit(h: Harness, prompt: str = "grayscale", key: str | None = None, **fields: str) -> Any:
    response = await h.client.post("/v1/images/edits", headers={"Authorization": f"Bearer {key or h.key}"},
                                   data={"model": "local-edit", "prompt": prompt, "async": "true", **fields},
                                   files={"image": ("a.png", png_bytes((32, 24)), "image/png")})
    return response


async def status(h: Harness, task_id: str, path: str = "/v1/tasks/", key: str | None = None) -> Any:
    return await h.client.get(path + task_id, headers={"Authorization": f"Bearer {key or h.key}"})


async def test_async_edit_is_accepted_then_completed_and_billed_once(gw: Harness) -> None:
    balance, _, _ = await gw.books()
    response = await submit(gw, response_format="b64_json")
    assert response.status_code == 200, response.text
    body = response.json()
    assert re.fullmatch(r"ldtask_[0-9a-f]{32}", body["id"]) and body["task_id"] == body["id"]
    assert body["status"] == "pending" and body["data"] == [] and body["poll_url"] == f"/v1/tasks/{body['id']}"
    assert isinstance(body["created"], int)
    assert (await gw.books())[1] == usd_to_micros(PRICE)  # held while the task waits

    pending = (await status(gw, body["id"])).json()
    assert pending["status"] == "pending" and "billing_transaction_id" not in pending

    assert await gw.gateway.runner.run_once() is True
    assert await gw.gateway.runner.run_once() is False  # nothing left to claim

    done = await status(gw, body["id"])
    assert done.status_code == 200
    task = done.json()
    assert task["status"] == "completed" and task["model"] == "local-edit"
    assert task["updated"] >= task["created"]
    [item] = task["data"]
    assert set(item) == {"url"}  # async results are URLs whatever response_format asked
    image = Image.open(io.BytesIO(await gw.fetch_output(item["url"])))
    r, g, b = image.convert("RGB").getpixel((5, 5))  # type: ignore[misc]
    assert image.size == (32, 24) and r == g == b  # the red source, in grey
    assert task["billing_transaction_id"] == done.headers["X-Billing-Transaction-ID"]
    assert await gw.books() == (balance - usd_to_micros(PRICE), 0, usd_to_micros(PRICE))
    entries = [e.kind for e in await gw.gateway.accounts.ledger("alice")]
    assert entries.count("settle") == 1 and entries.count("hold") == 1
    metrics = (await gw.client.get("/metrics")).text
    assert 'imagegate_tasks_ended_total{outcome="completed"} 1.0' in metrics


@pytest.mark.parametrize("path", ["/v1/tasks/", "/v1/images/", "/v1/images/generations/"])
async def test_status_aliases_and_no_existence_oracle(gw: Harness, path: str) -> None:
    task_id = (await submit(gw)).json()["id"]
    assert (await status(gw, task_id, path)).json()["id"] == task_id
    other = await gw.new_key("bob")
    for probe, key in ((task_id, other), ("ldtask_" + "0" * 32, gw.key), ("nonsense", gw.key)):
        response = await status(gw, probe, path, key=key)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "async_task_not_found"
        assert response.json()["error"]["message"] == NOT_FOUND
    unauthenticated = await gw.client.get(path + task_id)
    assert unauthenticated.status_code == 401


async def test_async_refused_for_a_model_without_it(db_url: str, tmp_path: Any) -> None:
    async with OpenAIEmulator(api_key="sk-up") as emu:
        route = ProviderSettings(name="openai", type="openai", base_url=emu.base_url, api_key="sk-up",
                                 models=("gpt-image-1.5",))
        async with gateway_with(db_url, tmp_path, route) as h:
            balance, _, _ = await h.books()
            for value in ("true", True):
                response = await h.client.post("/v1/images/edits", headers=h.auth, json={
                    "model": "gpt-image-1.5", "prompt": "a hat", "async": value,
                    "image_url": "data:image/png;base64," + base64.b64encode(png_bytes()).decode()})
                assert response.status_code == 400, response.text
                error = response.json()["error"]
                assert error["param"] == "async" and "gpt-image-1.5" in error["message"]
            assert emu.edit_requests == [] and await h.gateway.runner.run_once() is False
            assert await h.books() == (balance, 0, 0)


async def test_a_failing_task_is_released_and_reports_its_error(gw: Harness) -> None:
    balance, _, _ = await gw.books()
    task_id = (await submit(gw, prompt="make it look like a Renaissance fresco")).json()["id"]
    assert await gw.gateway.runner.run_once()
    task = (await status(gw, task_id)).json()
    assert task["status"] == "failed" and task["data"] == []
    assert task["error"]["code"] == "unsupported_prompt" and "understands" in task["error"]["message"]
    assert "billing_transaction_id" not in task
    assert await gw.books() == (balance, 0, 0)


async def test_refused_for_insufficient_balance_before_anything_is_stored(gw: Harness) -> None:
    poor = await gw.new_key("poor", credit=PRICE / 2)
    response = await submit(gw, key=poor)
    assert response.status_code == 402 and response.json()["error"]["code"] == "insufficient_balance"
    assert await gw.gateway.runner.run_once() is False
    assert not any(gw.gateway.blobs.path("inputs/" + "x" * 16).parent.glob("*"))


async def test_a_lost_worker_is_replaced_when_its_lease_runs_out(gw: Harness) -> None:
    task_id = (await submit(gw)).json()["id"]
    store = gw.gateway.tasks
    dead = await store.claim("dead-worker", lease=0.3)  # claims, then its process "dies"
    assert dead is not None and dead.id == task_id and dead.attempts == 1
    assert await gw.gateway.runner.run_once() is False  # the lease still holds
    assert (await status(gw, task_id)).json()["status"] == "processing"
    await asyncio.sleep(0.4)
    assert await gw.gateway.runner.run_once() is True
    task = (await status(gw, task_id)).json()
    assert task["status"] == "completed"
    # The dead worker waking up can no longer change the task or the money.
    assert await store.complete(task_id, "dead-worker", data=[], usage=None, output_keys=[], cost=1) is False
    assert await store.fail(task_id, "dead-worker", code="x", message="y") is False
    assert await store.heartbeat(task_id, "dead-worker", 5.0) is False
    _, held, spent = await gw.books()
    assert (held, spent) == (0, usd_to_micros(PRICE))


async def test_a_task_claimed_too_often_fails_and_is_released(db_url: str, tmp_path: Any) -> None:
    async with gateway_with(db_url, tmp_path, max_attempts=2) as h:
        balance, _, _ = await h.books()
        task_id = (await submit(h)).json()["id"]
        for worker in ("w1", "w2"):
            assert await h.gateway.tasks.claim(worker, lease=0.05) is not None
            await asyncio.sleep(0.1)
        assert await h.gateway.runner.run_once() is True  # third claim: over max_attempts
        task = (await status(h, task_id)).json()
        assert task["status"] == "failed" and task["error"]["code"] == "task_interrupted"
        assert await h.books() == (balance, 0, 0)


async def test_deadline_fails_an_unclaimed_task_with_timeout(db_url: str, tmp_path: Any) -> None:
    async with gateway_with(db_url, tmp_path, deadline=0.3, retention=60.0) as h:
        balance, _, _ = await h.books()
        task_id = (await submit(h)).json()["id"]
        await asyncio.sleep(0.4)
        assert await h.gateway.runner.run_once() is False  # past its deadline: never started
        await h.gateway.sweeper.sweep()
        task = (await status(h, task_id)).json()
        assert task["status"] == "failed" and task["error"]["code"] == "timeout"
        assert await h.books() == (balance, 0, 0)


async def test_deadline_stops_a_running_task_with_timeout(db_url: str, tmp_path: Any) -> None:
    async with BflEmulator(steps=("Pending",) * 1000) as emu:
        async with gateway_with(db_url, tmp_path, bfl_route(emu), deadline=1.0, retention=60.0) as h:
            balance, _, _ = await h.books()
            response = await h.client.post("/v1/images/edits", headers=h.auth, data={
                "model": "flux-kontext-pro", "prompt": "a hat", "async": "true"},
                files={"image": ("a.png", png_bytes(), "image/png")})
            task_id = response.json()["id"]
            assert await h.gateway.runner.run_once()
            task = (await status(h, task_id)).json()
            assert task["status"] == "failed" and task["error"]["code"] == "timeout"
            assert len(emu.submits) == 1 and len(emu.polls) >= 1
            assert await h.books() == (balance, 0, 0)


async def test_retention_expires_tasks_and_their_images(db_url: str, tmp_path: Any) -> None:
    async with gateway_with(db_url, tmp_path, deadline=0.5, retention=1.0) as h:
        task_id = (await submit(h)).json()["id"]
        assert await h.gateway.runner.run_once()
        [item] = (await status(h, task_id)).json()["data"]
        key = item["url"].split("/blobs/", 1)[1]
        assert h.gateway.blobs.path(key).exists()
        await asyncio.sleep(1.1)
        response = await status(h, task_id)
        assert response.status_code == 404 and response.json()["error"]["message"] == NOT_FOUND
        await h.gateway.sweeper.sweep()
        assert not h.gateway.blobs.path(key).exists()
        assert await h.gateway.tasks.purge_expired() == []


async def test_inputs_are_not_served_publicly(gw: Harness) -> None:
    await submit(gw)
    [stored] = list((gw.gateway.blobs.path("inputs/" + "x" * 16)).parent.glob("*.png"))
    response = await gw.client.get(f"/blobs/inputs/{stored.name}")
    assert response.status_code == 404


# --- BFL: a job the upstream accepted is followed again after a crash, never resubmitted -----------
@pytest.fixture
async def bfl() -> AsyncIterator[BflEmulator]:
    async with BflEmulator(steps=("Pending", "Pending")) as emu:
        yield emu


async def test_bfl_job_is_resumed_not_resubmitted_after_its_worker_died(bfl: BflEmulator, db_url: str,
                                                                       tmp_path: Any) -> None:
    async with gateway_with(db_url, tmp_path, bfl_route(bfl), lease=0.6) as h:
        balance, _, _ = await h.books()
        response = await h.client.post("/v1/images/edits", headers=h.auth, data={
            "model": "flux-kontext-pro", "prompt": "a hat", "async": "true"},
            files={"image": ("a.png", png_bytes(), "image/png")})
        task_id = response.json()["id"]
        first = TaskRunner(h.gateway.tasks, h.gateway.images, h.gateway.blobs, h.gateway.settings.tasks,
                           owner="doomed")
        doomed = asyncio.create_task(first.run_once())
        for _ in range(200):  # until the submit is recorded and the upstream job saved
            await asyncio.sleep(0.02)
            if bfl.submits and bfl.polls:
                break
        doomed.cancel()  # the worker dies mid-poll; its lease is left to run out
        await asyncio.gather(doomed, return_exceptions=True)
        assert len(bfl.submits) == 1
        assert (await status(h, task_id)).json()["status"] == "processing"
        await asyncio.sleep(0.7)
        assert await h.gateway.runner.run_once()
        task = (await status(h, task_id)).json()
        assert task["status"] == "completed", task
        assert len(bfl.submits) == 1  # polled again, never resubmitted
        [job] = bfl.tasks.values()
        cost = round(job.cost * 10_000)  # BFL credits → micro-USD
        assert await h.books() == (balance - cost, 0, cost)


async def test_a_gateway_stopping_in_good_order_hands_its_tasks_back_at_once(bfl: BflEmulator, db_url: str,
                                                                               tmp_path: Any) -> None:
    async with gateway_with(db_url, tmp_path, bfl_route(bfl), workers=1, lease=60.0, max_attempts=1) as h, \
            gateway_process(h.gateway.settings) as leaving:
        balance, _, _ = await h.books()
        response = await h.client.post("/v1/images/edits", headers=h.auth, data={
            "model": "flux-kontext-pro", "prompt": "a hat", "async": "true"},
            files={"image": ("a.png", png_bytes(), "image/png")})
        task_id = response.json()["id"]
        bfl.steps = ("Pending",) * 4  # five polls, about 6 s: the leaving process cannot finish the job first
        leaving.runner.start()
        for _ in range(500):  # until the other process has the BFL job running
            await asyncio.sleep(0.02)
            if bfl.polls:
                break
        assert bfl.polls and (await status(h, task_id)).json()["status"] == "processing"
        await leaving.runner.aclose()
        assert await h.gateway.runner.run_once() is True  # no 60 s wait for the lease
        task = (await status(h, task_id)).json()
        assert task["status"] == "completed", task  # and the hand-back was not counted as an attempt
        assert len(bfl.submits) == 1  # the saved job was polled again, not resubmitted
        [job] = bfl.tasks.values()
        cost = round(job.cost * 10_000)
        assert await h.books() == (balance - cost, 0, cost)


async def test_the_heartbeat_keeps_a_long_task_with_its_worker(db_url: str, tmp_path: Any) -> None:
    async with BflEmulator(steps=("Pending",) * 4) as bfl, \
            gateway_with(db_url, tmp_path, bfl_route(bfl), lease=0.3) as h:  # polling takes 3 s or more
        response = await h.client.post("/v1/images/edits", headers=h.auth, data={
            "model": "flux-kontext-pro", "prompt": "a hat", "async": "true"},
            files={"image": ("a.png", png_bytes(), "image/png")})
        working = asyncio.create_task(h.gateway.runner.run_once())
        rival = TaskRunner(h.gateway.tasks, h.gateway.images, h.gateway.blobs, h.gateway.settings.tasks,
                           owner="rival")
        await asyncio.sleep(0.1)
        for _ in range(8):  # 1.2 s: four leases long, while the BFL job is still pending
            assert await rival.run_once() is False
            await asyncio.sleep(0.15)
        assert not working.done()
        assert await working is True
        assert (await status(h, response.json()["id"])).json()["status"] == "completed"
        assert len(bfl.submits) == 1


async def test_bfl_moderation_fails_the_task_and_releases_the_hold(bfl: BflEmulator, db_url: str,
                                                                  tmp_path: Any) -> None:
    async with gateway_with(db_url, tmp_path, bfl_route(bfl)) as h:
        balance, _, _ = await h.books()
        bfl.inject("content_moderated")
        response = await h.client.post("/v1/images/edits", headers=h.auth, data={
            "model": "flux-kontext-pro", "prompt": "a hat", "async": "true"},
            files={"image": ("a.png", png_bytes(), "image/png")})
        assert await h.gateway.runner.run_once()
        task = (await status(h, response.json()["id"])).json()
        assert task["status"] == "failed" and task["error"]["code"] == "moderation_blocked"
        assert await h.books() == (balance, 0, 0)


async def test_background_workers_pick_up_new_tasks_at_once(db_url: str, tmp_path: Any) -> None:
    async with gateway_with(db_url, tmp_path, workers=2, poll_interval=30.0) as h:
        h.gateway.runner.start()
        ids = [(await submit(h)).json()["id"] for _ in range(4)]
        for _ in range(300):
            states = [(await status(h, i)).json()["status"] for i in ids]
            if all(s == "completed" for s in states):
                break
            await asyncio.sleep(0.02)
        assert states == ["completed"] * 4  # woken by the submit, not by the 30 s poll


async def test_two_gateways_sharing_a_database_never_run_a_task_twice(bfl: BflEmulator, db_url: str,
                                                                       tmp_path: Any) -> None:
    async with gateway_with(db_url, tmp_path, bfl_route(bfl), workers=3, poll_interval=0.05) as h, \
            gateway_process(h.gateway.settings) as other:
        balance, _, _ = await h.books()
        ids = []
        for i in range(12):
            response = await h.client.post("/v1/images/edits", headers=h.auth, data={
                "model": "flux-kontext-pro", "prompt": f"hat number {i}", "async": "true"},
                files={"image": ("a.png", png_bytes(), "image/png")})
            ids.append(response.json()["id"])
        h.gateway.runner.start()
        other.runner.start()
        for _ in range(600):
            states = [(await status(h, i)).json()["status"] for i in ids]
            if all(s in ("completed", "failed") for s in states):
                break
            await asyncio.sleep(0.05)
        assert states == ["completed"] * 12
        prompts = sorted(r.json["prompt"] for r in bfl.submits)
        assert prompts == sorted(f"hat number {i}" for i in range(12))  # each task submitted exactly once
        cost = sum(round(t.cost * 10_000) for t in bfl.tasks.values())
        assert await h.books() == (balance - cost, 0, cost)
        settles = [e.transaction_id for e in await h.gateway.accounts.ledger("alice") if e.kind == "settle"]
        assert len(settles) == len(set(settles)) == 12


async def test_a_stopping_runner_claims_nothing_new(db_url: str, tmp_path: Any) -> None:
    async with gateway_with(db_url, tmp_path, workers=2, poll_interval=30.0) as h:
        runner = h.gateway.runner
        runner.start()
        runner.stop_claiming()
        task_id = (await submit(h)).json()["id"]
        assert not await runner.run_once()
        _, running = await asyncio.wait(runner._loops, timeout=30)  # woken by the new task, the loops stop
        assert not running
        assert (await status(h, task_id)).json()["status"] == "pending"  # instead of claiming it
