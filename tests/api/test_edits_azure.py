"""Edits through an `azure` route, as the gateway's client sees them and as the books record them.

The adapter's wire details are tested in tests/providers/test_azure.py; here the real app runs in-process
against the strict Azure emulator, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.conftest import Harness, png_bytes, running, settings_on
from tests.emulators.azure_emulator import AzureEmulator

from imagegate.config import ProviderSettings, Settings

KEY = "azure-upstream-key"
DEPLOYMENT = "img-prod"
GPT_IMAGE_1 = {"text_in": 5, "image_in": 10, "image_out": 40}  # USD per 1M tokens = micro-USD per token


def make_settings(db_url: str, blobs: Path, emu: AzureEmulator, **provider: Any) -> Settings:
    return settings_on(
        db_url, blobs,
        providers=(ProviderSettings(**{
            "name": "azure", "type": "azure", "base_url": emu.base_url, "api_key": KEY,
            "models": ("gpt-image-1",), "deployments": {"gpt-image-1": DEPLOYMENT}, "timeout": 5.0,
            **provider}),))


@pytest.fixture
async def emu() -> AsyncIterator[AzureEmulator]:
    async with AzureEmulator(KEY, deployments={DEPLOYMENT: "gpt-image-1"}) as emulator:
        yield emulator


@pytest.fixture
async def gw(db_url: str, tmp_path: Path, emu: AzureEmulator) -> AsyncIterator[Harness]:
    async with running(make_settings(db_url, tmp_path / "blobs", emu)) as h:
        yield h


async def edit(h: Harness, **fields: str) -> Any:
    return await h.client.post("/v1/images/edits", headers=h.auth, files={"image": ("a.png", png_bytes(),
                                                                                     "image/png")},
                               data={"model": "gpt-image-1", "prompt": "add a hat", **fields})


def token_cost(usage: dict[str, Any]) -> int:
    """The price of the usage Azure reported, in micro-USD (every gpt-image-1 rate is whole micro-USD a token)."""
    details = usage["input_tokens_details"]
    return int(details["text_tokens"] * GPT_IMAGE_1["text_in"] + details["image_tokens"] * GPT_IMAGE_1["image_in"]
               + usage["output_tokens"] * GPT_IMAGE_1["image_out"])


async def test_url_edit_on_a_deployment_route_is_stored_and_served(gw: Harness, emu: AzureEmulator) -> None:
    balance, _, _ = await gw.books()
    r = await edit(gw, quality="low", size="1024x1536")  # response_format left at its default: url
    assert r.status_code == 200, r.text
    [sent] = emu.edit_requests
    assert sent.path == f"/openai/deployments/{DEPLOYMENT}/images/edits"
    assert sent.query == {"api-version": "2025-04-01-preview"}
    assert sent.headers["api-key"] == KEY and "Authorization" not in sent.headers
    assert "response_format" not in sent.fields  # Azure refuses it; it always answers Base64
    assert sent.fields["quality"] == "low" and sent.fields["size"] == "1024x1536"
    body = r.json()
    [item] = body["data"]
    assert set(item) == {"url"} and item["url"].startswith("http://gateway.test/blobs/outputs/")
    image = Image.open(io.BytesIO(await gw.fetch_output(item["url"])))
    assert image.format == "PNG" and image.size == (1024, 1536)
    cost = token_cost(body["usage"])  # the usage Azure reported, passed through and billed
    assert body["billing_transaction_id"] == r.headers["X-Billing-Transaction-ID"]
    assert await gw.books() == (balance - cost, 0, cost)
    settled = [e for e in await gw.gateway.accounts.ledger("alice") if e.kind == "settle"]
    assert [(e.transaction_id, e.amount_micros, e.memo) for e in settled] == [
        (body["billing_transaction_id"], cost, "gpt-image-1")]


async def test_b64_json_edit_is_answered_inline_and_stores_nothing(gw: Harness, emu: AzureEmulator) -> None:
    r = await edit(gw, response_format="b64_json", quality="low", output_format="jpeg")
    assert r.status_code == 200, r.text
    assert "response_format" not in emu.edit_requests[0].fields
    [item] = r.json()["data"]
    assert set(item) == {"b64_json"}
    data = base64.b64decode(item["b64_json"])
    assert data[:3] == b"\xff\xd8\xff" and Image.open(io.BytesIO(data)).size == (1024, 1024)
    assert not gw.gateway.blobs.path("outputs/" + "x" * 16).parent.exists()
    _, held, spent = await gw.books()
    assert held == 0 and spent == token_cost(r.json()["usage"])


async def test_v1_route(db_url: str, tmp_path: Path, emu: AzureEmulator) -> None:
    async with running(make_settings(db_url, tmp_path / "blobs", emu, api_version="v1")) as h:
        r = await edit(h, quality="low")
        assert r.status_code == 200, r.text
        [sent] = emu.edit_requests
        assert sent.path == "/openai/v1/images/edits" and sent.query == {}
        assert sent.fields["model"] == DEPLOYMENT and "response_format" not in sent.fields
        assert sent.headers["api-key"] == KEY
        [item] = r.json()["data"]
        assert Image.open(io.BytesIO(await h.fetch_output(item["url"]))).size == (1024, 1024)
        _, held, spent = await h.books()
        assert held == 0 and spent == token_cost(r.json()["usage"]) > 0


async def test_unwritable_blob_store_fails_url_requests_without_falling_back_to_base64(
        db_url: str, tmp_path: Path, emu: AzureEmulator) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"a regular file where the blob store's parent directory should be")
    async with running(make_settings(db_url, blocker / "blobs", emu)) as h:
        balance, _, _ = await h.books()
        r = await edit(h, quality="low")
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["code"] == "storage_unavailable" and error["type"] == "service_unavailable_error"
        assert "b64_json" not in r.text and "data" not in r.json()
        assert len(emu.edit_requests) == 1  # the image was made upstream, but could not be kept
        assert await h.books() == (balance, 0, 0)
        inline = await edit(h, quality="low", response_format="b64_json")  # needs no store
        assert inline.status_code == 200, inline.text
        assert (await h.books())[1:] == (0, token_cost(inline.json()["usage"]))


@pytest.mark.parametrize(("kind", "status", "code"), [
    ("content_filter", 400, "moderation_blocked"),
    ("content_filter_output", 400, "moderation_blocked"),
    ("responsible_ai", 400, "moderation_blocked"),
    ("moderation_blocked", 400, "moderation_blocked"),
    ("invalid_param", 400, "upstream_invalid_request"),
    ("rate_limit", 429, "rate_limit_exceeded"),
    ("daily_quota", 502, "upstream_error"),
    ("deployment_not_found", 502, "upstream_error"),
    ("resource_not_found", 502, "upstream_error"),
    ("invalid_key", 502, "upstream_error"),
    ("server_error", 502, "upstream_error"),
    ("service_unavailable", 502, "upstream_error"),
    ("disconnect", 502, "upstream_error"),
])
async def test_azure_errors_as_the_client_sees_them(gw: Harness, emu: AzureEmulator, kind: str, status: int,
                                                    code: str) -> None:
    balance, _, _ = await gw.books()
    emu.inject(kind, retry_after=7)
    r = await edit(gw)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and set(error) >= {"message", "type", "code", "param"}
    assert "x-request-id" in r.headers
    for vendor_text in ("Access denied", "Your task failed", "Generated image was filtered", "support ticket",
                        "ResponsibleAIPolicyViolation", "DeploymentNotFound", "Resource not found", "pricing tier",
                        "InternalServerError", "temporarily unable", KEY):
        assert vendor_text not in r.text, vendor_text  # told in the gateway's words, never the vendor's
    if kind == "rate_limit":
        assert r.headers["Retry-After"] == "7" and error["retry_after"] == 7
    if kind == "daily_quota":  # a spent quota is not a momentary rate limit: don't hot-retry
        assert int(r.headers["Retry-After"]) == 86400 and "quota" in error["message"]
    if kind == "invalid_param":
        assert error["param"] == "quality"
    assert len(emu.edit_requests) == 1  # one route: nothing retried against it
    assert await gw.books() == (balance, 0, 0)


async def test_webp_output_is_refused_before_anything_is_sent(gw: Harness, emu: AzureEmulator) -> None:
    balance, _, _ = await gw.books()
    r = await edit(gw, output_format="webp")
    assert r.status_code == 400 and r.json()["error"]["param"] == "output_format"
    assert emu.requests == []
    assert await gw.books() == (balance, 0, 0)
    kinds = [e.kind for e in await gw.gateway.accounts.ledger("alice")]
    assert kinds.count("hold") == kinds.count("release") and "settle" not in kinds


async def test_a_generation_through_azure(gw: Harness, emu: AzureEmulator) -> None:
    r = await gw.client.post("/v1/images/generations", headers=gw.auth, json={
        "model": "gpt-image-1", "prompt": "a fox", "size": "1024x1024", "quality": "low",
        "response_format": "url"})
    assert r.status_code == 200, r.text
    [sent] = emu.generation_requests
    assert sent.path == f"/openai/deployments/{DEPLOYMENT}/images/generations" and "response_format" not in sent.json
    assert (await gw.fetch_output(r.json()["data"][0]["url"]))[:8] == b"\x89PNG\r\n\x1a\n"
    variation = await gw.client.post("/v1/images/variations", headers=gw.auth, data={"model": "gpt-image-1"},
                                     files={"image": ("a.png", png_bytes(), "image/png")})
    assert variation.status_code == 400 and variation.json()["error"]["param"] == "model"
