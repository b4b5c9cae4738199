"""Property-based fuzzing of the edit and file endpoints: whatever a client sends, the answer is never a 5xx,
every error carries the envelope, and the books are exact afterwards (nothing left held once the tasks
the fuzzer created have run).

Bounded for CI: IMAGEGATE_FUZZ_EXAMPLES examples per endpoint (derandomized, so a run is repeatable).
Image URLs are data: URLs or names nobody can resolve; a tripwire fails the test if anything but the
loopback emulator is ever dialled.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from tests.conftest import Harness, png_bytes, settings_on, start_harness
from tests.emulators.openai_emulator import OpenAIEmulator
from tests.fetch.support import FakeResolver, Tripwire

from imagegate.config import ProviderSettings, TaskSettings
from imagegate.fetch import FetchSettings, SafeFetcher

EXAMPLES = int(os.environ.get("IMAGEGATE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (1, 2, 3)).save(buf, "JPEG")
    return buf.getvalue()


PNG = png_bytes((32, 32))
IMAGES = st.sampled_from([PNG, png_bytes((16, 16), mode="RGB"), _jpeg(), PNG[:40], b"", b"GIF89a....",
                          b"\x89PNG\r\n\x1a\n" + bytes(30), png_bytes((48, 32))]) | st.binary(max_size=300)
TEXT = st.text(max_size=40) | st.sampled_from(["", " ", "0", "-1", "11", "1e3", "true", "null", "1024x1024",
                                               "auto", "b64_json", "url", "png", "webp", "high", "9" * 30])
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40) | st.sampled_from(
    ["multipart/form-data", "multipart/form-data; boundary=x", "application/json; charset=utf-16", "text/plain"])
FIELD_NAMES = st.sampled_from(["model", "prompt", "n", "size", "quality", "background", "output_format",
                               "output_compression", "compression", "moderation", "partial_images",
                               "input_fidelity", "response_format", "user", "async", "stream", "aspect_ratio",
                               "resolution", "seed"]) | st.text(min_size=1, max_size=12)
MODELS = st.sampled_from(["local-edit", "gpt-image-2", "gpt-image-1.5", "dall-e-2", "nope", ""]) | TEXT
PROMPTS = st.sampled_from(["grayscale", "sepia", "invert", "add a hat", "", " "]) | TEXT
URLS_VALID = "data:image/png;base64," + base64.b64encode(PNG).decode()
URLS = st.sampled_from([
    URLS_VALID,
    "data:image/png;base64,!!!", "data:,hello", "http://img.invalid/a.png", "https://10.0.0.1/a.png",
    "http://127.0.0.1:1/a.png", "ftp://x/y", "http://[::1]/a.png", "file:///etc/passwd", "", "x" * 300,
]) | st.text(max_size=30)
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40)
                           | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                           max_leaves=8)
REFERENCES = st.fixed_dictionaries({}, optional={"image_url": URLS, "file_id": TEXT | st.just("file-x")}) | JSON_VALUES


VALID_MODELS = st.sampled_from(["local-edit", "local-edit", "gpt-image-1.5", "gpt-image-2"])
VALID_PROMPTS = st.sampled_from(["grayscale", "sepia", "invert", "blur", "add a hat"])
VALID_OPTIONS = st.fixed_dictionaries({}, optional={
    "n": st.sampled_from(["1", "2"]), "size": st.sampled_from(["auto", "1024x1024", "32x32"]),
    "quality": st.sampled_from(["low", "high"]), "response_format": st.sampled_from(["url", "b64_json"]),
    "async": st.sampled_from(["true", "false"]), "output_format": st.sampled_from(["png", "jpeg", "webp"])})


@st.composite
def multipart_edits(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly a valid edit with a few fields changed at random; sometimes anything at all."""
    data: dict[str, Any] = {"model": draw(VALID_MODELS), "prompt": draw(VALID_PROMPTS), **draw(VALID_OPTIONS)}
    files: list[tuple[str, Any]] = [("image", ("a.png", PNG, "image/png"))]
    if draw(st.booleans()):
        data.update(draw(st.dictionaries(FIELD_NAMES, TEXT, max_size=3)))
        if draw(st.booleans()):
            data["model"], data["prompt"] = draw(MODELS), draw(PROMPTS)
        names = st.sampled_from(["image", "image[]", "mask", "extra", "model"])
        files = [(draw(names), ("f.png", draw(IMAGES), draw(st.sampled_from(["image/png", "text/plain", ""]))))
                 for _ in range(draw(st.integers(0, 4)))]
    return {"data": data, "files": files, "poor": draw(st.integers(0, 9)) == 0}


