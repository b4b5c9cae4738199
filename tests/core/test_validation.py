"""Request checks against the built-in catalog, for rules that depend on catalog data."""

from __future__ import annotations

import pytest

from imagegate.catalog import builtin_specs
from imagegate.core.errors import InvalidRequest
from imagegate.core.validation import check_request

SPECS = builtin_specs()


def check(model: str, **options: str) -> dict[str, object]:
    return check_request(SPECS[model], prompt="a hat", image_count=1, has_mask=False, run_async=False,
                         options=options)


@pytest.mark.parametrize("model", ["flux-kontext-pro", "flux-kontext-max"])
@pytest.mark.parametrize("size", ["auto", "1024x1024", "2100x900", "900x2100", "1536x1024"])
def test_kontext_takes_sizes_within_its_aspect_ratios(model: str, size: str) -> None:
    assert check(model, size=size) == {"size": size}


@pytest.mark.parametrize("size", ["2200x900", "900x2200", "5000x5000", "0x10"])
def test_kontext_refuses_sizes_outside_them(size: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        check("flux-kontext-pro", size=size)
    assert info.value.param == "size"


def test_async_is_refused_where_the_catalog_says_so() -> None:
    refused = [spec.id for spec in SPECS.values() if not spec.supports_async]
    assert "gpt-image-1.5" in refused and "dall-e-2" in refused and "grok-imagine-image" in refused
    for model in refused:
        with pytest.raises(InvalidRequest) as info:
            check_request(SPECS[model], prompt="x", image_count=1, has_mask=False, run_async=True, options={})
        assert info.value.param == "async"
    for model in ("gpt-image-2", "flux-kontext-pro", "flux-2-pro", "local-edit"):
        assert check_request(SPECS[model], prompt="x", image_count=1, has_mask=False, run_async=True,
                             options={}) == {}


@pytest.mark.parametrize("model", ["grok-imagine-image", "grok-imagine-image-pro"])
def test_size_is_dropped_not_refused_where_the_model_does_not_take_it(model: str) -> None:
    assert check(model, size="1024x1024", aspect_ratio="16:9") == {"aspect_ratio": "16:9"}
