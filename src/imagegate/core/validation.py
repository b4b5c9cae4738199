"""Request validation: generic field rules, then the rules a model declares for an operation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from imagegate.core.capabilities import MAX_N, OperationRules
from imagegate.core.errors import InvalidImage, InvalidRequest, TooManyImages
from imagegate.core.jobs import ImageRequest, Operation
from imagegate.core.media import SourceImage

ALIASES = {"compression": "output_compression"}
_STRING_OPTIONS = frozenset({"size", "quality", "background", "output_format", "moderation", "input_fidelity",
                             "user", "aspect_ratio", "resolution", "style", "safety_identifier"})
_INT_OPTIONS = {"output_compression": (0, 100), "partial_images": (0, 3), "seed": (0, 2**32 - 1)}
RESPONSE_FORMATS = ("url", "b64_json")
_NOUNS = {"edit": "edits", "generate": "generations", "variation": "variations"}


@dataclass(frozen=True, slots=True)
class CommonFields:
    """The fields every image request has, parsed from its body."""

    n: int
    response_format: str | None  # None: not sent (the operator's default applies)
    run_async: bool
    stream: bool
    options: dict[str, Any]


def kind_of(value: Any) -> str:
    """What a JSON value is, for messages: 'a string', 'a number', 'an object', …"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else "a file"


def _as_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise InvalidRequest(f"'{name}' must be an integer; got '{value[:40]}'.", param=name) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"'{name}' must be an integer; got {kind_of(value)}.", param=name)
    if not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be between {low} and {high}; got {value}.", param=name)
    return value


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise InvalidRequest(f"'{name}' must be true or false; got {kind_of(value)}.", param=name)


def as_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"'{name}' must be a string; got {kind_of(value)}.", param=name)
    return value.strip()


def parse_common(fields: Mapping[str, Any]) -> CommonFields:
    """Coerce the optional fields (strings from multipart, JSON types from JSON) and check their ranges.

    Fields that are absent stay absent; a JSON `null` counts as absent. Unknown fields are ignored.
    """
    n = _as_int("n", fields["n"], 1, MAX_N) if fields.get("n") is not None else 1
    response_format = None
    if fields.get("response_format") is not None:
        response_format = as_str("response_format", fields["response_format"])
        if response_format not in RESPONSE_FORMATS:
            raise InvalidRequest("'response_format' must be 'url' or 'b64_json'.", param="response_format")
    run_async = _as_bool("async", fields["async"]) if fields.get("async") is not None else False
    stream = _as_bool("stream", fields["stream"]) if fields.get("stream") is not None else False
    options: dict[str, Any] = {}
    for raw_name, value in fields.items():
        name = ALIASES.get(raw_name, raw_name)
        if value is None:
            continue
        if name in _STRING_OPTIONS:
            options[name] = as_str(name, value)
        elif name in _INT_OPTIONS:
            options[name] = _as_int(name, value, *_INT_OPTIONS[name])
    return CommonFields(n=n, response_format=response_format, run_async=run_async, stream=stream, options=options)


def parse_size(value: str) -> tuple[int, int] | None:
    """`WIDTHxHEIGHT` as a pair, None for anything else."""
    width, sep, height = value.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        return None
    return int(width), int(height)


def check_request(rules: OperationRules, model: str, request: ImageRequest) -> dict[str, Any]:
    """Check what can be checked before any image is fetched; return the options to forward."""
    what = f"'{model}' {_NOUNS[request.operation]}"
    _check_prompt(rules, model, request.operation, request.prompt)
    count = len(request.images)
    if count < rules.min_images:
        raise InvalidRequest("At least one source image is required." if rules.min_images == 1 else
                             f"{what} need at least {rules.min_images} source images.", param="image")
    if count > rules.max_images:
        if rules.max_images == 0:
            raise InvalidRequest(f"{what} take no source image; send images to /v1/images/edits.", param="image")
        raise TooManyImages(f"'{model}' accepts at most {rules.max_images} source image"
                            f"{'s' if rules.max_images != 1 else ''}; got {count}.", param="image")
    if request.mask is not None and not (rules.max_images and rules.supports_mask):
        raise InvalidRequest(f"{what} take no mask.", param="mask")
    if request.n > rules.max_n:
        raise InvalidRequest(f"{what} make at most {rules.max_n} image{'s' if rules.max_n != 1 else ''} a request; "
                             f"got n={request.n}.", param="n")
    if request.run_async and not rules.supports_async:
        raise InvalidRequest(f"{what} do not support async requests.", param="async")
    if request.stream and not rules.supports_stream:
        raise InvalidRequest(f"{what} cannot stream; leave 'stream' unset or false.", param="stream")
    if request.stream and request.run_async:
        raise InvalidRequest("A request may stream or be async, not both.", param="stream")
    options = request.options
    for name in sorted(rules.refuse & options.keys()):
        raise InvalidRequest(f"'{name}' is not supported for {what}.", param=name)
    forwarded: dict[str, Any] = {}
    for name, value in options.items():
        if name in rules.strip or name not in rules.params:  # a field the model does not take is not sent
            continue
        allowed = rules.values.get(name)
        if allowed is not None and value not in allowed:
            raise InvalidRequest(f"'{name}' must be one of {', '.join(allowed)} for '{model}'; got '{value}'.",
                                 param=name)
        if name == "size":
            _check_size(rules, model, value)
        forwarded[name] = value
    return forwarded


def _check_prompt(rules: OperationRules, model: str, operation: Operation, prompt: str) -> None:
    if not rules.prompt:
        if prompt.strip():
            raise InvalidRequest(f"'{model}' {_NOUNS[operation]} take no prompt.", param="prompt")
        return
    if not prompt.strip():
        raise InvalidRequest("'prompt' is required.", param="prompt")
    if len(prompt) > rules.max_prompt:
        raise InvalidRequest(f"'prompt' is longer than {rules.max_prompt} characters, the most '{model}' takes.",
                             param="prompt")


def _check_size(rules: OperationRules, model: str, value: str) -> None:
    if value in rules.sizes:
        return
    dims = parse_size(value)
    if rules.size_grid is not None and dims is not None and rules.size_grid.allows(*dims):
        return
    if rules.size_grid is not None:
        expected = rules.size_grid.describe()
    else:
        expected = "one of " + ", ".join(rules.sizes)
    raise InvalidRequest(f"Invalid size '{value}' for '{model}': expected {expected}.", param="size")


def check_images(rules: OperationRules, model: str, images: Sequence[SourceImage], mask: SourceImage | None) -> None:
    """Check the resolved images against the operation's rules."""
    for image in images:
        if image.info.format not in rules.input_formats:
            raise InvalidImage(f"'{image.param}' must be {' or '.join(sorted(rules.input_formats)).upper()} "
                               f"for '{model}'.", param=image.param)
        if rules.square_png and image.info.width != image.info.height:
            raise InvalidRequest(f"'{image.param}' must be square for '{model}'; it is "
                                 f"{image.info.width}x{image.info.height}.", param=image.param)
        if rules.max_input_bytes is not None and image.size > rules.max_input_bytes:
            raise InvalidRequest(f"'{image.param}' must be smaller than {rules.max_input_bytes // (1024 * 1024)} MB "
                                 f"for '{model}'.", param=image.param, code="image_too_large")
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
    elif rules.needs_alpha and images and not images[0].info.has_alpha:
        raise InvalidRequest(f"Without a mask, '{images[0].param}' must have transparent areas (an alpha "
                             f"channel) for '{model}' to edit.", param=images[0].param)
