"""Strict emulator of Azure OpenAI image edits (wire rules: ``/work/shared/reference/providers.md`` §3).

A real aiohttp server on a loopback port that plays one Azure OpenAI resource:

- ``POST /openai/deployments/{deployment}/images/edits?api-version=…`` (``api-key`` header; ``api-version``
  required and must be one that has image edits; the deployment must exist, else ``DeploymentNotFound``);
- ``POST /openai/v1/images/edits`` (``api-key`` or ``Authorization: Bearer``; the form's ``model`` is the
  deployment name; ``api-version`` optional, ``v1`` or ``preview``).

Bodies are multipart only, with OpenAI's ``image`` / ``image[]`` rules, Azure's enums (no ``webp`` output,
``response_format`` refused) and real decoded images. Answers are Base64 only, with ``usage`` and no echo
fields, as Azure sends them.

    async with AzureEmulator(deployments={"img": "gpt-image-1"}) as emu:
        provider = AzureProvider(name="az", base_url=emu.base_url, api_key=emu.api_key, deployments=...)
        emu.inject("daily_quota")            # any row of providers.md §3.5 / §7
        assert emu.edit_requests[-1].fields["model"] == "gpt-image-1"
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from PIL import Image

from .base import RECORD, Canned, LoopbackEmulator, MalformedMultipart, Part, RecordedRequest, Reject, read_multipart

__all__ = ["DEFAULT_DEPLOYMENTS", "INJECTABLE", "AzureEmulator", "RecordedRequest"]

DEFAULT_DEPLOYMENTS = {"gpt-image-1": "gpt-image-1", "gpt-image-1-mini": "gpt-image-1-mini",
                       "gpt-image-1.5": "gpt-image-1.5", "gpt-image-2": "gpt-image-2"}
EDIT_API_VERSIONS = ("2025-04-01-preview", "2025-06-01-preview", "2025-11-01-preview", "preview")
FIELDS = frozenset({"image", "image[]", "mask", "model", "prompt", "n", "size", "quality", "input_fidelity",
                    "stream", "partial_images", "user", "output_format", "output_compression", "background"})
SIZES = ("auto", "1792x1024", "1024x1792", "1024x1024", "1024x1536", "1536x1024")
QUALITIES = ("auto", "high", "medium", "low", "hd", "standard")
OUTPUT_FORMATS = ("png", "jpeg")  # WEBP is not supported in Azure [DOC]
BACKGROUNDS = ("transparent", "opaque", "auto")
NO_FIDELITY = ("gpt-image-1-mini", "gpt-image-2")
_OUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160}
INJECTABLE = ("invalid_key", "deployment_not_found", "resource_not_found", "invalid_param", "content_filter",
              "content_filter_output", "responsible_ai", "moderation_blocked", "rate_limit", "daily_quota",
              "server_error", "service_unavailable", "hang", "disconnect")


def _azure(status: int, code: str, message: str) -> Reject:
    return Reject(status, {"error": {"code": code, "message": message}})


def _param(message: str, param: str | None, code: str) -> Reject:
    return Reject(400, {"error": {"message": message, "type": "invalid_request_error", "param": param,
                                  "code": code}})


def _render(w: int, h: int, fmt: str, seed: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (seed * 53 % 256, 90, 160)).save(buf, "JPEG" if fmt == "jpeg" else "PNG",
                                                               **({"compress_level": 1} if fmt == "png" else {}))
    return base64.b64encode(buf.getvalue()).decode()


class AzureEmulator(LoopbackEmulator):
    """One Azure OpenAI resource on 127.0.0.1. Failures are queued for the ``"edit"`` routes.

    Arguments: ``api_key``; ``deployments`` (deployment name → model family, default one deployment per
    gpt-image model named after it); ``api_versions`` accepted on deployment routes; ``input_mimes``
    accepted for source parts (Azure documents png and jpg); ``latency`` before successful answers;
    ``hang`` never answers edits; ``region`` for ``x-ms-region``.
    """

    failure_route = "edit"

    def __init__(self, api_key: str = "azure-key", *, deployments: Mapping[str, str] | None = None,
                 api_versions: tuple[str, ...] = EDIT_API_VERSIONS,
                 input_mimes: tuple[str, ...] = ("image/png", "image/jpeg"), latency: float = 0.0,
                 hang: bool = False, region: str = "swedencentral", host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(latency=latency, hang=hang, host=host, port=port)
        self.api_key = api_key
        self.deployments = dict(DEFAULT_DEPLOYMENTS if deployments is None else deployments)
        self.api_versions = api_versions
        self.input_mimes = input_mimes
        self.region = region

    # ------------------------------------------------------------------ routes and helpers
    @property
    def base_url(self) -> str:
        """The resource endpoint, like ``https://{resource}.openai.azure.com``."""
        return self.url

    @property
    def v1_base_url(self) -> str:
        return f"{self.base_url}/openai/v1"

    @property
    def edit_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/images/edits")]

    def _routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/openai/deployments/{deployment}/images/edits", self._deployment_edit)
        router.add_post("/openai/v1/images/edits", self._v1_edit)
        router.add_route("*", "/{tail:.*}", self._not_found)

    def _canned(self, kind: str, retry_after: float | None) -> Canned:
        """One of :data:`INJECTABLE`: the error shapes of providers.md §3.5 and the Azure column of §7."""
        wait = 5 if retry_after is None else round(retry_after)

        def err(code: str, message: str) -> dict[str, Any]:
            return {"error": {"code": code, "message": message}}

        def throttled(seconds: int) -> Canned:
            return 429, err("429", "Requests to the Images_Edit Operation under Azure OpenAI API version "
                            "2025-04-01-preview have exceeded token rate limit of your current AIServices S0 "
                            f"pricing tier. Please retry after {seconds} seconds."), {"retry-after": str(seconds)}

        safety = ("Your request was rejected by the safety system. If you believe this is an error, contact us "
                  "at Azure support ticket and include the request ID {request_id}. safety_violations=[violence].")
        table: dict[str, Canned] = {
            "invalid_key": (401, err("401", "Access denied due to invalid subscription key or wrong API "
                                     "endpoint. Make sure to provide a valid key for an active subscription "
                                     "and use a correct regional API endpoint for your resource."), {}),
            "deployment_not_found": (404, err("DeploymentNotFound", "The API deployment for this resource "
                                              "does not exist. If you created the deployment within the last "
                                              "5 minutes, please wait a moment and try again."), {}),
            "resource_not_found": (404, err("404", "Resource not found"), {}),
            "invalid_param": (400, {"error": {"message": "Invalid value: 'huge'. Supported values are: "
                                              "'auto', 'high', 'medium', and 'low'.", "type":
                                              "invalid_request_error", "param": "quality",
                                              "code": "invalid_value"}}, {}),
            "content_filter": (400, {"created": int(time.time()), "error": {
                "code": "contentFilter", "message": "Your task failed as a result of our safety system."}}, {}),
            "content_filter_output": (400, {"created": int(time.time()), "error": {
                "code": "contentFilter",
                "message": "Generated image was filtered as a result of our safety system."}}, {}),
            "responsible_ai": (400, {"error": {"param": "prompt", "type": "invalid_request_error", "inner_error": {
                "code": "ResponsibleAIPolicyViolation", "revised_prompt": None, "content_filter_results": {
                    "sexual": {"filtered": True, "severity": "high"},
                    "violence": {"filtered": False, "severity": "safe"}}}}}, {}),
            "moderation_blocked": (400, {"error": {"message": safety, "type": "image_generation_user_error",
                                                   "param": "", "code": "moderation_blocked"}}, {}),
            "rate_limit": throttled(wait),
            "daily_quota": throttled(86400),
            "server_error": (500, err("InternalServerError", "The server had an error while processing your "
                                      "request."), {}),
            "service_unavailable": (503, err("ServiceUnavailable", "The service is temporarily unable to "
                                             "process your request. Please try again later."), {}),
        }
        if kind not in table:
            raise ValueError(f"unknown failure kind {kind!r}; choose from {', '.join(INJECTABLE)}")
        return table[kind]

    # ------------------------------------------------------------------ plumbing
    def _stamp(self, response: web.StreamResponse, request_id: str, started: float) -> None:
        response.headers.update({"apim-request-id": request_id, "x-request-id": request_id,
                                 "x-ms-region": self.region})

    def _shutting_down(self) -> Reject:
        return _azure(503, "ServiceUnavailable", "Emulator shutting down.")

    def _check_key(self, request: web.Request, *, bearer: bool) -> None:
        key = request.headers.get("api-key")
        auth = request.headers.get("Authorization", "")
        if key is None and bearer and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        if key is None:
            raise _azure(401, "401", "Access denied due to missing subscription key. Make sure to include "
                         "subscription key when making requests to an API.")
        if key != self.api_key:
            raise _azure(401, "401", "Access denied due to invalid subscription key or wrong API endpoint. Make "
                         "sure to provide a valid key for an active subscription and use a correct regional API "
                         "endpoint for your resource.")

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        raise _azure(404, "404", "Resource not found")

    # ------------------------------------------------------------------ routes
    async def _deployment_edit(self, request: web.Request) -> web.StreamResponse:
        parts, parse_error = await self._read(request)
        self._check_key(request, bearer=False)
        if request.query.get("api-version") not in self.api_versions:
            raise _azure(404, "404", "Resource not found")  # missing, or a version without image edits
        family = self.deployments.get(request.match_info["deployment"])
        if family is None:
            raise _azure(404, "DeploymentNotFound", "The API deployment for this resource does not exist. If "
                         "you created the deployment within the last 5 minutes, please wait a moment and try "
                         "again.")
        return await self._edit(request, family, parts, parse_error)

    async def _v1_edit(self, request: web.Request) -> web.StreamResponse:
        parts, parse_error = await self._read(request)
        self._check_key(request, bearer=True)
        if request.query.get("api-version", "v1") not in ("v1", "preview"):
            raise _azure(400, "BadRequest", "API version not supported")
        model = next((v for n, _f, _c, v in parts if n == "model" and isinstance(v, str)), None)
        if model is None:
            raise _param("Missing required parameter: 'model'.", "model", "missing_required_parameter")
        family = self.deployments.get(model)
        if family is None:
            raise _azure(404, "DeploymentNotFound", "The API deployment for this resource does not exist.")
        return await self._edit(request, family, parts, parse_error)

    async def _read(self, request: web.Request) -> tuple[list[Part], Reject | None]:
        """The form parts, and the error a malformed body gets (answered after the auth and routing checks,
        as Azure's gateway does)."""
        if request.content_type != "multipart/form-data":
            await request.read()
            return [], _param("Invalid Content-Type header, expected multipart/form-data.", None, "invalid_value")
        try:
            parts = await read_multipart(request)
        except MalformedMultipart as exc:
            return [], _param(f"Could not parse multipart form: {exc}", None, "invalid_value")
        request[RECORD].add_parts(parts)
        return parts, None

    async def _edit(self, request: web.Request, family: str, parts: list[Part],
                    parse_error: Reject | None) -> web.StreamResponse:
        if (canned := await self._failure(request, "edit")) is not None:
            return canned
        if parse_error is not None:
            raise parse_error
        raw, images, mask = self._fields(parts)
        prompt = raw.get("prompt")
        if not prompt:
            raise _param("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
        if len(prompt) > 32000:
            raise _param("Invalid 'prompt': string too long.", "prompt", "string_above_max_length")
        n = self._int(raw, "n", 1, 1, 10)
        size = raw.get("size", "auto")
        if size not in SIZES and not (family == "gpt-image-2" and self._grid_size(size)):
            raise _param(f"Invalid value: '{size}'. Supported values are: {', '.join(SIZES)}.", "size",
                         "invalid_value")
        quality = self._enum(raw, "quality", QUALITIES, "high" if family != "gpt-image-1-mini" else "medium")
        output_format = self._enum(raw, "output_format", OUTPUT_FORMATS, "png")
        self._enum(raw, "background", BACKGROUNDS, "auto")
        self._int(raw, "output_compression", 100, 0, 100)
        self._int(raw, "partial_images", 0, 0, 3)
        if raw.get("stream", "false") != "false":
            raise _param("Streaming is not supported by this emulator.", "stream", "invalid_value")
        if "input_fidelity" in raw:
            if family in NO_FIDELITY:
                raise _param(f"The model '{family}' does not support the 'input_fidelity' parameter.",
                             "input_fidelity", "invalid_input_fidelity_model")
            self._enum(raw, "input_fidelity", ("high", "low"), "low")
        dims = [self._image(name, ct, data) for name, ct, data in images]
        if mask is not None and self._image("mask", mask[0], mask[1], png_only=True) != dims[0]:
            raise _param("Invalid mask: the mask must have the same dimensions as the image.", "mask",
                         "invalid_image_file")
        if self.hang:
            return await self._hang()
        await self._sleep(self.latency)
        w, h = (1024, 1024) if size == "auto" else map(int, size.split("x"))
        out = _OUT_TOKENS.get(quality, 4160) * w * h // (1024 * 1024)
        text_tokens, image_tokens = len(prompt) // 4 + 1, 323 * len(dims)
        return web.json_response({
            "created": int(time.time()),
            "data": [{"b64_json": _render(w, h, output_format, i)} for i in range(n)],
            "usage": {"input_tokens": text_tokens + image_tokens, "output_tokens": out * n,
                      "total_tokens": text_tokens + image_tokens + out * n,
                      "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens}},
        }, headers={"x-ratelimit-remaining-requests": "59", "x-ratelimit-remaining-tokens": "99000"})

    # ------------------------------------------------------------------ validation
    def _fields(self, parts: list[Part]) -> tuple[
            dict[str, str], list[tuple[str, str | None, bytes]], tuple[str | None, bytes] | None]:
        raw: dict[str, str] = {}
        images: list[tuple[str, str | None, bytes]] = []
        mask = None
        for name, _fn, ct, value in parts:
            if name == "response_format":  # base64 only; the gpt-image models refuse the field [DOC]
                raise _param("Unknown parameter: 'response_format'.", name, "unknown_parameter")
            if name not in FIELDS:
                raise _param(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
            if name in ("image", "image[]", "mask"):
                if not isinstance(value, bytes):
                    raise _param(f"Invalid type for '{name}': expected a file, but got a string instead.",
                                 name, "invalid_type")
                if name == "mask":
                    mask = (ct, value)
                else:
                    images.append((name, ct, value))
            elif name in raw:
                raise _param(f"Duplicate parameter: '{name}'.", name, "duplicate_parameter")
            else:
                raw[name] = str(value)
        names = {n for n, _c, _d in images}
        if not images:
            raise _param("Missing required parameter: 'image'.", "image", "missing_required_parameter")
        if names == {"image", "image[]"} or (names == {"image"} and len(images) > 1):
            raise _param("Duplicate parameter: 'image'. use the array syntax instead e.g. 'image[]=<value>'.",
                         "image", "duplicate_parameter")
        if len(images) > 16:
            raise _param("Invalid 'image': array too long.", "image", "array_above_max_length")
        return raw, images, mask

    def _image(self, param: str, mime: str | None, data: bytes, *, png_only: bool = False) -> tuple[int, int]:
        allowed = ("image/png",) if png_only else self.input_mimes
        if (mime or "").split(";")[0].strip().lower() not in allowed:
            raise _param(f"Invalid file '{param}': unsupported mimetype ('{mime}'). Supported file formats are "
                         f"{', '.join(allowed)}.", param, "unsupported_file_mimetype")
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                return im.size
        except Exception:
            raise _param(f"Invalid image file for '{param}'.", param, "invalid_image_file") from None

    @staticmethod
    def _grid_size(size: str) -> bool:
        w, _, h = size.partition("x")
        return w.isdigit() and h.isdigit() and int(w) % 16 == 0 and int(h) % 16 == 0

    @staticmethod
    def _enum(raw: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
        value = raw.get(name, default)
        if value not in allowed:
            raise _param(f"Invalid value: '{value}'. Supported values are: {', '.join(allowed)}.", name,
                         "invalid_value")
        return value

    @staticmethod
    def _int(raw: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
        text = raw.get(name)
        if text is None:
            return default
        if not text.strip().lstrip("-").isdigit() or not low <= int(text) <= high:
            raise _param(f"Invalid '{name}': expected an integer between {low} and {high}.", name,
                         "invalid_value")
        return int(text)
