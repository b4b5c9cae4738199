"""POST /v1/images/generations and /v1/images/variations through the openai provider, driven by the
official SDK against the strict OpenAI emulator: the same money, task, idempotency and delivery rules as
edits, per-model rules enforced before anything is sent, URL answers re-hosted."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from PIL import Image
from tests.conftest import Harness, png_bytes, running
from tests.emulators.openai_emulator import OpenAIEmulator

from imagegate.config import ApiSettings, ProviderSettings, Settings, TaskSettings

MODELS = ("gpt-image-2", "gpt-image-1.5", "dall-e-2", "dall-e-3")


@pytest.fixture
async def emulator() -> AsyncIterator[OpenAIEmulator]:
    # safety_identifier is taken on edits by the API the installed SDK (3.57) speaks
    async with OpenAIEmulator(api_key="sk-upstream", extra_params=("safety_identifier",)) as emu:
        yield emu


def configured(settings: Settings, emulator: OpenAIEmulator, **changes: Any) -> Settings:
    return replace(settings, tasks=TaskSettings(workers=0, lease=5.0), providers=(
        *settings.providers, ProviderSettings(name="openai", type="openai", base_url=emulator.base_url,
                                              api_key="sk-upstream", models=MODELS, timeout=5.0)), **changes)


@pytest.fixture
async def gw(settings: Settings, emulator: OpenAIEmulator) -> AsyncIterator[Harness]:
    async with running(configured(settings, emulator)) as h:
        yield h


def decoded(b64: str | None) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64 or "")))


async def test_sdk_generates_with_gpt_image_and_is_billed_from_usage(gw: Harness, emulator: OpenAIEmulator) -> None:
    balance, _, _ = await gw.books()
    async with gw.sdk() as client:
        result = await client.images.generate(model="gpt-image-1.5", prompt="an otter", size="1536x1024",
                                              quality="low", response_format="b64_json", moderation="low",
                                              output_format="webp", output_compression=70)
    assert decoded(result.data[0].b64_json).size == (1536, 1024)
    [sent] = emulator.generation_requests
    assert sent.json == {"model": "gpt-image-1.5", "prompt": "an otter", "size": "1536x1024", "quality": "low",
                         "moderation": "low", "output_format": "webp", "output_compression": 70}
    assert result.usage is not None and result.size == "1536x1024" and result.output_format == "webp"
    usage = result.usage
    charged = -(-(usage.input_tokens_details.text_tokens * 5_000_000 + usage.output_tokens * 32_000_000)
                // 1_000_000)
    assert await gw.books() == (balance - charged, 0, charged)


async def test_generation_urls_are_stored_and_served(gw: Harness) -> None:
    r = await gw.client.post("/v1/images/generations", headers=gw.auth,
                             json={"model": "gpt-image-2", "prompt": "a lighthouse", "size": "1024x1024",
                                   "quality": "low", "n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["data"]) == 2 and all(item["url"].startswith("http://gateway.test/blobs/outputs/")
                                          for item in body["data"])
    image = Image.open(io.BytesIO(await gw.fetch_output(body["data"][0]["url"])))
    assert image.size == (1024, 1024)
    assert r.headers["X-Billing-Transaction-ID"] == body["billing_transaction_id"]


async def test_dall_e_3_is_asked_for_base64_and_priced_by_quality_and_size(gw: Harness,
                                                                            emulator: OpenAIEmulator) -> None:
    balance, _, _ = await gw.books()
    async with gw.sdk() as client:
        result = await client.images.generate(model="dall-e-3", prompt="a fox", size="1792x1024", quality="hd",
                                              style="natural", response_format="b64_json")
    [sent] = emulator.generation_requests
    assert sent.json == {"model": "dall-e-3", "prompt": "a fox", "size": "1792x1024", "quality": "hd",
                         "style": "natural", "response_format": "b64_json"}
    assert decoded(result.data[0].b64_json).size == (1792, 1024)
    assert result.data[0].revised_prompt  # passed through as the upstream rewrote the prompt
    assert await gw.books() == (balance - 120_000, 0, 120_000)  # $0.12: hd, wide


async def test_an_upstream_url_answer_is_downloaded_and_rehosted(gw: Harness, emulator: OpenAIEmulator) -> None:
    balance, _, _ = await gw.books()
    image = png_bytes((1024, 1024), mode="RGB")
    emulator.fail_next(200, {"created": 1, "data": [{"url": emulator.serve(image), "revised_prompt": "a red fox"}]},
                       on=OpenAIEmulator.GENERATIONS)  # the gateway asked for Base64; this upstream sends a URL
    r = await gw.client.post("/v1/images/generations", headers=gw.auth, json={"model": "dall-e-3", "prompt": "a fox"})
    assert r.status_code == 200, r.text
    [item] = r.json()["data"]
    assert item["url"].startswith("http://gateway.test/blobs/outputs/") and item["revised_prompt"] == "a red fox"
    assert await gw.fetch_output(item["url"]) == image  # fetched and stored here, not a 502
    assert await gw.books() == (balance - 40_000, 0, 40_000)  # standard quality, 1024x1024: $0.04


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "dall-e-3", "prompt": "x", "n": 2}, "n"),
    ({"model": "dall-e-3", "prompt": "x", "size": "1024x1536"}, "size"),
    ({"model": "dall-e-3", "prompt": "x", "quality": "high"}, "quality"),
    ({"model": "dall-e-3", "prompt": "x", "style": "bold"}, "style"),
    ({"model": "dall-e-3", "prompt": "x" * 4001}, "prompt"),
    ({"model": "gpt-image-2", "prompt": "x", "size": "1000x1000"}, "size"),
    ({"model": "gpt-image-2", "prompt": "x", "background": "transparent"}, "background"),
    ({"model": "gpt-image-1.5", "prompt": "x", "moderation": "strict"}, "moderation"),
    ({"model": "gpt-image-1.5", "prompt": "x", "output_compression": 101}, "output_compression"),
    ({"model": "dall-e-3", "prompt": "x", "stream": True}, "stream"),
    ({"model": "gpt-image-1.5", "prompt": "x", "async": True}, "async"),
    ({"model": "gpt-image-1.5", "prompt": "x", "image_url": "data:,x"}, "image"),
    ({"model": "gpt-image-1.5", "prompt": 12}, "prompt"),
    ({"model": ["gpt-image-1.5"], "prompt": "x"}, "model"),
    ({"model": "gpt-image-1.5", "prompt": "x", "n": "two"}, "n"),
])
async def test_per_model_rules_are_enforced_before_anything_is_sent(gw: Harness, emulator: OpenAIEmulator,
                                                                    body: dict[str, Any], param: str) -> None:
    before = await gw.books()
    r = await gw.client.post("/v1/images/generations", headers=gw.auth, json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert emulator.generation_requests == [] and await gw.books() == before


async def test_a_wrong_type_is_named_as_such(gw: Harness) -> None:
    r = await gw.client.post("/v1/images/generations", headers=gw.auth, json={"model": "gpt-image-1.5", "prompt": 7})
    assert r.json()["error"]["message"] == "'prompt' must be a string; got a number."


async def test_generations_are_json_only(gw: Harness) -> None:
    r = await gw.client.post("/v1/images/generations", headers=gw.auth,
                             data={"model": "gpt-image-1.5", "prompt": "x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_content_type"


async def test_safety_identifier_is_forwarded(gw: Harness, emulator: OpenAIEmulator) -> None:
    async with gw.sdk() as client:
        await client.images.generate(model="gpt-image-1.5", prompt="x", quality="low", size="1024x1024",
                                     safety_identifier="user-42")
        await client.images.edit(model="gpt-image-1.5", prompt="x", quality="low", size="1024x1024",
                                 image=("a.png", png_bytes(), "image/png"), safety_identifier="user-43")
    assert emulator.generation_requests[0].json["safety_identifier"] == "user-42"
    assert emulator.edit_requests[0].fields["safety_identifier"] == "user-43"


async def test_async_generation_runs_as_a_task(gw: Harness, emulator: OpenAIEmulator) -> None:
    balance, _, _ = await gw.books()
    r = await gw.client.post("/v1/images/generations", headers=gw.auth, json={
        "model": "gpt-image-2", "prompt": "a castle", "size": "1024x1024", "quality": "low", "async": True})
    task = r.json()
    assert task["status"] == "pending" and task["id"].startswith("ldtask_")
    assert await gw.gateway.runner.run_once()
    done = (await gw.client.get(f"/v1/images/generations/{task['id']}", headers=gw.auth)).json()
    assert done["status"] == "completed" and len(done["data"]) == 1
    assert emulator.generation_requests[0].json["prompt"] == "a castle"
    _, held, spent = await gw.books()
    assert held == 0 and spent > 0 and (await gw.books())[0] == balance - spent


async def test_idempotency_key_replays_a_generation_charged_once(gw: Harness, emulator: OpenAIEmulator) -> None:
    headers = {**gw.auth, "Idempotency-Key": "gen-1"}
    body = {"model": "gpt-image-1.5", "prompt": "x", "quality": "low", "size": "1024x1024"}
    first = await gw.client.post("/v1/images/generations", headers=headers, json=body)
    again = await gw.client.post("/v1/images/generations", headers=headers, json=body)
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert len(emulator.generation_requests) == 1
    other = await gw.client.post("/v1/images/generations", headers=headers, json={**body, "prompt": "y"})
    assert other.status_code == 409 and other.headers["x-should-retry"] == "false"
    edit = await gw.client.post("/v1/images/edits", headers=headers, data=body,
                                files={"image": ("a.png", png_bytes(), "image/png")})
    assert edit.status_code == 409  # the same key on another operation is another request


async def test_sdk_variation_of_a_square_png(gw: Harness, emulator: OpenAIEmulator) -> None:
    balance, _, _ = await gw.books()
    async with gw.sdk() as client:
        with pytest.warns(DeprecationWarning):  # the SDK marks the endpoint retired; the gateway still serves it
            result = await client.images.create_variation(image=("a.png", png_bytes((64, 64)), "image/png"), n=2,
                                                          size="256x256", response_format="b64_json")
    assert [decoded(d.b64_json).size for d in result.data] == [(256, 256)] * 2
    [sent] = emulator.variation_requests
    assert sent.fields == {"model": "dall-e-2", "n": "2", "size": "256x256", "response_format": "b64_json"}
    assert await gw.books() == (balance - 32_000, 0, 32_000)  # 2 x $0.016


@pytest.mark.parametrize(("fields", "files", "param"), [
    ({}, {"image": ("a.png", png_bytes((64, 32)), "image/png")}, "image"),  # not square
    ({"prompt": "x"}, {"image": ("a.png", png_bytes(), "image/png")}, "prompt"),
    ({"size": "1024x1536"}, {"image": ("a.png", png_bytes(), "image/png")}, "size"),
    ({"model": "gpt-image-1.5"}, {"image": ("a.png", png_bytes(), "image/png")}, "model"),
    ({}, {"user": (None, "u")}, "image"),
])
async def test_variation_rules(gw: Harness, emulator: OpenAIEmulator, fields: dict[str, str], files: dict[str, Any],
                               param: str) -> None:
    r = await gw.client.post("/v1/images/variations", headers=gw.auth, data={"model": "dall-e-2", **fields},
                             files=files)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert emulator.variation_requests == []


async def test_defaults_from_the_operator(settings: Settings, emulator: OpenAIEmulator) -> None:
    api = ApiSettings(default_response_format="b64_json", default_model="gpt-image-1.5")
    async with running(configured(settings, emulator, api=api)) as h, h.sdk() as client:
        result = await client.images.generate(prompt="no model named", quality="low", size="1024x1024")
        assert result.data[0].b64_json and result.data[0].url is None  # SDK code reading b64_json works
    assert emulator.generation_requests[0].json["model"] == "gpt-image-1.5"


async def test_without_defaults_a_missing_model_is_named(gw: Harness) -> None:
    r = await gw.client.post("/v1/images/generations", headers=gw.auth, json={"prompt": "x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
