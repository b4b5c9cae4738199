"""What a model accepts, declared as data. The core checks requests against these generically.

A model serves one or more operations (edit, generate, variation); each has its own rules (how many source
images, whether a mask, async or streaming is accepted, which fields and values). The catalog states the
model-wide rules once and an operation overrides only what differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imagegate.core.errors import InvalidRequest
from imagegate.core.jobs import OPERATIONS, Operation
from imagegate.core.pricing import Price, price_from_mapping

DEFAULT_MAX_OUTPUT_PIXELS = 4096 * 4096
MAX_N = 10
_BYTES_PER_PIXEL = 4  # RGBA: more than any PNG, JPEG or WebP of the same pixels takes, bar a small header
_OUTPUT_SLACK = 1024 * 1024  # metadata, ICC profiles, container overhead
_OPERATION_NAMES = {"edit": "edits", "generate": "generations", "variation": "variations"}


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
class OperationRules:
    """The rules of one operation of one model."""

    max_images: int  # source images (0: none taken, as for generations)
    min_images: int = 1
    max_n: int = MAX_N
    supports_async: bool = False
    supports_stream: bool = False
    supports_mask: bool = True
    input_formats: frozenset[str] = frozenset({"png", "jpeg", "webp"})
    max_input_bytes: int | None = None  # per source image, when the model takes less than the gateway
    square_png: bool = False
    needs_alpha: bool = False
    prompt: bool = True  # whether the operation takes a prompt (required when it does)
    params: frozenset[str] = frozenset()
    strip: frozenset[str] = frozenset()
    refuse: frozenset[str] = frozenset()
    sizes: tuple[str, ...] = ()
    size_grid: SizeGrid | None = None
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    max_prompt: int = 32000
    provider_types: tuple[str, ...] = ()  # the provider types that can do it; () for all of the model's
    default: bool = False  # a request of this operation that names no model may get this one

    def describe(self) -> dict[str, Any]:
        caps: dict[str, Any] = {"max_images": self.max_images, "max_n": self.max_n, "async": self.supports_async,
                                "stream": self.supports_stream, "params": sorted(self.params)}
        if self.max_images:
            caps.update(min_images=self.min_images, mask=self.supports_mask, input_formats=sorted(self.input_formats))
            if self.square_png:
                caps["square_png"] = True
            if self.max_input_bytes is not None:
                caps["max_input_bytes"] = self.max_input_bytes
        if self.prompt:
            caps["max_prompt_chars"] = self.max_prompt
        if self.sizes:
            caps["sizes"] = list(self.sizes)
        if self.size_grid is not None:
            caps["size_rule"] = self.size_grid.describe()
        if self.values:
            caps["values"] = {k: list(v) for k, v in self.values.items() if k in self.params}
        return caps


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One public model id: the operations it serves and what they cost."""

    id: str
    provider_types: tuple[str, ...]
    upstream_model: str
    price: Price
    operations: Mapping[Operation, OperationRules]
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS  # the largest image the model makes

    def serves(self, operation: Operation, provider_type: str) -> bool:
        """Whether a route of `provider_type` can do `operation` for this model."""
        rules = self.operations.get(operation)
        return rules is not None and provider_type in (rules.provider_types or self.provider_types)

    def rules(self, operation: Operation) -> OperationRules:
        """The rules of `operation`; a 400 naming `model` when the model does not serve it."""
        try:
            return self.operations[operation]
        except KeyError:
            served = ", ".join(_OPERATION_NAMES[op] for op in self.operations) or "nothing"
            raise InvalidRequest(f"'{self.id}' does not serve image {_OPERATION_NAMES[operation]}; it serves "
                                 f"{served}.", param="model", code="unsupported_operation") from None

    def output_bytes(self, size: tuple[int, int] | None) -> int:
        """The most bytes one output image can legitimately take: four a pixel of the requested size (of
        the largest the model makes when none is sent), plus room for metadata. Upstream answers and
        downloads are read no further than what this allows."""
        pixels = self.max_output_pixels if size is None else min(size[0] * size[1], self.max_output_pixels)
        return pixels * _BYTES_PER_PIXEL + _OUTPUT_SLACK

    def describe(self) -> dict[str, Any]:
        """The capabilities as listed by GET /v1/models: each operation's rules."""
        return {"operations": {_OPERATION_NAMES[op]: rules.describe() for op, rules in self.operations.items()}}


_RULE_KEYS = {"provider_types", "default", "max_images", "min_images", "max_n", "async", "stream", "mask",
              "input_formats", "max_input_bytes", "square_png", "needs_alpha", "prompt", "params", "strip", "refuse",
              "sizes", "size_grid", "values", "max_prompt"}


def _rules(raw: Mapping[str, Any], default_values: Mapping[str, Any]) -> OperationRules:
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
    values = {k: tuple(v) for k, v in default_values.items()}
    values.update({k: tuple(v) for k, v in raw.get("values", {}).items()})
    grid = raw.get("size_grid")
    return OperationRules(
        max_images=int(raw["max_images"]),
        min_images=int(raw.get("min_images", 1 if int(raw["max_images"]) else 0)),
        max_n=int(raw.get("max_n", MAX_N)),
        supports_async=bool(raw.get("async", False)),
        supports_stream=bool(raw.get("stream", False)),
        supports_mask=bool(raw.get("mask", True)),
        input_formats=frozenset(raw.get("input_formats", ("png", "jpeg", "webp"))),
        max_input_bytes=int(raw["max_input_bytes"]) if "max_input_bytes" in raw else None,
        square_png=bool(raw.get("square_png", False)),
        needs_alpha=bool(raw.get("needs_alpha", False)),
        prompt=bool(raw.get("prompt", True)),
        params=frozenset(raw.get("params", ())),
        strip=frozenset(raw.get("strip", ())),
        refuse=frozenset(raw.get("refuse", ())),
        sizes=tuple(raw.get("sizes", ())),
        size_grid=SizeGrid(**grid) if grid else None,
        values=values,
        max_prompt=int(raw.get("max_prompt", 32000)),
        provider_types=tuple(raw.get("provider_types", ())),
        default=bool(raw.get("default", False)),
    )


def spec_from_mapping(model_id: str, raw: Mapping[str, Any],
                      default_values: Mapping[str, Any] | None = None) -> ModelSpec:
    """Build a ModelSpec from one catalog entry (TOML table): model-wide rules, and a table per operation
    served (`edit`, `generate`, `variation`) holding what differs for it."""
    model_keys = {"provider_types", "upstream_model", "pricing", "max_output_pixels", *OPERATIONS}
    shared = {k: v for k, v in raw.items() if k not in model_keys}
    operations = {op: _rules({**shared, **raw[op]}, default_values or {}) for op in OPERATIONS if op in raw}
    if not operations:
        raise ValueError(f"{model_id!r} serves no operation")
    return ModelSpec(
        id=model_id,
        provider_types=tuple(raw["provider_types"]),
        upstream_model=raw.get("upstream_model", model_id),
        price=price_from_mapping(raw.get("pricing", {"kind": "free"})),
        operations=operations,
        max_output_pixels=int(raw.get("max_output_pixels", DEFAULT_MAX_OUTPUT_PIXELS)),
    )
