"""Strict emulator of the Black Forest Labs API (wire rules: ``/work/shared/reference/providers.md`` §5).

A real aiohttp server on a loopback port that plays three hosts at once, under different path prefixes:

- the global API: ``POST /v1/{model}`` (``x-key``; JSON; Kontext or FLUX.2 fields checked like FastAPI,
  unknown fields → 422 ``extra_forbidden``), and ``GET /v1/get_result?id=…``;
- text-to-image on the same routes: Kontext and FLUX.2 without ``input_image`` (Kontext ~1 MP at
  ``aspect_ratio``, default 1:1; FLUX.2 ``width``/``height``, default 1024x1024), and the FLUX.1 generation
  endpoints ``/v1/flux-pro-1.1`` (``FluxPro11Inputs``: ``width``/``height`` multiples of 32 in 256-1440,
  default 1024x768), ``/v1/flux-dev`` (the same plus ``steps``/``guidance``) and ``/v1/flux-pro-1.1-ultra``
  (``FluxUltraInput``: ``aspect_ratio`` 21:9-9:21, default 16:9, ~4 MP, ``raw``), whose bodies are validated
  by pydantic models of BFL's published schemas, so their 422s are FastAPI's own;
- a regional cluster: ``GET /{region}/v1/get_result?id=…`` — the ``polling_url`` every submit returns;
- a delivery host: ``GET /delivery/{name}?se=…&sig=…`` — signed samples that expire after ``sample_ttl``
  seconds (then 403 ``AuthenticationFailed``; unknown names 404).

Each task walks ``steps`` (default Pending → Generating), one per poll, then ends Ready (or the outcome
injected for it). Tasks not yet finished count against a per-model concurrency cap (24, or 6 for
``flux-kontext-max``); above it a submit gets 429.

Every submit answers ``cost`` (credits), ``input_mp`` and ``output_mp`` (``flux1_cost_fields=False``: the
FLUX.1 endpoints answer only ``{id, polling_url}``, as their legacy docs show). Submits are recorded in
:attr:`submits`, split into :attr:`edit_submits` (with an ``input_image*``) and :attr:`generation_submits`;
each :class:`Task` knows its ``operation``.

    async with BflEmulator(steps=("Pending",)) as emu:
        provider = BflProvider(name="bfl", base_url=emu.base_url, api_key=emu.api_key, poll_schedule=...)
        emu.inject("content_moderated")       # the next task ends Content Moderated
        emu.inject("insufficient_credits")    # the next submit answers 402
        assert emu.generation_submits[-1].path == "/v1/flux-pro-1.1"
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import EllipsisType
from typing import Any

from aiohttp import web
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .base import RECORD, Canned, LoopbackEmulator, RecordedRequest, Reject

__all__ = ["GENERATION_MODELS", "INJECTABLE", "MODELS", "BflEmulator", "RecordedRequest", "Task"]


@dataclass(frozen=True)
class Model:
    kind: str  # "kontext" | "flux2" | "flux1" (FLUX1.1 [pro], FLUX.1 [dev]) | "ultra" (FLUX1.1 [pro] Ultra)
    max_images: int
    first: float  # credits for the first output megapixel (the flat price for Kontext, FLUX.1 and Ultra)
    per_mp: float = 0.0  # credits per further output MP and per input MP (FLUX.2)
    extra: frozenset[str] = frozenset()


MODELS = {
    "flux-kontext-pro": Model("kontext", 4, 4),
    "flux-kontext-max": Model("kontext", 4, 8),
    "flux-2-pro": Model("flux2", 8, 3, 1.5),
    "flux-2-max": Model("flux2", 8, 7, 3),
    "flux-2-flex": Model("flux2", 8, 5, 5, frozenset({"prompt_upsampling", "steps", "guidance"})),
    "flux-2-klein-4b": Model("flux2", 4, 1.4, 0.1),
    "flux-2-klein-9b": Model("flux2", 4, 1.5, 0.2),
}
#: Text-to-image-only endpoints (the edit endpoints above also generate without ``input_image``): FLUX.1,
#: flat per image [DOC pricing; flux-dev $0.025 3P openai-hk].
GENERATION_MODELS = {
    "flux-pro-1.1": Model("flux1", 0, 4),
    "flux-dev": Model("flux1", 0, 2.5),
    "flux-pro-1.1-ultra": Model("ultra", 0, 6),
}
FLAT = ("kontext", "flux1", "ultra")
COMMON = frozenset({"prompt", "seed", "output_format", "safety_tolerance", "webhook_url", "webhook_secret"})
KONTEXT = COMMON | {"aspect_ratio", "prompt_upsampling"}
FLUX2 = COMMON | {"width", "height", "disable_pup"}
OUTCOMES = {"error_status": "Error", "request_moderated": "Request Moderated",
            "content_moderated": "Content Moderated", "task_not_found": "Task not found"}
HTTP_FAILURES = ("not_authenticated", "forbidden", "validation", "insufficient_credits", "rate_limit",
                 "server_error", "unavailable")
INJECTABLE = (*HTTP_FAILURES, *OUTCOMES, "hang", "disconnect")


# ---------------------------------------------------------------------------- FLUX.1 schemas [SPEC notes §2.4]
class OutputFormat(StrEnum):
    """``OutputFormat`` of the FLUX.1 schemas (no webp in this schema version)."""

    jpeg = "jpeg"
    png = "png"


def _ratio(value: str) -> tuple[int, int]:
    a, _, b = value.partition(":")
    if not (a.isdigit() and b.isdigit() and int(a) and int(b)) or not 9 / 21 <= int(a) / int(b) <= 21 / 9:
        raise ValueError("Aspect ratio must be between 21:9 and 9:21")
    return int(a), int(b)


class FluxPro11Inputs(BaseModel):
    """``POST /v1/flux-pro-1.1``: every field optional."""

    model_config = ConfigDict(extra="forbid")
    prompt: str | None = ""
    image_prompt: str | None = None
    width: int = Field(1024, multiple_of=32, ge=256, le=1440)
    height: int = Field(768, multiple_of=32, ge=256, le=1440)
    prompt_upsampling: bool = False
    seed: int | None = None
    safety_tolerance: int = Field(2, ge=0, le=6)
    output_format: OutputFormat | None = OutputFormat.jpeg
    webhook_url: str | None = Field(None, min_length=1, max_length=2083)
    webhook_secret: str | None = None


class FluxDevInputs(FluxPro11Inputs):
    """``POST /v1/flux-dev``: FLUX1.1 [pro]'s fields plus ``steps`` and ``guidance``."""

    steps: int = Field(28, ge=1, le=50)
    guidance: float = Field(3.0, ge=1.5, le=5)


