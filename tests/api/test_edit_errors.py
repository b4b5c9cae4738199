"""Bad input gets a clear 4xx naming the field — never a 500 — and costs nothing."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest
from tests.conftest import Harness, png_bytes, start_harness

from imagegate.config import LimitSettings, Settings

PNG = ("a.png", png_bytes(), "image/png")
DATA_URL = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()


async def post(h: Harness, **kwargs):  # type: ignore[no-untyped-def]
    return await h.client.post("/v1/images/edits", headers=h.auth, **kwargs)


async def assert_error(response, status: int, code: str | None = None, param: str | None = None) -> dict:  # type: ignore[no-untyped-def,type-arg]
    assert response.status_code == status, response.text
    assert response.headers.get("x-request-id")
    err = response.json()["error"]
    assert set(err) >= {"message", "type", "code", "param"}
    if code is not None:
        assert err["code"] == code
    if param is not None:
        assert err["param"] == param
    return err  # type: ignore[no-any-return]


async def test_missing_key_is_401(harness: Harness) -> None:
    r = await harness.client.post("/v1/images/edits", data={"model": "local-edit", "prompt": "x"})
    await assert_error(r, 401, "invalid_api_key")
    r = await harness.client.post("/v1/images/edits", headers={"Authorization": "Bearer sk-nope"},
                                  data={"model": "local-edit", "prompt": "x"})
    await assert_error(r, 401, "invalid_api_key")


async def test_missing_prompt(harness: Harness) -> None:
    r = await post(harness, data={"model": "local-edit"}, files={"image": PNG})
    await assert_error(r, 400, param="prompt")


async def test_missing_model(harness: Harness) -> None:
    r = await post(harness, data={"prompt": "x"}, files={"image": PNG})
    await assert_error(r, 400, param="model")


async def test_unknown_model_suggests(harness: Harness) -> None:
    r = await post(harness, data={"model": "local-edti", "prompt": "blur"}, files={"image": PNG})
    err = await assert_error(r, 400, "model_not_found", "model")
    assert err["did_you_mean"] == "local-edit"


async def test_no_image(harness: Harness) -> None:
    r = await post(harness, data={"model": "local-edit", "prompt": "blur"}, files={"x": PNG})
    await assert_error(r, 400)


@pytest.mark.parametrize(("data", "param"), [({"n": "0"}, "n"), ({"n": "11"}, "n"), ({"n": "two"}, "n"),
                                             ({"response_format": "png"}, "response_format"),
                                             ({"output_compression": "101"}, "output_compression"),
                                             ({"size": "12x"}, "size"), ({"async": "maybe"}, "async"),
                                             ({"output_format": "gif"}, "output_format")])
async def test_bad_fields(harness: Harness, data: dict[str, str], param: str) -> None:
    r = await post(harness, data={"model": "local-edit", "prompt": "blur", **data}, files={"image": PNG})
    await assert_error(r, 400, param=param)


async def test_non_image_bytes(harness: Harness) -> None:
    r = await post(harness, data={"model": "local-edit", "prompt": "blur"},
                   files={"image": ("notes.png", b"just some text, not a picture", "image/png")})
    await assert_error(r, 400, "unsupported_image_format", "image")


async def test_truncated_png(harness: Harness) -> None:
    r = await post(harness, data={"model": "local-edit", "prompt": "blur"},
                   files={"image": ("a.png", png_bytes()[:30], "image/png")})
    await assert_error(r, 400, "unsupported_image_format", "image")


async def test_bad_second_image_named_by_index(harness: Harness) -> None:
    files = [("image[]", PNG), ("image[]", ("b.png", b"GIF89a....", "image/png"))]
    r = await post(harness, data={"model": "local-edit", "prompt": "blur"}, files=files)
    await assert_error(r, 400, "unsupported_image_format", "image[1]")


async def test_too_many_images(harness: Harness) -> None:
    files = [("image[]", PNG)] * 17
    r = await post(harness, data={"model": "local-edit", "prompt": "blur"}, files=files)
    await assert_error(r, 400, "too_many_images", "image")


async def test_more_files_than_any_model_takes(harness: Harness) -> None:
    files = [("image[]", PNG)] * 30
    r = await post(harness, data={"model": "local-edit", "prompt": "blur"}, files=files)
    await assert_error(r, 400, "too_many_images")


async def test_mask_of_other_size(harness: Harness) -> None:
    files = [("image", PNG), ("mask", ("m.png", png_bytes((32, 32)), "image/png"))]
    r = await post(harness, data={"model": "local-edit", "prompt": "blur"}, files=files)
    await assert_error(r, 400, param="mask")


async def test_mask_not_png(harness: Harness) -> None:
    jpeg = png_bytes((64, 64), (1, 2, 3), mode="RGB", fmt="JPEG")
    files = [("image", PNG), ("mask", ("m.jpg", jpeg, "image/jpeg"))]
    r = await post(harness, data={"model": "local-edit", "prompt": "blur"}, files=files)
    await assert_error(r, 400, param="mask")


async def test_image_as_text_field(harness: Harness) -> None:
    r = await post(harness, data={"model": "local-edit", "prompt": "blur"},
                   files={"image": (None, "http://x/y.png")})
    await assert_error(r, 400, param="image")


async def test_malformed_multipart(harness: Harness) -> None:
    r = await harness.client.post("/v1/images/edits", headers={
        **harness.auth, "Content-Type": "multipart/form-data; boundary=zzz"},
        content=b"--zzz\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nlocal-edit\r\n--zz")
    await assert_error(r, 400)


async def test_multipart_without_boundary(harness: Harness) -> None:
    r = await harness.client.post("/v1/images/edits", headers={
        **harness.auth, "Content-Type": "multipart/form-data"}, content=b"garbage")
    await assert_error(r, 400)


async def test_invalid_json(harness: Harness) -> None:
    r = await harness.client.post("/v1/images/edits", headers={**harness.auth, "Content-Type": "application/json"},
                                  content=b"{not json")
    await assert_error(r, 400, "invalid_json")


async def test_wrong_content_type(harness: Harness) -> None:
    r = await harness.client.post("/v1/images/edits", headers={**harness.auth, "Content-Type": "text/plain"},
                                  content=b"hello")
    await assert_error(r, 400)


@pytest.mark.parametrize(("images", "param"), [
    ([{}], "images[0]"),
    ([{"image_url": "http://a.test/x.png", "file_id": "file-x"}], "images[0]"),
    (["http://a.test/x.png"], "images[0]"),
    ([{"file_id": "file-missing"}], "images[0].file_id"),
])
async def test_bad_json_references(harness: Harness, images: list, param: str) -> None:  # type: ignore[type-arg]
    r = await harness.client.post("/v1/images/edits", headers=harness.auth, json={
        "model": "local-edit", "prompt": "blur", "images": images})
    await assert_error(r, 400, param=param)


@pytest.mark.parametrize("url", ["ftp://example.test/a.png", "file:///etc/passwd",
                                 "http://user:pw@example.test/a.png", "http://example.test/a.png#frag"])
async def test_forbidden_urls(harness: Harness, url: str) -> None:
    r = await harness.client.post("/v1/images/edits", headers=harness.auth, json={
        "model": "local-edit", "prompt": "blur", "image_urls": [DATA_URL, url]})
    await assert_error(r, 400, param="image_urls[1]")


async def test_another_accounts_file_is_unknown(harness: Harness) -> None:
    up = await harness.client.post("/v1/files", headers=harness.auth, data={"purpose": "user_data"},
                                   files={"file": PNG})
    other = await harness.new_key("bob")
    r = await harness.client.post("/v1/images/edits", headers={"Authorization": f"Bearer {other}"}, json={
        "model": "local-edit", "prompt": "blur", "images": [{"file_id": up.json()["id"]}]})
    await assert_error(r, 400, "file_not_found", "images[0].file_id")


async def test_image_over_the_limit(settings: Settings) -> None:
    small = replace(settings, limits=LimitSettings(max_image_bytes=1000))
    h = await start_harness(small)
    try:
        big = png_bytes((256, 256), (1, 2, 3), mode="RGB", fmt="JPEG")
        assert len(big) > 1000
        r = await post(h, data={"model": "local-edit", "prompt": "blur"}, files={"image": ("b.jpg", big, "image/jpeg")})
        await assert_error(r, 413, "image_too_large", "image")
    finally:
        await h.client.aclose()
        await h.gateway.aclose()


async def test_body_over_the_limit(settings: Settings) -> None:
    small = replace(settings, limits=LimitSettings(max_request_bytes=10_000))
    h = await start_harness(small)
    try:
        r = await post(h, data={"model": "local-edit", "prompt": "blur"},
                       files={"image": ("b.bin", b"\0" * 20_000, "image/png")})
        await assert_error(r, 413, "payload_too_large")
    finally:
        await h.client.aclose()
        await h.gateway.aclose()


async def test_errors_cost_nothing(harness: Harness) -> None:
    await post(harness, data={"model": "local-edit", "prompt": "a castle"}, files={"image": PNG})
    s = await harness.gateway.accounts.summary("alice")
    assert s.held_micros == 0 and s.spent_micros == 0 and s.balance_micros == s.deposits_micros
