"""A real `imagegate serve` killed with SIGKILL mid-requests, then restarted: nothing is lost or billed twice.
A server stopped with SIGTERM hands its running tasks to the next one at once.

Sync edits are in flight on a slow upstream, async tasks are pending and processing (OpenAI-style and BFL
jobs) when the process dies. After a restart every task reaches a terminal state, BFL jobs are polled
again rather than resubmitted, completed tasks are billed exactly once, and the holds of the requests
that died with the process are released by the sweeper: deposits = balance + spent, nothing held.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from tests.conftest import Fund, png_bytes
from tests.emulators.bfl_emulator import BflEmulator
from tests.emulators.openai_emulator import OpenAIEmulator
from tests.servers import Server, until


def write_config(path: Path, db_url: str, blobs: Path, openai: OpenAIEmulator, bfl: BflEmulator, *,
                 lease: float = 1.0, hold_ttl: float = 4.0) -> Path:
    path.write_text(f"""
[database]
url = "{db_url}"
[storage]
path = "{blobs}"
[limits]
request_timeout = 3.0
[billing]
hold_ttl = {hold_ttl}
sweep_interval = 0.3
[tasks]
workers = 4
lease = {lease}
poll_interval = 0.2
deadline = 60.0
retention = 600.0
[[providers]]
name = "openai"
type = "openai"
base_url = "{openai.base_url}"
api_key = "sk-up"
models = ["gpt-image-2", "gpt-image-1.5"]
timeout = 10.0
[[providers]]
name = "bfl"
type = "bfl"
base_url = "{bfl.base_url}"
api_key = "{bfl.api_key}"
models = ["flux-kontext-pro"]
""")
    return path


@pytest.fixture
async def upstreams() -> AsyncIterator[tuple[OpenAIEmulator, BflEmulator]]:
    async with OpenAIEmulator(api_key="sk-up", latency=1.5) as openai, \
            BflEmulator(steps=("Pending",) * 4) as bfl:
        yield openai, bfl


async def test_sigkill_mid_requests_loses_nothing(db_url: str, tmp_path: Path,
                                                  upstreams: tuple[OpenAIEmulator, BflEmulator],
                                                  server: Callable[[Path], Server], funded: Fund) -> None:
    openai, bfl = upstreams
    config = write_config(tmp_path / "imagegate.toml", db_url, tmp_path / "blobs", openai, bfl)
    accounts, key = await funded(config)
    auth = {"Authorization": f"Bearer {key}"}
    first, second = server(config), server(config)
    await first.start()
    async with httpx.AsyncClient(base_url=first.base, headers=auth, timeout=30) as client:
        async def edit(model: str, run_async: bool) -> httpx.Response:
            sizing = {} if model.startswith("flux") else {"size": "1024x1024", "quality": "low"}
            return await client.post("/v1/images/edits", data={
                "model": model, "prompt": "a hat", "async": "true" if run_async else "false", **sizing},
                files={"image": ("a.png", png_bytes((64, 64)), "image/png")})

        task_ids = []
        for model in ["flux-kontext-pro"] * 4 + ["gpt-image-2"] * 4:
            accepted = await edit(model, True)
            assert accepted.status_code == 200, accepted.text
            task_ids.append(accepted.json()["id"])
        in_flight = [asyncio.create_task(edit("gpt-image-1.5", False)) for _ in range(12)]
        await until(lambda: _count(lambda: len(openai.edit_requests) >= 12 and len(bfl.polls) >= 4),
                    20, "the upstreams never saw the requests")
        first.kill()
        results = await asyncio.gather(*in_flight, return_exceptions=True)
        assert all(isinstance(r, httpx.TransportError) for r in results)  # they died with the process
    await first.proc.wait()  # type: ignore[union-attr]
    submitted = len(bfl.submits)
    assert submitted == 4

    await second.start()
    async with httpx.AsyncClient(base_url=second.base, headers=auth, timeout=30) as client:
        async def all_ended() -> bool:
            states = [(await client.get(f"/v1/tasks/{t}")).json()["status"] for t in task_ids]
            return all(s in ("completed", "failed") for s in states)

        await until(all_ended, 60, "tasks did not all end after the restart")
        tasks = [(await client.get(f"/v1/tasks/{t}")).json() for t in task_ids]

    async def nothing_held() -> bool:
        return (await accounts.summary("acme")).held_micros == 0

    await until(nothing_held, 20, "holds of the killed requests were never released")
    s = await accounts.summary("acme")
    assert s.deposits_micros == s.balance_micros + s.held_micros + s.spent_micros
    entries = await accounts.ledger("acme")
    settles = [e.transaction_id for e in entries if e.kind == "settle"]
    assert len(settles) == len(set(settles))
    assert sum(e.amount_micros for e in entries if e.kind == "settle") == s.spent_micros
    completed = [t for t in tasks if t["status"] == "completed"]
    assert len(completed) == len(tasks), [t.get("error") for t in tasks]  # the upstreams were healthy
    for task in completed:
        assert task["billing_transaction_id"] in settles and task["data"]
    assert len(bfl.submits) == submitted  # polled again after the restart, never resubmitted
    released = {e.transaction_id for e in entries if e.kind == "release"}
    holds = {e.transaction_id for e in entries if e.kind == "hold"}
    assert holds == set(settles) | released and not set(settles) & released
    assert len(released) >= 12  # the sync edits killed mid-flight charged nothing


async def test_sigterm_hands_running_tasks_to_the_next_server_at_once(
        db_url: str, tmp_path: Path, upstreams: tuple[OpenAIEmulator, BflEmulator],
        server: Callable[[Path], Server], funded: Fund) -> None:
    openai, bfl = upstreams
    bfl.steps = ("Pending",) * 5  # each job runs a few seconds
    config = write_config(tmp_path / "imagegate.toml", db_url, tmp_path / "blobs", openai, bfl, lease=120.0)
    accounts, key = await funded(config)
    first, second = server(config), server(config)
    await first.start()
    async with httpx.AsyncClient(base_url=first.base, headers={"Authorization": f"Bearer {key}"},
                                 timeout=30) as client:
        task_ids = []
        for _ in range(2):
            accepted = await client.post("/v1/images/edits", data={
                "model": "flux-kontext-pro", "prompt": "a hat", "async": "true"},
                files={"image": ("a.png", png_bytes((64, 64)), "image/png")})
            task_ids.append(accepted.json()["id"])
        await until(lambda: _count(lambda: len(bfl.polls) >= 2), 20, "the jobs were never polled")
        first.proc.terminate()  # type: ignore[union-attr]
        await asyncio.wait_for(first.proc.wait(), 20)  # type: ignore[union-attr]
        assert len(bfl.submits) == 2

        await second.start()
        client.base_url = httpx.URL(second.base)

        async def all_completed() -> bool:
            states = [(await client.get(f"/v1/tasks/{t}")).json()["status"] for t in task_ids]
            return states == ["completed"] * 2

        await until(all_completed, 40, "the tasks waited for their 120 s leases")  # handed back, not expired
    assert len(bfl.submits) == 2  # polled again, not resubmitted
    s = await accounts.summary("acme")
    assert s.held_micros == 0 and s.spent_micros > 0
    assert s.deposits_micros == s.balance_micros + s.spent_micros


async def _count(check: Callable[[], bool]) -> bool:
    return check()


async def test_sigterm_mid_submit_records_the_job_before_handing_back(
        db_url: str, tmp_path: Path, upstreams: tuple[OpenAIEmulator, BflEmulator],
        server: Callable[[Path], Server], funded: Fund) -> None:
    openai, bfl = upstreams
    bfl.latency = 2.0  # BFL takes two seconds to accept a job: the signal arrives meanwhile
    config = write_config(tmp_path / "imagegate.toml", db_url, tmp_path / "blobs", openai, bfl, lease=120.0)
    _, key = await funded(config)
    first, second = server(config), server(config)
    await first.start()
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        task_ids = []
        for _ in range(2):
            accepted = await client.post(f"{first.base}/v1/images/edits", data={
                "model": "flux-kontext-pro", "prompt": "a hat", "async": "true"},
                files={"image": ("a.png", png_bytes((64, 64)), "image/png")})
            task_ids.append(accepted.json()["id"])
        await until(lambda: _count(lambda: len(bfl.submits) == 2), 20, "the jobs were never submitted")
        assert bfl.tasks == {}  # not accepted yet
        assert await first.terminate() == 0
        assert len(bfl.tasks) == 2  # the submissions were seen through, not cut off

        await second.start()

        async def all_completed() -> bool:
            states = [(await client.get(f"{second.base}/v1/tasks/{t}")).json()["status"] for t in task_ids]
            return states == ["completed"] * 2

        await until(all_completed, 60, "the handed-back tasks did not complete")
    assert len(bfl.submits) == 2  # each accepted job was recorded and polled again, never submitted twice


async def test_a_keyed_request_cut_by_a_dead_replica_is_retried_within_its_lease(
        db_url: str, tmp_path: Path, upstreams: tuple[OpenAIEmulator, BflEmulator],
        server: Callable[[Path], Server], funded: Fund) -> None:
    openai, bfl = upstreams
    openai.latency = 5.0
    config = write_config(tmp_path / "imagegate.toml", db_url, tmp_path / "blobs", openai, bfl, lease=1.0,
                          hold_ttl=600.0)  # a dead process's hold must not wait for this
    accounts, key = await funded(config)
    doomed, survivor = server(config), server(config)
    await asyncio.gather(doomed.start(), survivor.start())
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "order-17"}
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        async def edit(base: str) -> httpx.Response:
            return await client.post(f"{base}/v1/images/edits", data={
                "model": "gpt-image-1.5", "prompt": "a hat", "size": "1024x1024", "quality": "low"},
                files={"image": ("a.png", png_bytes((64, 64)), "image/png")})

        cut = asyncio.create_task(edit(doomed.base))
        await until(lambda: _count(lambda: len(openai.edit_requests) == 1), 20, "the request never went upstream")
        assert (await accounts.summary("acme")).held_micros > 0
        doomed.kill()
        assert isinstance((await asyncio.gather(cut, return_exceptions=True))[0], httpx.TransportError)
        openai.latency = 0.0
        began = time.monotonic()
        statuses = []
        while not statuses or statuses[-1] == 409:
            statuses.append((await edit(survivor.base)).status_code)
            assert time.monotonic() - began < 60, statuses  # seconds after the lease, never hold_ttl (600 s)
            await asyncio.sleep(0.1)
        assert statuses[-1] == 200 and set(statuses[:-1]) <= {409}
        replayed = await edit(survivor.base)
        assert replayed.status_code == 200 and replayed.headers["Idempotent-Replayed"] == "true"
    s = await accounts.summary("acme")
    assert s.held_micros == 0 and s.deposits_micros == s.balance_micros + s.spent_micros
    entries = await accounts.ledger("acme")
    assert [e.kind for e in entries if e.kind in ("settle", "release")].count("settle") == 1  # charged once
    assert [e.memo for e in entries if e.kind == "release"] == ["process died"]  # the dead request's hold
