"""Strict emulator of Azure OpenAI image edits and generations (wire rules: ``/work/shared/reference/providers.md``
§3, ``/work/notes/vendor-generations.md`` §3, streaming as ``/work/notes/openai-images-spec.md`` §5).

A real aiohttp server on a loopback port that plays one Azure OpenAI resource:

- ``POST /openai/deployments/{deployment}/images/edits?api-version=…`` (``api-key`` header; ``api-version``
  required and must be one that has image edits; the deployment must exist, else ``DeploymentNotFound``);
- ``POST /openai/v1/images/edits`` (``api-key`` or ``Authorization: Bearer``; the form's ``model`` is the
  deployment name; ``api-version`` optional, ``v1`` or ``preview``);
- ``POST /openai/deployments/{deployment}/images/generations?api-version=…`` and
  ``POST /openai/v1/images/generations`` (JSON bodies; same auth and routing rules; DALL·E 3 deployments also
  answer on the older api-versions of :data:`GENERATION_API_VERSIONS`);
- ``GET /private/images/{id}/generated_00.png?se=…&sig=…`` - where DALL·E 3 ``url`` answers point (they live
  ``url_ttl`` seconds, 24 h as on Azure; then 403 ``AuthenticationFailed``).

There is no variations operation on Azure: ``…/images/variations`` answers 404 ``Resource not found`` like
every unknown route.

Edit bodies are multipart only, with OpenAI's ``image`` / ``image[]`` rules, Azure's enums (no ``webp`` output,
``response_format`` refused) and real decoded images. Answers are Base64 only, with ``usage`` and no echo
fields, as Azure sends them.

Generations follow the deployment's model family: the gpt-image-1 series and gpt-image-2 (``response_format``
and ``style`` refused, ``output_format`` png/jpeg, ``quality`` low/medium/high/auto, the model's sizes, ``n``
1-10, ``background``, ``output_compression``, ``moderation``, ``user``, ``safety_identifier``) answer like edits;
``dall-e-3`` deployments take ``n`` = 1 only, ``size`` 1024x1024/1792x1024/1024x1792, ``quality``
standard/hd, ``style`` vivid/natural, ``response_format`` url (default) / b64_json, and answer with a
``revised_prompt`` and Azure's per-image ``prompt_filter_results`` / ``content_filter_results``; their value
errors use Azure's ``invalidPayload`` body. A dall-e-3 deployment refuses edits (``OperationNotSupported``).

Streaming (``stream`` true on edits and generations of GPT image deployments): ``text/event-stream``,
``event: image_edit.partial_image`` / ``image_generation.partial_image`` x ``partial_images`` (0-3), then one
``*.completed`` carrying ``usage``; no ``[DONE]``, no ``id:`` lines. ``latency`` is spread evenly over the
stream unless ``stream_interval`` is set (then ``latency`` before the headers and ``stream_interval`` seconds
between events); ``stream_gate=True`` holds each event until :meth:`release_stream_events`. Every stream is
recorded in :attr:`streams` (:class:`StreamRecord`, each event with its ``written_at`` perf_counter time);
``inject("stream_error", after_events=k)`` writes k events and then an ``event: error`` frame
(``{"type":"error","error":{...}}``), ``stream_disconnect`` aborts the connection after k events,
``stream_hang`` goes silent after k events (:meth:`fail_stream` takes a custom message and code). A client that
leaves mid-stream is noticed within ``disconnect_poll`` seconds: the stream gets ``client_disconnected`` and
the request joins :attr:`client_disconnects`. All of this is :mod:`.streams`, shared with the OpenAI emulator.

    async with AzureEmulator(deployments={"img": "gpt-image-1", "d3": "dall-e-3"}) as emu:
        provider = AzureProvider(name="az", base_url=emu.base_url, api_key=emu.api_key, deployments=...)
        emu.inject("daily_quota")            # any row of providers.md §3.5 / §7 (on="generation" for those)
        assert emu.edit_requests[-1].fields["model"] == "gpt-image-1"
        emu.inject("stream_error", after_events=1, on="generation")
        assert emu.generation_requests[-1].json["stream"] is True
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from PIL import Image

from .base import RECORD, Canned, MalformedMultipart, Part, RecordedRequest, Reject, json_kind, read_multipart
from .streams import STREAM_INJECTABLE, StreamEvent, StreamFailure, StreamingEmulator, StreamRecord

__all__ = ["DEFAULT_DEPLOYMENTS", "GENERATION_API_VERSIONS", "INJECTABLE", "STREAM_INJECTABLE", "AzureEmulator",
           "RecordedRequest", "StreamEvent", "StreamFailure", "StreamRecord"]

DEFAULT_DEPLOYMENTS = {"gpt-image-1": "gpt-image-1", "gpt-image-1-mini": "gpt-image-1-mini",
                       "gpt-image-1.5": "gpt-image-1.5", "gpt-image-2": "gpt-image-2"}
EDIT_API_VERSIONS = ("2025-04-01-preview", "2025-06-01-preview", "2025-11-01-preview", "preview")
#: api-versions with ``images/generations``: DALL·E 3 since 2023-12-01-preview and the GA versions [DOC]; the GPT
#: image models only from 2025-04-01-preview (:data:`EDIT_API_VERSIONS`) [DOC api-version-lifecycle].
GENERATION_API_VERSIONS = ("2023-12-01-preview", "2024-02-01", "2024-06-01", "2024-10-21", "2025-02-01-preview",
                           "2025-03-01-preview", *EDIT_API_VERSIONS)
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

DALLE3 = "dall-e-3"
#: generation fields per family [DOC reference-preview 2025-04-01-preview; SPEC CreateImageRequest].
GPT_GENERATION_FIELDS = frozenset({"prompt", "model", "n", "size", "quality", "output_format", "output_compression",
                                   "background", "moderation", "user", "safety_identifier", "stream",
                                   "partial_images"})
DALLE3_FIELDS = frozenset({"prompt", "model", "n", "size", "quality", "style", "response_format", "user"})
GPT_GENERATION_SIZES = ("1024x1024", "1024x1536", "1536x1024", "auto")
GPT_GENERATION_QUALITIES = ("low", "medium", "high", "auto")
DALLE3_SIZES = ("1024x1024", "1792x1024", "1024x1792")
DALLE3_QUALITIES = ("standard", "hd")
STYLES = ("vivid", "natural")
RESPONSE_FORMATS = ("url", "b64_json")
MODERATIONS = ("low", "auto")
#: gpt-image-2 ``WxH`` sizes (OpenAI's rules; on Azure [UNCONFIRMED], see ``custom_sizes``).
GPT2_MAX_EDGE, GPT2_MIN_PIXELS, GPT2_MAX_PIXELS = 3840, 655_360, 3840 * 2160
_RATE = {"x-ratelimit-remaining-requests": "59", "x-ratelimit-remaining-tokens": "99000"}
_LINK = "https://go.microsoft.com/fwlink/?linkid=2197993"
_SAFE = {"filtered": False, "severity": "safe"}


def _azure(status: int, code: str, message: str) -> Reject:
    return Reject(status, {"error": {"code": code, "message": message}})


def _param(message: str, param: str | None, code: str | None) -> Reject:
    return Reject(400, {"error": {"message": message, "type": "invalid_request_error", "param": param,
                                  "code": code}})


def _invalid_payload(name: str) -> Reject:
    """Azure's DALL·E validation body (``invalidPayload`` [3P one-api#763, for ``quality``])."""
    return _azure(400, "invalidPayload", f"Invalid payload: Value for property {name} is invalid.")


