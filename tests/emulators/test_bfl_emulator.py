"""Tests of the BFL emulator's text-to-image submits (FLUX.1, Kontext and FLUX.2 without ``input_image``), over raw
HTTP: submit, poll the returned ``polling_url``, download the sample."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from .bfl_emulator import GENERATION_MODELS, MODELS, BflEmulator

KEY = "bfl-key"
HEADERS = {"x-key": KEY}


@pytest.fixture
async def emu() -> AsyncIterator[BflEmulator]:
    async with BflEmulator(KEY, steps=("Pending",)) as e:
        yield e


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


async def submit(http: httpx.AsyncClient, emu: BflEmulator, model: str, body: Any) -> httpx.Response:
    return await http.post(f"{emu.base_url}/v1/{model}", json=body, headers=HEADERS)


async def run(http: httpx.AsyncClient, emu: BflEmulator, model: str, body: Any) -> tuple[dict[str, Any],
                                                                                           dict[str, Any], Image.Image]:
    """Submit, poll until a terminal status, download the sample: (submit answer, last poll, image)."""
    r = await submit(http, emu, model, body)
    assert r.status_code == 200, r.text
    answer = r.json()
    for _ in range(10):
        poll = (await http.get(answer["polling_url"], headers=HEADERS)).json()
        if poll["status"] not in ("Pending", "Generating"):
            break
    assert poll["status"] == "Ready", poll
    got = await http.get(poll["result"]["sample"])
    assert got.status_code == 200
    im = Image.open(io.BytesIO(got.content))
    im.load()
    return answer, poll, im


def png_b64(w: int = 64, h: int = 32) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (1, 2, 3)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def detail(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 422, r.text
    body = r.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], list)
    return list(body["detail"])


# ------------------------------------------------------------------------------------------------ FLUX.1


async def test_flux_pro_11_text_to_image(http: httpx.AsyncClient, emu: BflEmulator) -> None:
    answer, poll, im = await run(http, emu, "flux-pro-1.1", {"prompt": "a lighthouse", "seed": 7})
    assert set(answer) == {"id", "cost", "input_mp", "output_mp", "polling_url"}
    assert answer["cost"] == 4 and answer["input_mp"] == 0 and answer["output_mp"] == 0.79
    assert answer["polling_url"].startswith(f"{emu.base_url}/us1/v1/get_result?id=")
    assert im.format == "JPEG" and im.size == (1024, 768)  # the schema's defaults
    assert poll["result"]["seed"] == 7 and poll["result"]["prompt"] == "a lighthouse" and poll["cost"] == 4
    task = emu.tasks[answer["id"]]
    assert task.operation == "generation" and task.model == "flux-pro-1.1"
    assert [r.path for r in emu.generation_submits] == ["/v1/flux-pro-1.1"] and emu.edit_submits == []


async def test_flux_pro_11_every_field_is_optional(http: httpx.AsyncClient, emu: BflEmulator) -> None:
    _, poll, im = await run(http, emu, "flux-pro-1.1", {"width": 512, "height": 256, "output_format": "png",
                                                       "prompt_upsampling": True, "safety_tolerance": 6,
                                                       "webhook_secret": "s"})
    assert im.format == "PNG" and im.size == (512, 256) and poll["result"]["prompt"] == ""
    _, _, im = await run(http, emu, "flux-pro-1.1", {"width": "1440", "height": 1440.0})  # FastAPI's lax mode
    assert im.size == (1440, 1440)


async def test_flux_pro_11_errors_are_fastapis(http: httpx.AsyncClient, emu: BflEmulator) -> None:
    r = await submit(http, emu, "flux-pro-1.1", {"prompt": "x", "width": 1000, "height": 1472, "size": "1024x1024",
                                                 "output_format": "webp", "safety_tolerance": 7,
                                                 "prompt_upsampling": "maybe", "input_image": png_b64()})
    errors = {tuple(e["loc"]): e for e in detail(r)}
    assert errors[("body", "width")] == {"type": "multiple_of", "loc": ["body", "width"],
                                         "msg": "Input should be a multiple of 32", "input": 1000,
                                         "ctx": {"multiple_of": 32}}
    assert errors[("body", "height")]["type"] == "less_than_equal" and errors[("body", "height")]["ctx"] == {"le": 1440}
    assert errors[("body", "size")] == {"type": "extra_forbidden", "loc": ["body", "size"],
                                        "msg": "Extra inputs are not permitted", "input": "1024x1024"}
    assert errors[("body", "input_image")]["type"] == "extra_forbidden"  # FLUX1.1 [pro] is text-to-image only
    assert errors[("body", "output_format")]["msg"] == "Input should be 'jpeg' or 'png'"
    assert errors[("body", "safety_tolerance")]["type"] == "less_than_equal"
    assert errors[("body", "prompt_upsampling")]["type"] == "bool_parsing"
    assert len(errors) == 7 and not emu.tasks
    r = await submit(http, emu, "flux-pro-1.1", {"width": 128})
    assert detail(r)[0]["type"] == "greater_than_equal"


async def test_flux_dev(http: httpx.AsyncClient, emu: BflEmulator) -> None:
    answer, _, im = await run(http, emu, "flux-dev", {"prompt": "x", "width": 256, "height": 256, "steps": 50,
                                                     "guidance": 1.5})
    assert answer["cost"] == 2.5 and im.size == (256, 256)
    r = await submit(http, emu, "flux-dev", {"prompt": "x", "steps": 51, "guidance": 5.5})
    assert {e["loc"][1]: e["type"] for e in detail(r)} == {"steps": "less_than_equal", "guidance": "less_than_equal"}
    r = await submit(http, emu, "flux-pro-1.1", {"steps": 10})
    assert detail(r)[0]["type"] == "extra_forbidden"


async def test_flux_ultra(http: httpx.AsyncClient, emu: BflEmulator) -> None:
    answer, _, im = await run(http, emu, "flux-pro-1.1-ultra", {"prompt": "x", "raw": True})
    assert answer["cost"] == 6 and im.size == (2720, 1536)  # 16:9 by default, about 4 MP
    assert answer["output_mp"] == round(2720 * 1536 / 1e6, 2)
    _, _, im = await run(http, emu, "flux-pro-1.1-ultra", {"prompt": "x", "aspect_ratio": "1:1",
                                                          "output_format": "png"})
    assert im.size == (2048, 2048) and im.format == "PNG"
    answer, _, _ = await run(http, emu, "flux-pro-1.1-ultra", {"prompt": "x", "image_prompt": png_b64(1000, 1000),
                                                              "image_prompt_strength": 0.5})
    assert answer["input_mp"] == 1.0 and answer["cost"] == 6
    r = await submit(http, emu, "flux-pro-1.1-ultra", {"aspect_ratio": "1:9", "width": 1024,
                                                       "image_prompt_strength": 2})
    errors = {e["loc"][1]: e for e in detail(r)}
    assert errors["aspect_ratio"] == {"type": "value_error", "loc": ["body", "aspect_ratio"],
                                      "msg": "Value error, Aspect ratio must be between 21:9 and 9:21",
                                      "input": "1:9", "ctx": {"error": {}}}
    assert errors["width"]["type"] == "extra_forbidden"
    assert errors["image_prompt_strength"]["type"] == "less_than_equal"
    r = await submit(http, emu, "flux-pro-1.1-ultra", {"image_prompt": "not base64!"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "image_prompt"]


async def test_legacy_submit_answers(http: httpx.AsyncClient) -> None:
    async with BflEmulator(KEY, steps=(), flux1_cost_fields=False) as emu:
        r = await submit(http, emu, "flux-dev", {"prompt": "x"})
        assert set(r.json()) == {"id", "polling_url"}
        r = await submit(http, emu, "flux-2-pro", {"prompt": "x"})
        assert set(r.json()) == {"id", "cost", "input_mp", "output_mp", "polling_url"}  # FLUX.2 keeps them


# ------------------------------------------------------------------------------ Kontext and FLUX.2 without input


async def test_kontext_text_to_image(http: httpx.AsyncClient, emu: BflEmulator) -> None:
    answer, _, im = await run(http, emu, "flux-kontext-pro", {"prompt": "x"})
    assert answer["cost"] == 4 and answer["input_mp"] == 0 and im.size == (1024, 1024) and im.format == "PNG"
    answer, _, im = await run(http, emu, "flux-kontext-max", {"prompt": "x", "aspect_ratio": "16:9",
                                                             "safety_tolerance": 6})
    assert answer["cost"] == 8 and im.size == (1376, 768)
    r = await submit(http, emu, "flux-kontext-pro", {"prompt": "x", "aspect_ratio": "1:3"})
    assert detail(r)[0]["loc"] == ["body", "aspect_ratio"]
    r = await submit(http, emu, "flux-kontext-pro", {"prompt": "x", "width": 1024})
    assert detail(r)[0]["type"] == "extra_forbidden"
    r = await submit(http, emu, "flux-kontext-pro", {"aspect_ratio": "1:1"})
    assert detail(r)[0] == {"type": "missing", "loc": ["body", "prompt"], "msg": "Field required", "input": None}


async def test_flux2_text_to_image(http: httpx.AsyncClient, emu: BflEmulator) -> None:
    answer, _, im = await run(http, emu, "flux-2-pro", {"prompt": "x"})
    # the emulator counts a megapixel as 10**6 pixels, so 1024x1024 costs 3 + 0.05 * 1.5 credits
    assert answer["cost"] == round(3 + (1024 * 1024 / 1e6 - 1) * 1.5, 2) == 3.07 and answer["input_mp"] == 0
    assert im.size == (1024, 1024) and im.format == "JPEG"
    answer, _, im = await run(http, emu, "flux-2-pro", {"prompt": "x", "width": 1920, "height": 1088})
    assert im.size == (1920, 1088) and answer["output_mp"] == 2.09
    assert answer["cost"] == round(3 + (1920 * 1088 / 1e6 - 1) * 1.5, 2)
    answer, _, _ = await run(http, emu, "flux-2-flex", {"prompt": "x", "steps": 20, "guidance": 4.5,
                                                       "prompt_upsampling": False})
    assert answer["cost"] == round(5 + (1024 * 1024 / 1e6 - 1) * 5, 2)
    r = await submit(http, emu, "flux-2-max", {"prompt": "x", "width": 1000, "height": 1024})
    assert detail(r)[0]["loc"] == ["body", "width"]
    r = await submit(http, emu, "flux-2-pro", {"prompt": "x", "width": 64, "height": 64})
    assert r.status_code == 200


async def test_flux2_minimum_side_is_configurable(http: httpx.AsyncClient) -> None:
    async with BflEmulator(KEY, flux2_min_side=256) as emu:
        r = await submit(http, emu, "flux-2-pro", {"prompt": "x", "width": 128, "height": 256})
        assert "at least 256" in detail(r)[0]["msg"]


async def test_generations_and_edits_are_told_apart(http: httpx.AsyncClient, emu: BflEmulator) -> None:
    await submit(http, emu, "flux-kontext-pro", {"prompt": "x"})
    await submit(http, emu, "flux-kontext-pro", {"prompt": "x", "input_image": png_b64()})
    await submit(http, emu, "flux-2-pro", {"prompt": "x", "input_image_2": png_b64()})  # 422: no input_image
    await submit(http, emu, "flux-pro-1.1-ultra", {"prompt": "x"})
    assert len(emu.submits) == 4
    assert [r.path for r in emu.generation_submits] == ["/v1/flux-kontext-pro", "/v1/flux-pro-1.1-ultra"]
    assert [r.path for r in emu.edit_submits] == ["/v1/flux-kontext-pro", "/v1/flux-2-pro"]
    assert sorted(t.operation for t in emu.tasks.values()) == ["edit", "generation", "generation"]
    assert not set(GENERATION_MODELS) & set(MODELS)


async def test_failures_and_outcomes_apply_to_generations(http: httpx.AsyncClient, emu: BflEmulator) -> None:
    emu.inject("insufficient_credits")
    r = await submit(http, emu, "flux-pro-1.1", {"prompt": "x"})
    assert r.status_code == 402 and "Insufficient credits" in r.json()["detail"]
    emu.inject("content_moderated")
    answer = (await submit(http, emu, "flux-pro-1.1-ultra", {"prompt": "x"})).json()
    statuses = [(await http.get(answer["polling_url"], headers=HEADERS)).json()["status"] for _ in range(2)]
    assert statuses == ["Pending", "Content Moderated"]
    r = await http.post(f"{emu.base_url}/v1/flux-pro-1.1", json={"prompt": "x"})
    assert r.status_code == 401 and r.json() == {"detail": "Not authenticated"}
    r = await submit(http, emu, "flux-pro", {"prompt": "x"})  # legacy FLUX.1 [pro]: its schema is not published
    assert r.status_code == 404


async def test_concurrency_cap_counts_generation_tasks(http: httpx.AsyncClient) -> None:
    async with BflEmulator(KEY, concurrency={"flux-pro-1.1": 2}) as emu:
        for _ in range(2):
            assert (await submit(http, emu, "flux-pro-1.1", {"prompt": "x"})).status_code == 200
        r = await submit(http, emu, "flux-pro-1.1", {"prompt": "x"})
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert (await submit(http, emu, "flux-dev", {"prompt": "x"})).status_code == 200
