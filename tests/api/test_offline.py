"""With no keys at all, the built-in engine serves the whole API: generations (local-draw), edits and
variations (local-edit), sync, async and through the official SDK."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image
from tests.conftest import Harness, png_bytes


def decoded(b64: str | None) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64 or "")))


async def test_sdk_generates_offline_and_the_picture_follows_the_prompt(harness: Harness) -> None:
    async with harness.sdk() as client:
        first = await client.images.generate(model="local-draw", prompt="a red kite", size="320x200", n=2,
                                             response_format="b64_json")
        again = await client.images.generate(model="local-draw", prompt="a red kite", size="320x200",
                                             response_format="b64_json")
        other = await client.images.generate(model="local-draw", prompt="a blue boat", size="320x200",
                                             response_format="b64_json")
    a, b = (decoded(d.b64_json) for d in first.data)
    assert a.size == b.size == (320, 200) and a.tobytes() != b.tobytes()  # n variants differ
    assert decoded(again.data[0].b64_json).tobytes() == a.tobytes()  # deterministic
    assert decoded(other.data[0].b64_json).tobytes() != a.tobytes()


async def test_offline_generation_as_a_task_and_as_a_url(harness: Harness) -> None:
    r = await harness.client.post("/v1/images/generations", headers=harness.auth, json={
        "model": "local-draw", "prompt": "a castle", "size": "64x64", "async": True})
    task_id = r.json()["id"]
    assert await harness.gateway.runner.run_once()
    task = (await harness.client.get(f"/v1/tasks/{task_id}", headers=harness.auth)).json()
    assert task["status"] == "completed"
    image = Image.open(io.BytesIO(await harness.fetch_output(task["data"][0]["url"])))
    assert image.size == (64, 64)


async def test_transparent_background_keeps_the_shapes_only(harness: Harness) -> None:
    r = await harness.client.post("/v1/images/generations", headers=harness.auth, json={
        "model": "local-draw", "prompt": "a star", "size": "128x128", "background": "transparent",
        "response_format": "b64_json"})
    alpha = decoded(r.json()["data"][0]["b64_json"]).getchannel("A")
    assert alpha.getextrema() == (0, 255)  # some pixels clear, some solid


async def test_sdk_variation_offline(harness: Harness) -> None:
    source = png_bytes((48, 48), color=(200, 30, 30, 255))
    async with harness.sdk() as client:
        with pytest.warns(DeprecationWarning):  # the SDK calls the endpoint retired; the gateway serves it
            result = await client.images.create_variation(model="local-edit", image=("a.png", source, "image/png"),
                                                          n=2, size="96x96", response_format="b64_json")
    images = [decoded(d.b64_json) for d in result.data]
    assert [i.size for i in images] == [(96, 96)] * 2 and images[0].tobytes() != images[1].tobytes()


async def test_a_variation_without_a_model_gets_the_default_one(harness: Harness) -> None:
    r = await harness.client.post("/v1/images/variations", headers=harness.auth,
                                  files={"image": ("a.png", png_bytes(), "image/png")}, data={"n": "1"})
    assert r.status_code == 200, r.text  # only local-edit makes variations here
    generate = await harness.client.post("/v1/images/generations", headers=harness.auth, json={"prompt": "x"})
    assert generate.status_code == 400 and generate.json()["error"]["param"] == "model"


async def test_models_list_the_offline_operations(harness: Harness) -> None:
    listed = (await harness.client.get("/v1/models", headers=harness.auth)).json()["data"]
    operations = {m["id"]: set(m["capabilities"]["operations"]) for m in listed}
    assert operations == {"local-edit": {"edits", "variations"}, "local-draw": {"generations"}}
