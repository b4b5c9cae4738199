"""Tests of the OpenAI Images API emulator itself, driven by the official SDK and by raw HTTP."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
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

from .openai_emulator import INJECTABLE, STREAM_INJECTABLE, OpenAIEmulator, StreamRecord

KEY = "sk-upstream"
BENCH_SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "openai_upstream.py"
EDITS = "/images/edits"
GENERATIONS = "/images/generations"
VARIATIONS = "/images/variations"


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
    path: str = EDITS,
) -> tuple[int, CIMultiDict[str], Any]:
    """parts: (name, str) text fields or (name, (filename, bytes, content_type)) files, in order."""
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in parts:
        if isinstance(value, tuple):
            data = io.BytesIO(value[1]) if len(value[1]) > 1024 * 1024 else value[1]  # aiohttp warns on big bytes
            form.add_field(name, data, filename=value[0], content_type=value[2])
        else:
            form.add_field(name, value)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.post(emu.base_url + path, data=form, headers=headers) as r:
        return r.status, CIMultiDict(r.headers), await r.json(content_type=None)


async def post_json(
    http: aiohttp.ClientSession, emu: OpenAIEmulator, body: Any, path: str = EDITS
) -> tuple[int, CIMultiDict[str], Any]:
    async with http.post(emu.base_url + path, json=body, headers={"Authorization": f"Bearer {KEY}"}) as r:
        return r.status, CIMultiDict(r.headers), await r.json(content_type=None)


async def post_raw(
    http: aiohttp.ClientSession, emu: OpenAIEmulator, body: bytes, content_type: str, path: str = EDITS
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": content_type}
    async with http.post(emu.base_url + path, data=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


AUTH = {"Authorization": f"Bearer {KEY}"}


async def read_sse(resp: aiohttp.ClientResponse) -> list[tuple[float, str, Any]]:
    """(arrival time.perf_counter(), event name, decoded data) per SSE frame, until EOF."""
    frames: list[tuple[float, str, Any]] = []
    while chunk := await resp.content.readuntil(b"\n\n"):
        arrived = time.perf_counter()
        fields = dict(line.split(": ", 1) for line in chunk.decode().strip("\n").split("\n"))
        assert set(fields) == {"event", "data"}, chunk  # no id:, no retry:, no comments
        frames.append((arrived, fields["event"], json.loads(fields["data"])))
    return frames


async def eventually(predicate: Any, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


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


# ------------------------------------------------------------------------------------------------ generations


async def download(url: str) -> Image.Image:
    async with httpx.AsyncClient() as h:
        r = await h.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    im = Image.open(io.BytesIO(r.content))
    im.load()
    return im


async def test_generate_without_model_is_dalle2_with_downloadable_url(
    emu: OpenAIEmulator, client: AsyncOpenAI
) -> None:
    res = await client.images.generate(prompt="an otter")
    assert emu.generation_requests[-1].json == {"prompt": "an otter"}  # the SDK sends no model
    assert res.usage is None and res.size is None and res.quality is None and res.background is None
    assert len(res.data or []) == 1
    item = (res.data or [])[0]
    assert item.b64_json is None and item.revised_prompt is None
    assert (item.url or "").startswith(emu.url + "/files/")
    im = await download(item.url or "")
    assert im.format == "PNG" and im.size == (1024, 1024)


async def test_generate_gpt_image_answer(emu: OpenAIEmulator, client: AsyncOpenAI) -> None:
    raw = await client.images.with_raw_response.generate(
        model="gpt-image-1", prompt="a red hat", size="1536x1024", quality="medium", n=2
    )
    assert raw.headers["x-request-id"] and raw.headers["openai-processing-ms"]
    res = raw.parse()
    assert (res.size, res.quality, res.background, res.output_format) == ("1536x1024", "medium", "opaque", "png")
    assert len(res.data or []) == 2
    for item in res.data or []:
        assert item.url is None and item.revised_prompt is None
        im = decode(item.b64_json or "")
        assert im.format == "PNG" and im.size == (1536, 1024)
    assert res.usage is not None
    assert res.usage.output_tokens == 2 * 1568
    assert res.usage.input_tokens_details.image_tokens == 0  # no input image
    assert res.usage.input_tokens_details.text_tokens == res.usage.input_tokens > 0
    assert res.usage.total_tokens == res.usage.input_tokens + res.usage.output_tokens
    assert res.usage.output_tokens_details is not None and res.usage.output_tokens_details.image_tokens == 2 * 1568
    rec = emu.generation_requests[-1]
    assert rec.content_type == "application/json" and rec.status == 200
    assert rec.json == {"model": "gpt-image-1", "prompt": "a red hat", "size": "1536x1024", "quality": "medium", "n": 2}


@pytest.mark.parametrize(
    ("kwargs", "pil", "mode"),
    [
        ({"output_format": "jpeg", "output_compression": 40}, "JPEG", "RGB"),
        ({"output_format": "webp", "background": "transparent"}, "WEBP", "RGBA"),
        ({"background": "transparent"}, "PNG", "RGBA"),
        ({"quality": "auto", "size": "auto", "moderation": "low"}, "PNG", "RGB"),
    ],
)
async def test_generate_gpt_output_options(
    client: AsyncOpenAI, kwargs: dict[str, Any], pil: str, mode: str
) -> None:
    res = await client.images.generate(model="gpt-image-1.5", prompt="x", **kwargs)
    im = decode((res.data or [])[0].b64_json or "")
    assert im.format == pil and im.mode == mode and im.size == (1024, 1024)
    assert res.output_format == kwargs.get("output_format", "png")
    assert res.background == ("transparent" if "background" in kwargs else "opaque")
    assert res.quality == "high" and res.size == "1024x1024"  # "auto" resolved in the echo


async def test_generate_gpt_image_2_free_sizes(client: AsyncOpenAI) -> None:
    res = await client.images.generate(model="gpt-image-2", prompt="x", size="1536x864", quality="low")
    assert res.size == "1536x864" and decode((res.data or [])[0].b64_json or "").size == (1536, 864)
    assert res.usage is not None and res.usage.output_tokens == round(200 * 1536 * 864 / 1024**2)
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.generate(model="gpt-image-2", prompt="x", size="1000x1000")
    assert ei.value.body["param"] == "size" and ei.value.body["code"] == "invalid_value"


async def test_generate_dalle3_url_b64_and_revised_prompt(emu: OpenAIEmulator, client: AsyncOpenAI) -> None:
    res = await client.images.generate(model="dall-e-3", prompt="an otter", size="1792x1024", quality="hd")
    item = (res.data or [])[0]
    assert res.usage is None and item.b64_json is None
    assert (item.revised_prompt or "").startswith("an otter. ") and "vivid" in (item.revised_prompt or "")
    assert (await download(item.url or "")).size == (1792, 1024)
    res = await client.images.generate(
        model="dall-e-3", prompt="a cat", size="1024x1792", style="natural", response_format="b64_json"
    )
    item = (res.data or [])[0]
    assert item.url is None and decode(item.b64_json or "").size == (1024, 1792)
    assert "natural" in (item.revised_prompt or "")
    assert emu.generation_requests[-1].json["style"] == "natural"


async def test_generate_dalle3_only_n_1(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.generate(model="dall-e-3", prompt="x", n=2)
    assert ei.value.body == {
        "message": "You must provide n=1 for this model.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


async def test_generate_dalle2_b64_and_sizes(client: AsyncOpenAI) -> None:
    res = await client.images.generate(
        model="dall-e-2", prompt="x", size="256x256", n=3, response_format="b64_json", quality="standard"
    )
    assert [decode(d.b64_json or "").size for d in res.data or []] == [(256, 256)] * 3
    assert all(d.url is None and d.revised_prompt is None for d in res.data or [])


def gen_case(model: Any, **fields: Any) -> dict[str, Any]:
    return {"model": model, "prompt": "x", **fields}


_GPT_ONLY = {
    "output_format": "png",
    "output_compression": 100,
    "background": "opaque",
    "moderation": "auto",
    "stream": False,
    "partial_images": 0,
}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        *[
            (gen_case(m, **{k: v}), k, "unknown_parameter")
            for m in ("dall-e-2", "dall-e-3")
            for k, v in _GPT_ONLY.items()
        ],
        (gen_case("dall-e-2", style="vivid"), "style", "unknown_parameter"),
        (gen_case("gpt-image-1", style="vivid"), "style", "unknown_parameter"),
        (gen_case("gpt-image-1", response_format="b64_json"), "response_format", "unknown_parameter"),
        (gen_case("gpt-image-1", input_fidelity="high"), "input_fidelity", "unknown_parameter"),
        (gen_case("gpt-image-1", images=[]), "images", "unknown_parameter"),
        (gen_case("dall-e-2", foo=1), "foo", "unknown_parameter"),
        ({"model": "gpt-image-1"}, "prompt", "missing_required_parameter"),
        (gen_case("gpt-image-1", prompt=""), "prompt", "empty_string"),
        (gen_case("gpt-image-1", prompt=5), "prompt", "invalid_type"),
        (gen_case("dall-e-2", prompt="p" * 1001), "prompt", "string_above_max_length"),
        (gen_case("dall-e-3", prompt="p" * 4001), "prompt", "string_above_max_length"),
        (gen_case("gpt-image-1.5", prompt="p" * 32001), "prompt", "string_above_max_length"),
        (gen_case("gpt-image-1", n=0), "n", "integer_below_min_value"),
        (gen_case("dall-e-2", n=11), "n", "integer_above_max_value"),
        (gen_case("gpt-image-1", n="2"), "n", "invalid_type"),
        (gen_case("gpt-image-1", quality="hd"), "quality", "invalid_value"),
        (gen_case("gpt-image-1", quality="standard"), "quality", "invalid_value"),
        (gen_case("dall-e-3", quality="high"), "quality", "invalid_value"),
        (gen_case("dall-e-2", quality="hd"), "quality", "invalid_value"),
        (gen_case("gpt-image-1", size="1792x1024"), "size", "invalid_value"),
        (gen_case("gpt-image-1-mini", size="1536x864"), "size", "invalid_value"),
        (gen_case("dall-e-2", size="1536x1024"), "size", "invalid_value"),
        (gen_case("dall-e-2", size="auto"), "size", "invalid_value"),
        (gen_case("dall-e-3", size="512x512"), None, "invalid_size"),
        (gen_case("dall-e-3", size="auto"), None, "invalid_size"),
        (gen_case("gpt-image-2", size="3840x1264"), "size", "invalid_value"),
        (gen_case("dall-e-3", style="anime"), "style", "invalid_value"),
        (gen_case("dall-e-2", response_format="png"), "response_format", "invalid_value"),
        (gen_case("gpt-image-1", output_format="gif"), "output_format", "invalid_value"),
        (gen_case("gpt-image-1", output_format="webp", output_compression=101), "output_compression",
         "integer_above_max_value"),
        (gen_case("gpt-image-1", output_format="jpeg", output_compression=-1), "output_compression",
         "integer_below_min_value"),
        (gen_case("gpt-image-1", output_compression=50), "output_compression", "invalid_value"),  # png
        (gen_case("gpt-image-1", background="transparent", output_format="jpeg"), "background", "invalid_value"),
        (gen_case("gpt-image-1", background="clear"), "background", "invalid_value"),
        (gen_case("gpt-image-1", moderation="high"), "moderation", "invalid_value"),
        (gen_case("gpt-image-1", stream="yes"), "stream", "invalid_type"),
        (gen_case("gpt-image-1", stream=True, partial_images=4), "partial_images", "integer_above_max_value"),
        (gen_case("gpt-image-1", user=7), "user", "invalid_type"),
        (gen_case("gpt-image-1", safety_identifier=["u"]), "safety_identifier", "invalid_type"),
        (gen_case(7), "model", "invalid_type"),
    ],
)
async def test_generation_rejections(
    http: aiohttp.ClientSession, emu: OpenAIEmulator, body: dict[str, Any], param: str | None, code: str
) -> None:
    status, headers, res = await post_json(http, emu, body, GENERATIONS)
    e = err(res)
    assert status == 400 and (e["param"], e["code"]) == (param, code), res
    assert headers["x-request-id"] and e["type"] == "invalid_request_error"
    if code == "unknown_parameter":
        assert e["message"] == f"Unknown parameter: '{param}'."
    assert emu.generation_requests[-1].status == 400 and emu.generation_requests[-1].json == body


@pytest.mark.parametrize(
    ("model", "length"), [("dall-e-2", 1000), ("dall-e-3", 4000), ("gpt-image-1", 32000)]
)
async def test_generation_prompt_limits_inclusive(client: AsyncOpenAI, model: str, length: int) -> None:
    res = await client.images.generate(model=model, prompt="p" * length)
    assert res.data


async def test_generation_unknown_model_and_body_shapes(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    status, _, res = await post_json(http, emu, gen_case("gpt-image-9"), GENERATIONS)
    assert status == 404 and err(res)["code"] == "model_not_found"
    status, _, res = await post_json(http, emu, ["prompt"], GENERATIONS)
    assert status == 400 and err(res)["code"] == "invalid_type"
    status, res = await post_raw(http, emu, b"{nope", "application/json", GENERATIONS)
    assert status == 400 and "could not parse the JSON body" in err(res)["message"]
    # explicit nulls count as absent (every field is nullable in the spec)
    body = gen_case("dall-e-3", background=None, stream=None, style=None, n=None, size=None)
    status, _, res = await post_json(http, emu, body, GENERATIONS)
    assert status == 200 and res["data"][0]["url"], res


@pytest.mark.parametrize("content_type", ["multipart/form-data", "text/plain", "application/x-www-form-urlencoded"])
async def test_generation_is_json_only(
    http: aiohttp.ClientSession, emu: OpenAIEmulator, content_type: str
) -> None:
    if content_type == "multipart/form-data":
        status, _, res = await post_form(http, emu, [("prompt", "x"), ("model", "dall-e-2")], path=GENERATIONS)
    else:
        status, res = await post_raw(http, emu, b"prompt=x", content_type, GENERATIONS)
    e = err(res)
    assert status == 400 and e["param"] is None and e["type"] == "invalid_request_error"
    assert e["message"].startswith(f"Invalid Content-Type header ({content_type}")
    assert e["message"].endswith("expected application/json.")


async def test_generation_default_model_with_gpt_only_parameter(http: aiohttp.ClientSession) -> None:
    async with OpenAIEmulator(api_key=KEY) as emu:
        status, _, res = await post_json(http, emu, {"prompt": "x", "output_format": "webp"}, GENERATIONS)
        assert status == 200 and res["output_format"] == "webp" and res["usage"]["output_tokens"] == 4160
    async with OpenAIEmulator(api_key=KEY, default_gpt_generation_model=None) as emu:
        status, _, res = await post_json(http, emu, {"prompt": "x", "output_format": "webp"}, GENERATIONS)
        assert status == 400 and err(res)["message"] == "Unknown parameter: 'output_format'."
    async with OpenAIEmulator(api_key=KEY, default_generation_model="gpt-image-2") as emu:
        status, _, res = await post_json(http, emu, {"prompt": "x"}, GENERATIONS)
        assert status == 200 and res["data"][0]["b64_json"] and res["usage"]["output_tokens"] == 7033


async def test_safety_identifier_accepted_for_every_model_and_echoed(
    emu: OpenAIEmulator, client: AsyncOpenAI
) -> None:
    for model in ("dall-e-2", "dall-e-3", "gpt-image-1-mini"):
        res = await client.images.generate(model=model, prompt="x", safety_identifier="hash-123")
        assert emu.generation_requests[-1].json["safety_identifier"] == "hash-123"
        assert res.safety_identifier == ("hash-123" if model.startswith("gpt") else None)
    res = await client.images.generate(model="gpt-image-1", prompt="x", user="user-9")
    assert res.safety_identifier == "user-9"  # the deprecated user stands in
    res = await client.images.generate(model="gpt-image-1", prompt="x", user="user-9", safety_identifier="s")
    assert res.safety_identifier == "s"
    res = await client.images.generate(model="gpt-image-1", prompt="x")
    assert res.safety_identifier is None


async def test_safety_identifier_echo_off_and_lenient_options(http: aiohttp.ClientSession) -> None:
    async with OpenAIEmulator(
        api_key=KEY, echo_safety_identifier=False, strict_response_format=False, dalle2_quality_unknown=True
    ) as emu:
        body = gen_case("gpt-image-1", safety_identifier="s", response_format="url")
        status, _, res = await post_json(http, emu, body, GENERATIONS)
        assert status == 200 and "safety_identifier" not in res and res["data"][0]["b64_json"]
        status, _, res = await post_json(http, emu, gen_case("dall-e-2", quality="standard"), GENERATIONS)
        assert status == 400 and err(res)["message"] == "Unknown parameter: 'quality'."


async def test_generation_extra_params_and_models_config(http: aiohttp.ClientSession) -> None:
    models = {"gpt-image-1.5": "gpt-image-1.5"}  # DALL·E retired
    async with OpenAIEmulator(api_key=KEY, extra_params=["complexity"], models=models) as emu:
        status, _, res = await post_json(http, emu, gen_case("gpt-image-1.5", complexity="low"), GENERATIONS)
        assert status == 200, res
        status, _, res = await post_json(http, emu, {"prompt": "x"}, GENERATIONS)
        assert status == 404 and err(res)["message"] == (
            "The model `dall-e-2` does not exist or you do not have access to it."
        )


async def test_generation_auth(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    async with http.post(emu.base_url + GENERATIONS, json=gen_case("dall-e-2")) as r:
        assert r.status == 401 and "didn't provide an API key" in err(await r.json())["message"]
    async with AsyncOpenAI(base_url=emu.base_url, api_key="sk-wrong", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            await c.images.generate(prompt="x")


async def test_generation_failure_injection_latency_and_hang(emu: OpenAIEmulator, client: AsyncOpenAI) -> None:
    emu.inject("rate_limit", retry_after=3)  # default route is edits: generations are untouched
    await client.images.generate(prompt="x", model="dall-e-3")
    assert emu.pending_failures == 1
    emu.reset_failures()
    emu.inject("rate_limit", retry_after=3, on=OpenAIEmulator.GENERATIONS)
    with pytest.raises(openai.RateLimitError) as ei:
        await client.images.generate(prompt="x", model="dall-e-3")
    assert "dall-e-3" in ei.value.body["message"] and ei.value.response.headers["retry-after"] == "3"
    emu.inject("moderation_blocked", on=None)
    with pytest.raises(openai.BadRequestError) as blocked:
        await client.images.generate(prompt="x", model="gpt-image-1")
    assert blocked.value.body["code"] == "moderation_blocked"
    assert [r.status for r in emu.generation_requests] == [200, 429, 400]

    emu.latency = 0.3
    t = time.monotonic()
    await client.images.generate(prompt="x", model="gpt-image-1", quality="low")
    assert time.monotonic() - t >= 0.3
    emu.latency, emu.hang = 0.0, True
    async with AsyncOpenAI(base_url=emu.base_url, api_key=KEY, max_retries=0, timeout=0.3) as c:
        with pytest.raises(openai.APITimeoutError):
            await c.images.generate(prompt="x")
        emu.hang = False
        emu.inject("disconnect", on=OpenAIEmulator.GENERATIONS)
        with pytest.raises(openai.APIConnectionError):
            await c.images.generate(prompt="x")


async def test_edits_refuse_dalle3(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.edit(model="dall-e-3", image=png(), prompt="x")
    body = ei.value.body
    assert body["param"] == "model" and body["code"] == "invalid_value"
    assert body["message"].startswith("Invalid value: 'dall-e-3'. Supported values are: 'dall-e-2', ")


# ---------------------------------------------------------------------------------------- generation streaming


async def test_generation_stream_via_sdk(emu: OpenAIEmulator, client: AsyncOpenAI) -> None:
    stream = await client.images.generate(
        model="gpt-image-1.5", prompt="x", stream=True, partial_images=3, size="1024x1536", quality="low",
        output_format="webp", background="transparent", safety_identifier="sid",
    )
    events = [ev async for ev in stream]
    assert emu.generation_requests[-1].json["stream"] is True
    assert [e.type for e in events] == ["image_generation.partial_image"] * 3 + ["image_generation.completed"]
    assert [getattr(e, "partial_image_index", None) for e in events] == [0, 1, 2, None]
    for e in events:
        assert (e.size, e.quality, e.background, e.output_format) == ("1024x1536", "low", "transparent", "webp")
        assert abs(e.created_at - time.time()) < 60
        im = decode(e.b64_json)
        assert im.format == "WEBP" and im.size == (1024, 1536) and im.mode == "RGBA"
    done = events[-1]
    assert isinstance(done, openai.types.ImageGenCompletedEvent)
    assert done.usage.output_tokens == 408 and done.usage.input_tokens_details.image_tokens == 0
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens
    assert done.safety_identifier == "sid"

    record = emu.stream_for(stream.response.headers["x-request-id"])
    assert record is not None and record is emu.last_stream and record.request is emu.generation_requests[-1]
    assert (record.operation, record.model, record.completed, record.injected) == (
        "generation", "gpt-image-1.5", True, None
    )
    assert record.event_types == record.planned == [e.type for e in events]
    assert record.started_at is not None and record.ended_at is not None
    assert record.started_at <= record.write_times[0] <= record.ended_at
    assert record.write_times == sorted(record.write_times) and len(record.gaps) == 3
    assert [e.index for e in record.events] == [0, 1, 2, 3] and all(e.nbytes > 100 for e in record.events)
    assert not record.client_disconnected and emu.client_disconnects == []


async def test_generation_stream_wire_format(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    body = gen_case("gpt-image-1", stream=True, partial_images=1)
    async with http.post(emu.base_url + GENERATIONS, json=body, headers=AUTH) as r:
        assert r.status == 200 and r.content_type == "text/event-stream"
        assert r.headers["x-request-id"] and r.headers["cache-control"] == "no-cache"
        frames = await read_sse(r)
    assert [(name, data["type"]) for _, name, data in frames] == [
        ("image_generation.partial_image", "image_generation.partial_image"),
        ("image_generation.completed", "image_generation.completed"),
    ]
    partial, done = frames[0][2], frames[1][2]
    assert set(partial) == {
        "type", "b64_json", "created_at", "size", "quality", "background", "output_format", "partial_image_index"
    }
    assert set(done) == {"type", "b64_json", "created_at", "size", "quality", "background", "output_format", "usage"}
    assert set(done["usage"]) == {"total_tokens", "input_tokens", "output_tokens", "input_tokens_details"}
    assert done["usage"]["output_tokens"] == 4160 and done["quality"] == "high" and done["size"] == "1024x1024"


async def test_generation_stream_zero_partials(client: AsyncOpenAI) -> None:
    stream = await client.images.generate(model="gpt-image-2", prompt="x", stream=True, size="1536x864")
    events = [ev async for ev in stream]
    assert [e.type for e in events] == ["image_generation.completed"]
    assert decode(events[0].b64_json).size == (1536, 864)


@pytest.mark.parametrize("model", ["dall-e-2", "dall-e-3"])
async def test_generation_stream_refused_for_dalle(client: AsyncOpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.generate(model=model, prompt="x", stream=True)
    assert ei.value.body == {
        "message": "Unknown parameter: 'stream'.",
        "type": "invalid_request_error",
        "param": "stream",
        "code": "unknown_parameter",
    }


# ------------------------------------------------------------------------------ stream mechanics (both routes)


async def open_stream(
    http: aiohttp.ClientSession, emu: OpenAIEmulator, operation: str, partial_images: int = 2
) -> aiohttp.ClientResponse:
    """Start a streaming edit or generation with raw HTTP; the caller reads and closes it."""
    if operation == "generation":
        return await http.post(
            emu.base_url + GENERATIONS,
            json=gen_case("gpt-image-1", stream=True, partial_images=partial_images, quality="low"),
            headers=AUTH,
        )
    form = aiohttp.FormData()
    form.add_field("image", make_image(), filename="a.png", content_type="image/png")
    for name, value in (("prompt", "x"), ("model", "gpt-image-1"), ("stream", "true"),
                        ("partial_images", str(partial_images)), ("quality", "low")):
        form.add_field(name, value)
    return await http.post(emu.base_url + EDITS, data=form, headers=AUTH)


def route_of(operation: str) -> str:
    return OpenAIEmulator.GENERATIONS if operation == "generation" else OpenAIEmulator.EDITS


def prefix_of(operation: str) -> str:
    return "image_generation" if operation == "generation" else "image_edit"


OPERATIONS = pytest.mark.parametrize("operation", ["edit", "generation"])


@OPERATIONS
async def test_stream_interval_paces_events_and_timestamps_match_arrival(
    http: aiohttp.ClientSession, operation: str
) -> None:
    async with OpenAIEmulator(api_key=KEY, stream_interval=0.25) as emu:
        t0 = time.perf_counter()
        async with await open_stream(http, emu, operation) as r:
            frames = await read_sse(r)
        record = emu.last_stream
        assert record is not None and record.operation == operation and record.completed
        assert [name for _, name, _ in frames] == record.event_types == [
            f"{prefix_of(operation)}.partial_image", f"{prefix_of(operation)}.partial_image",
            f"{prefix_of(operation)}.completed",
        ]
        assert frames[0][0] - t0 < 0.2  # the first event is not held back
        arrivals = [t for t, _, _ in frames]
        assert all(b - a >= 0.2 for a, b in itertools.pairwise(arrivals))  # forwarded one by one
        assert all(0.24 <= g < 0.6 for g in record.gaps)
        # the per-event timestamps let a benchmark measure upstream-write -> client-arrival delay
        for arrived, event in zip(arrivals, record.events, strict=True):
            assert -0.01 <= arrived - event.written_at < 0.1
            assert abs(event.wall_time - time.time()) < 5


@OPERATIONS
async def test_stream_gate_releases_events_one_at_a_time(http: aiohttp.ClientSession, operation: str) -> None:
    async with OpenAIEmulator(api_key=KEY, stream_gate=True) as emu:
        async with await open_stream(http, emu, operation) as r:
            assert r.status == 200  # headers go out before the first event
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(r.content.readuntil(b"\n\n"), 0.2)
            record = emu.last_stream
            assert record is not None and record.events == []
            for k in (1, 2):
                emu.release_stream_events()
                chunk = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 2)
                assert chunk.startswith(f"event: {prefix_of(operation)}.partial_image\n".encode())
                assert len(record.events) == k
            emu.release_stream_events(5)
            rest = await asyncio.wait_for(r.content.read(), 2)
        assert rest.startswith(f"event: {prefix_of(operation)}.completed\n".encode())
        assert record.completed and len(record.events) == 3


@OPERATIONS
async def test_stream_error_injection(emu: OpenAIEmulator, client: AsyncOpenAI, operation: str) -> None:
    emu.inject("stream_error", after_events=1, on=route_of(operation))
    stream: Any
    if operation == "generation":
        stream = await client.images.generate(model="gpt-image-1", prompt="x", stream=True, partial_images=2)
    else:
        stream = await client.images.edit(model="gpt-image-1", image=png(), prompt="x", stream=True, partial_images=2)
    got = []
    with pytest.raises(openai.APIError) as ei:
        async for ev in stream:
            got.append(ev.type)
    assert got == [f"{prefix_of(operation)}.partial_image"]
    assert ei.value.message == "The server had an error while processing your request. Sorry about that!"
    assert (ei.value.type, ei.value.code, ei.value.param) == ("server_error", "server_error", None)
    record = emu.last_stream
    assert record is not None and record.injected == "error" and not record.completed
    assert record.event_types == [f"{prefix_of(operation)}.partial_image", "error"]
    assert emu.pending_failures == 0


async def test_stream_error_frame_on_the_wire(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    emu.fail_stream(
        2,
        message="Your request was rejected by the safety system.",
        code="moderation_blocked",
        error_type="image_generation_user_error",
        on=None,
    )
    async with await open_stream(http, emu, "generation", partial_images=3) as r:
        frames = await read_sse(r)  # reaches a clean EOF: the body is closed properly
    assert [name for _, name, _ in frames] == ["image_generation.partial_image"] * 2 + ["error"]
    assert frames[-1][2] == {
        "type": "error",
        "error": {
            "message": "Your request was rejected by the safety system.",
            "type": "image_generation_user_error",
            "param": None,
            "code": "moderation_blocked",
        },
    }


async def test_stream_error_after_every_event(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    emu.inject("stream_error", after_events=99)
    async with await open_stream(http, emu, "edit", partial_images=1) as r:
        frames = await read_sse(r)
    assert [name for _, name, _ in frames] == ["image_edit.partial_image", "image_edit.completed", "error"]


@OPERATIONS
async def test_stream_disconnect_injection(emu: OpenAIEmulator, client: AsyncOpenAI, operation: str) -> None:
    emu.inject("stream_disconnect", after_events=2, on=None)
    stream: Any
    if operation == "generation":
        stream = await client.images.generate(model="gpt-image-1", prompt="x", stream=True, partial_images=3)
    else:
        stream = await client.images.edit(model="gpt-image-1", image=png(), prompt="x", stream=True, partial_images=3)
    got = []
    with pytest.raises(openai.APIConnectionError):
        async for ev in stream:
            got.append(ev.type)
    assert got == [f"{prefix_of(operation)}.partial_image"] * 2
    record = emu.last_stream
    assert record is not None and record.injected == "disconnect" and len(record.events) == 2
    assert not record.completed and not record.client_disconnected


@OPERATIONS
async def test_stream_hang_injection_then_client_gives_up(
    http: aiohttp.ClientSession, emu: OpenAIEmulator, operation: str
) -> None:
    emu.inject("stream_hang", after_events=1, on=route_of(operation))
    r = await open_stream(http, emu, operation)
    try:
        first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 2)
        assert first.startswith(f"event: {prefix_of(operation)}.partial_image".encode())
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(r.content.readuntil(b"\n\n"), 0.3)
    finally:
        r.close()
    record = emu.last_stream
    assert record is not None
    await eventually(lambda: record.client_disconnected)
    assert record.injected == "hang" and len(record.events) == 1 and not record.completed
    assert emu.client_disconnects == [record.request]


@OPERATIONS
async def test_client_disconnect_mid_stream_is_recorded(http: aiohttp.ClientSession, operation: str) -> None:
    async with OpenAIEmulator(api_key=KEY, stream_interval=0.3) as emu:
        r = await open_stream(http, emu, operation, partial_images=3)
        await asyncio.wait_for(r.content.readuntil(b"\n\n"), 2)
        left = time.perf_counter()
        r.close()
        record = emu.last_stream
        assert record is not None
        await eventually(lambda: record.client_disconnected)
        assert record.disconnected_at is not None and 0 <= record.disconnected_at - left < 0.2
        assert 1 <= len(record.events) < len(record.planned) and not record.completed
        assert record.ended_at is not None and record.injected is None
        assert emu.client_disconnects == [record.request]
        await asyncio.sleep(0.4)
        assert len(record.events) < len(record.planned)  # nothing more was produced


async def test_client_disconnect_while_waiting_latency_or_hang(http: aiohttp.ClientSession) -> None:
    async with OpenAIEmulator(api_key=KEY, latency=2.0) as emu:
        async with AsyncOpenAI(base_url=emu.base_url, api_key=KEY, max_retries=0, timeout=0.2) as c:
            with pytest.raises(openai.APITimeoutError):
                await c.images.generate(prompt="x")
            await eventually(lambda: len(emu.client_disconnects) == 1, within=1.0)  # long before latency ends
            assert emu.client_disconnects[0] is emu.generation_requests[-1]
            assert emu.generation_requests[-1].status is None
            emu.latency, emu.hang = 0.0, True
            with pytest.raises(openai.APITimeoutError):
                await c.images.edit(model="gpt-image-1", image=png(), prompt="x")
            await eventually(lambda: len(emu.client_disconnects) == 2, within=1.0)
            assert emu.client_disconnects[1] is emu.edit_requests[-1]
            emu.hang = False
            emu.inject("hang", on=None)
            with pytest.raises(openai.APITimeoutError):
                await c.images.generate(prompt="x")
            await eventually(lambda: len(emu.client_disconnects) == 3, within=1.0)
    assert emu.pending_failures == 0


async def test_stream_failures_are_only_consumed_by_streams(emu: OpenAIEmulator, client: AsyncOpenAI) -> None:
    emu.inject("stream_error", on=OpenAIEmulator.GENERATIONS)
    res = await client.images.generate(model="gpt-image-1", prompt="x")  # not streaming: untouched
    assert res.data and emu.pending_failures == 1
    stream = await client.images.edit(model="gpt-image-1", image=png(), prompt="x", stream=True)
    assert [e.type async for e in stream] == ["image_edit.completed"]  # other route: untouched
    assert emu.pending_failures == 1
    emu.reset_failures()
    assert emu.pending_failures == 0
    for kind in STREAM_INJECTABLE:
        emu.inject(kind, times=2)
    assert emu.pending_failures == 2 * len(STREAM_INJECTABLE)
    with pytest.raises(ValueError):
        emu.fail_stream(action="explode")
    with pytest.raises(ValueError):
        emu.fail_stream(-1)


async def test_stream_latency_is_spread_without_interval(http: aiohttp.ClientSession) -> None:
    async with OpenAIEmulator(api_key=KEY, latency=0.6) as emu:
        t0 = time.perf_counter()
        async with await open_stream(http, emu, "generation", partial_images=2) as r:
            frames = await read_sse(r)
        assert len(frames) == 3 and frames[-1][0] - t0 >= 0.6
        record = emu.last_stream
        assert record is not None and record.started_at is not None and record.started_at - t0 >= 0.2
        assert all(g >= 0.19 for g in record.gaps)


async def test_stream_records_follow_record_flag_and_clear(http: aiohttp.ClientSession) -> None:
    async with OpenAIEmulator(api_key=KEY, record=False) as emu:
        async with await open_stream(http, emu, "generation") as r:
            assert len(await read_sse(r)) == 3
        assert emu.streams == [] and emu.last_stream is None
    async with OpenAIEmulator(api_key=KEY) as emu:
        async with await open_stream(http, emu, "edit") as r:
            await read_sse(r)
        assert isinstance(emu.last_stream, StreamRecord) and emu.stream_for(emu.edit_requests[-1]) is emu.last_stream
        emu.clear()
        assert emu.streams == [] and emu.client_disconnects == [] and emu.stream_for("req_x") is None


# ------------------------------------------------------------------------------------------------ variations

VARIATION_DEPRECATED = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")


@VARIATION_DEPRECATED
async def test_variation_via_sdk_url_default(emu: OpenAIEmulator, client: AsyncOpenAI) -> None:
    img = make_image(64, 64, "RGB")  # no alpha needed for variations
    res = await client.images.create_variation(image=("v.png", img, "image/png"), n=2)
    assert res.usage is None and res.size is None and res.background is None and res.quality is None
    assert len(res.data or []) == 2
    for item in res.data or []:
        assert item.b64_json is None and item.revised_prompt is None
        assert (item.url or "").startswith(emu.url + "/files/")
        assert (await download(item.url or "")).size == (1024, 1024)
    rec = emu.variation_requests[-1]
    assert rec.content_type == "multipart/form-data" and rec.status == 200
    assert rec.fields == {"n": "2"} and rec.files == [("image", "v.png", "image/png", img)]


@VARIATION_DEPRECATED
async def test_variation_b64_and_size(client: AsyncOpenAI) -> None:
    res = await client.images.create_variation(
        image=png(32, 32), model="dall-e-2", size="256x256", response_format="b64_json", user="u1"
    )
    item = (res.data or [])[0]
    assert item.url is None and decode(item.b64_json or "").size == (256, 256)


@VARIATION_DEPRECATED
@pytest.mark.parametrize("model", ["gpt-image-1", "dall-e-3", "gpt-image-9"])
async def test_variation_other_models_refused(client: AsyncOpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as ei:
        await client.images.create_variation(image=png(), model=model)
    assert ei.value.body == {
        "message": f"Invalid value: '{model}'. Value must be 'dall-e-2'.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "invalid_value",
    }


def big_png() -> bytes:
    im = Image.frombytes("RGB", (1200, 1200), bytes(range(256)) * (1200 * 1200 * 3 // 256))
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=0)
    assert len(buf.getvalue()) >= 4 * 1024 * 1024
    return buf.getvalue()


@pytest.mark.parametrize(
    ("parts", "param", "code"),
    [
        ([("image", png()), ("prompt", "x")], "prompt", "unknown_parameter"),
        ([("image", png()), ("stream", "true")], "stream", "unknown_parameter"),
        ([("image", png()), ("quality", "standard")], "quality", "unknown_parameter"),
        ([("image[]", png())], "image[]", "unknown_parameter"),
        ([("image", png()), ("image", png())], "image", "duplicate_parameter"),
        ([("n", "2")], "image", "missing_required_parameter"),
        ([("image", "https://example.com/a.png")], "image", "invalid_type"),
        ([("image", png()), ("n", "11")], "n", "integer_above_max_value"),
        ([("image", png()), ("n", "0")], "n", "integer_below_min_value"),
        ([("image", png()), ("n", "two")], "n", "invalid_type"),
        ([("image", png()), ("size", "1536x1024")], "size", "invalid_value"),
        ([("image", png()), ("size", "auto")], "size", "invalid_value"),
        ([("image", png()), ("response_format", "png")], "response_format", "invalid_value"),
        ([("image", png(64, 32))], "image", None),  # not square
        ([("image", ("a.jpg", make_image(64, 64, "RGB", "JPEG"), "image/jpeg"))], "image", None),  # not PNG
        ([("image", ("a.png", big_png(), "image/png"))], "image", None),  # not under 4 MB
        ([("image", ("a.png", b"junk", "image/png"))], "image", "invalid_image_file"),
        ([("image", ("a.bin", make_image(), "application/octet-stream"))], "image", "unsupported_file_mimetype"),
    ],
)
async def test_variation_rejections(
    http: aiohttp.ClientSession, emu: OpenAIEmulator, parts: list[tuple[str, Any]], param: str, code: str | None
) -> None:
    status, headers, res = await post_form(http, emu, parts, path=VARIATIONS)
    e = err(res)
    assert status == 400 and (e["param"], e["code"]) == (param, code), res
    assert headers["x-request-id"] and emu.variation_requests[-1].status == 400
    if param == "image" and code is None and "square" not in e["message"]:
        assert e["message"] == "Uploaded image must be a PNG and less than 4 MB."


async def test_variation_is_multipart_only_and_injectable(http: aiohttp.ClientSession, emu: OpenAIEmulator) -> None:
    async with http.post(emu.base_url + VARIATIONS, json={"image": "x"}, headers=AUTH) as r:
        e = err(await r.json())
        assert r.status == 400 and e["message"] == (
            "Invalid Content-Type header (application/json), expected multipart/form-data."
        )
    emu.inject("server_error", on=OpenAIEmulator.VARIATIONS)
    status, _, res = await post_form(http, emu, [("image", png())], path=VARIATIONS)
    assert status == 500 and err(res)["type"] == "server_error"
    status, _, res = await post_form(http, emu, [("image", png())], path=VARIATIONS)
    assert status == 200 and res["data"][0]["url"] and set(res) == {"created", "data"}
    status, _, res = await post_form(http, emu, [("image", png())], key="sk-bad-key-0000", path=VARIATIONS)
    assert status == 401 and err(res)["code"] == "invalid_api_key"
    assert [r.status for r in emu.variation_requests] == [400, 500, 200, 401]