class FluxUltraInput(BaseModel):
    """``POST /v1/flux-pro-1.1-ultra``: no ``width``/``height``; ~4 MP at ``aspect_ratio``."""

    model_config = ConfigDict(extra="forbid")
    prompt: str | None = ""
    prompt_upsampling: bool = False
    seed: int | None = None
    aspect_ratio: str = "16:9"
    safety_tolerance: int = Field(2, ge=0, le=6)
    output_format: OutputFormat | None = OutputFormat.jpeg
    raw: bool = False
    image_prompt: str | None = None
    image_prompt_strength: float = Field(0.1, ge=0, le=1)
    webhook_url: str | None = Field(None, min_length=1, max_length=2083)
    webhook_secret: str | None = None

    @field_validator("aspect_ratio")
    @classmethod
    def _check_ratio(cls, value: str) -> str:
        _ratio(value)
        return value


SCHEMAS: dict[str, type[BaseModel]] = {"flux-pro-1.1": FluxPro11Inputs, "flux-dev": FluxDevInputs,
                                       "flux-pro-1.1-ultra": FluxUltraInput}


def _fastapi_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as FastAPI answers them: ``loc`` under ``body``, no ``url``, ``ctx`` JSON-encoded
    (an exception becomes ``{}``, as ``jsonable_encoder`` makes it)."""
    out = []
    for err in exc.errors(include_url=False):
        item: dict[str, Any] = {"type": err["type"], "loc": ["body", *err["loc"]], "msg": err["msg"],
                                "input": err["input"]}
        if "ctx" in err:
            item["ctx"] = {k: ({} if isinstance(v, Exception) else v) for k, v in err["ctx"].items()}
        out.append(item)
    return out


@dataclass
class Task:
    id: str
    model: str
    body: dict[str, Any]
    size: tuple[int, int]
    output_format: str
    cost: float
    outcome: str = "Ready"
    polls: int = 0
    status: str = "Pending"
    sample: str | None = None
    #: ``"edit"`` (an ``input_image*`` was given) or ``"generation"``.
    operation: str = "edit"


def _is_image_field(name: str) -> bool:
    return name == "input_image" or name.startswith("input_image_")


class _Reject(Reject):
    """BFL's FastAPI error body: ``{"detail": <string or list of validation errors>}``."""

    def __init__(self, status: int, detail: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, {"detail": detail}, headers)


