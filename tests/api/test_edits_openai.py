"""Edits through the openai provider against the strict OpenAI emulator, driven by the official SDK."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from dataclasses import replace

import openai
import pytest
from PIL import Image
from tests.conftest import Harness, mask_bytes, png_bytes, running
from tests.emulators.openai_emulator import OpenAIEmulator

from imagegate.config import ProviderSettings, Settings
from imagegate.core.pricing import usd_to_micros

MODELS = ("gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini", "dall-e-2")


@pytest.fixture
async def emulator() -> AsyncIterator[OpenAIEmulator]:
    async with OpenAIEmulator(api_key="sk-upstream") as emu:
        yield emu


@pytest.fixture
async def gw(settings: Settings, emulator: OpenAIEmulator) -> AsyncIterator[Harness]:
    configured = replace(settings, providers=(*settings.providers, ProviderSettings(
        name="openai", type="openai", base_url=emulator.base_url, api_key="sk-upstream", models=MODELS,
        timeout=2.0)))
    async with running(configured) as h:
        yield h


def png(size: tuple[int, int] = (64, 64)) -> tuple[str, bytes, str]:
    return ("a.png", png_bytes(size), "image/png")


async def test_sdk_single_image(gw: Harness, emulator: OpenAIEmulator) -> None:
    async with gw.sdk() as client:
        result = await client.images.edit(model="gpt-image-2", image=png(), prompt="add a hat",
                                          size="1024x1024", quality="low", response_format="b64_json")
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json or "")))
    assert image.size == (1024, 1024)
    [sent] = emulator.edit_requests
    assert sent.fields["model"] == "gpt-image-2" and sent.fields["prompt"] == "add a hat"
    assert sent.fields["size"] == "1024x1024" and sent.fields["quality"] == "low"
    assert "response_format" not in sent.fields  # GPT image models refuse it
    [(name, _, content_type, data)] = sent.files
    assert (name, content_type, data) == ("image", "image/png", png()[1])
    assert sent.headers["Authorization"] == "Bearer sk-upstream"
    assert result.usage is not None  # passed through as the upstream reported it
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens > 0


async def test_usage_is_what_gets_billed(gw: Harness, emulator: OpenAIEmulator) -> None:
    r = await gw.client.post("/v1/images/edits", headers=gw.auth, data={
        "model": "gpt-image-1.5", "prompt": "x", "quality": "medium", "size": "1024x1024"},
        files={"image": png()})
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    expected = (usage["input_tokens_details"]["text_tokens"] * 5 + usage["input_tokens_details"]["image_tokens"]
                * 8 + usage["output_tokens"] * 32)  # micro-dollars: tokens × USD per 1M tokens
    s = await gw.gateway.accounts.summary("alice")
    assert s.spent_micros == expected and s.held_micros == 0
    assert s.deposits_micros == usd_to_micros(100) == s.balance_micros + s.spent_micros


async def test_sdk_several_images_go_as_image_array(gw: Harness, emulator: OpenAIEmulator) -> None:
    async with gw.sdk() as client:
        result = await client.images.edit(model="gpt-image-1.5", image=[png(), png((32, 32)), png()],
                                          prompt="combine")
    assert result.data and result.data[0].url and result.data[0].url.startswith("http://gateway.test/blobs/")
    [sent] = emulator.edit_requests
    assert [f[0] for f in sent.files] == ["image[]", "image[]", "image[]"]


async def test_sdk_mask(gw: Harness, emulator: OpenAIEmulator) -> None:
    async with gw.sdk() as client:
        await client.images.edit(model="gpt-image-1.5", image=png(), mask=("m.png", mask_bytes(), "image/png"),
                                 prompt="fill")
    [sent] = emulator.edit_requests
    assert [(f[0], f[2]) for f in sent.files] == [("image", "image/png"), ("mask", "image/png")]


async def test_input_fidelity_stripped_for_gpt_image_2(gw: Harness, emulator: OpenAIEmulator) -> None:
    r = await gw.client.post("/v1/images/edits", headers=gw.auth, files={"image": png()},
                             data={"model": "gpt-image-2", "prompt": "x", "input_fidelity": "high"})
    assert r.status_code == 200, r.text
    assert "input_fidelity" not in emulator.edit_requests[0].fields


async def test_input_fidelity_forwarded_where_supported(gw: Harness, emulator: OpenAIEmulator) -> None:
    r = await gw.client.post("/v1/images/edits", headers=gw.auth, files={"image": png()},
                             data={"model": "gpt-image-1.5", "prompt": "x", "input_fidelity": "high"})
    assert r.status_code == 200, r.text
    assert emulator.edit_requests[0].fields["input_fidelity"] == "high"


@pytest.mark.parametrize("field", ["background", "resolution"])
async def test_refused_fields_on_gpt_image_2(gw: Harness, emulator: OpenAIEmulator, field: str) -> None:
    r = await gw.client.post("/v1/images/edits", headers=gw.auth, files={"image": png()},
                             data={"model": "gpt-image-2", "prompt": "x", field: "transparent"})
    assert r.status_code == 400 and r.json()["error"]["param"] == field
    assert emulator.requests == []


@pytest.mark.parametrize(("size", "ok"), [
    ("auto", True), ("1024x1024", True), ("3840x1280", True), ("2880x2880", True), ("816x816", True),
    ("800x800", False),  # 640,000 pixels: under the minimum
    ("3856x1296", False),  # longest side over 3840
    ("1000x1000", False),  # not multiples of 16
    ("3840x1264", False),  # ratio over 3
    ("2896x2896", False),  # over 8,294,400 pixels
    ("big", False),
])
async def test_gpt_image_2_size_rule(gw: Harness, emulator: OpenAIEmulator, size: str, ok: bool) -> None:
    r = await gw.client.post("/v1/images/edits", headers=gw.auth, files={"image": png()},
                             data={"model": "gpt-image-2", "prompt": "x", "size": size, "quality": "low"})
    if ok:
        assert r.status_code == 200, r.text
        assert emulator.edit_requests[0].fields.get("size") == size
    else:
        assert r.status_code == 400 and r.json()["error"]["param"] == "size"
        assert emulator.requests == []


async def test_too_many_images_before_upstream(gw: Harness, emulator: OpenAIEmulator) -> None:
    r = await gw.client.post("/v1/images/edits", headers=gw.auth, files=[("image[]", png())] * 2,
                             data={"model": "dall-e-2", "prompt": "x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_images"
    assert emulator.requests == []


async def test_dall_e_2_rules(gw: Harness, emulator: OpenAIEmulator) -> None:
    wide = await gw.client.post("/v1/images/edits", headers=gw.auth, files={"image": png((64, 32))},
                                data={"model": "dall-e-2", "prompt": "x"})
    assert wide.status_code == 400 and wide.json()["error"]["param"] == "image"
    rgb = ("a.png", png_bytes((64, 64), (1, 2, 3), mode="RGB"), "image/png")
    opaque = await gw.client.post("/v1/images/edits", headers=gw.auth, files={"image": rgb},
                                  data={"model": "dall-e-2", "prompt": "x"})
    assert opaque.status_code == 400 and opaque.json()["error"]["param"] == "image"
    bad_size = await gw.client.post("/v1/images/edits", headers=gw.auth, files={"image": png()},
                                    data={"model": "dall-e-2", "prompt": "x", "size": "1024x1536"})
    assert bad_size.status_code == 400 and bad_size.json()["error"]["param"] == "size"
    assert emulator.requests == []
    ok = await gw.client.post("/v1/images/edits", headers=gw.auth, files={"image": png()},
                              data={"model": "dall-e-2", "prompt": "x", "size": "256x256"})
    assert ok.status_code == 200, ok.text
    assert emulator.edit_requests[0].fields["response_format"] == "b64_json"
    s = await gw.gateway.accounts.summary("alice")
    assert s.spent_micros == usd_to_micros(0.016)


async def test_json_data_url_forwarded_as_bytes(gw: Harness, emulator: OpenAIEmulator) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    r = await gw.client.post("/v1/images/edits", headers=gw.auth, json={
        "model": "gpt-image-1.5", "prompt": "x", "image_url": data_url, "response_format": "b64_json"})
    assert r.status_code == 200, r.text
    [sent] = emulator.edit_requests
    assert sent.content_type.startswith("multipart/form-data")
    assert sent.files[0][3] == png_bytes()


@pytest.mark.parametrize(("kind", "status", "code"), [
    ("moderation_blocked", 400, "moderation_blocked"),
    ("server_error", 502, "upstream_error"),
    ("service_unavailable", 502, "upstream_error"),
    ("rate_limit", 429, "rate_limit_exceeded"),
    ("insufficient_quota", 502, "upstream_error"),
    ("invalid_api_key", 502, "upstream_error"),
    ("bad_gateway", 502, "upstream_error"),
    ("hang", 504, "timeout_error"),
    ("disconnect", 502, "upstream_error"),
])
async def test_upstream_failures_are_translated_and_released(gw: Harness, emulator: OpenAIEmulator, kind: str,
                                                             status: int, code: str) -> None:
    emulator.inject(kind)
    r = await gw.client.post("/v1/images/edits", headers=gw.auth, files={"image": png()},
                             data={"model": "gpt-image-1.5", "prompt": "x"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code
    assert "sk-upstream" not in r.text and "org-" not in r.text  # the upstream body is not echoed
    if status == 429:
        assert int(r.headers["retry-after"]) >= 1
    s = await gw.gateway.accounts.summary("alice")
    assert s.held_micros == 0 and s.spent_micros == 0 and s.balance_micros == s.deposits_micros


async def test_sdk_sees_openai_style_errors(gw: Harness) -> None:
    async with gw.sdk() as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.images.edit(model="gpt-image-2", image=png(), prompt="x", size="13x13")
    assert info.value.status_code == 400
    assert info.value.body["param"] == "size"  # type: ignore[index]
    async with gw.sdk(key="sk-wrong") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.images.edit(model="gpt-image-2", image=png(), prompt="x")


async def test_models_list_shows_capabilities_and_prices(gw: Harness) -> None:
    async with gw.sdk() as client:
        models = {m.id: m for m in (await client.models.list()).data}
    assert set(models) == {"local-edit", "local-draw", *MODELS}
    r = await gw.client.get("/v1/models/gpt-image-2", headers=gw.auth)
    body = r.json()
    edits, generations = body["capabilities"]["operations"]["edits"], body["capabilities"]["operations"]["generations"]
    assert edits["max_images"] == 16 and edits["async"] is True and edits["stream"] is True
    assert generations["max_images"] == 0 and generations["stream"] is True and "size_rule" in generations
    variations = (await gw.client.get("/v1/models/dall-e-2", headers=gw.auth)).json()["capabilities"]["operations"]
    assert set(variations) == {"edits", "generations", "variations"}
    assert variations["variations"]["square_png"] is True and "max_prompt_chars" not in variations["variations"]
    assert body["pricing"]["usd_per_1m_tokens"]["image_out"] == 30.0
    missing = await gw.client.get("/v1/models/gpt-image-3", headers=gw.auth)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
