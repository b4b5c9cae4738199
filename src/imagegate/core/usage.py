"""Token counts an upstream reported for one job, as checked values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """What the upstream says one job used, in tokens. Adapters build it only from counts they checked
    (non-negative integers within reason); an answer whose counts are not usable carries no TokenUsage."""

    input_tokens: int
    output_tokens: int
    text_in: int | None = None  # the breakdown, where the upstream gave one
    image_in: int | None = None
    cached_in: int | None = None
    text_out: int | None = None
    image_out: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_json(self) -> dict[str, Any]:
        """The counts in the Images API's usage shape, as the client is shown them."""
        out: dict[str, Any] = {"total_tokens": self.total_tokens, "input_tokens": self.input_tokens,
                               "output_tokens": self.output_tokens}
        details_in = {k: v for k, v in (("text_tokens", self.text_in), ("image_tokens", self.image_in),
                                        ("cached_tokens", self.cached_in)) if v is not None}
        details_out = {k: v for k, v in (("text_tokens", self.text_out), ("image_tokens", self.image_out))
                       if v is not None}
        if details_in:
            out["input_tokens_details"] = details_in
        if details_out:
            out["output_tokens_details"] = details_out
        return out


def combined(usages: list[TokenUsage | None]) -> TokenUsage | None:
    """The counts of several answers of one job added up (a stream's final images); None if any is missing."""
    if not usages or any(u is None for u in usages):
        return None

    def total(name: str) -> int | None:
        values = [getattr(u, name) for u in usages]
        return None if any(v is None for v in values) else sum(values)

    return TokenUsage(input_tokens=sum(u.input_tokens for u in usages if u is not None),
                      output_tokens=sum(u.output_tokens for u in usages if u is not None),
                      text_in=total("text_in"), image_in=total("image_in"), cached_in=total("cached_in"),
                      text_out=total("text_out"), image_out=total("image_out"))
