"""POST /v1/images/edits end to end through the built-in local-edit engine (no network)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from tests.conftest import Harness, mask_bytes, png_bytes


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


async def edit(h: Harness, files: list[tuple[str, tuple[str, bytes, str]]], **fields: str):  # type: ignore[no-untyped-def]
    return await h.client.post("/v1/images/edits", headers=h.auth, files=files,
                               data={"model": "local-edit", **fields})


async def test_single_image_b64(harness: Harness) -> None:
    r = await edit(harness, [("image", ("a.png", png_bytes(), "image/png"))], prompt="make it grayscale",
                   response_format="b64_json")
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["x-request-id"].startswith("req_")
    assert body["billing_transaction_id"] == r.headers["x-billing-transaction-id"]
    assert len(body["data"]) == 1
    pixels = np.asarray(decode(body["data"][0]["b64_json"]).convert("RGB"))
    assert pixels.shape == (64, 64, 3)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()


async def test_url_output_is_served_unguessably(harness: Harness) -> None:
    r = await edit(harness, [("image", ("a.png", png_bytes(), "image/png"))], prompt="invert", n="2")
    assert r.status_code == 200, r.text
    urls = [item["url"] for item in r.json()["data"]]
    assert len(urls) == 2 and urls[0] != urls[1]
    for url in urls:
        assert url.startswith("http://gateway.test/blobs/outputs/")
        token = url.rsplit("/", 1)[1].split(".")[0]
        assert len(base64.urlsafe_b64decode(token + "==")) >= 16  # at least 128 random bits
        img = Image.open(io.BytesIO(await harness.fetch_output(url)))
        assert img.format == "PNG"
    first, second = [await harness.fetch_output(u) for u in urls]
    assert first != second  # n variants differ


async def test_unknown_blob_is_404(harness: Harness) -> None:
    r = await harness.client.get("/blobs/outputs/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.png")
    assert r.status_code == 404
    r = await harness.client.get("/blobs/../../etc/passwd")
    assert r.status_code == 404


@pytest.mark.parametrize("field", ["image", "image[]"])
async def test_several_images_either_field_name(harness: Harness, field: str) -> None:
    files = [(field, ("a.png", png_bytes((40, 40), (255, 0, 0, 255)), "image/png")),
             (field, ("b.jpg", png_bytes((40, 40), (0, 0, 255), mode="RGB", fmt="JPEG"), "image/jpeg"))]
    r = await edit(harness, files, prompt="brighter", response_format="b64_json", size="80x40")
    assert r.status_code == 200, r.text
    out = decode(r.json()["data"][0]["b64_json"])
    assert out.size == (80, 40)


async def test_mask_limits_edit_to_transparent_region(harness: Harness) -> None:
    files = [("image", ("a.png", png_bytes((64, 64), (180, 40, 40, 255)), "image/png")),
             ("mask", ("m.png", mask_bytes(), "image/png"))]
    r = await edit(harness, files, prompt="invert", response_format="b64_json")
    assert r.status_code == 200, r.text
    px = np.asarray(decode(r.json()["data"][0]["b64_json"]).convert("RGB")).astype(int)
    assert tuple(px[2, 2]) == (180, 40, 40)  # outside the hole: untouched
    assert abs(px[32, 32] - np.array([75, 215, 215])).max() <= 30  # inside: inverted (a variant)


async def test_output_format_and_size(harness: Harness) -> None:
    r = await edit(harness, [("image", ("a.png", png_bytes(), "image/png"))], prompt="sepia",
                   output_format="webp", size="128x96", response_format="b64_json")
    assert r.status_code == 200, r.text
    img = decode(r.json()["data"][0]["b64_json"])
    assert img.format == "WEBP" and img.size == (128, 96)


async def test_prompt_it_cannot_act_on_lists_operations(harness: Harness) -> None:
    r = await edit(harness, [("image", ("a.png", png_bytes(), "image/png"))], prompt="a castle in the sky")
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "prompt" and "grayscale" in err["message"]


async def test_file_id_reference_in_json(harness: Harness) -> None:
    up = await harness.client.post("/v1/files", headers=harness.auth, data={"purpose": "vision"},
                                   files={"file": ("photo.png", png_bytes(), "image/png")})
    assert up.status_code == 200, up.text
    file = up.json()
    assert file["id"].startswith("file-") and file["object"] == "file" and file["status"] == "processed"
    assert file["bytes"] == len(png_bytes()) and file["filename"] == "photo.png"
    r = await harness.client.post("/v1/images/edits", headers=harness.auth, json={
        "model": "local-edit", "prompt": "flip", "images": [{"file_id": file["id"]}],
        "response_format": "b64_json"})
    assert r.status_code == 200, r.text
    assert decode(r.json()["data"][0]["b64_json"]).size == (64, 64)


async def test_no_charge_for_free_model_and_ledger_balanced(harness: Harness) -> None:
    r = await edit(harness, [("image", ("a.png", png_bytes(), "image/png"))], prompt="blur")
    assert r.status_code == 200
    s = await harness.gateway.accounts.summary("alice")
    assert s.held_micros == 0 and s.spent_micros == 0
    assert s.deposits_micros == s.balance_micros + s.held_micros + s.spent_micros