@st.composite
def json_edits(draw: st.DrawFn) -> Any:
    body: dict[str, Any] = {"model": draw(VALID_MODELS), "prompt": draw(VALID_PROMPTS), "image_url": URLS_VALID}
    if draw(st.booleans()):
        return {"json": body}
    body.update(model=draw(MODELS), prompt=draw(PROMPTS))
    optional = {"image_url": URLS | JSON_VALUES, "image_urls": st.lists(URLS, max_size=3) | JSON_VALUES,
                "images": st.lists(REFERENCES, max_size=3) | JSON_VALUES, "mask": REFERENCES,
                "n": st.integers(-3, 20) | JSON_VALUES, "size": TEXT | JSON_VALUES,
                "response_format": TEXT | JSON_VALUES, "async": st.booleans() | JSON_VALUES,
                "stream": st.booleans() | JSON_VALUES, "output_compression": st.integers(-5, 200) | JSON_VALUES}
    body.update(draw(st.fixed_dictionaries({}, optional=optional)))
    raw = draw(st.binary(max_size=200) | st.sampled_from([b"{", b'{"model": "local-edit"', b"[]", b"null"]))
    return draw(st.sampled_from([{"json": body}, {"json": body}, {"json": draw(JSON_VALUES)},
                                 {"content": raw, "headers": {"Content-Type": "application/json"}},
                                 {"content": raw, "headers": {"Content-Type": draw(HEADER_TEXT)}}]))


@st.composite
def uploads(draw: st.DrawFn) -> dict[str, Any]:
    data = draw(st.fixed_dictionaries({}, optional={"purpose": st.sampled_from(["user_data", "vision"]) | TEXT,
                                                    "model": TEXT}))
    files = [(draw(st.sampled_from(["file", "file", "other"])), (draw(TEXT), draw(IMAGES), "image/png"))
             for _ in range(draw(st.integers(0, 2)))]
    return {"data": data, "files": files}


def check(response: httpx.Response, seen: dict[int, int]) -> None:
    seen[response.status_code] = seen.get(response.status_code, 0) + 1
    assert response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    if response.status_code >= 400:
        error = body["error"]
        assert {"message", "type", "code", "param"} <= set(error) and error["message"], body
    else:
        assert "data" in body or "id" in body, body


def test_edits_and_uploads_survive_anything(tmp_path: Path) -> None:
    with Tripwire(allowed=("127.0.0.1",)).armed() as wire, asyncio.Runner() as runner:
        emulator = runner.run(OpenAIEmulator(api_key="sk-up").start())
        gateway_settings = replace(
            settings_on(f"sqlite:///{tmp_path / 'fuzz.db'}", tmp_path / "blobs",
                        tasks=TaskSettings(workers=0, lease=30.0),
                        prices={"local-edit": {"kind": "per_image", "per_image": 0.01}}),
        )
        gateway_settings = replace(gateway_settings, providers=(*gateway_settings.providers, ProviderSettings(
            name="openai", type="openai", base_url=emulator.base_url, api_key="sk-up",
            models=("gpt-image-2", "gpt-image-1.5", "dall-e-2"), timeout=5.0)))
        fetcher = SafeFetcher(FetchSettings(timeout=2.0), resolver=FakeResolver({}))
        h: Harness = runner.run(start_harness(gateway_settings, fetcher=fetcher))
        poor = {"Authorization": f"Bearer {runner.run(h.new_key('poor', credit=0.02))}"}  # runs out: 402s
        seen: dict[int, int] = {}
        try:
            @FUZZ
            @given(multipart_edits())
            def multipart(request: dict[str, Any]) -> None:
                auth = poor if request.pop("poor") else h.auth
                check(runner.run(h.client.post("/v1/images/edits", headers=auth, **request)), seen)

            @FUZZ
            @given(json_edits())
            def json_body(request: dict[str, Any]) -> None:
                headers = {**h.auth, **request.pop("headers", {})}
                check(runner.run(h.client.post("/v1/images/edits", headers=headers, **request)), seen)

            @FUZZ
            @given(uploads())
            def upload(request: dict[str, Any]) -> None:
                check(runner.run(h.client.post("/v1/files", headers=h.auth, **request)), seen)

            multipart()
            json_body()
            upload()
            while runner.run(h.gateway.runner.run_once()):  # the tasks the fuzzer created run and end
                pass
            for account in ("alice", "poor"):
                _, held, _ = runner.run(h.books(account))  # checks deposits = balance + held + spent
                assert held == 0
        finally:
            runner.run(h.aclose())
            runner.run(emulator.stop())
    assert wire.violations == []
    assert seen.get(200) and seen.get(400) and seen.get(402), seen  # the fuzzer reached every kind of answer