def _invalid(field_name: str, msg: str, kind: str = "value_error", value: Any = None) -> _Reject:
    return _Reject(422, [{"type": kind, "loc": ["body", field_name], "msg": msg, "input": value}])


class BflEmulator(LoopbackEmulator):
    """BFL on 127.0.0.1: submit, regional polling, expiring delivery. Failures are queued ``on`` the
    ``"submit"`` (default), ``"poll"`` or ``"sample"`` route.

    Arguments: ``api_key``; ``steps`` (non-terminal statuses a task shows, one per poll, before its
    outcome); ``sample_ttl`` seconds a sample URL lives (default 600); ``concurrency`` per-model caps
    (``default_concurrency`` for the rest); ``region`` path prefix of polling URLs; ``latency`` before
    every submit and poll answer; ``hang`` never answers submits; ``flux1_cost_fields`` (default True: the
    FLUX.1 endpoints answer ``cost``/``input_mp``/``output_mp`` as the newer OpenAPI has them; False: only
    ``{id, polling_url}``, as the legacy docs show); ``flux2_min_side`` the smallest FLUX.2 ``width``/``height``
    (64 per the OpenAPI; the help centre says 256 [CONFLICT]).
    """

    failure_route = "submit"

    def __init__(self, api_key: str = "bfl-key", *, steps: Sequence[str] = ("Pending", "Generating"),
                 sample_ttl: float = 600.0, concurrency: Mapping[str, int] | None = None,
                 default_concurrency: int = 24, region: str = "us1", latency: float = 0.0, hang: bool = False,
                 flux1_cost_fields: bool = True, flux2_min_side: int = 64, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(latency=latency, hang=hang, host=host, port=port)
        self.api_key = api_key
        self.flux1_cost_fields, self.flux2_min_side = flux1_cost_fields, flux2_min_side
        self.steps = tuple(steps)
        self.sample_ttl = sample_ttl
        self.concurrency = {"flux-kontext-max": 6, **(concurrency or {})}
        self.default_concurrency = default_concurrency
        self.region = region
        self.tasks: dict[str, Task] = {}
        self.samples: dict[str, tuple[bytes, float]] = {}  # name → (image, expiry)
        self._outcomes: list[str] = []

    # ------------------------------------------------------------------ routes and helpers
    @property
    def base_url(self) -> str:
        return self.url

    @property
    def submits(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST"]

    @property
    def edit_submits(self) -> list[RecordedRequest]:
        """Submits with an ``input_image*`` field."""
        return [r for r in self.submits if isinstance(r.json, dict) and any(map(_is_image_field, r.json))]

    @property
    def generation_submits(self) -> list[RecordedRequest]:
        """Submits (JSON objects) without an ``input_image*`` field: text-to-image."""
        return [r for r in self.submits if isinstance(r.json, dict) and not any(map(_is_image_field, r.json))]

    @property
    def polls(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/get_result")]

    @property
    def downloads(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith("/delivery/")]

    def _routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/{model}", self._submit)
        router.add_get("/v1/get_result", self._poll)
        router.add_get(f"/{self.region}/v1/get_result", self._poll)
        router.add_get("/delivery/{name}", self._sample)
        router.add_route("*", "/{tail:.*}", self._not_found)

    def expire_samples(self) -> None:
        self.samples = {name: (data, 0.0) for name, (data, _) in self.samples.items()}

    def forget(self, task_id: str) -> None:
        """Drop a task: polls for it now answer ``Task not found``."""
        self.tasks.pop(task_id, None)

    def inject(self, kind: str, *, times: int = 1, retry_after: float | None = None, delay: float = 0.0,
               on: str | EllipsisType | None = ...) -> None:
        """Queue one of :data:`INJECTABLE` (the BFL column of providers.md §7).

        HTTP failures answer the next ``times`` requests ``on`` a route; the outcomes (``error_status``,
        ``request_moderated``, ``content_moderated``, ``task_not_found``) end the next ``times`` tasks.
        """
        if kind in OUTCOMES:
            self._outcomes.extend([OUTCOMES[kind]] * times)
            return
        super().inject(kind, times=times, retry_after=retry_after, delay=delay, on=on)

    def _canned(self, kind: str, retry_after: float | None) -> Canned:
        wait = 1 if retry_after is None else round(retry_after)
        table: dict[str, Canned] = {
            "not_authenticated": (401, {"detail": "Not authenticated"}, {}),
            "forbidden": (403, {"detail": "API key does not have permission for this endpoint"}, {}),
            "validation": (422, _invalid("seed", "Input should be a valid integer").body, {}),
            "insufficient_credits": (402, {"detail": "Insufficient credits. Please add credits to continue."},
                                     {}),
            "rate_limit": (429, {"detail": "You have exceeded the number of active tasks."},
                           {"Retry-After": str(wait)}),
            "server_error": (500, {"detail": "Internal Server Error"}, {}),
            "unavailable": (503, {"detail": "Service temporarily unavailable for maintenance"}, {}),
        }
        if kind not in table:
            raise ValueError(f"unknown failure kind {kind!r}; choose from {', '.join(INJECTABLE)}")
        return table[kind]

    def _shutting_down(self) -> Reject:
        return _Reject(503, "Emulator shutting down.")

    def _check_key(self, request: web.Request) -> None:
        key = request.headers.get("x-key")
        if key is None:
            raise _Reject(401, "Not authenticated")
        if key != self.api_key:
            raise _Reject(403, "Invalid API key")

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        raise _Reject(404, "Not Found")

    # ------------------------------------------------------------------ submit
    async def _submit(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self._check_key(request)
        model = MODELS.get(request.match_info["model"]) or GENERATION_MODELS.get(request.match_info["model"])
        if model is None:
            raise _Reject(404, "Not Found")
        if (canned := await self._failure(request, "submit")) is not None:
            return canned
        if request.content_type != "application/json":
            raise _invalid("body", "Input should be a valid dictionary", "model_attributes_type")
        try:
            body = request[RECORD].json = json.loads(raw)
        except ValueError:
            raise _invalid("body", "JSON decode error", "json_invalid") from None
        if not isinstance(body, dict):
            raise _invalid("body", "Input should be a valid dictionary", "model_attributes_type")
        name = request.match_info["model"]
        if model.kind in ("flux1", "ultra"):
            size, fmt, in_mp = self._validate_flux1(name, body)
        else:
            size, fmt, in_mp = self._validate(model, body)
        active = sum(1 for t in self.tasks.values() if t.model == name and t.status in ("Pending", *self.steps))
        if active >= self.concurrency.get(name, self.default_concurrency):
            raise _Reject(429, f"You have exceeded the number of active tasks ({active}) for {name}.",
                          {"Retry-After": "1"})
        if self.hang:
            return await self._hang()
        await self._sleep(self.latency)
        out_mp = size[0] * size[1] / 1_000_000
        cost = model.first if model.kind in FLAT else round(
            model.first + max(0.0, out_mp - 1) * model.per_mp + in_mp * model.per_mp, 2)
        task = Task(secrets.token_hex(16), name, body, size, fmt, cost,
                    outcome=self._outcomes.pop(0) if self._outcomes else "Ready",
                    status=self.steps[0] if self.steps else "Pending",
                    operation="edit" if any(map(_is_image_field, body)) else "generation")
        self.tasks[task.id] = task
        polling_url = f"{self.base_url}/{self.region}/v1/get_result?id={task.id}"
        if model.kind in ("flux1", "ultra") and not self.flux1_cost_fields:
            return web.json_response({"id": task.id, "polling_url": polling_url})
        return web.json_response({"id": task.id, "cost": cost, "input_mp": round(in_mp, 2),
                                  "output_mp": round(out_mp, 2), "polling_url": polling_url})

    def _validate(self, model: Model, body: dict[str, Any]) -> tuple[tuple[int, int], str, float]:
        image_fields = ["input_image", *(f"input_image_{i}" for i in range(2, model.max_images + 1))]
        allowed = (KONTEXT if model.kind == "kontext" else FLUX2) | model.extra | set(image_fields)
        for name in body:
            if name not in allowed:
                raise _invalid(name, "Extra inputs are not permitted", "extra_forbidden", body[name])
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            raise _invalid("prompt", "Field required", "missing")
        dims = [self._image(name, body[name]) for name in image_fields if name in body]
        if dims and "input_image" not in body:
            raise _invalid("input_image", "input_image is required when further references are given")
        if "seed" in body and (isinstance(body["seed"], bool) or not isinstance(body["seed"], int)):
            raise _invalid("seed", "Input should be a valid integer", "int_type", body["seed"])
        fmt = body.get("output_format", "png" if model.kind == "kontext" else "jpeg")
        if fmt not in ("jpeg", "png", "webp"):
            raise _invalid("output_format", "Input should be 'jpeg', 'png' or 'webp'", "enum", fmt)
        tolerance = body.get("safety_tolerance", 2)
        if not isinstance(tolerance, int) or not 0 <= tolerance <= (6 if model.kind == "kontext" else 5):
            raise _invalid("safety_tolerance", "safety_tolerance is out of range", value=tolerance)
        in_mp = sum(w * h for w, h in dims) / 1_000_000
        base = dims[0] if dims else (1024, 1024)
        if model.kind == "kontext":
            ratio = body.get("aspect_ratio")
            if ratio is None:
                return base, fmt, in_mp
            a, _, b = str(ratio).partition(":")
            if not (a.isdigit() and b.isdigit() and int(b)) or not 9 / 21 <= int(a) / int(b) <= 21 / 9:
                raise _invalid("aspect_ratio", "Aspect ratio must be between 21:9 and 9:21", value=ratio)
            scale = (1024 * 1024 / (int(a) * int(b))) ** 0.5
            return (round(int(a) * scale / 32) * 32, round(int(b) * scale / 32) * 32), fmt, in_mp
        if ("width" in body) != ("height" in body):
            raise _invalid("height" if "width" in body else "width", "width and height go together")
        if "width" not in body:
            return base, fmt, in_mp
        w, h = body["width"], body["height"]
        for name, value in (("width", w), ("height", h)):
            if isinstance(value, bool) or not isinstance(value, int) or value < self.flux2_min_side or value % 16:
                raise _invalid(name, f"Input should be a multiple of 16 and at least {self.flux2_min_side}",
                               value=value)
        if w * h > 4 * 1024 * 1024:
            raise _invalid("width", "The output may be at most 4 megapixels", value=w)
        return (w, h), fmt, in_mp

    def _validate_flux1(self, name: str, body: dict[str, Any]) -> tuple[tuple[int, int], str, float]:
        """FLUX1.1 [pro], FLUX.1 [dev] and FLUX1.1 [pro] Ultra: the published pydantic schema decides."""
        try:
            inputs = SCHEMAS[name].model_validate(body)
        except ValidationError as exc:
            raise _Reject(422, _fastapi_errors(exc)) from None
        image_prompt = getattr(inputs, "image_prompt", None)
        in_mp = 0.0
        if image_prompt is not None:
            w, h = self._image("image_prompt", image_prompt)
            in_mp = w * h / 1_000_000
        assert isinstance(inputs, FluxPro11Inputs | FluxUltraInput)
        fmt = (inputs.output_format or OutputFormat.jpeg).value
        if isinstance(inputs, FluxUltraInput):
            a, b = _ratio(inputs.aspect_ratio)
            scale = (4 * 1024 * 1024 / (a * b)) ** 0.5  # about 4 MP [DOC], snapped to 32
            return (round(a * scale / 32) * 32, round(b * scale / 32) * 32), fmt, in_mp
        assert isinstance(inputs, FluxPro11Inputs)
        return (inputs.width, inputs.height), fmt, in_mp

    def _image(self, name: str, value: Any) -> tuple[int, int]:
        if not isinstance(value, str):
            raise _invalid(name, "Input should be a valid string", "string_type", None)
        if value.startswith(("http://", "https://")):
            if value not in self._urls:
                raise _Reject(400, f"Failed to download {name} from the given URL")
            data = self._urls[value]
        else:
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise _invalid(name, "Input must be a base64-encoded image or a URL") from None
        try:
            with Image.open(io.BytesIO(data), formats=("PNG", "JPEG", "WEBP")) as im:
                im.load()
                return im.size
        except Exception:
            raise _Reject(400, f"Could not decode {name} as an image") from None

    # ------------------------------------------------------------------ poll and delivery
    async def _poll(self, request: web.Request) -> web.StreamResponse:
        self._check_key(request)
        if (canned := await self._failure(request, "poll")) is not None:
            return canned
        task_id = request.query.get("id")
        if not task_id:
            raise _Reject(422, [{"type": "missing", "loc": ["query", "id"], "msg": "Field required"}])
        await self._sleep(self.latency)
        task = self.tasks.get(task_id)
        if task is not None and task.outcome == "Task not found" and task.polls >= len(self.steps):
            task.status, task = "Task not found", None  # the task vanished upstream
        if task is None:
            return web.json_response({"id": task_id, "status": "Task not found"})
        task.polls += 1
        answer: dict[str, Any] = {"id": task.id, "progress": None, "details": None, "preview": None,
                                  "result": None}
        if task.polls <= len(self.steps):
            task.status = self.steps[task.polls - 1]
            answer["progress"] = round(task.polls / (len(self.steps) + 1), 2)
        else:
            task.status = task.outcome
            if task.outcome == "Ready":
                if task.sample is None:
                    task.sample = self._render(task)
                answer["result"] = {"sample": task.sample, "seed": task.body.get("seed", 1234),
                                    "prompt": task.body.get("prompt") or "", "start_time": 1.0, "end_time": 9.0,
                                    "duration": 8.0}
                answer["cost"] = task.cost
            elif task.outcome.endswith("Moderated"):
                answer["details"] = {"Moderation Reasons": ["Content Moderation"]}
            elif task.outcome == "Error":
                answer["details"] = {"error": "Generation failed."}
        answer["status"] = task.status
        return web.json_response(answer)

    def _render(self, task: Task) -> str:
        buf = io.BytesIO()
        Image.new("RGB", task.size, (200, 100, 50)).save(buf, task.output_format.upper())
        name = f"{task.id}.{task.output_format}"
        expiry = time.time() + self.sample_ttl
        self.samples[name] = (buf.getvalue(), expiry)
        return f"{self.base_url}/delivery/{name}?se={int(expiry)}&sp=r&sig={secrets.token_hex(16)}"

    async def _sample(self, request: web.Request) -> web.StreamResponse:
        if (canned := await self._failure(request, "sample")) is not None:
            return canned
        entry = self.samples.get(request.match_info["name"])
        if entry is None:
            return web.Response(status=404, content_type="application/xml", text='<?xml version="1.0"?><Error>'
                                "<Code>BlobNotFound</Code><Message>The specified blob does not exist.</Message>"
                                "</Error>")
        if time.time() >= entry[1]:
            return web.Response(status=403, content_type="application/xml", text='<?xml version="1.0"?><Error>'
                                "<Code>AuthenticationFailed</Code><AuthenticationErrorDetail>Signed expiry time "
                                "has passed</AuthenticationErrorDetail></Error>")
        ext = request.match_info["name"].rsplit(".", 1)[-1]
        return web.Response(body=entry[0], content_type=f"image/{ext}")
