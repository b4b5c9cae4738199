"""Prices and costs. Every amount is an integer number of micro-dollars (1 USD = 1,000,000)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

from imagegate.core.usage import TokenUsage

MICROS_PER_USD = 1_000_000

# Output image tokens of GPT Image models per quality at 1024x1024; other sizes scale with pixels.
_OUTPUT_TOKENS_1024 = {"low": 272, "medium": 1056, "high": 4160}
_WORST_INPUT_IMAGE_TOKENS = 6_500  # one source image at high input fidelity
_PARTIAL_IMAGE_TOKENS = 100  # output tokens OpenAI bills for each partial image of a stream
_LARGEST_AUTO_SIZE = (1536, 1024)


def usd_to_micros(usd: float | str | Decimal) -> int:
    return int((Decimal(str(usd)) * MICROS_PER_USD).to_integral_value(ROUND_CEILING))


def micros_to_usd(micros: int) -> float:
    return micros / MICROS_PER_USD


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True, slots=True)
class CostInputs:
    """What a price needs to know about one job."""

    n: int
    prompt_chars: int
    input_pixels: tuple[int, ...]  # width*height of each source image
    size: tuple[int, int] | None  # requested output size, None for auto
    quality: str | None
    partial_images: int = 0  # streamed partial images per output


@dataclass(frozen=True, slots=True)
class Price:
    """A model's price. `kind` is "tokens", "per_image", "megapixels" or "free".

    Token rates are micro-dollars per one million tokens; other rates are micro-dollars. A per-image price
    may depend on the size (`by_size` keys "WxH") or on quality and size ("QUALITY/WxH"); a request that
    names no quality or size is priced at `default_quality` and `default_size`.
    """

    kind: str
    rates: Mapping[str, int] = field(default_factory=dict)
    by_size: Mapping[str, int] = field(default_factory=dict)
    default_quality: str | None = None
    default_size: str | None = None

    def describe(self) -> dict[str, Any]:
        """The price as listed by GET /v1/models, in USD."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "tokens":
            out["usd_per_1m_tokens"] = {k: micros_to_usd(v) for k, v in self.rates.items()}
        else:
            out.update({f"{k}_usd": micros_to_usd(v) for k, v in self.rates.items()})
        if self.by_size:
            out["per_image_usd_by_size"] = {k: micros_to_usd(v) for k, v in self.by_size.items()}
        if self.default_quality is not None:
            out["default_quality"] = self.default_quality
        if self.default_size is not None:
            out["default_size"] = self.default_size
        return out

    # --- estimates: the worst plausible cost, held before any upstream call ------------------------
    def estimate(self, c: CostInputs) -> int:
        if self.kind == "tokens":
            text = _ceil_div(c.prompt_chars, 2) + 16
            images = _WORST_INPUT_IMAGE_TOKENS * len(c.input_pixels)
            quality = c.quality if c.quality in _OUTPUT_TOKENS_1024 else "high"
            width, height = c.size or _LARGEST_AUTO_SIZE
            per_image = _ceil_div(_OUTPUT_TOKENS_1024[quality] * width * height, 1024 * 1024)
            per_image += _PARTIAL_IMAGE_TOKENS * c.partial_images
            return self._tokens(text_in=text, image_in=images, image_out=per_image * c.n)
        return self._per_output(c)

    # --- actual cost, from what the upstream reported -----------------------------------------------
    def actual(self, c: CostInputs, usage: TokenUsage | None) -> int:
        """The cost of a finished job. Token-priced models are charged from the upstream's token counts;
        without usable counts (none reported, or not numbers), from the price table: the output tokens of
        the requested size and quality, as `estimate` prices them, with no input tokens."""
        if self.kind == "tokens" and usage is not None:
            return self._from_usage(usage)
        return self._per_output(c)

    def _per_output(self, c: CostInputs) -> int:
        if self.kind == "per_image":
            size_key = f"{c.size[0]}x{c.size[1]}" if c.size else self.default_size
            quality_key = f"{c.quality or self.default_quality}/{size_key}"
            if quality_key in self.by_size:
                unit = self.by_size[quality_key]
            elif size_key and size_key in self.by_size:
                unit = self.by_size[size_key]
            elif self.by_size:
                unit = max(self.by_size.values())
            else:
                unit = self.rates.get("per_image", 0)
            return unit * c.n + self.rates.get("per_input_image", 0) * len(c.input_pixels)
        if self.kind == "megapixels":
            # Without a size the output follows the first source's size (at least one megapixel).
            pixels = c.size[0] * c.size[1] if c.size else (c.input_pixels[0] if c.input_pixels else 0)
            out_mp = max(1, _ceil_div(pixels, 1_000_000))
            in_mp = sum(_ceil_div(p, 1_000_000) for p in c.input_pixels)
            per_image = self.rates["first_mp"] + (out_mp - 1) * self.rates["extra_mp"]
            return per_image * c.n + in_mp * self.rates["input_mp"]
        if self.kind == "tokens":  # no usage reported: price the outputs from the token table
            return self.estimate(CostInputs(c.n, c.prompt_chars, (), c.size, c.quality, c.partial_images))
        return 0

    def _from_usage(self, usage: TokenUsage) -> int:
        if usage.text_in is None and usage.image_in is None:  # no breakdown: all input counts as image input
            text_in, image_in = 0, usage.input_tokens
        else:
            text_in, image_in = usage.text_in or 0, usage.image_in or 0
        cached = usage.cached_in or 0
        text_cached = min(cached, text_in)
        image_cached = min(cached - text_cached, image_in)
        if usage.image_out is None and usage.text_out is None:
            image_out, text_out = usage.output_tokens, 0
        else:
            image_out, text_out = usage.image_out or 0, usage.text_out or 0
        return self._tokens(text_in=text_in - text_cached, text_cached=text_cached,
                            image_in=image_in - image_cached, image_cached=image_cached,
                            image_out=image_out, text_out=text_out)

    def _tokens(self, **counts: int) -> int:
        total = 0
        for name, count in counts.items():
            rate = self.rates.get(name, self.rates.get("image_out", 0) if name == "text_out" else 0)
            total += count * rate
        return _ceil_div(total, 1_000_000)


def price_from_mapping(raw: Mapping[str, Any]) -> Price:
    """Build a Price from a catalog or config table (amounts in USD)."""
    kind = str(raw.get("kind", "free"))
    if kind not in ("tokens", "per_image", "megapixels", "free"):
        raise ValueError(f"unknown price kind {kind!r}")
    named = ("kind", "by_size", "default_quality", "default_size")
    rates = {k: usd_to_micros(v) for k, v in raw.items() if k not in named}
    by_size = {k: usd_to_micros(v) for k, v in raw.get("by_size", {}).items()}
    quality, size = raw.get("default_quality"), raw.get("default_size")
    return Price(kind=kind, rates=rates, by_size=by_size, default_quality=None if quality is None else str(quality),
                 default_size=None if size is None else str(size))
