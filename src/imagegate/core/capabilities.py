"""What a model accepts, declared as data. The core checks requests against these generically."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imagegate.core.pricing import Price, price_from_mapping

DEFAULT_MAX_OUTPUT_PIXELS = 4096 * 4096
_BYTES_PER_PIXEL = 4  # RGBA: more than any PNG, JPEG or WebP of the same pixels takes, bar a small header
_OUTPUT_SLACK = 1024 * 1024  # metadata, ICC profiles, container overhead


@dataclass(frozen=True, slots=True)
class SizeGrid:
    """`WIDTHxHEIGHT` sizes allowed by rule rather than by list."""

    multiple: int
    max_side: int
    max_ratio: float
    min_pixels: int
    max_pixels: int

    def allows(self, width: int, height: int) -> bool:
        if width <= 0 or height <= 0:
            return False
        if width % self.multiple or height % self.multiple:
            return False
        if max(width, height) > self.max_side:
            return False
        if max(width, height) / min(width, height) > self.max_ratio:
            return False
        return self.min_pixels <= width * height <= self.max_pixels

    def describe(self) -> str:
        return (f"'auto' or WIDTHxHEIGHT with both sides multiples of {self.multiple}, longest side at most "
                f"{self.max_side}, long/short ratio at most {self.max_ratio:g}, and "
                f"{self.min_pixels:,}–{self.max_pixels:,} pixels in total")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One public model id and the rules its requests must follow."""

    id: str
    provider_types: tuple[str, ...]
    upstream_model: str
    max_images: int
    price: Price
    supports_async: bool = False
    supports_mask: bool = True
    input_formats: frozenset[str] = frozenset({"png", "jpeg", "webp"})
    square_png: bool = False
    needs_alpha: bool = False
    params: frozenset[str] = frozenset()
    strip: frozenset[str] = frozenset()
    refuse: frozenset[str] = frozenset()
    sizes: tuple[str, ...] = ()
    size_grid: SizeGrid | None = None
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    max_prompt: int = 32000
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS  # the largest image the model makes

    def output_bytes(self, size: tuple[int, int] | None) -> int:
        """The most bytes one output image can legitimately take: four a pixel of the requested size (of
        the largest the model makes when none is sent), plus room for metadata. Upstream answers and
        downloads are read no further than what this allows."""
        pixels = self.max_output_pixels if size is None else min(size[0] * size[1], self.max_output_pixels)
        return pixels * _BYTES_PER_PIXEL + _OUTPUT_SLACK

    def describe(self) -> dict[str, Any]:
        """The capabilities as listed by GET /v1/models."""
        caps: dict[str, Any] = {
            "max_images": self.max_images,
            "async": self.supports_async,
            "mask": self.supports_mask,
            "input_formats": sorted(self.input_formats),
            "params": sorted(self.params),
            "max_prompt_chars": self.max_prompt,
        }
        if self.sizes:
            caps["sizes"] = list(self.sizes)
        if self.size_grid is not None:
            caps["size_rule"] = self.size_grid.describe()
        if self.values:
            caps["values"] = {k: list(v) for k, v in self.values.items() if k in self.params}
        return caps


def spec_from_mapping(model_id: str, raw: Mapping[str, Any],
                      default_values: Mapping[str, Any] | None = None) -> ModelSpec:
    """Build a ModelSpec from one catalog entry (TOML table)."""
    values = {k: tuple(v) for k, v in (default_values or {}).items()}
    values.update({k: tuple(v) for k, v in raw.get("values", {}).items()})
    grid = raw.get("size_grid")
    return ModelSpec(
        id=model_id,
        provider_types=tuple(raw["provider_types"]),
        upstream_model=raw.get("upstream_model", model_id),
        max_images=int(raw["max_images"]),
        price=price_from_mapping(raw.get("pricing", {"kind": "free"})),
        supports_async=bool(raw.get("async", False)),
        supports_mask=bool(raw.get("mask", True)),
        input_formats=frozenset(raw.get("input_formats", ("png", "jpeg", "webp"))),
        square_png=bool(raw.get("square_png", False)),
        needs_alpha=bool(raw.get("needs_alpha", False)),
        params=frozenset(raw.get("params", ())),
        strip=frozenset(raw.get("strip", ())),
        refuse=frozenset(raw.get("refuse", ())),
        sizes=tuple(raw.get("sizes", ())),
        size_grid=SizeGrid(**grid) if grid else None,
        values=values,
        max_prompt=int(raw.get("max_prompt", 32000)),
        max_output_pixels=int(raw.get("max_output_pixels", DEFAULT_MAX_OUTPUT_PIXELS)),
    )
