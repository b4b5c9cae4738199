"""An upstream that answers in every wrong way: each is a clean 502/504 (or, where only the usage is wrong, a
documented charge), on sync requests and async tasks alike, and no hold is left open.

The memory and event-loop side of the same answers is measured on a real server in tests/test_hostile_memory.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from tests.conftest import Harness, png_bytes, running
from tests.emulators.hostile import HostileUpstream

from imagegate.config import ProviderSettings, Settings, TaskSettings

BAD_ANSWERS = {  # behaviour: (status, error code) of a sync request
    "random_b64": (502, "upstream_error"),
    "not_b64": (502, "upstream_error"),
    "not_json": (502, "upstream_error"),
    "missing_data": (502, "upstream_error"),
    "reset_mid_body": (502, "upstream_error"),
    "gzip_bomb": (502, "upstream_error"),
    "huge_length": (502, "upstream_error"),
    "endless": (502, "upstream_error"),
    "drip": (504, "timeout_error"),
    "hang": (504, "timeout_error"),
}
# The table price of what usage_not_numbers asks for (gpt-image-2, 1024x1024, low, prompt "a hat"): the
# estimate without source images, 19 prompt tokens at $5/M and 272 output tokens at $30/M, in micro-USD.
TABLE_PRICE = -(-(19 * 5_000_000 + 272 * 30_000_000) // 1_000_000)


@pytest.fixture
async def upstream() -> AsyncIterator[HostileUpstream]:
    async with HostileUpstream(drip_interval=0.05) as up:
        yield up


@pytest.fixture
async def gw(settings: Settings, upstream: HostileUpstream) -> AsyncIterator[Harness]:
    configured = replace(settings, tasks=TaskSettings(workers=0, lease=5.0), providers=(
        *settings.providers, ProviderSettings(name="shady", type="openai", base_url=upstream.base_url,
                                              api_key="sk-up", models=("gpt-image-2",), timeout=1.5)))
    async with running(configured) as h:
        yield h


async def edit(gw: Harness, **fields: str) -> Any:
    return await gw.client.post("/v1/images/edits", headers=gw.auth,
                                files={"image": ("a.png", png_bytes(), "image/png")},
                                data={"model": "gpt-image-2", "prompt": "a hat", "size": "1024x1024",
                                      "quality": "low", "response_format": "b64_json", **fields})


@pytest.mark.parametrize("behaviour", sorted(BAD_ANSWERS))
async def test_a_bad_answer_is_a_clean_upstream_error_and_costs_nothing(gw: Harness, upstream: HostileUpstream,
                                                                         behaviour: str) -> None:
    before = await gw.books()
    upstream.behaviour = behaviour
    r = await edit(gw)
    status, code = BAD_ANSWERS[behaviour]
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["message"] and set(error) >= {"message", "type", "code", "param"}
    assert "shady" in error["message"] or code == "timeout_error"  # our own words, never the upstream's body
    assert len(upstream.requests) == 1
    assert await gw.books() == before  # released: nothing held, nothing spent

    upstream.behaviour = "ok"  # the gateway is none the worse for it
    assert (await edit(gw)).status_code == 200


@pytest.mark.parametrize("behaviour", sorted(BAD_ANSWERS))
async def test_a_bad_answer_fails_an_async_task_unbilled(gw: Harness, upstream: HostileUpstream,
                                                        behaviour: str) -> None:
    before = await gw.books()
    upstream.behaviour = behaviour
    accepted = await edit(gw, **{"async": "true"})
    assert accepted.status_code == 200, accepted.text
    assert await gw.gateway.runner.run_once()
    task = (await gw.client.get(accepted.json()["poll_url"], headers=gw.auth)).json()
    assert task["status"] == "failed", task
    assert task["error"]["code"] == BAD_ANSWERS[behaviour][1] and task["data"] == []
    assert await gw.books() == before


async def test_usage_that_is_not_numbers_is_charged_the_table_price(gw: Harness, upstream: HostileUpstream) -> None:
    balance, _, _ = await gw.books()
    upstream.behaviour = "usage_not_numbers"
    r = await edit(gw)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "usage" not in body and len(body["data"]) == 1  # the image is fine; the counts are not shown
    assert await gw.books() == (balance - TABLE_PRICE, 0, TABLE_PRICE)

    accepted = await edit(gw, **{"async": "true"})
    assert await gw.gateway.runner.run_once()
    task = (await gw.client.get(accepted.json()["poll_url"], headers=gw.auth)).json()
    assert task["status"] == "completed" and "usage" not in task
    assert await gw.books() == (balance - 2 * TABLE_PRICE, 0, 2 * TABLE_PRICE)


async def test_real_usage_is_charged_and_shown(gw: Harness, upstream: HostileUpstream) -> None:
    balance, _, _ = await gw.books()
    r = await edit(gw)
    assert r.json()["usage"] == {"total_tokens": 322, "input_tokens": 50, "output_tokens": 272,
                                 "input_tokens_details": {"text_tokens": 10, "image_tokens": 40}}
    charged = -(-(10 * 5_000_000 + 40 * 8_000_000 + 272 * 30_000_000) // 1_000_000)
    assert charged != TABLE_PRICE and await gw.books() == (balance - charged, 0, charged)


async def test_a_compressed_answer_is_refused_before_it_is_inflated(gw: Harness, upstream: HostileUpstream) -> None:
    upstream.behaviour = "gzip_bomb"
    r = await edit(gw)
    assert r.status_code == 502 and "compressed" in r.json()["error"]["message"]
    [request] = upstream.requests
    assert request.headers["Accept-Encoding"] == "identity"  # it was asked for the answer as it is


async def test_a_huge_declared_length_is_refused_without_waiting_for_it(gw: Harness,
                                                                         upstream: HostileUpstream) -> None:
    upstream.behaviour = "huge_length"
    r = await edit(gw)
    assert r.status_code == 502 and "oversized" in r.json()["error"]["message"]  # refused, not timed out (504)
