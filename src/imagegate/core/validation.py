"""Request validation: generic field rules, then the rules a model declares in its ModelSpec."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from imagegate.core.capabilities import ModelSpec
from imagegate.core.errors import InvalidImage, InvalidRequest, TooManyImages
from imagegate.core.media import SourceImage

MAX_N = 10
ALIASES = {"compression": "output_compression"}
_STRING_OPTIONS = frozenset({"size", "quality", "background", "output_format", "moderation", "input_fidelity",
                             "user", "aspect_ratio", "resolution"})
_INT_OPTIONS = {"output_compression": (0, 100), "partial_images": (0, 3), "seed": (0, 2**32 - 1)}
RESPONSE_FORMATS = ("url", "b64_json")


@dataclass(frozen=True, slots=True)
class CommonFields:
    """The fields every edit has, parsed from the request body."""

    n: int
    response_format: str
    run_async: bool
    options: dict[str, Any]


def _as_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be an integer.", param=name)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise InvalidRequest(f"'{name}' must be an integer.", param=name) from None
    if not isinstance(value, int):
        raise InvalidRequest(f"'{name}' must be an integer.", param=name)
    if not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be between {low} and {high}; got {value}.", param=name)
    return value


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise InvalidRequest(f"'{name}' must be true or false.", param=name)


def _as_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"'{name}' must be a string.", param=name)
    return value.strip()


def parse_common(fields: Mapping[str, Any]) -> CommonFields:
    """Coerce the optional fields (strings from multipart, JSON types from JSON) and check their ranges.

    Fields that are absent stay absent; a JSON `null` counts as absent. Unknown fields are ignored.
    """
    n = _as_int("n", fields["n"], 1, MAX_N) if fields.get("n") is not None else 1
    response_format = "url"
    if fields.get("response_format") is not None:
        response_format = _as_str("response_format", fields["response_format"])
        if response_format not in RESPONSE_FORMATS:
            raise InvalidRequest("'response_format' must be 'url' or 'b64_json'.", param="response_format")
    run_async = _as_bool("async", fields["async"]) if fields.get("async") is not None else False
    if fields.get("stream") is not None and _as_bool("stream", fields["stream"]):
        raise InvalidRequest("Streaming image edits are not supported; leave 'stream' unset or false.",
                             param="stream")
    options: dict[str, Any] = {}
    for raw_name, value in fields.items():
        name = ALIASES.get(raw_name, raw_name)
        if value is None:
            continue
        if name in _STRING_OPTIONS:
            options[name] = _as_str(name, value)
        elif name in _INT_OPTIONS:
            options[name] = _as_int(name, value, *_INT_OPTIONS[name])
    return CommonFields(n=n, response_format=response_format, run_async=run_async, options=options)


def parse_size(value: str) -> tuple[int, int] | None:
    """`WIDTHxHEIGHT` as a pair, None for anything else."""
    width, sep, height = value.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        return None
    return int(width), int(height)


def check_request(spec: ModelSpec, *, prompt: str, image_count: int, has_mask: bool, run_async: bool,
                  options: Mapping[str, Any]) -> dict[str, Any]:
    """Check what can be checked before any image is fetched; return the options to forward."""
    if not prompt.strip():
        raise InvalidRequest("'prompt' is required.", param="prompt")
    if len(prompt) > spec.max_prompt:
        raise InvalidRequest(f"'prompt' is longer than {spec.max_prompt} characters, the most "
                             f"'{spec.id}' takes.", param="prompt")
    if image_count == 0:
        raise InvalidRequest("At least one source image is required.", param="image")
    if image_count > spec.max_images:
        raise TooManyImages(f"'{spec.id}' accepts at most {spec.max_images} source image"
                            f"{'s' if spec.max_images != 1 else ''}; got {image_count}.", param="image")
    if has_mask and not spec.supports_mask:
        raise InvalidRequest(f"'{spec.id}' does not take a mask.", param="mask")
    if run_async and not spec.supports_async:
        raise InvalidRequest(f"'{spec.id}' does not support async requests.", param="async")
    for name in sorted(spec.refuse & options.keys()):
        raise InvalidRequest(f"'{name}' is not supported for '{spec.id}' edits.", param=name)
    forwarded: dict[str, Any] = {}
    for name, value in options.items():
        if name in spec.strip:
            continue
        allowed = spec.values.get(name)
        if allowed is not None and name in spec.params and value not in allowed:
            raise InvalidRequest(f"'{name}' must be one of {', '.join(allowed)} for '{spec.id}'; "
                                 f"got '{value}'.", param=name)
        if name == "size" and name in spec.params:  # elsewhere `size` is not forwarded, like any field
            _check_size(spec, value)                  # the model does not take
        if name in spec.params:
            forwarded[name] = value
    return forwarded


def _check_size(spec: ModelSpec, value: str) -> None:
    if value in spec.sizes:
        return
    dims = parse_size(value)
    if spec.size_grid is not None and dims is not None and spec.size_grid.allows(*dims):
        return
    if spec.size_grid is not None:
        expected = spec.size_grid.describe()
    else:
        expected = "one of " + ", ".join(spec.sizes)
    raise InvalidRequest(f"Invalid size '{value}' for '{spec.id}': expected {expected}.", param="size")


def check_images(spec: ModelSpec, images: Sequence[SourceImage], mask: SourceImage | None) -> None:
    """Check the resolved images against the model's rules."""
    for image in images:
        if image.info.format not in spec.input_formats:
            raise InvalidImage(f"'{image.param}' must be {' or '.join(sorted(spec.input_formats)).upper()} "
                               f"for '{spec.id}'.", param=image.param)
        if spec.square_png and image.info.width != image.info.height:
            raise InvalidRequest(f"'{image.param}' must be square for '{spec.id}'; it is "
                                 f"{image.info.width}x{image.info.height}.", param=image.param)
    if mask is not None:
        first = images[0].info
        if mask.info.format != "png":
            raise InvalidImage("'mask' must be a PNG image.", param=mask.param)
        if (mask.info.width, mask.info.height) != (first.width, first.height):
            raise InvalidRequest(f"'mask' must have the same dimensions as the first image "
                                 f"({first.width}x{first.height}); it is {mask.info.width}x"
                                 f"{mask.info.height}.", param=mask.param)
        if not mask.info.has_alpha:
            raise InvalidRequest("'mask' must have an alpha channel; its fully transparent pixels mark "
                                 "where to edit.", param=mask.param)
    elif spec.needs_alpha and not images[0].info.has_alpha:
        raise InvalidRequest(f"Without a mask, '{images[0].param}' must have transparent areas (an alpha "
                             f"channel) for '{spec.id}' to edit.", param=images[0].param)
