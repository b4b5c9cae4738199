"""Protocol rules shared by the OpenAI Images API emulator: model families, parameter tables, OpenAI's error
wording, typed value readers, and the real images and token counts it answers with.

Wire rules: ``/work/shared/reference/providers.md`` §1 and ``/work/notes/openai-images-spec.md``. Everything here
is pure (no server state); :mod:`tests.emulators.openai_emulator` holds the HTTP side.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from PIL import Image

from .base import Reject
from .base import json_kind as _json_kind
from .streams import sse_frame

try:  # orjson is a project dependency; fall back to json so the emulator also runs without it.
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

except ImportError:  # pragma: no cover

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


# ------------------------------------------------------------------------------------------------------------
# Protocol tables (providers.md §1.2-§1.5)
# ------------------------------------------------------------------------------------------------------------

DALLE2 = "dall-e-2"
DALLE3 = "dall-e-3"
GPT_IMAGE_1 = "gpt-image-1"
GPT_IMAGE_1_MINI = "gpt-image-1-mini"
GPT_IMAGE_1_5 = "gpt-image-1.5"
GPT_IMAGE_2 = "gpt-image-2"

#: model id -> rule family. Model lists are configuration (the reference's time caveat), pass ``models=``.
DEFAULT_MODELS: dict[str, str] = {
    "dall-e-2": DALLE2,
    "dall-e-3": DALLE3,
    "gpt-image-1": GPT_IMAGE_1,
    "gpt-image-1-mini": GPT_IMAGE_1_MINI,
    "gpt-image-1.5": GPT_IMAGE_1_5,
    "chatgpt-image-latest": GPT_IMAGE_1_5,
    "gpt-image-2": GPT_IMAGE_2,
    "gpt-image-2-2026-04-21": GPT_IMAGE_2,
}

MULTIPART_PARAMS = frozenset(
    {
        "image",
        "image[]",
        "prompt",
        "mask",
        "model",
        "n",
        "size",
        "quality",
        "response_format",
        "output_format",
        "output_compression",
        "background",
        "input_fidelity",
        "stream",
        "partial_images",
        "user",
    }
)
JSON_PARAMS = frozenset(
    {
        "model",
        "prompt",
        "images",
        "mask",
        "n",
        "size",
        "quality",
        "input_fidelity",
        "output_format",
        "output_compression",
        "background",
        "moderation",
        "stream",
        "partial_images",
        "user",
    }
)
#: Parameters dall-e-2 does not know at all ("Unknown parameter: 'input_fidelity'." [3P]).
DALLE2_UNKNOWN = (
    "input_fidelity",
    "background",
    "output_format",
    "output_compression",
    "moderation",
    "stream",
    "partial_images",
)
FILE_PARAMS = frozenset({"image", "image[]", "mask"})
#: Families ``POST /v1/images/edits`` serves (dall-e-3 never could edit).
EDIT_FAMILIES = frozenset({DALLE2, GPT_IMAGE_1, GPT_IMAGE_1_MINI, GPT_IMAGE_1_5, GPT_IMAGE_2})
DALLE_FAMILIES = frozenset({DALLE2, DALLE3})

#: ``CreateImageRequest`` (JSON) [SPEC], plus ``safety_identifier`` (openai-python 3.57 sends it).
GENERATION_PARAMS = frozenset(
    {
        "prompt",
        "model",
        "n",
        "quality",
        "response_format",
        "output_format",
        "output_compression",
        "stream",
        "partial_images",
        "size",
        "moderation",
        "background",
        "style",
        "user",
        "safety_identifier",
    }
)
#: Generation parameters only GPT image models know; DALL·E answers "Unknown parameter" [3P: 'moderation' on
#: dall-e-3, 'background'/'output_format' on dall-e-2].
GPT_ONLY_GENERATION_PARAMS = (
    "background",
    "moderation",
    "output_format",
    "output_compression",
    "stream",
    "partial_images",
)
#: ``CreateImageVariationRequest`` (multipart) [SPEC]: no prompt.
VARIATION_PARAMS = frozenset({"image", "model", "n", "response_format", "size", "user"})
#: Longest prompt per family (characters).
PROMPT_MAX = {DALLE2: 1000, DALLE3: 4000}
GPT_PROMPT_MAX = 32000

IMAGE_MIMES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
_PIL_FORMATS = ("PNG", "JPEG", "WEBP")
_MIME_OF = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}

DALLE2_SIZES = ("256x256", "512x512", "1024x1024")
DALLE3_SIZES = ("1024x1024", "1792x1024", "1024x1792")
DALLE3_QUALITIES = ("standard", "hd", "auto")
STYLES = ("vivid", "natural")
GPT_SIZES = ("1024x1024", "1024x1536", "1536x1024", "auto")
GPT_QUALITIES = ("low", "medium", "high", "auto")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
BACKGROUNDS = ("transparent", "opaque", "auto")
FIDELITIES = ("high", "low")
MODERATIONS = ("low", "auto")
RESPONSE_FORMATS = ("url", "b64_json")
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")

MB = 1024 * 1024
GPT_IMAGE_MAX_BYTES = 50 * MB
DALLE2_MAX_BYTES = 4 * MB
MASK_MAX_BYTES = 4 * MB
MAX_IMAGES = 16
IMAGE_URL_MAX_CHARS = 20_971_520

# gpt-image-2 arbitrary sizes: multiples of 16, aspect between 1:3 and 3:1, edge <= 3840, pixels in
# [655_360, 8_294_400] (3840x2160) [SPEC + 3P].
GPT2_MAX_EDGE = 3840
GPT2_MIN_PIXELS = 655_360
GPT2_MAX_PIXELS = 3840 * 2160

#: Output tokens per image (§1.5 table) for gpt-image-1 / -1.5 / -1-mini.
_OUT_TOKENS: dict[tuple[int, int], dict[str, int]] = {
    (1024, 1024): {"low": 272, "medium": 1056, "high": 4160},
    (1024, 1536): {"low": 408, "medium": 1584, "high": 6240},
    (1536, 1024): {"low": 400, "medium": 1568, "high": 6208},
}
#: gpt-image-2 per-image 1024x1024 equivalents (§1.9 prices / $30 per M; medium ~1767 [3P]); scaled by area.
_GPT2_OUT_TOKENS_1024 = {"low": 200, "medium": 1767, "high": 7033}
_HIGH_FIDELITY_EXTRA_TOKENS = 4096

_RATE_HEADERS = {
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "499",
    "x-ratelimit-reset-requests": "120ms",
    "x-ratelimit-limit-tokens": "100000",
    "x-ratelimit-remaining-tokens": "99000",
    "x-ratelimit-reset-tokens": "600ms",
}

_PALETTE = (
    (231, 76, 60),
    (46, 204, 113),
    (52, 152, 219),
    (241, 196, 15),
    (155, 89, 182),
    (26, 188, 156),
    (230, 126, 34),
    (236, 240, 241),
    (52, 73, 94),
    (192, 57, 43),
    (39, 174, 96),
    (41, 128, 185),
    (243, 156, 18),
    (142, 68, 173),
    (22, 160, 133),
    (127, 140, 141),
)

_INT_RE = re.compile(r"[+-]?\d+")
_SIZE_RE = re.compile(r"(\d{1,6})x(\d{1,6})")
_DATA_URL_RE = re.compile(r"data:([^;,]*)((?:;[^;,]*)*?);base64,(.*)", re.DOTALL)

class _APIError(Reject):
    """OpenAI's error envelope: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, {"error": {"message": message, "type": type, "param": param, "code": code}},
                         headers)


