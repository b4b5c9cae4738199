"""Strict emulator of xAI's image API (wire rules: ``/work/shared/reference/providers.md`` §4, generations
``/work/notes/vendor-generations.md`` §1).

A real aiohttp server on a loopback port: ``POST /v1/images/edits`` with a JSON body only (multipart is
refused), ``Authorization: Bearer``, ``image`` XOR ``images`` (at most 3 references, data URIs or
registered http URLs, decoded as real images), the documented enums, and "Argument not supported: size"
for ``size``/``style``/``mask``/anything unknown. Errors use xAI's flat ``{"code", "error"}`` bodies; answers
carry ``usage.cost_in_usd_ticks`` (10,000,000,000 ticks = $1) and JPEG images, as ``b64_json`` or as
ephemeral URLs served by the emulator under ``/imgen/`` (``url_ttl`` seconds, then 404).

``POST /v1/images/generations`` (JSON, synchronous) takes ``prompt`` (required: a missing one is a 422, as
xAI's spec documents for missing fields), ``model`` (:data:`GENERATION_MODELS`; unknown → 404), ``n`` 1-10,
``response_format`` url (default) / b64_json, ``aspect_ratio`` (default ``auto``, played as 1:1),
``resolution`` 1k/2k, ``user``, and ``quality`` low/medium/high only on models priced by quality
(``grok-imagine-image-2.0``; elsewhere "Argument not supported: quality" unless ``quality_elsewhere="ignore"``).
``size``, ``style``, ``image`` and any other field: "Argument not supported: <name>". It answers
``{"data": [{"url"|"b64_json", "mime_type"}], "usage": {"cost_in_usd_ticks"}}`` with JPEGs whose long side is
1024 (1k) or 2048 (2k) at the asked ratio. Failures for it are queued with ``on="generation"``.

    async with XaiEmulator() as emu:
        provider = XaiProvider(name="xai", base_url=emu.base_url, api_key=emu.api_key)
        emu.inject("credits_exhausted")       # any §4.5 / §7 row
        assert emu.edit_requests[-1].json["model"] == "grok-imagine-image"
        emu.inject("capacity", on="generation")
        assert emu.generation_requests[-1].json["prompt"] == "a cat"
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import secrets
import time
from collections.abc import Mapping
from types import EllipsisType
from typing import Any

from aiohttp import web
from PIL import Image

from .base import RECORD, Canned, LoopbackEmulator, RecordedRequest, Reject

__all__ = ["DEFAULT_MODELS", "GENERATION_MODELS", "INJECTABLE", "RecordedRequest", "XaiEmulator"]

#: model → (USD per output image, USD per input image)
DEFAULT_MODELS = {"grok-imagine-image": (0.02, 0.002), "grok-imagine-image-quality": (0.07, 0.002)}
#: generation model → USD per image, flat, or by (quality, resolution) for models that take ``quality``.
#: $0.02 is documented [DOC]; -quality ($0.045-0.07) and the 2.0 tiers ($0.02-0.08) are [3P, UNCONFIRMED].
GENERATION_MODELS: dict[str, float | dict[tuple[str, str], float]] = {
    "grok-imagine-image": 0.02,
    "grok-imagine-image-quality": 0.07,
    "grok-imagine-image-2.0": {("low", "1k"): 0.02, ("medium", "1k"): 0.04, ("high", "1k"): 0.06,
                               ("low", "2k"): 0.03, ("medium", "2k"): 0.05, ("high", "2k"): 0.08},
}
#: ``GenerateImageRequest`` on REST [SPEC xai-openapi], plus ``quality`` (SDK 2026-08-14, 2.0 only).
GENERATION_FIELDS = frozenset({"model", "prompt", "n", "response_format", "aspect_ratio", "resolution", "quality",
                               "user"})
TICKS_PER_USD = 10_000_000_000
FIELDS = frozenset({"model", "prompt", "image", "images", "n", "response_format", "aspect_ratio", "resolution",
                    "quality", "user"})
ASPECT_RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9", "2:3", "3:2", "9:19.5", "19.5:9", "9:20", "20:9", "1:2",
                 "2:1", "auto")
ENUMS = {"response_format": ("url", "b64_json"), "aspect_ratio": ASPECT_RATIOS, "resolution": ("1k", "2k"),
         "quality": ("low", "medium", "high")}
MAX_REFERENCES = 3
INVALID = "Client specified an invalid argument"
EXHAUSTED = "Some resource has been exhausted"
INJECTABLE = ("invalid_api_key", "invalid_argument", "moderation", "permission_denied", "model_not_found",
              "credits_exhausted", "capacity", "relayed_moderation", "relayed_server_error", "server_error",
              "service_unavailable", "url_expired", "block_reason", "hang", "disconnect")


class _Reject(Reject):
    """xAI's flat error body: ``{"code": "<gRPC status text>", "error": "<message>"}``."""

    def __init__(self, status: int, error: str, code: str = INVALID, **extra: Any) -> None:
        super().__init__(status, {"code": code, "error": error, **extra})


