"""Request checks against the built-in catalog, for rules that depend on catalog data, per operation."""

from __future__ import annotations

from typing import Any

import pytest

from imagegate.catalog import builtin_specs
from imagegate.core.errors import InvalidRequest, TooManyImages
from imagegate.core.jobs import ImageRequest, Operation, UrlRef
from imagegate.core.validation import check_request

SPECS = builtin_specs()


def request(operation: Operation = "edit", *, images: int = 1, prompt: str = "a hat", **fields: Any) -> ImageRequest:
    refs: list[Any] = [UrlRef(f"image_urls[{i}]", "https://x/a.png") for i in range(images)]
    options = {k: v for k, v in fields.items() if k not in ("n", "run_async", "stream", "mask")}
    return ImageRequest(operation=operation, model="m", prompt=prompt, images=refs,
                        mask=UrlRef("mask", "https://x/m.png") if fields.get("mask") else None,
                        n=fields.get("n", 1), run_async=fields.get("run_async", False),
                        stream=fields.get("stream", False), options=options)


def check(model: str, operation: Operation = "edit", **fields: Any) -> dict[str, object]:
    images = {"edit": 1, "generate": 0, "variation": 1}[operation]
    prompt = "" if operation == "variation" else "a hat"
    return check_request(SPECS[model].rules(operation), model, request(operation, images=images, prompt=prompt,
                                                                       **fields))


@pytest.mark.parametrize("model", ["flux-kontext-pro", "flux-kontext-max"])
@pytest.mark.parametrize("size", ["auto", "1024x1024", "2100x900", "900x2100", "1536x1024"])
def test_kontext_takes_sizes_within_its_aspect_ratios(model: str, size: str) -> None:
    assert check(model, size=size) == {"size": size}
    assert check(model, "generate", size=size) == {"size": size}


@pytest.mark.parametrize("size", ["2200x900", "900x2200", "5000x5000", "0x10"])
def test_kontext_refuses_sizes_outside_them(size: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        check("flux-kontext-pro", size=size)
    assert info.value.param == "size"


def test_async_is_refused_where_the_catalog_says_so() -> None:
    refused = [spec.id for spec in SPECS.values() if not spec.rules(next(iter(spec.operations))).supports_async]
    assert "gpt-image-1.5" in refused and "dall-e-2" in refused and "grok-imagine-image" in refused
    for model in refused:
        with pytest.raises(InvalidRequest) as info:
            check(model, next(iter(SPECS[model].operations)), run_async=True)
        assert info.value.param == "async"
    for model in ("gpt-image-2", "flux-kontext-pro", "flux-2-pro", "local-edit"):
        assert check(model, run_async=True) == {}
    assert check("gpt-image-2", "generate", run_async=True) == {}


@pytest.mark.parametrize("model", ["grok-imagine-image", "grok-imagine-image-pro"])
def test_size_is_dropped_not_refused_where_the_model_does_not_take_it(model: str) -> None:
    assert check(model, size="1024x1024", aspect_ratio="16:9") == {"aspect_ratio": "16:9"}


def test_each_model_serves_the_operations_the_catalog_lists() -> None:
    served = {model: set(spec.operations) for model, spec in SPECS.items()}
    assert served["gpt-image-2"] == served["gpt-image-1.5"] == {"edit", "generate"}
    assert served["dall-e-2"] == {"edit", "generate", "variation"} and served["dall-e-3"] == {"generate"}
    assert served["local-edit"] == {"edit", "variation"} and served["local-draw"] == {"generate"}
    assert all("generate" in ops for model, ops in served.items() if model.startswith(("flux", "grok")))
    with pytest.raises(InvalidRequest) as info:
        SPECS["dall-e-3"].rules("edit")
    assert info.value.param == "model" and info.value.code == "unsupported_operation"
    assert "generations" in info.value.message


def test_generations_take_no_source_image_and_edits_need_one() -> None:
    with pytest.raises(InvalidRequest) as info:
        check_request(SPECS["gpt-image-2"].rules("generate"), "gpt-image-2", request("generate", images=1))
    assert info.value.param == "image" and "/v1/images/edits" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        check_request(SPECS["gpt-image-2"].rules("edit"), "gpt-image-2", request("edit", images=0))
    assert info.value.param == "image"
    with pytest.raises(TooManyImages):
        check_request(SPECS["dall-e-2"].rules("variation"), "dall-e-2", request("variation", images=2, prompt=""))


def test_dall_e_3_rules() -> None:
    assert check("dall-e-3", "generate", size="1792x1024", quality="hd", style="natural") == {
        "size": "1792x1024", "quality": "hd", "style": "natural"}
    for fields, param in (({"n": 2}, "n"), ({"size": "1536x1024"}, "size"), ({"quality": "high"}, "quality"),
                          ({"style": "bold"}, "style")):
        with pytest.raises(InvalidRequest) as info:
            check("dall-e-3", "generate", **fields)
        assert info.value.param == param
    assert check("dall-e-3", "generate", background="transparent", output_format="png") == {}  # not taken: not sent


def test_gpt_image_2_size_rule_and_background() -> None:
    assert check("gpt-image-2", "generate", size="2048x1152", background="auto") == {"size": "2048x1152",
                                                                                      "background": "auto"}
    for size in ("2000x1000", "4096x1024", "512x512"):
        with pytest.raises(InvalidRequest) as info:
            check("gpt-image-2", "generate", size=size)
        assert info.value.param == "size"
    with pytest.raises(InvalidRequest) as info:
        check("gpt-image-2", "generate", background="transparent")
    assert info.value.param == "background"
    assert check("gpt-image-1.5", "generate", background="transparent", moderation="low",
                 output_compression=80) == {"background": "transparent", "moderation": "low",
                                            "output_compression": 80}


def test_stream_is_accepted_only_where_the_model_streams() -> None:
    assert check("gpt-image-1.5", "generate", stream=True, partial_images=2) == {"partial_images": 2}
    assert check("gpt-image-2", stream=True) == {}
    for model, operation in (("dall-e-3", "generate"), ("flux-2-pro", "generate"), ("local-edit", "edit")):
        with pytest.raises(InvalidRequest) as info:
            check(model, operation, stream=True)
        assert info.value.param == "stream"
    with pytest.raises(InvalidRequest) as info:
        check("gpt-image-2", "generate", stream=True, run_async=True)
    assert info.value.param == "stream"


def test_variations_take_no_prompt_and_no_mask() -> None:
    assert check("dall-e-2", "variation", size="512x512") == {"size": "512x512"}
    with pytest.raises(InvalidRequest) as info:
        check_request(SPECS["dall-e-2"].rules("variation"), "dall-e-2", request("variation", prompt="a hat"))
    assert info.value.param == "prompt"
    with pytest.raises(InvalidRequest) as info:
        check_request(SPECS["dall-e-2"].rules("variation"), "dall-e-2", request("variation", prompt="", mask=True))
    assert info.value.param == "mask"
