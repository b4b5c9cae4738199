"""Strict emulator of OpenAI's Images API ``POST /v1/images/edits`` (plus a minimal Files API).

A real aiohttp HTTP server on a loopback port. It checks what it receives about as strictly as the real
service (wire rules: ``/work/shared/reference/providers.md`` §1) and answers with real, small PNG/JPEG/WebP
images.

    async with OpenAIEmulator(api_key="sk-upstream", latency=0.0) as emu:
        client = AsyncOpenAI(base_url=emu.base_url, api_key="sk-upstream")
        await client.images.edit(model="gpt-image-2", image=("a.png", png, "image/png"), prompt="hi")
        assert emu.edit_requests[-1].fields["model"] == "gpt-image-2"

Points where the public record is thin (marked [UNCONFIRMED] in the reference) are made configurable
rather than guessed silently: see ``strict_response_format``, ``unknown_model_status``,
``multipart_moderation``, ``extra_params`` and ``models``.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
import secrets
import time
import uuid
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aiohttp import web
from PIL import Image

from .base import RECORD, Canned, LoopbackEmulator, MalformedMultipart, Part, RecordedRequest, Reject, read_multipart

try:  # orjson is a project dependency; fall back to json so the emulator also runs without it.
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

except ImportError:  # pragma: no cover

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


__all__ = ["INJECTABLE", "OpenAIEmulator", "RecordedRequest", "StoredFile"]

# ------------------------------------------------------------------------------------------------------------
# Protocol tables (providers.md §1.2-§1.5)
# ------------------------------------------------------------------------------------------------------------

DALLE2 = "dall-e-2"
GPT_IMAGE_1 = "gpt-image-1"
GPT_IMAGE_1_MINI = "gpt-image-1-mini"
GPT_IMAGE_1_5 = "gpt-image-1.5"
GPT_IMAGE_2 = "gpt-image-2"

#: model id -> rule family. Model lists are configuration (the reference's time caveat), pass ``models=``.
DEFAULT_MODELS: dict[str, str] = {
    "dall-e-2": DALLE2,
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

IMAGE_MIMES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
_PIL_FORMATS = ("PNG", "JPEG", "WEBP")
_MIME_OF = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}

DALLE2_SIZES = ("256x256", "512x512", "1024x1024")
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


# ------------------------------------------------------------------------------------------------------------
# Public data types
# ------------------------------------------------------------------------------------------------------------


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    content_type: str | None
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "expires_at": None,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


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


@dataclass
class _Edit:
    model: str
    family: str
    prompt: str
    images: list[_Img]
    mask: _Img | None
    n: int
    size: tuple[int, int]
    quality: str | None
    response_format: str
    output_format: str
    output_compression: int
    background: str
    input_fidelity: str | None
    stream: bool
    partial_images: int


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


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "an unknown value"


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
    return v


def _get_enum(raw: Mapping[str, Any], name: str, allowed: Iterable[str]) -> str | None:
    v = _get_str(raw, name)
    if v is not None and v not in allowed:
        raise _invalid_value(name, v, allowed)
    return v


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


# ------------------------------------------------------------------------------------------------------------
# The emulator
# ------------------------------------------------------------------------------------------------------------

#: Canned failures for ``inject()`` (providers.md §1.7).
INJECTABLE = (
    "invalid_api_key",
    "org_not_verified",
    "unknown_parameter",
    "invalid_input_fidelity_model",
    "duplicate_parameter",
    "unsupported_file_mimetype",
    "invalid_image_file",
    "moderation_blocked",
    "moderation_blocked_output",
    "content_policy_violation",
    "rate_limit",
    "insufficient_quota",
    "server_error",
    "bad_gateway",
    "service_unavailable",
    "gateway_timeout",
    "hang",
    "disconnect",
)


class OpenAIEmulator(LoopbackEmulator):
    """Strict OpenAI ``/v1/images/edits`` emulator on 127.0.0.1 (ephemeral port by default).

    Constructor arguments:
        api_key: the only accepted bearer key (``None`` disables auth).
        latency: seconds to wait before answering a successful edit (settable attribute). Validation errors
            answer at once; injected failures wait their own ``delay``.
        hang: when true, edits are never answered (until ``stop()``) - for client-timeout tests.
        validate: decode image headers with Pillow (type, dimensions, mode); ``False`` keeps only the cheap
            wire checks (field names, MIME types, enums, ranges).
        strict_response_format: reject ``response_format`` for GPT image models with 400 unknown_parameter
            (observed live behaviour); ``False`` accepts and ignores it.
        models: model id -> rule family (``dall-e-2``, ``gpt-image-1``, ``gpt-image-1-mini``,
            ``gpt-image-1.5``, ``gpt-image-2``). Defaults to :data:`DEFAULT_MODELS`.
        default_model: model used when the request has no ``model`` (``gpt-image-1.5`` per current SDKs).
        unknown_model_status: 404 ``model_not_found`` (default) or 400 ``invalid_value``.
        multipart_moderation: accept ``moderation`` in multipart bodies ([UNCONFIRMED] upstream).
        extra_params: further parameter names to accept and ignore (e.g. newer SDK fields).
        record: keep ``requests``; turn off for long load tests.

    Failures are queued ``on`` a request path (default ``/v1/images/edits``; ``None``: every route).
    """

    failure_route = "/v1/images/edits"
    shutdown_timeout = 2.0

    def __init__(
        self,
        api_key: str | None = "sk-upstream",
        *,
        latency: float = 0.0,
        hang: bool = False,
        validate: bool = True,
        strict_response_format: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Mapping[str, str] | None = None,
        default_model: str = "gpt-image-1.5",
        unknown_model_status: int = 404,
        multipart_moderation: bool = True,
        extra_params: Iterable[str] = (),
        record: bool = True,
        organization: str = "org-emulator",
        openai_version: str = "2020-10-01",
    ) -> None:
        super().__init__(latency=latency, hang=hang, host=host, port=port, record=record)
        self.api_key = api_key
        self.validate = validate
        self.strict_response_format = strict_response_format
        self.models: dict[str, str] = dict(DEFAULT_MODELS if models is None else models)
        self.default_model = default_model
        if unknown_model_status not in (400, 404):
            raise ValueError("unknown_model_status must be 400 or 404")
        self.unknown_model_status = unknown_model_status
        self.organization = organization
        self.openai_version = openai_version

        extra = frozenset(extra_params)
        self._multipart_params = (
            MULTIPART_PARAMS | extra | ({"moderation"} if multipart_moderation else set())
        )
        self._json_params = JSON_PARAMS | extra

        #: http(s) image URLs JSON edits referenced, in order (whether registered or not).
        self.url_requests: list[str] = []
        #: Files API store: id -> StoredFile.
        self.files: dict[str, StoredFile] = {}
        self._served: OrderedDict[str, bytes] = OrderedDict()

    # ---------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        """OpenAI base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    def _routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/v1/images/edits", self._handle_edits)
        r.add_post("/v1/files", self._handle_file_upload)
        r.add_get("/v1/files", self._handle_file_list)
        r.add_get("/v1/files/{file_id}", self._handle_file_get)
        r.add_delete("/v1/files/{file_id}", self._handle_file_delete)
        r.add_get("/v1/files/{file_id}/content", self._handle_file_content)
        r.add_get("/files/{name}", self._handle_served_image)
        r.add_route("*", "/{tail:.*}", self._handle_not_found)

    def __repr__(self) -> str:
        return f"<OpenAIEmulator {self.base_url} requests={len(self.requests)}>"

    # ---------------------------------------------------------------- test helpers

    @property
    def edit_requests(self) -> list[RecordedRequest]:
        """Recorded ``POST /v1/images/edits`` requests."""
        return [r for r in self.requests if r.path == "/v1/images/edits" and r.method == "POST"]

    @property
    def last_request(self) -> RecordedRequest | None:
        return self.requests[-1] if self.requests else None

    def clear(self) -> None:
        """Forget recorded requests and referenced URLs (pending failures and stored files stay)."""
        self.requests.clear()
        self.url_requests.clear()

    def add_file(self, data: bytes, filename: str = "image.png", purpose: str = "vision") -> str:
        """Store a file as if uploaded through ``POST /v1/files``; returns its id."""
        fid = "file-" + secrets.token_urlsafe(16).replace("-", "A").replace("_", "b")[:22]
        ct = _MIME_OF.get((_probe(data) or ("",))[0])
        self.files[fid] = StoredFile(fid, filename, purpose, bytes(data), ct, int(time.time()))
        return fid

    def _canned(self, kind: str, retry_after: float | None) -> Canned:
        """A realistic §1.7 failure; ``kind`` is one of :data:`INJECTABLE`."""
        if retry_after is None:
            retry_after = 2.0

        def err(
            message: str, type_: str, param: str | None = None, code: str | None = None
        ) -> dict[str, Any]:
            return {"error": {"message": message, "type": type_, "param": param, "code": code}}

        secs = max(0, math.ceil(retry_after))
        if kind == "invalid_api_key":
            return (
                401,
                err(
                    "Incorrect API key provided: sk-up***********ream. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    code="invalid_api_key",
                ),
                {},
            )
        if kind == "org_not_verified":
            return (
                403,
                err(
                    "Your organization must be verified to use the model `{model}`. Please go to: "
                    "https://platform.openai.com/settings/organization/general and click on Verify "
                    "Organization. "
                    "If you just verified, it can take up to 15 minutes for access to propagate.",
                    "invalid_request_error",
                ),
                {},
            )
        if kind == "unknown_parameter":
            return 400, _unknown_param("input_fidelity").body, {}
        if kind == "invalid_input_fidelity_model":
            return (
                400,
                err(
                    "The model 'gpt-image-2' does not support the 'input_fidelity' parameter.",
                    "image_generation_user_error",
                    "input_fidelity",
                    "invalid_input_fidelity_model",
                ),
                {},
            )
        if kind == "duplicate_parameter":
            return 400, _duplicate("image").body, {}
        if kind == "unsupported_file_mimetype":
            return 400, _bad_mime("image", "application/octet-stream").body, {}
        if kind == "invalid_image_file":
            return 400, _invalid_image(_Img("image", 1, b"", None)).body, {}
        if kind in ("moderation_blocked", "moderation_blocked_output"):
            stage = "output" if kind.endswith("output") else "input"
            body = err(
                "Your request was rejected by the safety system. If you believe this is an error, contact us "
                "at "
                "help.openai.com and include the request ID {request_id}. safety_violations=[sexual].",
                "image_generation_user_error",
                code="moderation_blocked",
            )
            body["error"]["moderation_details"] = {"moderation_stage": stage, "categories": ["sexual"]}
            return 400, body, {}
        if kind == "content_policy_violation":
            return (
                400,
                err(
                    "Your request was rejected as a result of our safety system. Your prompt may contain "
                    "text that "
                    "is not allowed by our safety system.",
                    "invalid_request_error",
                    code="content_policy_violation",
                ),
                {},
            )
        if kind == "rate_limit":
            return (
                429,
                err(
                    f"Rate limit reached for {{model}} in organization {self.organization} on images per min "
                    "(IPM): "
                    f"Limit 5, Used 5, Requested 1. Please try again in {secs}s. Visit "
                    "https://platform.openai.com/account/rate-limits to learn more.",
                    "requests",
                    code="rate_limit_exceeded",
                ),
                {
                    "retry-after": str(secs),
                    "retry-after-ms": str(int(retry_after * 1000)),
                    "x-ratelimit-limit-requests": "5",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": f"{secs}s",
                },
            )
        if kind == "insufficient_quota":
            return (
                429,
                err(
                    "You exceeded your current quota, please check your plan and billing details. For more "
                    "information on this error, read the docs: "
                    "https://platform.openai.com/docs/guides/error-codes/api-errors.",
                    "insufficient_quota",
                    code="insufficient_quota",
                ),
                {},
            )
        if kind == "server_error":
            return (
                500,
                err(
                    "The server had an error while processing your request. Sorry about that!", "server_error"
                ),
                {},
            )
        if kind == "service_unavailable":
            return (
                503,
                err("The server is overloaded or not ready yet.", "server_error"),
                {},
            )
        if kind in ("bad_gateway", "gateway_timeout"):
            code, text = (502, "Bad Gateway") if kind == "bad_gateway" else (504, "Gateway Time-out")
            html = (
                f"<html>\r\n<head><title>{code} {text}</title></head>\r\n<body>\r\n"
                f"<center><h1>{code} {text}</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
                "</body>\r\n</html>\r\n"
            )
            return code, html, {}
        raise ValueError(f"unknown failure kind {kind!r}; choose from {', '.join(INJECTABLE)}")

    # ---------------------------------------------------------------- plumbing

    def _new_request_id(self) -> str:
        return "req_" + uuid.uuid4().hex

    def _stamp(self, resp: web.StreamResponse, rid: str, t0: float) -> None:
        h = resp.headers
        h.setdefault("x-request-id", rid)
        h["openai-processing-ms"] = str(int((time.perf_counter() - t0) * 1000))
        h.setdefault("openai-version", self.openai_version)
        h.setdefault("openai-organization", self.organization)

    @staticmethod
    def _json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
        return web.Response(body=_dumps(obj), status=status, content_type="application/json", headers=headers)

    def _reject_response(self, exc: Reject) -> web.Response:
        return self._json_response(exc.body, exc.status, exc.headers)

    def _shutting_down(self) -> Reject:
        return _APIError(503, "Emulator shutting down.", type="server_error")

    def _check_auth(self, request: web.Request) -> None:
        if self.api_key is None:
            return
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _APIError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with "
                "blank "
                "username) if you're accessing the API from your browser and are prompted for a username and "
                "password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
            )
        if token != self.api_key:
            raise _APIError(
                401,
                f"Incorrect API key provided: {_mask_key(token)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    async def _read_multipart(self, request: web.Request) -> list[Part]:
        try:
            return await read_multipart(request)
        except MalformedMultipart as e:
            raise _APIError(400, f"Could not parse multipart form: {e}") from None

    # ---------------------------------------------------------------- /v1/images/edits

    async def _handle_edits(self, request: web.Request) -> web.StreamResponse:
        rec = request[RECORD]
        parse_error: _APIError | None = None
        parts: list[Part] = []
        body: Any = None
        ctype = request.content_type
        try:
            if ctype == "multipart/form-data":
                parts = await self._read_multipart(request)
                rec.add_parts(parts)
            elif ctype == "application/json":
                raw = await request.read()
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise _APIError(
                        400,
                        "We could not parse the JSON body of your request. (HINT: This likely means you "
                        "aren't "
                        "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what "
                        "was "
                        "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
                        "contact us through our help center at help.openai.com.)",
                    ) from None
                rec.json = body
            else:
                await request.read()
                raise _APIError(
                    400,
                    f"Invalid Content-Type header ({request.headers.get('Content-Type', '')}), expected "
                    "multipart/form-data or application/json.",
                )
        except _APIError as e:
            parse_error = e

        self._check_auth(request)
        model_hint = (
            rec.fields.get("model")
            if body is None
            else (body.get("model") if isinstance(body, dict) else None)
        )
        canned = await self._failure(
            request, request.path, model=model_hint if isinstance(model_hint, str) else self.default_model
        )
        if canned is not None:
            return canned
        if parse_error is not None:
            raise parse_error
        edit = self._parse_multipart_edit(parts) if body is None else self._parse_json_edit(body)
        if self.hang:
            return await self._hang()
        if edit.stream:
            return await self._stream(request, edit)
        await self._sleep(self.latency)
        return self._json_response(self._result(edit), headers=_RATE_HEADERS)

    def _resolve_model(self, model: Any) -> tuple[str, str]:
        if model is None:
            model = self.default_model
        if not isinstance(model, str):
            raise _invalid_type("model", "a string", _json_kind(model))
        family = self.models.get(model)
        if family is None:
            if self.unknown_model_status == 404:
                raise _APIError(
                    404,
                    f"The model `{model}` does not exist or you do not have access to it.",
                    code="model_not_found",
                )
            raise _invalid_value("model", model, self.models)
        return model, family

    def _parse_multipart_edit(self, parts: list[Part]) -> _Edit:
        # 1. names: unknown / duplicated / wrong kind
        counts: dict[str, int] = {}
        for name, _fn, _ct, _value in parts:
            if name not in self._multipart_params:
                raise _unknown_param(name)
            counts[name] = counts.get(name, 0) + 1
        for name, c in counts.items():
            if c > 1 and name != "image[]":
                raise _duplicate(name)
        if "image" in counts and "image[]" in counts:
            raise _APIError(
                400,
                "Duplicate parameter: 'image'. Provide either a single file as 'image' or several files as "
                "'image[]=<value>', not both.",
                param="image",
                code="duplicate_parameter",
            )
        raw: dict[str, Any] = {}
        files: dict[str, list[tuple[str | None, bytes]]] = {}
        for name, _fn, ct, value in parts:
            if name in FILE_PARAMS:
                if not isinstance(value, bytes):
                    base = "image" if name == "image[]" else name
                    expected = "one of an array of files or file" if base == "image" else "a file"
                    raise _invalid_type(base, expected, "a string")
                files.setdefault(name, []).append((ct, value))
            else:
                if isinstance(value, bytes):
                    raise _invalid_type(name, "a string", "a file")
                raw[name] = value

        # 2. model, then model-specific parameter support
        model, family = self._resolve_model(raw.get("model"))
        if family == DALLE2:
            for name in DALLE2_UNKNOWN:
                if name in raw:
                    raise _unknown_param(name)
            if "image[]" in files:
                raise _invalid_type("image", "a file", "an array")
        if "prompt" not in raw:
            raise _missing("prompt")
        if not files.get("image") and not files.get("image[]"):
            raise _missing("image")

        array = "image[]" in files
        images = [
            _Img("image", i + 1, data, ct)
            for i, (ct, data) in enumerate(files.get("image[]") or files.get("image") or [])
        ]
        if array and len(images) > MAX_IMAGES:
            raise _APIError(
                400,
                f"Invalid 'image': array too long. Expected an array with maximum length {MAX_IMAGES}, but "
                "got an "
                f"array with length {len(images)} instead.",
                param="image",
                code="array_above_max_length",
            )
        mask = None
        if "mask" in files:
            ct, data = files["mask"][0]
            mask = _Img("mask", 0, data, ct)
        return self._build_edit(raw, model, family, images, mask, form=True)

    def _parse_json_edit(self, body: Any) -> _Edit:
        if not isinstance(body, dict):
            raise _APIError(
                400,
                f"Invalid type for request body: expected an object, but got {_json_kind(body)} instead.",
                code="invalid_type",
            )
        for name in body:
            if name not in self._json_params:
                raise _unknown_param(name)
        model, family = self._resolve_model(body.get("model"))
        if family == DALLE2:
            raise _APIError(
                400,
                f"Invalid value: '{model}'. Image edits with a JSON body support GPT image models only; use "
                "multipart/form-data for dall-e-2.",
                param="model",
                code="invalid_value",
            )
        if "prompt" not in body:
            raise _missing("prompt")
        if "images" not in body:
            raise _missing("images")
        refs = body["images"]
        if not isinstance(refs, list):
            raise _invalid_type("images", "an array", _json_kind(refs))
        if not refs:
            raise _APIError(
                400,
                "Invalid 'images': empty array. Expected an array with minimum length 1, but got an empty "
                "array "
                "instead.",
                param="images",
                code="empty_array",
            )
        if len(refs) > MAX_IMAGES:
            raise _APIError(
                400,
                f"Invalid 'images': array too long. Expected an array with maximum length {MAX_IMAGES}, but "
                "got "
                f"an array with length {len(refs)} instead.",
                param="images",
                code="array_above_max_length",
            )
        images = [self._resolve_ref(f"images[{i}]", ref, i + 1) for i, ref in enumerate(refs)]
        mask = None
        if body.get("mask") is not None:
            mask = self._resolve_ref("mask", body["mask"], 0)
        return self._build_edit(body, model, family, images, mask, form=False)

    def _resolve_ref(self, param: str, ref: Any, index: int) -> _Img:
        if not isinstance(ref, dict):
            raise _invalid_type(param, "an object", _json_kind(ref))
        for key in ref:
            if key not in ("image_url", "file_id"):
                raise _unknown_param(f"{param}.{key}")
        present = [k for k in ("image_url", "file_id") if ref.get(k) is not None]
        if len(present) != 1:
            raise _APIError(
                400,
                f"Invalid '{param}': exactly one of 'image_url' or 'file_id' must be provided.",
                param=param,
                code="invalid_value",
            )
        key = present[0]
        value = ref[key]
        sub = f"{param}.{key}"
        if not isinstance(value, str):
            raise _invalid_type(sub, "a string", _json_kind(value))
        if key == "file_id":
            stored = self.files.get(value)
            if stored is None:
                raise _APIError(400, f"No such File object: {value}", param=sub, code="invalid_file_id")
            return _Img(param, index, stored.data, stored.content_type or "image/png")
        if len(value) > IMAGE_URL_MAX_CHARS:
            raise _APIError(
                400,
                f"Invalid '{sub}': string too long. Expected a string with maximum length "
                f"{IMAGE_URL_MAX_CHARS}, "
                f"but got a string with length {len(value)} instead.",
                param=sub,
                code="string_above_max_length",
            )
        if value.startswith("data:"):
            m = _DATA_URL_RE.fullmatch(value)
            if m is None:
                raise _APIError(
                    400,
                    f"Invalid '{sub}'. Expected a base64-encoded data URL with an image MIME type (e.g. "
                    "'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), but got a value with an invalid format.",
                    param=sub,
                    code="invalid_image_url",
                )
            mime = m.group(1).strip().lower()
            try:
                data = base64.b64decode(m.group(3), validate=True)
            except (binascii.Error, ValueError):
                raise _APIError(
                    400,
                    f"Invalid '{sub}': the base64 payload of the data URL could not be decoded.",
                    param=sub,
                    code="invalid_image_url",
                ) from None
            return _Img(param, index, data, mime)
        if value.startswith(("http://", "https://")):
            self.url_requests.append(value)
            data = self._urls.get(value)
            if data is None:
                raise _APIError(400, f"Error while downloading {value}.", param=sub, code="invalid_image_url")
            probe = _probe(data)
            return _Img(param, index, data, _MIME_OF.get(probe[0]) if probe else "application/octet-stream")
        raise _APIError(
            400,
            f"Invalid '{sub}': Expected a valid URL, but got a value with an invalid format.",
            param=sub,
            code="invalid_value",
        )

    def _build_edit(
        self,
        raw: Mapping[str, Any],
        model: str,
        family: str,
        images: list[_Img],
        mask: _Img | None,
        *,
        form: bool,
    ) -> _Edit:
        dalle = family == DALLE2

        # model-specific parameter support
        if not dalle and "response_format" in raw and self.strict_response_format:
            raise _unknown_param("response_format")
        fidelity = raw.get("input_fidelity")
        if not dalle and fidelity is not None:
            if family in (GPT_IMAGE_2, GPT_IMAGE_1_MINI):
                raise _APIError(
                    400,
                    f"The model '{model}' does not support the 'input_fidelity' parameter.",
                    type="image_generation_user_error",
                    param="input_fidelity",
                    code="invalid_input_fidelity_model",
                )
            fidelity = _get_enum(raw, "input_fidelity", FIDELITIES)

        # prompt
        prompt = raw.get("prompt")
        if not isinstance(prompt, str):
            raise _invalid_type("prompt", "a string", _json_kind(prompt))
        max_len = 1000 if dalle else 32000
        if not prompt:
            raise _APIError(
                400,
                "Invalid 'prompt': empty string. Expected a string with minimum length 1, but got an empty "
                "string "
                "instead.",
                param="prompt",
                code="empty_string",
            )
        if len(prompt) > max_len:
            raise _APIError(
                400,
                f"Invalid 'prompt': string too long. Expected a string with maximum length {max_len}, but "
                "got a "
                f"string with length {len(prompt)} instead.",
                param="prompt",
                code="string_above_max_length",
            )

        n = _get_int(raw, "n", form)
        n = 1 if n is None else n
        _int_bounds("n", n, 1, 10)

        # size / quality / formats
        size_s = _get_str(raw, "size")
        if dalle:
            size_s = size_s or "1024x1024"
            if size_s not in DALLE2_SIZES:
                raise _invalid_value("size", size_s, DALLE2_SIZES)
            quality = _get_str(raw, "quality")
            if quality is not None and quality != "standard":
                raise _invalid_value("quality", quality, ("standard",))
            response_format = _get_enum(raw, "response_format", RESPONSE_FORMATS) or "url"
            output_format, compression, background = "png", 100, "opaque"
            stream, partial = False, 0
        else:
            size_s = size_s or "auto"
            if family == GPT_IMAGE_2:
                self._check_gpt2_size(size_s)
            elif size_s not in GPT_SIZES:
                raise _invalid_value("size", size_s, GPT_SIZES)
            quality = _get_enum(raw, "quality", GPT_QUALITIES) or "auto"
            response_format = "b64_json"
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
            compression = 100 if comp is None else comp
            background = _get_enum(raw, "background", BACKGROUNDS) or "auto"
            if background == "transparent" and output_format == "jpeg":
                raise _APIError(
                    400,
                    "Transparent background is not supported for the jpeg output format. Use 'png' or "
                    "'webp'.",
                    param="background",
                    code="invalid_value",
                )
            _get_enum(raw, "moderation", MODERATIONS)
            stream = bool(_get_bool(raw, "stream", form))
            p = _get_int(raw, "partial_images", form)
            partial = 0 if p is None else p
            _int_bounds("partial_images", partial, 0, 3)
        _get_str(raw, "user")

        # input images
        if dalle:
            if len(images) != 1:  # pragma: no cover - guarded by the multipart checks above
                raise _invalid_type("image", "a file", "an array")
            self._check_dalle_image(images[0], mask is not None)
        else:
            for img in images:
                self._check_gpt_image(img)
        if mask is not None:
            self._check_mask(mask, images[0])

        if size_s == "auto":
            size = (1024, 1024)
        else:
            w, _, h = size_s.partition("x")
            size = (int(w), int(h))
        return _Edit(
            model=model,
            family=family,
            prompt=prompt,
            images=images,
            mask=mask,
            n=n,
            size=size,
            quality=quality if not dalle else None,
            response_format=response_format,
            output_format=output_format,
            output_compression=compression,
            background=background,
            input_fidelity=fidelity if not dalle else None,
            stream=stream,
            partial_images=partial,
        )

    @staticmethod
    def _check_gpt2_size(size: str) -> None:
        if size in GPT_SIZES:
            return
        m = _SIZE_RE.fullmatch(size)
        if m is None:
            raise _APIError(
                400,
                f"Invalid value: '{size}'. Supported values are: 'auto' or a size in the form "
                "'WIDTHxHEIGHT', "
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
                400,
                f"Invalid size '{size}': " + "; ".join(problems) + ".",
                param="size",
                code="invalid_value",
            )

    def _probe_into(self, img: _Img) -> bool:
        """Fill width/height/mode from the header. False if the bytes are not the declared image type."""
        probe = _probe(img.data)
        if probe is None or IMAGE_MIMES.get(_norm_mime(img.content_type) or "") != probe[0]:
            return False
        img.width, img.height = probe[1], probe[2]
        img.mode = probe[3] + ("+tRNS" if probe[4] else "")
        return True

    def _check_gpt_image(self, img: _Img) -> None:
        mime = _norm_mime(img.content_type)
        if mime not in IMAGE_MIMES:
            raise _bad_mime(img.param, img.content_type)
        if len(img.data) > GPT_IMAGE_MAX_BYTES:
            raise _APIError(
                400,
                f"Invalid file '{img.param}': file too large. Image files must be smaller than 50 MB, got "
                f"{len(img.data)} bytes.",
                param=img.param,
                code="file_too_large",
            )
        if self.validate and not self._probe_into(img):
            raise _invalid_image(img)

    def _check_dalle_image(self, img: _Img, has_mask: bool) -> None:
        mime = _norm_mime(img.content_type)
        if mime not in IMAGE_MIMES:
            raise _bad_mime("image", img.content_type)
        if mime != "image/png" or len(img.data) >= DALLE2_MAX_BYTES:
            raise _APIError(400, "Uploaded image must be a PNG and less than 4 MB.", param="image")
        if not self.validate:
            return
        if not self._probe_into(img):
            raise _invalid_image(img)
        if img.width != img.height:
            raise _APIError(
                400,
                f"Invalid input image - image must be square, got {img.width}x{img.height}.",
                param="image",
            )
        base_mode = img.mode.split("+", 1)[0]
        if not has_mask and base_mode not in ("RGBA", "LA", "L"):
            raise _APIError(
                400, f"Invalid input image - format must be in ['RGBA', 'LA', 'L'], got {base_mode}."
            )

    def _check_mask(self, mask: _Img, first: _Img) -> None:
        mime = _norm_mime(mask.content_type)
        if mime != "image/png":
            raise _bad_mime("mask", mask.content_type, ("image/png",))
        if len(mask.data) >= MASK_MAX_BYTES:
            raise _APIError(
                400,
                "Invalid file 'mask': the mask must be a PNG less than 4 MB.",
                param="mask",
                code="file_too_large",
            )
        if not self.validate:
            return
        if not self._probe_into(mask):
            raise _invalid_image(mask)
        base_mode = mask.mode.split("+", 1)[0]
        if base_mode not in ("RGBA", "LA", "PA") and not mask.mode.endswith("+tRNS"):
            raise _APIError(
                400,
                f"Invalid mask image - the mask must have an alpha channel (RGBA or LA), got {base_mode}.",
                param="mask",
                code="invalid_image_file",
            )
        if first.width and (mask.width, mask.height) != (first.width, first.height):
            raise _APIError(
                400,
                f"Invalid mask image - the mask must have the same dimensions as the image "
                f"({first.width}x{first.height}), got {mask.width}x{mask.height}.",
                param="mask",
                code="invalid_image_file",
            )

    # ---------------------------------------------------------------- results

    @staticmethod
    def _resolved_quality(edit: _Edit) -> str:
        return "high" if edit.quality in (None, "auto") else edit.quality

    @staticmethod
    def _resolved_background(edit: _Edit) -> str:
        return "transparent" if edit.background == "transparent" else "opaque"

    def _usage(self, edit: _Edit, with_output_details: bool = True) -> dict[str, Any]:
        text = max(1, (len(edit.prompt) + 3) // 4)
        image = sum(_image_tokens(img.width, img.height) for img in edit.images)
        if edit.input_fidelity == "high" or edit.family == GPT_IMAGE_2:
            image += _HIGH_FIDELITY_EXTRA_TOKENS
        out = _output_tokens(edit.family, edit.size, self._resolved_quality(edit)) * edit.n
        usage: dict[str, Any] = {
            "total_tokens": text + image + out,
            "input_tokens": text + image,
            "output_tokens": out,
            "input_tokens_details": {"text_tokens": text, "image_tokens": image},
        }
        if with_output_details:
            usage["output_tokens_details"] = {"image_tokens": out, "text_tokens": 0}
        return usage

    def _colour(self, edit: _Edit, i: int) -> int:
        return (zlib.crc32(edit.prompt.encode()) + i) % len(_PALETTE)

    def _result(self, edit: _Edit) -> dict[str, Any]:
        w, h = edit.size
        created = int(time.time())
        if edit.family == DALLE2:
            if edit.response_format == "b64_json":
                data = [
                    {"b64_json": _render_b64(w, h, "png", self._colour(edit, i), False, 100)}
                    for i in range(edit.n)
                ]
            else:
                data = [
                    {"url": self._serve(_render(w, h, "png", self._colour(edit, i), False, 100))}
                    for i in range(edit.n)
                ]
            return {"created": created, "data": data}
        transparent = edit.background == "transparent"
        data = [
            {
                "b64_json": _render_b64(
                    w, h, edit.output_format, self._colour(edit, i), transparent, edit.output_compression
                )
            }
            for i in range(edit.n)
        ]
        return {
            "created": created,
            "data": data,
            "background": self._resolved_background(edit),
            "output_format": edit.output_format,
            "size": f"{w}x{h}",
            "quality": self._resolved_quality(edit),
            "usage": self._usage(edit),
        }

    def _serve(self, png: bytes) -> str:
        name = f"img-{secrets.token_urlsafe(18)}"
        self._served[name] = png
        while len(self._served) > 1024:
            self._served.popitem(last=False)
        now = time.gmtime()
        st = time.strftime("%Y-%m-%dT%H%%3A%M%%3A%SZ", now)
        se = time.strftime("%Y-%m-%dT%H%%3A%M%%3A%SZ", time.gmtime(time.time() + 3600))
        return (
            f"{self.url}/files/{name}.png?st={st}&se={se}&sp=r&sv=2021-08-06&sr=b&sig={secrets.token_hex(16)}"
        )

    async def _stream(self, request: web.Request, edit: _Edit) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                **_RATE_HEADERS,
            },
        )
        self._stamp(resp, request[RECORD].request_id, time.perf_counter())
        steps = edit.partial_images + 1
        w, h = edit.size
        transparent = edit.background == "transparent"
        common = {
            "created_at": int(time.time()),
            "size": f"{w}x{h}",
            "quality": self._resolved_quality(edit),
            "background": self._resolved_background(edit),
            "output_format": edit.output_format,
        }
        await self._sleep(self.latency / steps)
        await resp.prepare(request)
        for i in range(edit.partial_images):
            event = {
                "type": "image_edit.partial_image",
                "b64_json": _render_b64(
                    w, h, edit.output_format, self._colour(edit, i + 1), transparent, edit.output_compression
                ),
                **common,
                "partial_image_index": i,
            }
            await resp.write(b"event: image_edit.partial_image\ndata: " + _dumps(event) + b"\n\n")
            await self._sleep(self.latency / steps)
        done = {
            "type": "image_edit.completed",
            "b64_json": _render_b64(
                w, h, edit.output_format, self._colour(edit, 0), transparent, edit.output_compression
            ),
            **common,
            "usage": self._usage(edit, with_output_details=False),
        }
        await resp.write(b"event: image_edit.completed\ndata: " + _dumps(done) + b"\n\n")
        await resp.write_eof()
        return resp

    # ---------------------------------------------------------------- other routes

    async def _handle_served_image(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        data = self._served.get(name.removesuffix(".png"))
        if data is None or not name.endswith(".png"):
            return web.Response(
                status=404,
                content_type="application/xml",
                text='<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobNotFound</Code>'
                "<Message>The specified blob does not exist.</Message></Error>",
            )
        return web.Response(body=data, content_type="image/png")

    async def _handle_not_found(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        raise _APIError(404, f"Invalid URL ({request.method} {request.path})")

    async def _handle_file_upload(self, request: web.Request) -> web.StreamResponse:
        rec = request[RECORD]
        parse_error = None
        parts: list[Part] = []
        if request.content_type == "multipart/form-data":
            try:
                parts = await self._read_multipart(request)
            except _APIError as e:
                parse_error = e
        else:
            await request.read()
            parse_error = _APIError(
                400, "Invalid Content-Type header, expected multipart/form-data.", param=None
            )
        rec.add_parts(parts)
        self._check_auth(request)
        canned = await self._failure(request, request.path, model=self.default_model)
        if canned is not None:
            return canned
        if parse_error is not None:
            raise parse_error
        allowed = {"file", "purpose", "expires_after[anchor]", "expires_after[seconds]"}
        seen: set[str] = set()
        for name, _fn, _ct, _v in parts:
            if name not in allowed:
                raise _unknown_param(name)
            if name in seen:
                raise _duplicate(name)
            seen.add(name)
        files = [(fn, ct, v) for name, fn, ct, v in parts if name == "file"]
        if not files:
            raise _missing("file")
        fn, ct, data = files[0]
        if not isinstance(data, bytes):
            raise _invalid_type("file", "a file", "a string")
        purpose = rec.fields.get("purpose")
        if purpose is None:
            raise _missing("purpose")
        if purpose not in FILE_PURPOSES:
            raise _invalid_value("purpose", purpose, FILE_PURPOSES)
        fid = self.add_file(data, fn or "upload", purpose)
        if _norm_mime(ct) in IMAGE_MIMES:
            self.files[fid].content_type = _norm_mime(ct)
        return self._json_response(self.files[fid].to_json())

    def _get_stored(self, request: web.Request) -> StoredFile:
        self._check_auth(request)
        fid = request.match_info["file_id"]
        stored = self.files.get(fid)
        if stored is None:
            raise _APIError(404, f"No such File object: {fid}", param="id")
        return stored

    async def _handle_file_get(self, request: web.Request) -> web.StreamResponse:
        return self._json_response(self._get_stored(request).to_json())

    async def _handle_file_content(self, request: web.Request) -> web.StreamResponse:
        stored = self._get_stored(request)
        return web.Response(body=stored.data, content_type=stored.content_type or "application/octet-stream")

    async def _handle_file_delete(self, request: web.Request) -> web.StreamResponse:
        stored = self._get_stored(request)
        del self.files[stored.id]
        return self._json_response({"id": stored.id, "object": "file", "deleted": True})

    async def _handle_file_list(self, request: web.Request) -> web.StreamResponse:
        self._check_auth(request)
        purpose = request.query.get("purpose")
        data = [f.to_json() for f in self.files.values() if purpose is None or f.purpose == purpose]
        return self._json_response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": False,
            }
        )
