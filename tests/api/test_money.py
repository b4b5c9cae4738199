"""deposits = balance + held + spent, under a crowd of concurrent requests and every kind of upstream failure."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from tests.conftest import Harness, png_bytes, running, settings_on, start_harness
from tests.emulators.openai_emulator import OpenAIEmulator

from imagegate.config import ProviderSettings, Settings
from imagegate.core.pricing import usd_to_micros
from imagegate.core.routing import RoutingPolicy

PRICE = 0.01


@pytest.fixture
def money_settings(db_url: str, tmp_path: Any) -> Settings:
    return settings_on(db_url, tmp_path / "blobs", prices={"local-edit": {"kind": "per_image", "per_image": PRICE}})


async def books(h: Harness, account: str) -> dict[str, Any]:
    balance, held, spent = await h.books(account)
    entries = await h.gateway.accounts.ledger(account)
    settles = [e for e in entries if e.kind == "settle"]
    assert sum(e.amount_micros for e in settles) == spent
    assert len({e.transaction_id for e in settles}) == len(settles)  # no hold settled twice
    return {"held": held, "spent": spent, "balance": balance,
            "holds": sum(e.kind == "hold" for e in entries), "settles": len(settles),
            "settled": {e.transaction_id: e.amount_micros for e in settles}}


async def test_a_crowd_never_overdraws_and_refusals_cost_nothing(money_settings: Settings) -> None:
    async with running(money_settings) as h:
        key = await h.new_key("crowd", credit=PRICE * 50)

        async def edit() -> Any:
            return await h.client.post("/v1/images/edits", headers={"Authorization": f"Bearer {key}"},
                                       data={"model": "local-edit", "prompt": "invert"},
                                       files={"image": ("a.png", png_bytes((8, 8)), "image/png")})

        responses = await asyncio.gather(*(edit() for _ in range(300)))
        ok = [r for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code != 200]
        assert len(ok) == 50
        assert {r.status_code for r in refused} == {402}
        for r in refused:
            error = r.json()["error"]
            assert error["code"] == "insufficient_balance"
            assert error["estimated_cost_usd"] == PRICE and 0 <= error["balance_usd"] < PRICE
        state = await books(h, "crowd")
        assert (state["held"], state["balance"], state["spent"]) == (0, 0, usd_to_micros(PRICE) * 50)
        assert state["holds"] == state["settles"] == 50  # a refused request placed no hold at all
        assert set(state["settled"]) == {r.json()["billing_transaction_id"] for r in ok}


FAILURES = ("server_error", "bad_gateway", "service_unavailable", "gateway_timeout", "rate_limit",
            "insufficient_quota", "invalid_api_key", "moderation_blocked", "moderation_blocked_output",
            "content_policy_violation", "unknown_parameter", "invalid_image_file", "disconnect", "hang")


@pytest.fixture
async def upstream() -> AsyncIterator[OpenAIEmulator]:
    async with OpenAIEmulator(api_key="sk-up", latency=0.05) as emu:
        yield emu


async def test_every_kind_of_upstream_failure_leaves_the_books_balanced(money_settings: Settings,
                                                                        upstream: OpenAIEmulator) -> None:
    h = await start_harness(replace(money_settings, providers=(ProviderSettings(
        name="openai", type="openai", base_url=upstream.base_url, api_key="sk-up", models=("gpt-image-1.5",),
        timeout=1.5),), routing=RoutingPolicy(failure_threshold=1000)))  # the breaker would refuse the rest
    try:
        key = await h.new_key("busy", credit=5.0)
        kinds = [*FAILURES, *FAILURES]
        random.Random(7).shuffle(kinds)
        for kind in kinds:
            upstream.inject(kind)

        async def edit() -> Any:
            return await h.client.post("/v1/images/edits", headers={"Authorization": f"Bearer {key}"},
                                       data={"model": "gpt-image-1.5", "prompt": "a hat", "quality": "low"},
                                       files={"image": ("a.png", png_bytes((8, 8)), "image/png")})

        responses = await asyncio.gather(*(edit() for _ in range(len(kinds) + 30)))
        ok = [r for r in responses if r.status_code == 200]
        failed = [r for r in responses if r.status_code != 200]
        assert len(failed) == len(kinds) and len(ok) == 30
        assert {r.status_code for r in failed} <= {400, 429, 502, 504}
        state = await books(h, "busy")
        assert state["held"] == 0 and state["holds"] == len(responses)
        assert state["settles"] == len(ok)  # every failure was released, charged nothing
        assert state["settled"] == {r.json()["billing_transaction_id"]: state["settled"][
            r.json()["billing_transaction_id"]] for r in ok}
        assert all(amount > 0 for amount in state["settled"].values())
    finally:
        await h.aclose()