def _unsupported(name: str) -> _Reject:
    return _Reject(400, f"Argument not supported: {name}")


class XaiEmulator(LoopbackEmulator):
    """xAI's ``/v1/images/edits`` and ``/v1/images/generations`` on 127.0.0.1. Failures are queued for the
    ``"edit"`` route (``on="generation"`` for generations, ``on=None`` for either).

    Arguments: ``api_key``; ``models`` (edit model id → (USD per output image, USD per input image));
    ``generation_models`` (id → USD per image, or {(quality, resolution): USD} for the models that take
    ``quality``); ``aliases`` (alias → model id, for both routes; e.g. ``{"grok-imagine-image-pro":
    "grok-imagine-image-quality"}``, which xAI says still works [SDK]); ``default_generation_model`` used when a
    generation names none; ``quality_elsewhere`` (``"refuse"``: "Argument not supported: quality" on models
    without quality tiers [3P crazyrouter]; ``"ignore"``: accepted and ignored [3P Comfy]);
    ``max_prompt_length`` of generation prompts (None: unchecked; xAI publishes it per model);
    ``generation_revised_prompt`` adds ``"revised_prompt": ""`` to generation items as relays show [3P];
    ``latency`` before successful answers; ``hang`` never answers; ``answer_urls`` answers with URLs even
    when ``b64_json`` was asked (as some deployments do); ``url_ttl`` seconds a served URL lives;
    ``cost_ticks`` overrides the reported ``usage.cost_in_usd_ticks``.
    """

    failure_route = "edit"
    #: the route name of ``POST /v1/images/generations``, for ``on=`` in ``fail_next`` / ``inject``.
    GENERATION = "generation"

    def __init__(self, api_key: str = "xai-key", *, models: Mapping[str, tuple[float, float]] | None = None,
                 generation_models: Mapping[str, float | Mapping[tuple[str, str], float]] | None = None,
                 aliases: Mapping[str, str] | None = None, default_generation_model: str = "grok-imagine-image",
                 quality_elsewhere: str = "refuse", max_prompt_length: int | None = None,
                 generation_revised_prompt: bool = False,
                 latency: float = 0.0, hang: bool = False, answer_urls: bool = False, url_ttl: float = 300.0,
                 cost_ticks: int | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(latency=latency, hang=hang, host=host, port=port)
        if quality_elsewhere not in ("refuse", "ignore"):
            raise ValueError("quality_elsewhere must be 'refuse' or 'ignore'")
        self.api_key = api_key
        self.models = dict(DEFAULT_MODELS if models is None else models)
        self.generation_models = dict(GENERATION_MODELS if generation_models is None else generation_models)
        self.aliases = dict(aliases or {})
        self.default_generation_model = default_generation_model
        self.quality_elsewhere, self.max_prompt_length = quality_elsewhere, max_prompt_length
        self.generation_revised_prompt = generation_revised_prompt
        self.answer_urls, self.url_ttl = answer_urls, url_ttl
        self.cost_ticks = cost_ticks
        self.served: dict[str, tuple[bytes, float]] = {}  # name → (jpeg, expiry)
        self._expired: list[list[Any]] = []  # [route or None, answers still to give as already-expired URLs]

    # ------------------------------------------------------------------ routes and helpers
    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def edit_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/images/edits"]

    @property
    def generation_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/images/generations"]

    @property
    def downloads(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith("/imgen/")]

    def _routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/images/edits", self._edit)
        router.add_post("/v1/images/generations", self._generation)
        router.add_get("/imgen/{name}", self._served)
        router.add_route("*", "/{tail:.*}", self._not_found)

    def expire_urls(self) -> None:
        """Make every served image URL expire now."""
        self.served = {name: (data, 0.0) for name, (data, _) in self.served.items()}

    def inject(self, kind: str, *, times: int = 1, retry_after: float | None = None, delay: float = 0.0,
               on: str | EllipsisType | None = ...) -> None:
        """Queue one of :data:`INJECTABLE`. ``url_expired`` answers the next ``times`` successful answers ``on``
        the route (default edits; ``"generation"``; None: either) with image URLs that have already expired (the
        ephemeral-result row of providers.md §7). ``block_reason`` answers 200 with no image and a top-level
        ``block_reason``, the input-moderation form Comfy's schema of xAI shows [3P, UNCONFIRMED from xAI]."""
        if kind == "url_expired":
            self._expired.append([self.failure_route if isinstance(on, EllipsisType) else on, times])
            return
        super().inject(kind, times=times, retry_after=retry_after, delay=delay, on=on)

    def _canned(self, kind: str, retry_after: float | None) -> Canned:
        """One of :data:`INJECTABLE` (providers.md §4.5 and the xAI column of §7)."""
        wait = 1 if retry_after is None else round(retry_after)
        table: dict[str, Canned] = {
            "invalid_api_key": (400, {"code": INVALID, "error": "Incorrect API key provided: xa***sf. You can "
                                      "obtain an API key from https://console.x.ai."}, {}),
            "invalid_argument": (400, {"code": INVALID, "error": "Argument not supported: style"}, {}),
            "moderation": (400, {"code": INVALID, "error": "Generated image rejected by content moderation.",
                                 "usage": {"cost_in_usd_ticks": 500_000_000}}, {}),
            "permission_denied": (403, {"code": "The caller does not have permission to execute the specified "
                                        "operation", "error": "Your team is blocked."}, {}),
            "model_not_found": (404, {"code": "Some requested entity was not found",
                                      "error": "The model grok-x does not exist or your team does not have "
                                      "access to it."}, {}),
            "credits_exhausted": (429, {"code": EXHAUSTED, "error": "Your team 0f1e2d has either used all "
                                        "available credits or reached its monthly spending limit. To continue "
                                        "making API requests, please purchase more credits or raise your "
                                        "spending limit."}, {}),
            "capacity": (429, {"code": EXHAUSTED, "error": "The service is temporarily at capacity. Please retry "
                               "your request shortly."}, {"retry-after": str(wait)}),
            "relayed_moderation": (400, {"error": {"message": "Generated image rejected by content moderation.",
                                                   "type": "invalid_request_error"}}, {}),
            "relayed_server_error": (500, {"error": {"message": "upstream failed", "type": "server_error"}}, {}),
            "server_error": (500, {"code": "Internal error", "error": "Internal server error."}, {}),
            "service_unavailable": (503, {"code": "The service is currently unavailable",
                                          "error": "Service temporarily unavailable."}, {}),
            "block_reason": (200, {"data": [], "block_reason": "The request was blocked by input moderation.",
                                   "usage": {"cost_in_usd_ticks": 0}}, {}),
        }
        if kind not in table:
            raise ValueError(f"unknown failure kind {kind!r}; choose from {', '.join(INJECTABLE)}")
        return table[kind]

    # ------------------------------------------------------------------ plumbing
    def _stamp(self, response: web.StreamResponse, request_id: str, started: float) -> None:
        response.headers["x-request-id"] = request_id
        response.headers["x-metrics-e2e-ms"] = str(int((time.perf_counter() - started) * 1000))

    def _shutting_down(self) -> Reject:
        return _Reject(503, "Emulator shutting down.", "The service is currently unavailable")

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        raise _Reject(404, f"No handler found for {request.method} {request.path}",
                      "Some requested entity was not found")

    async def _served(self, request: web.Request) -> web.StreamResponse:
        data, expiry = self.served.get(request.match_info["name"], (b"", 0.0))
        if not data or time.time() >= expiry:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=data, content_type="image/jpeg")

    # ------------------------------------------------------------------ what both routes check
    async def _read_body(self, request: web.Request, route: str,
                         fields: frozenset[str]) -> dict[str, Any] | web.StreamResponse:
        """The key, then a failure queued for ``route`` (returned: it is the answer), then a JSON object body
        naming only ``fields`` (recorded as the request's ``json``)."""
        raw = await request.read()
        rec = request[RECORD]
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] != self.api_key:
            raise _Reject(400, "Incorrect API key provided: xa***ey. You can obtain an API key from "
                          "https://console.x.ai.")
        if (canned := await self._failure(request, route)) is not None:
            return canned
        if request.content_type != "application/json":  # multipart (the OpenAI SDK's edit()) is refused
            raise _Reject(415, "Expected request with `Content-Type: application/json`")
        try:
            body = rec.json = json.loads(raw)
        except ValueError:
            raise _Reject(400, "Failed to parse the request body as JSON.") from None
        if not isinstance(body, dict):
            raise _Reject(400, "The request body must be a JSON object.")
        for name in body:
            if name not in fields:
                raise _unsupported(name)
        return body

    @staticmethod
    def _check_options(body: Mapping[str, Any]) -> None:
        """The enums of :data:`ENUMS` and ``user``, checked last on both routes."""
        for name, allowed in ENUMS.items():
            if name in body and body[name] not in allowed:
                raise _Reject(400, f"Invalid {name}: {body[name]!r}; expected one of {', '.join(allowed)}")
        if "user" in body and not isinstance(body["user"], str):
            raise _Reject(400, "user must be a string")

    # ------------------------------------------------------------------ the edit route
    async def _edit(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_body(request, "edit", FIELDS)
        if isinstance(body, web.StreamResponse):
            return body
        model = body.get("model")
        model = self.aliases.get(model, model) if isinstance(model, str) else model
        if model not in self.models:
            raise _Reject(404, f"The model {model} does not exist or your team does not have access to it.",
                          "Some requested entity was not found")
        if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
            raise _Reject(400, "prompt must be a non-empty string")
        if ("image" in body) == ("images" in body):
            raise _Reject(400, "Exactly one of `image` or `images` must be provided.")
        refs = [body["image"]] if "image" in body else body["images"]
        if not isinstance(refs, list) or not 1 <= len(refs) <= MAX_REFERENCES:
            raise _Reject(400, f"`images` must hold between 1 and {MAX_REFERENCES} references.")
        dims = [self._reference(ref) for ref in refs]
        n = body.get("n", 1)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10:
            raise _Reject(400, "n must be an integer between 1 and 10")
        self._check_options(body)
        if self.hang:
            return await self._hang()
        await self._sleep(self.latency)
        return web.json_response(self._result(body, model, n, dims))

    def _reference(self, ref: Any) -> tuple[int, int]:
        if not isinstance(ref, dict) or set(ref) - {"url", "type", "file_id"} or ref.get("type", "image_url") \
                != "image_url" or ("url" in ref) == ("file_id" in ref):
            raise _Reject(400, 'An image reference is {"url": ..., "type": "image_url"} or {"file_id": ...}.')
        if "file_id" in ref:
            raise _Reject(404, f"File {ref['file_id']} not found.", "Some requested entity was not found")
        url = ref["url"]
        if not isinstance(url, str):
            raise _Reject(400, "image url must be a string")
        if url.startswith("data:"):
            head, _, payload = url.partition(",")
            if not head.endswith(";base64") or head[5:-7] not in ("image/png", "image/jpeg", "image/webp"):
                raise _Reject(400, "Unsupported image data URI; expected base64 image/png, image/jpeg or image/webp.")
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise _Reject(400, "Invalid base64 in image data URI.") from None
        elif url.startswith(("http://", "https://")) and url in self._urls:
            data = self._urls[url]
        else:
            raise _Reject(400, f"Unable to fetch image from {url[:64]}")
        try:
            with Image.open(io.BytesIO(data), formats=("PNG", "JPEG", "WEBP")) as im:
                im.load()
                return im.size
        except Exception:
            raise _Reject(400, "Unable to decode the input image.") from None

    def _take_expired(self, route: str) -> bool:
        entry = next((e for e in self._expired if e[0] is None or e[0] == route), None)
        if entry is None:
            return False
        entry[1] -= 1
        if entry[1] <= 0:
            self._expired.remove(entry)
        return True

    @staticmethod
    def _size(body: Mapping[str, Any], base: tuple[int, int]) -> tuple[int, int]:
        """Output size: the long side from ``resolution``, the ratio from ``aspect_ratio`` (``auto``: ``base``)."""
        long_side = 2048 if body.get("resolution") == "2k" else 1024
        ratio = body.get("aspect_ratio", "auto")
        if ratio == "auto":
            rw, rh = float(base[0]), float(base[1])
        else:
            a, _, b = ratio.partition(":")
            rw, rh = float(a), float(b)
        scale = long_side / max(rw, rh)
        return max(16, round(rw * scale)), max(16, round(rh * scale))

    def _images(self, body: Mapping[str, Any], n: int, size: tuple[int, int], route: str,
                revised_prompt: bool) -> list[dict[str, Any]]:
        expired = self._take_expired(route)
        as_url = expired or self.answer_urls or body.get("response_format", "url") == "url"
        data = []
        for i in range(n):
            buf = io.BytesIO()
            Image.new("RGB", size, (40 + 30 * i, 120, 200)).save(buf, "JPEG", quality=80)
            jpeg = buf.getvalue()
            if as_url:
                name = f"xai-imgen-{secrets.token_hex(8)}.jpeg"
                self.served[name] = (jpeg, 0.0 if expired else time.time() + self.url_ttl)
                item = {"url": f"{self.url}/imgen/{name}", "mime_type": "image/jpeg"}
            else:
                item = {"b64_json": base64.b64encode(jpeg).decode(), "mime_type": "image/jpeg"}
            if revised_prompt:
                item["revised_prompt"] = ""
            data.append(item)
        return data

    def _result(self, body: Mapping[str, Any], model: str, n: int, dims: list[tuple[int, int]]) -> dict[str, Any]:
        data = self._images(body, n, self._size(body, dims[0]), "edit", True)
        per_image, per_input = self.models[model]
        ticks = round((per_image * n + per_input * len(dims)) * TICKS_PER_USD)
        ticks = ticks if self.cost_ticks is None else self.cost_ticks
        return {"data": data, "usage": {"cost_in_usd_ticks": ticks}}

    # ------------------------------------------------------------------ the generation route
    async def _generation(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_body(request, self.GENERATION, GENERATION_FIELDS)
        if isinstance(body, web.StreamResponse):
            return body
        model = body.get("model")
        if model is None:
            model = self.default_generation_model  # model is nullable [SPEC]; the docs' example default
        model = self.aliases.get(model, model) if isinstance(model, str) else model
        if not isinstance(model, str) or model not in self.generation_models:
            raise _Reject(404, f"The model {model} does not exist or your team does not have access to it.",
                          "Some requested entity was not found")
        price = self.generation_models[model]
        if "prompt" not in body:  # the spec's 422 for missing fields [SPEC]
            raise _Reject(422, "Failed to deserialize the JSON body into the target type: missing field `prompt`")
        prompt = body["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise _Reject(400, "prompt must be a non-empty string")
        if self.max_prompt_length is not None and len(prompt) > self.max_prompt_length:
            raise _Reject(400, f"The prompt is too long: {len(prompt)} characters, the maximum for {model} is "
                          f"{self.max_prompt_length}.")
        n = body.get("n", 1)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10:
            raise _Reject(400, "n must be an integer between 1 and 10")
        tiered = isinstance(price, Mapping)
        if "quality" in body and not tiered and self.quality_elsewhere == "refuse":
            raise _unsupported("quality")
        self._check_options(body)
        if self.hang:
            return await self._hang()
        await self._sleep(self.latency)
        if isinstance(price, Mapping):
            per_image = price[(body.get("quality", "medium"), body.get("resolution", "1k"))]
        else:
            per_image = price
        data = self._images(body, n, self._size(body, (1, 1)), self.GENERATION, self.generation_revised_prompt)
        ticks = round(per_image * n * TICKS_PER_USD) if self.cost_ticks is None else self.cost_ticks
        return web.json_response({"data": data, "usage": {"cost_in_usd_ticks": ticks}})
