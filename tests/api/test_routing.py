"""Routing through the gateway: failover between two real upstreams, circuit breaking, the request deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from tests.conftest import Harness, png_bytes, start_harness
from tests.emulators.openai_emulator import OpenAIEmulator

from imagegate.config import LimitSettings, ProviderSettings, Settings
from imagegate.core.routing import RoutingPolicy


@pytest.fixture
async def upstreams() -> AsyncIterator[tuple[OpenAIEmulator, OpenAIEmulator]]:
    async with OpenAIEmulator(api_key="sk-a") as primary, OpenAIEmulator(api_key="sk-b") as backup:
        yield primary, backup


async def routed(settings: Settings, primary: OpenAIEmulator, backup: OpenAIEmulator, **overrides: Any) -> Harness:
    return await start_harness(replace(settings, providers=(
        ProviderSettings(name="primary", type="openai", base_url=primary.base_url, api_key="sk-a",
                         models=("gpt-image-1.5",), priority=1, timeout=5.0),
        ProviderSettings(name="backup", type="openai", base_url=backup.base_url, api_key="sk-b",
                         models=("gpt-image-1.5",), priority=2, timeout=5.0)),
        routing=RoutingPolicy(failure_threshold=2, cooldown=0.3), **overrides))


@pytest.fixture
async def gw(settings: Settings, upstreams: tuple[OpenAIEmulator, OpenAIEmulator]) -> AsyncIterator[Harness]:
    h = await routed(settings, *upstreams)
    try:
        yield h
    finally:
        await h.aclose()


async def edit(h: Harness) -> Any:
    return await h.client.post("/v1/images/edits", headers=h.auth, data={"model": "gpt-image-1.5", "prompt": "x"},
                               files={"image": ("a.png", png_bytes(), "image/png")})


@pytest.mark.parametrize("kind", ["server_error", "service_unavailable", "rate_limit", "disconnect"])
async def test_retryable_failure_moves_to_the_next_route(gw: Harness, upstreams: Any, kind: str) -> None:
    primary, backup = upstreams
    primary.inject(kind)
    response = await edit(gw)
    assert response.status_code == 200, response.text
    assert len(primary.edit_requests) == 1 and len(backup.edit_requests) == 1
    assert "primary" not in response.text and "backup" not in response.text  # routes stay internal
    s = await gw.gateway.accounts.summary("alice")
    assert s.spent_micros > 0 and s.held_micros == 0


@pytest.mark.parametrize(("kind", "code"), [("moderation_blocked", "moderation_blocked"),
                                            ("unknown_parameter", "upstream_invalid_request")])
async def test_final_failure_is_returned_at_once(gw: Harness, upstreams: Any, kind: str, code: str) -> None:
    primary, backup = upstreams
    primary.inject(kind)
    response = await edit(gw)
    assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert len(backup.edit_requests) == 0
    assert (await gw.books())[1] == 0


async def test_every_route_failing_is_503_all_channels_failed(gw: Harness, upstreams: Any) -> None:
    primary, backup = upstreams
    primary.inject("server_error")
    backup.inject("rate_limit", retry_after=7)
    response = await edit(gw)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "all_channels_failed" and error["retryable"] is True and error["retry_after"] == 7
    assert response.headers["retry-after"] == "7"
    assert (await gw.books())[1] == 0


async def test_a_failing_route_is_taken_out_then_probed_back(gw: Harness, upstreams: Any) -> None:
    primary, backup = upstreams
    primary.inject("server_error", times=2)
    for _ in range(2):
        assert (await edit(gw)).status_code == 200
    assert len(primary.edit_requests) == 2
    assert (await edit(gw)).status_code == 200  # circuit open: the primary is not even tried
    assert len(primary.edit_requests) == 2 and len(backup.edit_requests) == 3
    await asyncio.sleep(0.35)
    assert (await edit(gw)).status_code == 200  # the probe succeeds and the primary is back
    assert len(primary.edit_requests) == 3 and len(backup.edit_requests) == 3
    assert (await edit(gw)).status_code == 200
    assert len(primary.edit_requests) == 4


async def test_the_request_deadline_bounds_all_attempts(settings: Settings, upstreams: Any) -> None:
    primary, backup = upstreams
    h = await routed(settings, primary, backup, limits=LimitSettings(request_timeout=0.8))
    try:
        primary.inject("hang")
        backup.inject("hang")
        started = time.monotonic()
        response = await edit(h)
        elapsed = time.monotonic() - started
        assert response.status_code == 504 and response.json()["error"]["code"] == "timeout_error"
        assert elapsed < 5  # both upstreams hang for good
        assert (await h.books())[1] == 0
    finally:
        await h.aclose()


async def test_which_route_served_is_in_metrics_not_in_the_response(gw: Harness, upstreams: Any) -> None:
    primary, _ = upstreams
    primary.inject("server_error", times=2)
    for _ in range(3):
        assert (await edit(gw)).status_code == 200
    response = await gw.client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'imagegate_upstream_attempts_total{model="gpt-image-1.5",outcome="upstream_error",route="primary"} 2.0' \
        in text
    assert 'imagegate_upstream_attempts_total{model="gpt-image-1.5",outcome="ok",route="backup"} 3.0' in text
    assert 'imagegate_route_circuit_state{route="primary",state="open"} 1.0' in text
    assert 'imagegate_route_circuit_state{route="backup",state="closed"} 1.0' in text
    assert 'imagegate_upstream_seconds_count{route="backup"} 3.0' in text
