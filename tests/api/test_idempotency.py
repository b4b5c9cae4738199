"""Idempotency-Key on POST /v1/images/edits and POST /v1/files: one run, one charge, the same answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from tests.conftest import Harness, png_bytes, running

from imagegate.config import BillingSettings, Settings
from imagegate.core.pricing import usd_to_micros

PRICE = 0.01


@pytest.fixture
async def gw(settings: Settings) -> AsyncIterator[Harness]:
    async with running(replace(settings, prices={"local-edit": {"kind": "per_image", "per_image": PRICE}})) as h:
        yield h


async def edit(h: Harness, key: str | None, prompt: str = "sepia", auth: str | None = None, **fields: str) -> Any:
    headers = {"Authorization": f"Bearer {auth or h.key}", **({"Idempotency-Key": key} if key else {})}
    return await h.client.post("/v1/images/edits", headers=headers, data={"model": "local-edit", "prompt": prompt,
                                                                          **fields},
                               files={"image": ("a.png", png_bytes((16, 16)), "image/png")})


async def spent(h: Harness, account: str = "alice") -> int:
    s = await h.gateway.accounts.summary(account)
    assert s.held_micros == 0 and s.deposits_micros == s.balance_micros + s.spent_micros
    return s.spent_micros


async def test_a_retry_returns_the_first_answer_and_is_charged_once(gw: Harness) -> None:
    first = await edit(gw, "retry-1", response_format="b64_json")
    second = await edit(gw, "retry-1", response_format="b64_json")  # a new multipart boundary, same request
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert second.headers["X-Billing-Transaction-ID"] == first.headers["X-Billing-Transaction-ID"]
    assert second.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert await spent(gw) == usd_to_micros(PRICE)
    third = await edit(gw, None)  # no key: a new edit
    assert third.json()["billing_transaction_id"] != first.json()["billing_transaction_id"]
    assert await spent(gw) == 2 * usd_to_micros(PRICE)


async def test_the_same_key_with_another_body_is_409(gw: Harness) -> None:
    assert (await edit(gw, "k")).status_code == 200
    other = await edit(gw, "k", prompt="grayscale")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert other.json()["error"]["param"] == "Idempotency-Key"
    assert await spent(gw) == usd_to_micros(PRICE)


async def test_keys_belong_to_their_account(gw: Harness) -> None:
    bob = await gw.new_key("bob")
    assert (await edit(gw, "shared")).status_code == 200
    assert (await edit(gw, "shared", auth=bob, prompt="invert")).status_code == 200
    assert await spent(gw, "bob") == usd_to_micros(PRICE)


async def test_a_failed_request_can_be_retried_with_its_key(gw: Harness) -> None:
    poor = await gw.new_key("poor", credit=PRICE / 2)
    refused = await edit(gw, "after-topup", auth=poor)
    assert refused.status_code == 402
    await gw.gateway.accounts.add_credit("poor", usd_to_micros(PRICE))
    retried = await edit(gw, "after-topup", auth=poor)
    assert retried.status_code == 200 and "Idempotent-Replayed" not in retried.headers
    assert await spent(gw, "poor") == usd_to_micros(PRICE)


async def test_an_async_retry_returns_the_same_task(gw: Harness) -> None:
    first = await edit(gw, "task-key", **{"async": "true"})
    second = await edit(gw, "task-key", **{"async": "true"})
    assert first.json()["id"] == second.json()["id"]
    assert await gw.gateway.runner.run_once() is True
    assert await gw.gateway.runner.run_once() is False  # one task, not two
    assert await spent(gw) == usd_to_micros(PRICE)


@pytest.mark.parametrize("run_async", [False, True], ids=["sync", "async"])
async def test_a_process_dying_right_after_the_charge_still_answers_the_retry(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, run_async: bool) -> None:
    """The answer is stored with the charge: a crash before the request ends leaves no key that a retry
    would take over (once stale) and charge a second time."""
    prices = {"local-edit": {"kind": "per_image", "per_image": PRICE}}
    async with running(replace(settings, prices=prices, billing=BillingSettings(hold_ttl=0.3))) as h:
        async def dies(*_: Any) -> None:  # the process is gone before the request's own ending runs
            return None

        monkeypatch.setattr(h.gateway.idempotency, "finish", dies)
        fields = {"async": "true"} if run_async else {"response_format": "b64_json"}
        first = await edit(h, "crash-key", **fields)
        assert first.status_code == 200
        await asyncio.sleep(0.4)  # a key still in progress would now be taken over
        retried = await edit(h, "crash-key", **fields)
        assert retried.status_code == 200 and retried.headers["Idempotent-Replayed"] == "true"
        assert retried.content == first.content
        if run_async:
            assert await h.gateway.runner.run_once() is True
            assert await h.gateway.runner.run_once() is False  # one task, not two
        else:
            assert retried.headers["X-Billing-Transaction-ID"] == first.json()["billing_transaction_id"]
        assert await spent(h) == usd_to_micros(PRICE)


async def test_concurrent_duplicates_run_once(gw: Harness) -> None:
    responses = await asyncio.gather(*(edit(gw, "burst") for _ in range(12)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 409}
    ok = {r.json()["billing_transaction_id"] for r in responses if r.status_code == 200}
    assert len(ok) == 1
    busy = [r.json()["error"]["code"] for r in responses if r.status_code == 409]
    assert set(busy) <= {"idempotency_request_in_progress"}
    assert await spent(gw) == usd_to_micros(PRICE)


@pytest.mark.parametrize("key", [b"", b"x" * 256, "caf\u00e9".encode(), b"tab\there"])
async def test_malformed_keys_are_400(gw: Harness, key: bytes) -> None:
    response = await gw.client.post("/v1/images/edits", headers=[*gw.auth.items(), ("Idempotency-Key", key)],
                                    data={"model": "local-edit", "prompt": "sepia"},
                                    files={"image": ("a.png", png_bytes(), "image/png")})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "Idempotency-Key"
    assert await spent(gw) == 0


async def upload(h: Harness, key: str, data: bytes) -> Any:
    return await h.client.post("/v1/files", headers={**h.auth, "Idempotency-Key": key},
                               data={"purpose": "vision"}, files={"file": ("a.png", data, "image/png")})


async def test_file_upload_retry_returns_the_same_file(gw: Harness) -> None:
    first = await upload(gw, "f1", png_bytes((8, 8)))
    second = await upload(gw, "f1", png_bytes((8, 8)))
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    other = await upload(gw, "f1", png_bytes((9, 9)))
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
