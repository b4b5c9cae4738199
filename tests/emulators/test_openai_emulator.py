"""Tests of the OpenAI Images API emulator itself, driven by the official SDK and by raw HTTP."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import openai
import pytest
from multidict import CIMultiDict
from openai import AsyncOpenAI
from PIL import Image

from .openai_emulator import INJECTABLE, OpenAIEmulator

KEY = "sk-upstream"
BENCH_SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "openai_upstream.py"
EDITS = "/images/edits"


# ------------------------------------------------------------------------------------------------ helpers


def make_image(w: int = 64, h: int = 64, mode: str = "RGBA", fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    colour: Any = (10, 20, 30, 255)[: len(mode)] if mode != "L" else 128
    Image.new(mode, (w, h), colour).save(buf, fmt)
    return buf.getvalue()


def png(w: int = 64, h: int = 64, mode: str = "RGBA") -> tuple[str, bytes, str]:
    return ("in.png", make_image(w, h, mode), "image/png")


def decode(b64: str) -> Image.Image:
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    im.load()
    return im


@pytest.fixture
async def emu() -> AsyncIterator[OpenAIEmulator]:
    async with OpenAIEmulator(api_key=KEY) as e:
        yield e


@pytest.fixture
async def client(emu: OpenAIEmulator) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=emu.base_url, api_key=KEY, max_retries=0) as c:
        yield c


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def post_form(
    http: aiohttp.ClientSession,
    emu: OpenAIEmulator,
    parts: list[tuple[str, Any]],
    key: str | None = KEY,
) -> tuple[int, CIMultiDict[str], Any]:
    """parts: (name, str) text fields or (name, (filename, bytes, content_type)) files, in order."""
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in parts:
        if isinstance(value, tuple):
            form.add_field(name, value[1], filename=value[0], content_type=value[2])
        else:
            form.add_field(name, value)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.post(emu.base_url + EDITS, data=form, headers=headers) as r:
        return r.status, CIMultiDict(r.headers), await r.json(content_type=None)


async def post_json(
    http: aiohttp.ClientSession, emu: OpenAIEmulator, body: Any
) -> tuple[int, CIMultiDict[str], Any]:
    async with http.post(emu.base_url + EDITS, json=body, headers={"Authorization": f"Bearer {KEY}"}) as r:
        return r.status, CIMultiDict(r.headers), await r.json(content_type=None)


async def post_raw(
    http: aiohttp.ClientSession, emu: OpenAIEmulator, body: bytes, content_type: str
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": content_type}
    async with http.post(emu.base_url + EDITS, data=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


def err(body: dict[str, Any]) -> dict[str, Any]:
    assert set(body) == {"error"}, body
    assert {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


# --------------------------------------------------------------------------------------------- accepted forms


async def test_single_image_via_sdk(emu: OpenAIEmulator, client: AsyncOpenAI) -> None:
    raw = await client.images.with_raw_response.edit(model="gpt-image-1.5", image=png(), prompt="a red hat")
    for h in ("x-request-id", "openai-processing-ms", "openai-version"):
        assert raw.headers.get(h)
    res = raw.parse()
    assert res.size == "1024x1024" and res.quality == "high"
    assert res.background == "opaque" and res.output_format == "png"
    assert len(res.data) == 1 and res.data[0].url is None
    out = decode(res.data[0].b64_json or "")
    assert out.format == "PNG" and out.size == (1024, 1024)
    assert res.usage is not None
    assert res.usage.output_tokens == 4160
    assert res.usage.total_tokens == res.usage.input_tokens + res.usage.output_tokens
    assert res.usage.input_tokens_details.image_tokens > 0
    assert res.usage.input_tokens_details.text_tokens > 0

    rec = emu.edit_requests[-1]
    assert [f[0] for f in rec.files] == ["image"]
    assert rec.files[0][2] == "image/png" and rec.files[0][3] == png()[1]
    assert rec.fields == {"prompt": "a red hat", "model": "gpt-image-1.5"}
    assert rec.headers["Authorization"] == f"Bearer {KEY}"
    assert rec.status == 200 and rec.request_id == raw.headers["x-request-id"]


async def test_several_images_are_image_array_parts(emu: OpenAIEmulator, client: AsyncOpenAI) -> None:
    imgs = [
        png(64, 64),
        ("b.jpg", make_image(80, 40, "RGB", "JPEG"), "image/jpeg"),
        ("c.webp", make_image(40, 80, "RGB", "WEBP"), "image/webp"),
    ]
    res = await client.images.edit(model="gpt-image-1", image=imgs, prompt="combine", n=2)
    assert len(res.data) == 2
    rec = emu.edit_requests[-1]
    assert [f[0] for f in rec.files] == ["image[]"] * 3
    assert [f[2] for f in rec.files] == ["image/png", "image/jpeg", "image/webp"]
    assert rec.fields["n"] == "2"  # form values arrive as strings


async def test_mask_same_dims_accepted(emu: OpenAIEmulator, client: AsyncOpenAI) -> None:
    res = await client.images.edit(
        model="gpt-image-1", image=png(100, 60), mask=("m.png", make_image(100, 60), "image/png"), prompt="x"
    )
    assert res.data[0].b64_json
    assert [f[0] for f in emu.edit_requests[-1].files] == ["image", "mask"]


async def test_mask_mismatched_dims_rejected(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.edit(
            model="gpt-image-1",
            image=png(100, 60),
            mask=("m.png", make_image(60, 100), "image/png"),
            prompt="x",
        )
    assert ei.value.body["param"] == "mask"


async def test_mask_must_be_png_with_alpha(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.edit(
            model="gpt-image-1",
            image=png(),
            mask=("m.jpg", make_image(64, 64, "RGB", "JPEG"), "image/jpeg"),
            prompt="x",
        )
    assert ei.value.body["code"] == "unsupported_file_mimetype"
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.edit(
            model="gpt-image-1",
            image=png(),
            mask=("m.png", make_image(64, 64, "RGB"), "image/png"),
            prompt="x",
        )
    assert ei.value.body["code"] == "invalid_image_file"


@pytest.mark.parametrize(("fmt", "pil"), [("jpeg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")])
async def test_output_formats(client: AsyncOpenAI, fmt: str, pil: str) -> None:
    kwargs: dict[str, Any] = {"output_compression": 50} if fmt != "png" else {}
    res = await client.images.edit(
        model="gpt-image-1-mini",
        image=png(),
        prompt="x",
        size="1536x1024",
        output_format=fmt,
        quality="low",
        **kwargs,
    )  # type: ignore[arg-type]
    out = decode(res.data[0].b64_json or "")
    assert out.format == pil and out.size == (1536, 1024)
    assert res.output_format == fmt and res.size == "1536x1024" and res.quality == "low"


async def test_transparent_background(client: AsyncOpenAI) -> None:
    res = await client.images.edit(model="gpt-image-1.5", image=png(), prompt="x", background="transparent")
    assert res.background == "transparent"
    assert decode(res.data[0].b64_json or "").mode == "RGBA"
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.edit(
            model="gpt-image-1.5", image=png(), prompt="x", background="transparent", output_format="jpeg"
        )
    assert ei.value.body["param"] == "background"
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.edit(model="gpt-image-1.5", image=png(), prompt="x", output_compression=50)
    assert ei.value.body["param"] == "output_compression"


@pytest.mark.parametrize(
    ("size", "quality", "tokens"),
    [
        ("1024x1024", "low", 272),
        ("1024x1024", "medium", 1056),
        ("1024x1024", "high", 4160),
        ("1024x1536", "low", 408),
        ("1024x1536", "medium", 1584),
        ("1024x1536", "high", 6240),
        ("1536x1024", "low", 400),
        ("1536x1024", "medium", 1568),
        ("1536x1024", "high", 6208),
    ],
)
async def test_usage_output_tokens_table(client: AsyncOpenAI, size: str, quality: str, tokens: int) -> None:
    res = await client.images.edit(
        model="gpt-image-1",
        image=png(),
        prompt="x",
        size=size,  # type: ignore[arg-type]
        quality=quality,
        n=3,
    )  # type: ignore[arg-type]
    assert res.usage is not None and res.usage.output_tokens == 3 * tokens
    assert res.usage.output_tokens_details is not None
    assert res.usage.output_tokens_details.image_tokens == 3 * tokens


async def test_input_image_tokens_match_real_sample(client: AsyncOpenAI) -> None:
    # A real gpt-image-1 edit of a 1024x1536 image billed 323 image tokens (providers.md §1.5).
    res = await client.images.edit(model="gpt-image-1", image=png(1024, 1536), prompt="x")
    assert res.usage is not None and res.usage.input_tokens_details.image_tokens == 323
    hi = await client.images.edit(
        model="gpt-image-1", image=png(1024, 1536), prompt="x", input_fidelity="high"
    )
    assert hi.usage is not None and hi.usage.input_tokens_details.image_tokens > 323


async def test_n_and_string_form_values(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    status, _, body = await post_form(
        http, emu, [("image", png()), ("prompt", "x"), ("model", "gpt-image-1"), ("n", "3")]
    )
    assert status == 200 and len(body["data"]) == 3
    for n, code in (
        ("11", "integer_above_max_value"),
        ("0", "integer_below_min_value"),
        ("two", "invalid_type"),
    ):
        status, _, body = await post_form(http, emu, [("image", png()), ("prompt", "x"), ("n", n)])
        assert status == 400 and err(body)["code"] == code and body["error"]["param"] == "n"


async def test_streaming_events(client: AsyncOpenAI) -> None:
    stream = await client.images.edit(
        model="gpt-image-1", image=png(), prompt="x", stream=True, partial_images=2
    )
    events = [ev async for ev in stream]
    assert [e.type for e in events] == ["image_edit.partial_image"] * 2 + ["image_edit.completed"]
    assert [getattr(e, "partial_image_index", None) for e in events] == [0, 1, None]
    done = events[-1]
    assert done.usage.output_tokens == 4160 and done.size == "1024x1024"  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------------ dall-e-2


async def test_dalle2_url_served_by_emulator(emu: OpenAIEmulator, client: AsyncOpenAI) -> None:
    res = await client.images.edit(model="dall-e-2", image=png(64, 64), prompt="x", size="256x256", n=2)
    assert res.usage is None and res.size is None and res.quality is None and res.background is None
    assert len(res.data) == 2
    url = res.data[0].url or ""
    assert url.startswith(emu.url + "/files/")
    async with httpx.AsyncClient() as h:
        r = await h.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (256, 256)


async def test_dalle2_b64_json(client: AsyncOpenAI) -> None:
    res = await client.images.edit(
        model="dall-e-2", image=png(32, 32, "LA"), prompt="x", size="512x512", response_format="b64_json"
    )
    assert decode(res.data[0].b64_json or "").size == (512, 512)
    assert res.usage is None


async def test_dalle2_rgb_needs_mask(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.edit(model="dall-e-2", image=png(64, 64, "RGB"), prompt="x")
    assert ei.value.body["message"] == "Invalid input image - format must be in ['RGBA', 'LA', 'L'], got RGB."
    res = await client.images.edit(
        model="dall-e-2",
        image=png(64, 64, "RGB"),
        prompt="x",
        mask=("m.png", make_image(64, 64), "image/png"),
    )
    assert res.data[0].url


@pytest.mark.parametrize(
    ("kwargs", "param", "code"),
    [
        ({"image": png(64, 32)}, "image", None),  # not square
        ({"image": ("a.jpg", make_image(64, 64, "RGB", "JPEG"), "image/jpeg")}, "image", None),  # not PNG
        ({"size": "1536x1024"}, "size", "invalid_value"),
        ({"size": "auto"}, "size", "invalid_value"),
        ({"input_fidelity": "high"}, "input_fidelity", "unknown_parameter"),
        ({"background": "opaque"}, "background", "unknown_parameter"),
        ({"output_format": "png"}, "output_format", "unknown_parameter"),
        ({"output_compression": 100}, "output_compression", "unknown_parameter"),
        ({"quality": "high"}, "quality", "invalid_value"),
        ({"prompt": "p" * 1001}, "prompt", "string_above_max_length"),
        ({"image": [png(), png()]}, "image", "invalid_type"),
    ],
)
async def test_dalle2_rejections(
    client: AsyncOpenAI, kwargs: dict[str, Any], param: str, code: str | None
) -> None:
    args: dict[str, Any] = {"model": "dall-e-2", "image": png(), "prompt": "x", **kwargs}
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.edit(**args)
    assert ei.value.status_code == 400
    assert ei.value.body["param"] == param and ei.value.body["code"] == code
    if code == "unknown_parameter":
        assert ei.value.body["message"] == f"Unknown parameter: '{param}'."


async def test_dalle2_quality_standard_ok(client: AsyncOpenAI) -> None:
    res = await client.images.edit(model="dall-e-2", image=png(), prompt="p" * 1000, quality="standard")
    assert res.data[0].url


# ------------------------------------------------------------------------------------------------ rejections


async def test_duplicate_scalar_image(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    status, headers, body = await post_form(http, emu, [("image", png()), ("image", png()), ("prompt", "x")])
    e = err(body)
    assert status == 400 and e["code"] == "duplicate_parameter" and e["param"] == "image"
    assert e["message"].startswith("Duplicate parameter: 'image'.") and "'image[]=<value>'" in e["message"]
    assert headers["x-request-id"]
    # the emulator still recorded both parts
    assert [f[0] for f in emu.edit_requests[-1].files] == ["image", "image"]
    assert emu.edit_requests[-1].status == 400


async def test_duplicate_text_field(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    status, _, body = await post_form(http, emu, [("image", png()), ("prompt", "a"), ("prompt", "b")])
    assert status == 400 and err(body)["code"] == "duplicate_parameter" and body["error"]["param"] == "prompt"
    assert emu.edit_requests[-1].fields["prompt"] == ["a", "b"]


async def test_mixed_image_and_image_array(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    status, _, body = await post_form(http, emu, [("image", png()), ("image[]", png()), ("prompt", "x")])
    assert status == 400 and err(body)["param"] == "image"


async def test_single_element_image_array_ok(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    status, _, body = await post_form(
        http, emu, [("image[]", png()), ("prompt", "x"), ("model", "gpt-image-2")]
    )
    assert status == 200 and body["data"][0]["b64_json"]


async def test_too_many_images(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    parts: list[tuple[str, Any]] = [("image[]", png())] * 16 + [("prompt", "x")]
    status, _, body = await post_form(http, emu, parts)
    assert status == 200
    status, _, body = await post_form(http, emu, [("image[]", png()), *parts])
    assert status == 400 and err(body)["code"] == "array_above_max_length"


async def test_wrong_mime_from_sdk_bytes(client: AsyncOpenAI) -> None:
    # Raw bytes without a filename go out as application/octet-stream; OpenAI rejects that.
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.edit(model="gpt-image-1", image=make_image(), prompt="x")
    assert ei.value.body == {
        "message": "Invalid file 'image': unsupported mimetype ('application/octet-stream'). Supported file "
        "formats are 'image/jpeg', 'image/png', and 'image/webp'.",
        "type": "invalid_request_error",
        "param": "image",
        "code": "unsupported_file_mimetype",
    }


@pytest.mark.parametrize(
    "part",
    [
        ("a.png", make_image(64, 64, "RGB", "JPEG"), "image/png"),  # JPEG bytes declared as PNG
        ("a.png", b"not an image at all", "image/png"),
        ("a.gif", make_image(64, 64, "RGB", "GIF"), "image/gif"),
    ],
)
async def test_image_bytes_checked(client: AsyncOpenAI, part: tuple[str, bytes, str]) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.edit(model="gpt-image-1", image=part, prompt="x")
    assert ei.value.body["code"] in ("invalid_image_file", "unsupported_file_mimetype")


async def test_validate_false_skips_decoding(http: aiohttp.ClientSession) -> None:
    async with OpenAIEmulator(api_key=KEY, validate=False) as emu:
        status, _, body = await post_form(
            http, emu, [("image", ("a.png", b"junk", "image/png")), ("prompt", "x")]
        )
        assert status == 200, body
        # MIME checks stay on
        status, _, body = await post_form(
            http, emu, [("image", ("a.bin", b"junk", "application/octet-stream")), ("prompt", "x")]
        )
        assert status == 400 and err(body)["code"] == "unsupported_file_mimetype"


@pytest.mark.parametrize(
    "disposition",
    ['form-data; filename="a.png"', "attachment", 'form-data; name="image"; name="x"', "form-data; =;"],
)
async def test_malformed_multipart_is_400(
    http: aiohttp.ClientSession, emu: OpenAIEmulator, disposition: str
) -> None:
    body = (
        b"--b0\r\nContent-Disposition: "
        + disposition.encode()
        + b"\r\nContent-Type: image/png\r\n\r\n"
        + make_image()
        + b'\r\n--b0\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nx\r\n--b0--\r\n'
    )
    status, res = await post_raw(http, emu, body, "multipart/form-data; boundary=b0")
    assert status == 400, res
    err(res)


async def test_image_sent_as_string(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    status, _, body = await post_form(http, emu, [("image", "https://example.com/a.png"), ("prompt", "x")])
    assert status == 400 and err(body)["code"] == "invalid_type"
    assert body["error"]["message"] == (
        "Invalid type for 'image': expected one of an array of files or file, but got a string instead."
    )


async def test_missing_prompt_and_image(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    status, _, body = await post_form(http, emu, [("image", png()), ("model", "gpt-image-1")])
    assert status == 400 and err(body) == {
        "message": "Missing required parameter: 'prompt'.",
        "type": "invalid_request_error",
        "param": "prompt",
        "code": "missing_required_parameter",
    }
    status, _, body = await post_form(http, emu, [("prompt", "x"), ("model", "gpt-image-1")])
    assert status == 400 and err(body)["param"] == "image"


async def test_prompt_length_gpt(client: AsyncOpenAI) -> None:
    await client.images.edit(model="gpt-image-1", image=png(), prompt="p" * 32000)
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.edit(model="gpt-image-1", image=png(), prompt="p" * 32001)
    assert ei.value.body["code"] == "string_above_max_length" and ei.value.body["param"] == "prompt"


async def test_unknown_parameter(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    status, _, body = await post_form(http, emu, [("image", png()), ("prompt", "x"), ("x", "1")])
    assert status == 400 and err(body) == {
        "message": "Unknown parameter: 'x'.",
        "type": "invalid_request_error",
        "param": "x",
        "code": "unknown_parameter",
    }


async def test_extra_params_configurable(http: aiohttp.ClientSession) -> None:
    async with OpenAIEmulator(api_key=KEY, extra_params=["safety_identifier"]) as emu:
        status, _, _ = await post_form(
            http, emu, [("image", png()), ("prompt", "x"), ("safety_identifier", "u1")]
        )
        assert status == 200


async def test_input_fidelity_gpt_image_2_exact_body(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.edit(model="gpt-image-2", image=png(), prompt="x", input_fidelity="high")
    assert ei.value.body == {
        "message": "The model 'gpt-image-2' does not support the 'input_fidelity' parameter.",
        "type": "image_generation_user_error",
        "param": "input_fidelity",
        "code": "invalid_input_fidelity_model",
    }


async def test_input_fidelity_per_model(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.edit(model="gpt-image-1-mini", image=png(), prompt="x", input_fidelity="low")
    assert ei.value.body["code"] == "invalid_input_fidelity_model"
    for model in ("gpt-image-1", "gpt-image-1.5", "chatgpt-image-latest"):
        await client.images.edit(model=model, image=png(), prompt="x", input_fidelity="high")


async def test_response_format_rejected_for_gpt_models(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.edit(model="gpt-image-1", image=png(), prompt="x", response_format="b64_json")
    assert ei.value.body["message"] == "Unknown parameter: 'response_format'."


async def test_response_format_lenient_mode() -> None:
    async with (
        OpenAIEmulator(api_key=KEY, strict_response_format=False) as emu,
        AsyncOpenAI(base_url=emu.base_url, api_key=KEY, max_retries=0) as c,
    ):
        res = await c.images.edit(model="gpt-image-1", image=png(), prompt="x", response_format="url")
        assert res.data[0].b64_json and res.data[0].url is None


@pytest.mark.parametrize(
    "size", ["3840x2160", "2160x3840", "1024x640", "3840x1280", "1536x864", "auto", "1024x1536", "2048x2048"]
)
async def test_gpt_image_2_sizes_accepted(client: AsyncOpenAI, size: str) -> None:
    res = await client.images.edit(model="gpt-image-2", image=png(), prompt="x", size=size, quality="low")
    expected = "1024x1024" if size == "auto" else size
    assert res.size == expected
    w, h = map(int, expected.split("x"))
    assert decode(res.data[0].b64_json or "").size == (w, h)
    assert res.usage is not None and res.usage.output_tokens == round(200 * w * h / 1024**2)


@pytest.mark.parametrize(
    "size",
    [
        "3856x2160",  # edge > 3840
        "3840x2176",  # > 8,294,400 px
        "1000x1000",  # not multiples of 16
        "1024x624",  # < 655,360 px
        "3840x1264",  # wider than 3:1
        "1264x3840",  # taller than 1:3
        "512x512",
        "0x0",
        "big",
        "1024*1024",
    ],
)
async def test_gpt_image_2_sizes_rejected(client: AsyncOpenAI, size: str) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.edit(model="gpt-image-2", image=png(), prompt="x", size=size)
    assert ei.value.body["param"] == "size" and ei.value.body["code"] == "invalid_value"


async def test_gpt_image_1_fixed_sizes(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.edit(model="gpt-image-1", image=png(), prompt="x", size="1536x864")
    assert ei.value.body["message"] == (
        "Invalid value: '1536x864'. Supported values are: '1024x1024', '1024x1536', '1536x1024', and 'auto'."
    )
    with pytest.raises(openai.BadRequestError):
        await client.images.edit(model="gpt-image-1", image=png(), prompt="x", quality="standard")


async def test_unknown_model(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as ei:
        await client.images.edit(model="gpt-image-9", image=png(), prompt="x")
    assert ei.value.body["code"] == "model_not_found"


async def test_bad_and_missing_key(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    status, headers, body = await post_form(
        http, emu, [("image", png()), ("prompt", "x")], key="sk-wrong-key-123456"
    )
    assert status == 401 and headers["x-request-id"]
    assert err(body)["code"] == "invalid_api_key" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] is None
    assert body["error"]["message"].startswith("Incorrect API key provided: sk-")
    assert "sk-wrong-key-123456" not in body["error"]["message"]
    status, _, body = await post_form(http, emu, [("image", png()), ("prompt", "x")], key=None)
    assert status == 401 and "didn't provide an API key" in err(body)["message"]
    async with AsyncOpenAI(base_url=emu.base_url, api_key="sk-nope", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            await c.images.edit(model="gpt-image-1", image=png(), prompt="x")


async def test_invalid_url_and_content_type(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    async with http.get(emu.base_url + "/nope") as r:
        assert r.status == 404 and r.headers["x-request-id"]
        assert (await r.json())["error"]["message"] == "Invalid URL (GET /v1/nope)"
    status, _ = await post_raw(http, emu, b"x", "text/plain")
    assert status == 400


# ----------------------------------------------------------------------------------------------- JSON variant


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


async def test_json_data_urls_and_mask(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    body = {
        "model": "gpt-image-1.5",
        "prompt": "x",
        "images": [
            {"image_url": data_url(make_image(80, 80))},
            {"image_url": data_url(make_image(40, 40, "RGB", "JPEG"), "image/jpeg")},
        ],
        "mask": {"image_url": data_url(make_image(80, 80))},
        "n": 2,
        "size": "1024x1536",
        "quality": "medium",
    }
    status, _, res = await post_json(http, emu, body)
    assert status == 200, res
    assert res["size"] == "1024x1536" and res["usage"]["output_tokens"] == 2 * 1584
    assert emu.edit_requests[-1].json == body


async def test_json_file_id_via_files_api(
    emu: OpenAIEmulator, client: AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    f = await client.files.create(file=("in.png", make_image(), "image/png"), purpose="vision")
    assert f.id.startswith("file-") and f.bytes == len(make_image()) and f.purpose == "vision"
    assert (await client.files.retrieve(f.id)).filename == "in.png"
    status, _, res = await post_json(
        http, emu, {"model": "gpt-image-1", "prompt": "x", "images": [{"file_id": f.id}]}
    )
    assert status == 200, res
    status, _, res = await post_json(
        http, emu, {"model": "gpt-image-1", "prompt": "x", "images": [{"file_id": "file-missing"}]}
    )
    assert status == 400 and err(res)["param"] == "images[0].file_id"
    await client.files.delete(f.id)
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(f.id)


async def test_json_remote_urls(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    url = "https://example.com/cat.png"
    body = {"model": "gpt-image-2", "prompt": "x", "images": [{"image_url": url}]}
    status, _, res = await post_json(http, emu, body)
    assert status == 400 and err(res)["code"] == "invalid_image_url"
    assert emu.url_requests == [url]
    emu.register_url(url, make_image())
    status, _, res = await post_json(http, emu, body)
    assert status == 200, res
    assert emu.url_requests == [url, url]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            {"prompt": "x", "images": [{"image_url": "data:image/png;base64,AAAA", "file_id": "file-1"}]},
            "invalid_value",
        ),
        ({"prompt": "x", "images": [{}]}, "invalid_value"),
        (
            {"prompt": "x", "images": [{"image_url": "data:image/png;base64,AAAA", "detail": "high"}]},
            "unknown_parameter",
        ),
        ({"prompt": "x", "images": []}, "empty_array"),
        ({"prompt": "x", "images": "data:image/png;base64,AAAA"}, "invalid_type"),
        ({"prompt": "x"}, "missing_required_parameter"),
        ({"prompt": "x", "images": [{"image_url": "ftp://x/y.png"}]}, "invalid_value"),
        ({"prompt": "x", "images": [{"image_url": "data:image/png;base64,@@@"}]}, "invalid_image_url"),
        (
            {"prompt": "x", "images": [{"image_url": data_url(b"GIF89a", "image/gif")}]},
            "unsupported_file_mimetype",
        ),
        (
            {"prompt": "x", "images": [{"image_url": data_url(make_image())}], "response_format": "b64_json"},
            "unknown_parameter",
        ),
        ({"prompt": "x", "images": [{"image_url": data_url(make_image())}], "n": "2"}, "invalid_type"),
        (
            {"model": "dall-e-2", "prompt": "x", "images": [{"image_url": data_url(make_image())}]},
            "invalid_value",
        ),
    ],
)
async def test_json_rejections(
    http: aiohttp.ClientSession, emu: OpenAIEmulator, body: dict[str, Any], code: str
) -> None:
    status, _, res = await post_json(http, emu, body)
    assert status == 400 and err(res)["code"] == code, res


async def test_json_unparseable(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    status, res = await post_raw(http, emu, b"{nope", "application/json")
    assert status == 400 and "could not parse the JSON body" in err(res)["message"]


# ------------------------------------------------------------------------------------------ failure injection


async def test_inject_rate_limit(emu: OpenAIEmulator, client: AsyncOpenAI) -> None:
    emu.inject("rate_limit", retry_after=7)
    with pytest.raises(openai.RateLimitError) as ei:
        await client.images.edit(model="gpt-image-1", image=png(), prompt="x")
    h = ei.value.response.headers
    assert h["retry-after"] == "7" and h["retry-after-ms"] == "7000" and h["x-request-id"]
    assert ei.value.body["code"] == "rate_limit_exceeded" and "gpt-image-1" in ei.value.body["message"]
    assert emu.pending_failures == 0
    await client.images.edit(model="gpt-image-1", image=png(), prompt="x")  # queue drained -> success


async def test_inject_insufficient_quota(emu: OpenAIEmulator, client: AsyncOpenAI) -> None:
    emu.inject("insufficient_quota")
    with pytest.raises(openai.RateLimitError) as ei:
        await client.images.edit(model="gpt-image-1", image=png(), prompt="x")
    assert ei.value.body["type"] == "insufficient_quota" and ei.value.body["code"] == "insufficient_quota"


async def test_inject_moderation_blocked_mentions_request_id(
    emu: OpenAIEmulator, client: AsyncOpenAI
) -> None:
    emu.inject("moderation_blocked")
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.edit(model="gpt-image-2", image=png(), prompt="x")
    body = ei.value.body
    assert body["code"] == "moderation_blocked" and body["type"] == "image_generation_user_error"
    assert ei.value.response.headers["x-request-id"] in body["message"]
    assert body["moderation_details"]["moderation_stage"] == "input"


async def test_inject_server_error_then_sdk_retry_succeeds(emu: OpenAIEmulator) -> None:
    emu.inject("server_error")
    async with AsyncOpenAI(base_url=emu.base_url, api_key=KEY, max_retries=2) as c:
        res = await c.images.edit(model="gpt-image-1", image=png(), prompt="x")
    assert res.data[0].b64_json
    assert [r.status for r in emu.edit_requests] == [500, 200]


async def test_fail_next_custom_times(emu: OpenAIEmulator, http: aiohttp.ClientSession) -> None:
    emu.fail_next(
        418,
        {"error": {"message": "teapot {request_id}", "type": "x", "param": None, "code": "t"}},
        headers={"x-custom": "1"},
        times=2,
    )
    for _ in range(2):
        status, headers, body = await post_form(http, emu, [("image", png()), ("prompt", "x")])
        assert status == 418 and headers["x-custom"] == "1"
        assert body["error"]["message"] == f"teapot {headers['x-request-id']}"
        assert headers["openai-version"] and headers["openai-processing-ms"]
    status, _, _ = await post_form(http, emu, [("image", png()), ("prompt", "x")])
    assert status == 200


async def test_inject_bad_gateway_html(emu: OpenAIEmulator, http: aiohttp.ClientSession) -> None:
    emu.inject("bad_gateway")
    form = aiohttp.FormData()
    form.add_field("image", make_image(), filename="a.png", content_type="image/png")
    form.add_field("prompt", "x")
    async with http.post(emu.base_url + EDITS, data=form, headers={"Authorization": f"Bearer {KEY}"}) as r:
        assert r.status == 502 and r.content_type == "text/html"
        assert "502 Bad Gateway" in await r.text()


async def test_inject_hang_and_disconnect(emu: OpenAIEmulator) -> None:
    async with AsyncOpenAI(base_url=emu.base_url, api_key=KEY, max_retries=0, timeout=0.3) as c:
        emu.inject("hang")
        with pytest.raises(openai.APITimeoutError):
            await c.images.edit(model="gpt-image-1", image=png(), prompt="x")
        emu.inject("disconnect")
        with pytest.raises(openai.APIConnectionError):
            await c.images.edit(model="gpt-image-1", image=png(), prompt="x")
        res = await c.images.edit(model="gpt-image-1", image=png(), prompt="x")
        assert res.data


async def test_hang_attribute_and_fast_stop() -> None:
    emu = OpenAIEmulator(api_key=KEY, hang=True)
    await emu.start()
    async with AsyncOpenAI(base_url=emu.base_url, api_key=KEY, max_retries=0, timeout=0.2) as c:
        with pytest.raises(openai.APITimeoutError):
            await c.images.edit(model="gpt-image-1", image=png(), prompt="x")
    t = time.monotonic()
    await emu.stop()
    assert time.monotonic() - t < 5  # a hung handler does not hold the stop


async def test_every_injectable_kind_builds() -> None:
    emu = OpenAIEmulator()
    for kind in INJECTABLE:
        emu.inject(kind)
    assert emu.pending_failures == len(INJECTABLE)
    with pytest.raises(ValueError):
        emu.inject("nope")


async def test_latency(emu: OpenAIEmulator, client: AsyncOpenAI) -> None:
    emu.latency = 0.25
    t = time.monotonic()
    await client.images.edit(model="gpt-image-1", image=png(), prompt="x")
    assert time.monotonic() - t >= 0.25


# ------------------------------------------------------------------------------------------------ recording


async def test_recording_and_clear(emu: OpenAIEmulator, client: AsyncOpenAI) -> None:
    img = make_image(33, 33)
    await client.images.edit(
        model="gpt-image-1",
        image=("x.png", img, "image/png"),
        prompt="hello",
        n=1,
        quality="low",
        extra_headers={"X-Trace": "abc"},
    )
    rec = emu.last_request
    assert rec is not None
    assert (rec.method, rec.path) == ("POST", "/v1/images/edits")
    assert rec.content_type == "multipart/form-data"
    assert rec.headers["x-trace"] == "abc"
    assert rec.fields == {"prompt": "hello", "model": "gpt-image-1", "n": "1", "quality": "low"}
    assert rec.files == [("image", "x.png", "image/png", img)]
    assert rec.files_named("image")[0][3] == img
    emu.clear()
    assert emu.requests == [] and emu.last_request is None


async def test_record_off() -> None:
    async with (
        OpenAIEmulator(api_key=KEY, record=False) as emu,
        AsyncOpenAI(base_url=emu.base_url, api_key=KEY, max_retries=0) as c,
    ):
        await c.images.edit(model="gpt-image-1", image=png(), prompt="x")
        assert emu.requests == []


async def test_cpu_cost_per_edit_is_small() -> None:
    # Validation + response building for a small edit must stay far below 1 ms (benchmark upstream).
    emu = OpenAIEmulator()
    parts: list[tuple[str, str | None, str | None, bytes | str]] = [
        ("image", "a.png", "image/png", make_image(256, 256)),
        ("prompt", None, None, "a cat"),
        ("model", None, None, "gpt-image-1"),
        ("quality", None, None, "low"),
    ]
    emu._result(emu._parse_multipart_edit(parts))  # warm the render cache
    n = 300
    t = time.process_time()
    for _ in range(n):
        emu._result(emu._parse_multipart_edit(parts))
    assert (time.process_time() - t) / n < 0.0005


# ------------------------------------------------------------------------------------------ bench entry point


async def test_bench_entry_point_serves() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = BENCH_SCRIPT
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert f"127.0.0.1:{port}/v1" in line.decode()
        async with AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0) as c:
            res = await c.images.edit(model="gpt-image-2", image=png(), prompt="x")
            assert res.data[0].b64_json
            with pytest.raises(openai.BadRequestError):
                await c.images.edit(model="gpt-image-2", image=png(), prompt="x", input_fidelity="low")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.communicate(), 10)