@dataclass
class _Img:
    param: str  # "image", "mask", "images[0]", ...
    index: int  # 1-based position among the input images (0 for the mask)
    data: bytes
    content_type: str | None
    width: int = 0
    height: int = 0
    mode: str = ""


# ------------------------------------------------------------------------------------------------------------
# Error builders (OpenAI wording where it is known)
# ------------------------------------------------------------------------------------------------------------


def _quote_list(values: Iterable[str]) -> str:
    vals = [f"'{v}'" for v in values]
    if len(vals) <= 1:
        return "".join(vals)
    if len(vals) == 2:
        return f"{vals[0]} and {vals[1]}"
    return ", ".join(vals[:-1]) + f", and {vals[-1]}"


def _unknown_param(name: str) -> _APIError:
    return _APIError(400, f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")


def _missing(name: str) -> _APIError:
    return _APIError(
        400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
    )


def _invalid_value(name: str, value: Any, allowed: Iterable[str]) -> _APIError:
    return _APIError(
        400,
        f"Invalid value: '{value}'. Supported values are: {_quote_list(allowed)}.",
        param=name,
        code="invalid_value",
    )


def _invalid_type(name: str, expected: str, got: str) -> _APIError:
    return _APIError(
        400,
        f"Invalid type for '{name}': expected {expected}, but got {got} instead.",
        param=name,
        code="invalid_type",
    )


def _duplicate(name: str) -> _APIError:
    return _APIError(
        400,
        f"Duplicate parameter: '{name}'. You provided multiple values for this parameter, whereas only one "
        "is "
        f"allowed. If you are trying to provide a list of values, use the array syntax instead e.g. "
        f"'{name}[]=<value>'.",
        param=name,
        code="duplicate_parameter",
    )


def _bad_mime(param: str, mime: str | None, allowed: Iterable[str] = IMAGE_MIMES) -> _APIError:
    allowed = sorted(allowed, key=lambda m: ("image/jpeg", "image/png", "image/webp").index(m))
    return _APIError(
        400,
        f"Invalid file '{param}': unsupported mimetype ('{mime or 'application/octet-stream'}'). "
        f"Supported file formats are {_quote_list(allowed)}.",
        param=param,
        code="unsupported_file_mimetype",
    )


def _invalid_image(img: _Img) -> _APIError:
    what = "mask" if img.index == 0 else f"image {img.index}"
    return _APIError(
        400,
        f"Invalid image file or mode for {what}, please check your image file.",
        param=img.param,
        code="invalid_image_file",
    )


def _int_bounds(name: str, value: int, lo: int, hi: int) -> None:
    if value < lo:
        raise _APIError(
            400,
            f"Invalid '{name}': integer below minimum value. Expected a value >= {lo}, but got {value} "
            "instead.",
            param=name,
            code="integer_below_min_value",
        )
    if value > hi:
        raise _APIError(
            400,
            f"Invalid '{name}': integer above maximum value. Expected a value <= {hi}, but got {value} "
            "instead.",
            param=name,
            code="integer_above_max_value",
        )


def _mask_key(key: str) -> str:
    if len(key) <= 8:
        return key
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


# ------------------------------------------------------------------------------------------------------------
# Value readers shared by the multipart (all strings) and JSON (typed) encodings
# ------------------------------------------------------------------------------------------------------------


def _get_str(raw: Mapping[str, Any], name: str) -> str | None:
    v = raw.get(name)
    if v is None:
        return None
    if not isinstance(v, str):
        raise _invalid_type(name, "a string", _json_kind(v))
    return v


def _get_int(raw: Mapping[str, Any], name: str, form: bool) -> int | None:
    v = raw.get(name)
    if v is None:
        return None
    if form:
        s = v.strip()
        if not _INT_RE.fullmatch(s):
            raise _invalid_type(name, "an integer", "a string")
        return int(s)
    if isinstance(v, bool) or not isinstance(v, int):
        raise _invalid_type(name, "an integer", _json_kind(v))
    return v


def _get_bool(raw: Mapping[str, Any], name: str, form: bool) -> bool | None:
    v = raw.get(name)
    if v is None:
        return None
    if form:
        low = v.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        raise _invalid_type(name, "a boolean", "a string")
    if not isinstance(v, bool):
        raise _invalid_type(name, "a boolean", _json_kind(v))
    return bool(v)


def _get_enum(raw: Mapping[str, Any], name: str, allowed: Iterable[str]) -> str | None:
    v = _get_str(raw, name)
    if v is not None and v not in allowed:
        raise _invalid_value(name, v, allowed)
    return v


# ------------------------------------------------------------------------------------------------------------
# Parameter checks shared by edits and generations
# ------------------------------------------------------------------------------------------------------------


def _check_body(body: Any, allowed: Iterable[str]) -> None:
    """A JSON request body: an object naming only ``allowed`` parameters."""
    if not isinstance(body, dict):
        raise _APIError(
            400,
            f"Invalid type for request body: expected an object, but got {_json_kind(body)} instead.",
            code="invalid_type",
        )
    for name in body:
        if name not in allowed:
            raise _unknown_param(name)


def _check_prompt(raw: Mapping[str, Any], max_len: int) -> str:
    """The ``prompt`` of a request that has one: a non-empty string of at most ``max_len`` characters."""
    prompt = raw.get("prompt")
    if not isinstance(prompt, str):
        raise _invalid_type("prompt", "a string", _json_kind(prompt))
    if not prompt:
        raise _APIError(
            400,
            "Invalid 'prompt': empty string. Expected a string with minimum length 1, but got an empty string "
            "instead.",
            param="prompt",
            code="empty_string",
        )
    if len(prompt) > max_len:
        raise _APIError(
            400,
            f"Invalid 'prompt': string too long. Expected a string with maximum length {max_len}, but got a "
            f"string with length {len(prompt)} instead.",
            param="prompt",
            code="string_above_max_length",
        )
    return prompt


def _check_gpt2_size(size: str) -> None:
    """gpt-image-2 sizes: ``auto``, the three standard sizes, or any ``WxH`` within the model's limits."""
    if size in GPT_SIZES:
        return
    m = _SIZE_RE.fullmatch(size)
    if m is None:
        raise _APIError(
            400,
            f"Invalid value: '{size}'. Supported values are: 'auto' or a size in the form 'WIDTHxHEIGHT', "
            "e.g. '1536x864'.",
            param="size",
            code="invalid_value",
        )
    w, h = int(m.group(1)), int(m.group(2))
    problems = []
    if w % 16 or h % 16:
        problems.append("width and height must both be multiples of 16")
    if w == 0 or h == 0 or max(w, h) > 3 * min(w, h):
        problems.append("the aspect ratio must be between 1:3 and 3:1")
    if max(w, h) > GPT2_MAX_EDGE:
        problems.append(f"the longest edge must be at most {GPT2_MAX_EDGE}px")
    if w * h > GPT2_MAX_PIXELS:
        problems.append(f"the total pixel count must be at most {GPT2_MAX_PIXELS} (3840x2160)")
    if w * h < GPT2_MIN_PIXELS:
        problems.append(f"the total pixel count must be at least {GPT2_MIN_PIXELS}")
    if problems:
        raise _APIError(
            400, f"Invalid size '{size}': " + "; ".join(problems) + ".", param="size", code="invalid_value"
        )


def _check_gpt_size(family: str, raw: Mapping[str, Any]) -> str:
    """``size`` for a GPT image model (default ``auto``)."""
    size = _get_str(raw, "size") or "auto"
    if family == GPT_IMAGE_2:
        _check_gpt2_size(size)
    elif size not in GPT_SIZES:
        raise _invalid_value("size", size, GPT_SIZES)
    return size


@dataclass
class _GptOutput:
    """The GPT-image-only output options of an edit or generation, checked and defaulted."""

    output_format: str = "png"
    output_compression: int = 100
    background: str = "auto"
    moderation: str = "auto"
    stream: bool = False
    partial_images: int = 0


def _check_gpt_output(raw: Mapping[str, Any], form: bool) -> _GptOutput:
    output_format = _get_enum(raw, "output_format", OUTPUT_FORMATS) or "png"
    comp = _get_int(raw, "output_compression", form)
    if comp is not None:
        _int_bounds("output_compression", comp, 0, 100)
        if output_format == "png" and comp < 100:
            raise _APIError(
                400,
                "Compression less than 100 is not supported for PNG output format.",
                param="output_compression",
                code="invalid_value",
            )
    background = _get_enum(raw, "background", BACKGROUNDS) or "auto"
    if background == "transparent" and output_format == "jpeg":
        raise _APIError(
            400,
            "Transparent background is not supported for the jpeg output format. Use 'png' or 'webp'.",
            param="background",
            code="invalid_value",
        )
    moderation = _get_enum(raw, "moderation", MODERATIONS) or "auto"
    stream = bool(_get_bool(raw, "stream", form))
    p = _get_int(raw, "partial_images", form)
    partial = 0 if p is None else p
    _int_bounds("partial_images", partial, 0, 3)
    return _GptOutput(output_format, 100 if comp is None else comp, background, moderation, stream, partial)


def _check_n(raw: Mapping[str, Any], form: bool) -> int:
    n = _get_int(raw, "n", form)
    n = 1 if n is None else n
    _int_bounds("n", n, 1, 10)
    return n


def _parse_size(size: str) -> tuple[int, int]:
    """``"WxH"`` -> (W, H); ``auto`` resolves to 1024x1024."""
    if size == "auto":
        return 1024, 1024
    w, _, h = size.partition("x")
    return int(w), int(h)


# ------------------------------------------------------------------------------------------------------------
# Server-sent events
# ------------------------------------------------------------------------------------------------------------


def _sse(event: str, payload: Mapping[str, Any]) -> bytes:
    """One SSE frame as OpenAI writes it (:func:`.streams.sse_frame`), its JSON encoded by :func:`_dumps`."""
    return sse_frame(event, payload, _dumps)


# ------------------------------------------------------------------------------------------------------------
# Images: probing inputs, rendering outputs, token accounting
# ------------------------------------------------------------------------------------------------------------


def _probe(data: bytes) -> tuple[str, int, int, str, bool] | None:
    """Header-only read: (format, width, height, mode, has_tRNS) or None if not a PNG/JPEG/WebP."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
                return im.format or "", im.width, im.height, im.mode, "transparency" in im.info
    except Exception:
        return None


def _norm_mime(ct: str | None) -> str | None:
    if ct is None:
        return None
    return ct.split(";", 1)[0].strip().lower()


@lru_cache(maxsize=256)
def _render(width: int, height: int, fmt: str, colour: int, transparent: bool, compression: int) -> bytes:
    """A real image of the requested size: solid colour, or a coloured square on a clear background."""
    rgb = _PALETTE[colour % len(_PALETTE)]
    if transparent:
        im = Image.new("RGBA", (width, height), (*rgb, 0))
        im.paste(
            (*rgb, 255),
            (
                width // 4,
                height // 4,
                max(width // 4 + 1, 3 * width // 4),
                max(height // 4 + 1, 3 * height // 4),
            ),
        )
    else:
        im = Image.new("RGB", (width, height), rgb)
    buf = io.BytesIO()
    if fmt == "jpeg":
        im.convert("RGB").save(buf, "JPEG", quality=max(1, min(95, compression)))
    elif fmt == "webp":
        im.save(buf, "WEBP", quality=max(0, min(100, compression)), method=0)
    else:
        im.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


@lru_cache(maxsize=256)
def _render_b64(width: int, height: int, fmt: str, colour: int, transparent: bool, compression: int) -> str:
    return base64.b64encode(_render(width, height, fmt, colour, transparent, compression)).decode("ascii")


def _image_tokens(width: int, height: int) -> int:
    """Input-image tokens: 65 + 129 per 512px tile (fit in 2048², then short side scaled to 512)."""
    if width <= 0 or height <= 0:
        width = height = 1024
    fit = min(1.0, 2048 / max(width, height))
    w, h = width * fit, height * fit
    s = 512 / min(w, h)
    return 65 + 129 * math.ceil(w * s / 512 - 1e-9) * math.ceil(h * s / 512 - 1e-9)


def _output_tokens(family: str, size: tuple[int, int], quality: str) -> int:
    if family == GPT_IMAGE_2:
        return round(_GPT2_OUT_TOKENS_1024[quality] * size[0] * size[1] / (1024 * 1024))
    table = _OUT_TOKENS.get(size)
    if table is not None:
        return table[quality]
    return round(_OUT_TOKENS[(1024, 1024)][quality] * size[0] * size[1] / (1024 * 1024))