def _unsupported_operation(operation: str, model: str) -> Reject:
    """Azure's answer for an operation the deployed model does not offer (wording as for chatCompletion on
    gpt-image-1 [3P LibreChat#9427])."""
    return _azure(400, "OperationNotSupported", f"The {operation} operation does not work with the specified "
                  f"model, {model}. Please choose different model and try again. You can learn more about which "
                  f"models can be used with each operation here: {_LINK}.")


def _invalid_type(name: str, expected: str, value: Any) -> Reject:
    return _param(f"Invalid type for '{name}': expected {expected}, but got {json_kind(value)} instead.", name,
                  "invalid_type")


def _render(w: int, h: int, fmt: str, seed: int, transparent: bool = False) -> str:
    buf = io.BytesIO()
    colour = (seed * 53 % 256, 90, 160)
    if transparent and fmt == "png":
        im = Image.new("RGBA", (w, h), (*colour, 0))
        im.paste((*colour, 255), (w // 4, h // 4, max(w // 4 + 1, 3 * w // 4), max(h // 4 + 1, 3 * h // 4)))
        im.save(buf, "PNG", compress_level=1)
    else:
        Image.new("RGB", (w, h), colour).save(buf, "JPEG" if fmt == "jpeg" else "PNG",
                                              **({"compress_level": 1} if fmt == "png" else {}))
    return base64.b64encode(buf.getvalue()).decode()


@dataclass
class _Job:
    """A checked edit or generation."""

    operation: str  # "edit" | "generation"
    family: str
    prompt: str
    n: int
    size: tuple[int, int]
    quality: str
    output_format: str = "png"
    background: str = "auto"
    stream: bool = False
    partial_images: int = 0
    image_tokens: int = 0
    response_format: str = "b64_json"  # dall-e-3 only: "url" or "b64_json"
    style: str | None = None  # dall-e-3 only


class AzureEmulator(StreamingEmulator):
    """One Azure OpenAI resource on 127.0.0.1. Failures are queued for the ``"edit"`` routes (pass
    ``on="generation"`` for the generation routes, ``on=None`` for any).

    Arguments: ``api_key``; ``deployments`` (deployment name → model family, default one deployment per
    gpt-image model named after it; add e.g. ``"d3": "dall-e-3"`` for a DALL·E 3 deployment); ``api_versions``
    accepted on deployment routes for edits and GPT image generations; ``generation_api_versions`` accepted on
    deployment generation routes (older ones serve dall-e-3 only); ``input_mimes`` accepted for source parts
    (Azure documents png and jpg); ``latency`` before successful answers; ``hang`` never answers edits or
    generations; ``region`` for ``x-ms-region``; ``url_ttl`` seconds a DALL·E 3 URL lives (24 h on Azure);
    ``stream_interval`` / ``stream_gate`` / ``disconnect_poll`` steer streams (module docstring);
    ``accept_moderation`` takes ``moderation`` on GPT image generations (not in Azure's reference table
    [UNCONFIRMED]; False: ``unknown_parameter``); ``custom_sizes`` lets gpt-image-2 generations take any valid
    ``WxH`` as on OpenAI [UNCONFIRMED on Azure]; ``v1_unknown_model`` is what a v1 request naming no
    deployment gets: ``"deployment_not_found"`` (404, as edits always did) or ``"model_not_found"`` (400
    ``The model '…' does not exist.``, as third parties report for v1 generations).
    """

    failure_route = "edit"
    #: the route name of the generation routes, for ``on=`` in ``fail_next`` / ``inject`` / ``fail_stream``.
    GENERATION = "generation"

    def __init__(self, api_key: str = "azure-key", *, deployments: Mapping[str, str] | None = None,
                 api_versions: tuple[str, ...] = EDIT_API_VERSIONS,
                 generation_api_versions: tuple[str, ...] = GENERATION_API_VERSIONS,
                 input_mimes: tuple[str, ...] = ("image/png", "image/jpeg"), latency: float = 0.0,
                 hang: bool = False, region: str = "swedencentral", url_ttl: float = 86400.0,
                 stream_interval: float | None = None, stream_gate: bool = False, disconnect_poll: float = 0.02,
                 accept_moderation: bool = True, custom_sizes: bool = True,
                 v1_unknown_model: str = "deployment_not_found", host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(latency=latency, hang=hang, host=host, port=port, stream_interval=stream_interval,
                         stream_gate=stream_gate, disconnect_poll=disconnect_poll)
        if v1_unknown_model not in ("deployment_not_found", "model_not_found"):
            raise ValueError("v1_unknown_model must be 'deployment_not_found' or 'model_not_found'")
        self.api_key = api_key
        self.deployments = dict(DEFAULT_DEPLOYMENTS if deployments is None else deployments)
        self.api_versions = api_versions
        self.generation_api_versions = generation_api_versions
        self.input_mimes = input_mimes
        self.region = region
        self.url_ttl = url_ttl
        self.accept_moderation, self.custom_sizes = accept_moderation, custom_sizes
        self.v1_unknown_model = v1_unknown_model
        #: DALL·E 3 images served for ``url`` answers: path → (png, expiry).
        self.served: dict[str, tuple[bytes, float]] = {}

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

    @property
    def generation_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/images/generations")]

    @property
    def downloads(self) -> list[RecordedRequest]:
        """Fetches of DALL·E 3 ``url`` answers."""
        return [r for r in self.requests if r.path.startswith("/private/images/")]

    def expire_urls(self) -> None:
        """Make every served DALL·E 3 URL expire now."""
        self.served = {path: (data, 0.0) for path, (data, _) in self.served.items()}

    def _routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/openai/deployments/{deployment}/images/edits", self._deployment_edit)
        router.add_post("/openai/v1/images/edits", self._v1_edit)
        router.add_post("/openai/deployments/{deployment}/images/generations", self._deployment_generation)
        router.add_post("/openai/v1/images/generations", self._v1_generation)
        router.add_get("/private/images/{id}/{name}", self._served_image)
        router.add_route("*", "/{tail:.*}", self._not_found)

    def _canned(self, kind: str, retry_after: float | None) -> Canned:
        """One of :data:`INJECTABLE`: the error shapes of providers.md §3.5 and the Azure column of §7."""
        wait = 5 if retry_after is None else round(retry_after)

        def err(code: str, message: str) -> dict[str, Any]:
            return {"error": {"code": code, "message": message}}

        def throttled(seconds: int) -> Canned:  # {operation}: Images_Edit or Images_Generations, per route
            return 429, err("429", "Requests to the {operation} Operation under Azure OpenAI API version "
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


    def _unknown_deployment(self, model: str, *, v1: bool) -> Reject:
        if v1 and self.v1_unknown_model == "model_not_found":
            return Reject(400, {"error": {"message": f"The model '{model}' does not exist.", "type":
                                          "image_generation_user_error", "param": "model", "code": "model_not_found"}})
        if v1:
            return _azure(404, "DeploymentNotFound", "The API deployment for this resource does not exist.")
        return _azure(404, "DeploymentNotFound", "The API deployment for this resource does not exist. If you "
                      "created the deployment within the last 5 minutes, please wait a moment and try again.")

    async def _served_image(self, request: web.Request) -> web.StreamResponse:
        entry = self.served.get(request.path)
        if entry is None:
            return web.Response(status=404, content_type="application/xml", text='<?xml version="1.0" encoding='
                                '"utf-8"?><Error><Code>BlobNotFound</Code><Message>The specified blob does not '
                                "exist.</Message></Error>")
        if time.time() >= entry[1]:
            return web.Response(status=403, content_type="application/xml", text='<?xml version="1.0" encoding='
                                '"utf-8"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to '
                                "authenticate the request.</Message><AuthenticationErrorDetail>Signed expiry time "
                                "has passed</AuthenticationErrorDetail></Error>")
        return web.Response(body=entry[0], content_type="image/png")

    # ------------------------------------------------------------------ routes
    async def _deployment_edit(self, request: web.Request) -> web.StreamResponse:
        parts, parse_error = await self._read(request)
        self._check_key(request, bearer=False)
        if request.query.get("api-version") not in self.api_versions:
            raise _azure(404, "404", "Resource not found")  # missing, or a version without image edits
        family = self.deployments.get(request.match_info["deployment"])
        if family is None:
            raise self._unknown_deployment(request.match_info["deployment"], v1=False)
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
            raise self._unknown_deployment(model, v1=True)
        return await self._edit(request, family, parts, parse_error)

    async def _deployment_generation(self, request: web.Request) -> web.StreamResponse:
        body, parse_error = await self._read_json(request)
        self._check_key(request, bearer=False)
        version = request.query.get("api-version")
        if version not in self.generation_api_versions:
            raise _azure(404, "404", "Resource not found")  # missing, or a version without image generations
        family = self.deployments.get(request.match_info["deployment"])
        if family is None:
            raise self._unknown_deployment(request.match_info["deployment"], v1=False)
        if family != DALLE3 and version not in self.api_versions:  # GPT image models came with 2025-04-01-preview
            raise _unsupported_operation("imageGeneration", family)
        return await self._generate(request, family, body, parse_error)

    async def _v1_generation(self, request: web.Request) -> web.StreamResponse:
        body, parse_error = await self._read_json(request)
        self._check_key(request, bearer=True)
        if request.query.get("api-version", "v1") not in ("v1", "preview"):
            raise _azure(400, "BadRequest", "API version not supported")
        if parse_error is not None:  # the deployment is named in the body
            raise parse_error
        model = self._object(body).get("model")
        if model is None:
            raise _param("Missing required parameter: 'model'.", "model", "missing_required_parameter")
        if not isinstance(model, str):
            raise _invalid_type("model", "a string", model)
        family = self.deployments.get(model)
        if family is None:
            raise self._unknown_deployment(model, v1=True)
        return await self._generate(request, family, body, None)

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

    async def _read_json(self, request: web.Request) -> tuple[Any, Reject | None]:
        """The JSON body, and the error a non-JSON body gets (answered after the auth and routing checks)."""
        raw = await request.read()
        if request.content_type != "application/json":
            return None, _param(f"Invalid Content-Type header ({request.headers.get('Content-Type', '')}), "
                                "expected application/json.", None, "invalid_value")
        try:
            body = request[RECORD].json = json.loads(raw)
        except ValueError:
            return None, _param("We could not parse the JSON body of your request. (HINT: This likely means you "
                                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                                "but what was sent was not valid JSON.)", None, None)
        return body, None

    async def _edit(self, request: web.Request, family: str, parts: list[Part],
                    parse_error: Reject | None) -> web.StreamResponse:
        if (canned := await self._failure(request, "edit", operation="Images_Edit")) is not None:
            return canned
        if parse_error is not None:
            raise parse_error
        if family == DALLE3:  # DALL·E models do not edit on Azure [DOC]
            raise _unsupported_operation("imageEdit", family)
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
        background = self._enum(raw, "background", BACKGROUNDS, "auto")
        self._int(raw, "output_compression", 100, 0, 100)
        partial_images = self._int(raw, "partial_images", 0, 0, 3)
        stream = raw.get("stream", "false").strip().lower()
        if stream not in ("true", "false"):
            raise _param("Invalid type for 'stream': expected a boolean, but got a string instead.", "stream",
                         "invalid_type")
        if "input_fidelity" in raw:
            if family in NO_FIDELITY:
                raise _param(f"The model '{family}' does not support the 'input_fidelity' parameter.",
                             "input_fidelity", "invalid_input_fidelity_model")
            self._enum(raw, "input_fidelity", ("high", "low"), "low")
        dims = [self._image(name, ct, data) for name, ct, data in images]
        if mask is not None and self._image("mask", mask[0], mask[1], png_only=True) != dims[0]:
            raise _param("Invalid mask: the mask must have the same dimensions as the image.", "mask",
                         "invalid_image_file")
        w, h = (1024, 1024) if size == "auto" else map(int, size.split("x"))
        return await self._answer(request, _Job("edit", family, prompt, n, (w, h), quality, output_format,
                                                background, stream == "true", partial_images, 323 * len(dims)))

    async def _generate(self, request: web.Request, family: str, body: Any,
                        parse_error: Reject | None) -> web.StreamResponse:
        if (canned := await self._failure(request, self.GENERATION, operation="Images_Generations")) is not None:
            return canned
        if parse_error is not None:
            raise parse_error
        job = self._dalle3_job(body) if family == DALLE3 else self._gpt_generation_job(family, body)
        return await self._answer(request, job)

    # ------------------------------------------------------------------ generation bodies
    @staticmethod
    def _object(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _param(f"Invalid type for request body: expected an object, but got {json_kind(body)} instead.",
                         None, "invalid_type")
        return {k: v for k, v in body.items() if v is not None}  # every field is nullable [SPEC]

    @staticmethod
    def _prompt(body: Mapping[str, Any], max_len: int) -> str:
        if "prompt" not in body:
            raise _param("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
        prompt = body["prompt"]
        if not isinstance(prompt, str):
            raise _invalid_type("prompt", "a string", prompt)
        if not prompt:
            raise _param("Invalid 'prompt': empty string. Expected a string with minimum length 1, but got an empty "
                         "string instead.", "prompt", "empty_string")
        if len(prompt) > max_len:
            raise _param(f"Invalid 'prompt': string too long. Expected a string with maximum length {max_len}, but "
                         f"got a string with length {len(prompt)} instead.", "prompt", "string_above_max_length")
        return prompt

    @staticmethod
    def _json_int(body: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
        value = body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid_type(name, "an integer", value)
        if value < low:
            raise _param(f"Invalid '{name}': integer below minimum value. Expected a value >= {low}, but got "
                         f"{value} instead.", name, "integer_below_min_value")
        if value > high:
            raise _param(f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, but got "
                         f"{value} instead.", name, "integer_above_max_value")
        return value

    @staticmethod
    def _json_str(body: Mapping[str, Any], name: str) -> str | None:
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise _invalid_type(name, "a string", value)
        return value

    def _json_enum(self, body: Mapping[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self._json_str(body, name)
        if value is None:
            return default
        return self._enum({name: value}, name, allowed, default)

    def _gpt_generation_job(self, family: str, raw_body: Any) -> _Job:
        body = self._object(raw_body)
        for name in body:
            if name not in GPT_GENERATION_FIELDS or (name == "moderation" and not self.accept_moderation):
                # response_format: base64 only, "Unknown parameter" [3P azure-sdk-for-net#49965]; style: dall-e-3
                raise _param(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
        prompt = self._prompt(body, 32000)
        n = self._json_int(body, "n", 1, 1, 10)
        size = self._json_str(body, "size") or "auto"
        if size not in GPT_GENERATION_SIZES and not (family == "gpt-image-2" and self.custom_sizes):
            raise _param(f"Invalid value: '{size}'. Supported values are: {', '.join(GPT_GENERATION_SIZES)}.",
                         "size", "invalid_value")
        if size not in GPT_GENERATION_SIZES:
            self._check_custom_size(size)
        quality = self._json_enum(body, "quality", GPT_GENERATION_QUALITIES,
                                  "medium" if family == "gpt-image-1-mini" else "high")
        output_format = self._json_enum(body, "output_format", OUTPUT_FORMATS, "png")
        self._json_int(body, "output_compression", 100, 0, 100)
        background = self._json_enum(body, "background", BACKGROUNDS, "auto")
        if background == "transparent" and output_format != "png":  # transparent needs png [DOC how-to]
            raise _param("Transparent background is only supported with output_format 'png'.", "background",
                         "invalid_value")
        self._json_enum(body, "moderation", MODERATIONS, "auto")
        self._json_str(body, "user")
        self._json_str(body, "safety_identifier")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise _invalid_type("stream", "a boolean", stream)
        partial_images = self._json_int(body, "partial_images", 0, 0, 3)
        w, h = (1024, 1024) if size == "auto" else map(int, size.split("x"))
        return _Job("generation", family, prompt, n, (w, h), quality, output_format, background, stream,
                    partial_images)

    @staticmethod
    def _check_custom_size(size: str) -> None:
        """gpt-image-2 ``WxH``: multiples of 16, aspect 1:3-3:1, edge <= 3840, 655,360-8,294,400 pixels."""
        w_s, _, h_s = size.partition("x")
        if not (w_s.isdigit() and h_s.isdigit()):
            raise _param(f"Invalid value: '{size}'. Supported values are: 'auto' or a size in the form "
                         "'WIDTHxHEIGHT', e.g. '1536x864'.", "size", "invalid_value")
        w, h = int(w_s), int(h_s)
        problems = []
        if w % 16 or h % 16:
            problems.append("width and height must both be multiples of 16")
        if w == 0 or h == 0 or max(w, h) > 3 * min(w, h):
            problems.append("the aspect ratio must be between 1:3 and 3:1")
        if max(w, h) > GPT2_MAX_EDGE:
            problems.append(f"the longest edge must be at most {GPT2_MAX_EDGE}px")
        if not GPT2_MIN_PIXELS <= w * h <= GPT2_MAX_PIXELS:
            problems.append(f"the total pixel count must be between {GPT2_MIN_PIXELS} and {GPT2_MAX_PIXELS}")
        if problems:
            raise _param(f"Invalid size '{size}': " + "; ".join(problems) + ".", "size", "invalid_value")

    def _dalle3_job(self, raw_body: Any) -> _Job:
        body = self._object(raw_body)
        for name in body:
            if name not in DALLE3_FIELDS:  # the GPT-only fields too: dall-e-3 does not stream [DOC]
                raise _param(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
        prompt = self._prompt(body, 4000)
        n = body.get("n", 1)
        if isinstance(n, bool) or not isinstance(n, int):
            raise _invalid_type("n", "an integer", n)
        if n != 1:
            raise _invalid_payload("n")  # dall-e-3: n must be 1
        values: dict[str, str] = {}
        for name, allowed, default in (("size", DALLE3_SIZES, "1024x1024"), ("quality", DALLE3_QUALITIES,
                                       "standard"), ("style", STYLES, "vivid"),
                                       ("response_format", RESPONSE_FORMATS, "url")):
            value = body.get(name, default)
            if value not in allowed:
                raise _invalid_payload(name)
            values[name] = value
        self._json_str(body, "user")
        w, h = map(int, values["size"].split("x"))
        return _Job("generation", DALLE3, prompt, 1, (w, h), values["quality"], "png", "opaque",
                    response_format=values["response_format"], style=values["style"])

    # ------------------------------------------------------------------ answers
    async def _answer(self, request: web.Request, job: _Job) -> web.StreamResponse:
        if self.hang:
            return await self._hang()
        if job.stream:
            return await self._stream(request, self._stream_frames(job), operation=job.operation, model=job.family,
                                      route=job.operation, headers=_RATE)
        await self._sleep(self.latency)
        return web.json_response(self._result(job), headers=_RATE)

    @staticmethod
    def _usage(job: _Job) -> dict[str, Any]:
        w, h = job.size
        out = _OUT_TOKENS.get(job.quality, 4160) * w * h // (1024 * 1024)
        text_tokens = len(job.prompt) // 4 + 1
        return {"input_tokens": text_tokens + job.image_tokens, "output_tokens": out * job.n,
                "total_tokens": text_tokens + job.image_tokens + out * job.n,
                "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": job.image_tokens}}

    def _result(self, job: _Job) -> dict[str, Any]:
        w, h = job.size
        if job.family != DALLE3:
            transparent = job.operation == "generation" and job.background == "transparent"
            return {"created": int(time.time()),
                    "data": [{"b64_json": _render(w, h, job.output_format, i, transparent)} for i in range(job.n)],
                    "usage": self._usage(job)}
        b64 = _render(w, h, "png", 7 if job.style == "natural" else 3)
        item: dict[str, Any] = {}
        if job.response_format == "b64_json":
            item["b64_json"] = b64
        else:
            item["url"] = self._serve(base64.b64decode(b64))
        look = "vivid, hyper-real and dramatic" if job.style == "vivid" else "natural, understated and realistic"
        item["revised_prompt"] = (f"{job.prompt.rstrip(' .')}. The scene is rendered in a {look} style, with "
                                  "careful attention to lighting, composition and fine detail.")
        item["prompt_filter_results"] = {"sexual": _SAFE, "violence": _SAFE, "hate": _SAFE, "self_harm": _SAFE,
                                         "profanity": {"detected": False, "filtered": False},
                                         "custom_blocklists": {"filtered": False, "details": []}}
        item["content_filter_results"] = {"sexual": _SAFE, "violence": _SAFE, "hate": _SAFE, "self_harm": _SAFE}
        return {"created": int(time.time()), "data": [item]}

    def _serve(self, png: bytes) -> str:
        path = f"/private/images/{secrets.token_hex(16)}/generated_00.png"
        expiry = time.time() + self.url_ttl
        self.served[path] = (png, expiry)
        se = time.strftime("%Y-%m-%dT%H%%3A%M%%3A%SZ", time.gmtime(expiry))
        return f"{self.url}{path}?se={se}&sig={secrets.token_urlsafe(32)}%3D&ske=&skv=2020-10-02&sp=r&spr=https"

    # ------------------------------------------------------------------ streaming
    def _stream_frames(self, job: _Job) -> list[tuple[str, dict[str, Any]]]:
        prefix = "image_generation" if job.operation == "generation" else "image_edit"
        w, h = job.size
        transparent = job.operation == "generation" and job.background == "transparent"
        common = {"created_at": int(time.time()), "size": f"{w}x{h}",
                  "quality": job.quality if job.quality in ("low", "medium", "high") else "high",
                  "background": "transparent" if job.background == "transparent" else "opaque",
                  "output_format": job.output_format}
        frames: list[tuple[str, dict[str, Any]]] = []
        name = f"{prefix}.partial_image"
        for i in range(job.partial_images):
            frames.append((name, {"type": name, "b64_json": _render(w, h, job.output_format, i + 1, transparent),
                                  **common, "partial_image_index": i}))
        name = f"{prefix}.completed"
        frames.append((name, {"type": name, "b64_json": _render(w, h, job.output_format, 0, transparent),
                              **common, "usage": self._usage(job)}))
        return frames

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
