"""Strict emulator of OpenAI's Images API: ``POST /v1/images/edits``, ``/v1/images/generations`` and
``/v1/images/variations`` (plus a minimal Files API).

A real aiohttp HTTP server on a loopback port. It checks what it receives about as strictly as the real
service (wire rules: ``/work/shared/reference/providers.md`` §1, ``/work/notes/openai-images-spec.md``) and
answers with real, small PNG/JPEG/WebP images. The model rules live in :mod:`.openai_rules`.

    async with OpenAIEmulator(api_key="sk-upstream", latency=0.0) as emu:
        client = AsyncOpenAI(base_url=emu.base_url, api_key="sk-upstream")
        await client.images.edit(model="gpt-image-2", image=("a.png", png, "image/png"), prompt="hi")
        assert emu.edit_requests[-1].fields["model"] == "gpt-image-2"
        await client.images.generate(model="gpt-image-1.5", prompt="an otter")
        assert emu.generation_requests[-1].json == {"model": "gpt-image-1.5", "prompt": "an otter"}

Routes (all under ``base_url`` = ``http://127.0.0.1:PORT/v1``):

* ``POST /images/edits`` - multipart or JSON (:attr:`edit_requests`);
* ``POST /images/generations`` - JSON only (:attr:`generation_requests`). No ``model`` means
  ``default_generation_model`` (``dall-e-2``, as the spec says) unless a GPT-only parameter is present, then
  ``default_gpt_generation_model``. GPT image models answer ``data[].b64_json`` + ``usage`` + the
  ``background/output_format/size/quality`` echo; dall-e-3 answers ``data[].url`` (or ``b64_json``) with a
  ``revised_prompt``; dall-e-2 ``url`` or ``b64_json``;
* ``POST /images/variations`` - multipart only, dall-e-2 only (:attr:`variation_requests`); ``url`` or
  ``b64_json``, no usage;
* ``GET /files/{name}.png`` (at the server root, :attr:`url`) - where every answered ``url`` points, so a client on
  loopback can download it; ``/v1/files...`` - the Files API.

Streaming (``stream=true`` on edits and generations with a GPT image model): ``text/event-stream`` with
``event: image_edit.partial_image`` / ``image_generation.partial_image`` x ``partial_images``, then one
``*.completed`` carrying ``usage``; no ``[DONE]``, no ``id:`` lines. The machinery is :mod:`.streams`, shared
with the Azure emulator. What a gateway test can steer and observe:

* pacing: by default ``latency`` is spread evenly (``latency / events`` before the headers and between events).
  ``stream_interval=s`` instead waits ``latency`` before the headers and ``s`` between consecutive events, so a
  test sees events arrive one by one. ``stream_gate=True`` holds every event until the test calls
  :meth:`release_stream_events` - deterministic "was event k forwarded before k+1 was produced" tests;
* per-event timestamps: every streamed answer appends a :class:`StreamRecord` to :attr:`streams` (also
  :attr:`last_stream`, :meth:`stream_for`). Its ``events`` are :class:`StreamEvent` with ``written_at``
  (``time.perf_counter()`` right after the frame was handed to the socket; CLOCK_MONOTONIC, comparable across
  processes on one Linux host) and ``wall_time`` (``time.time()``);
* mid-stream failures: ``inject("stream_error", after_events=k)`` writes k events, then
  ``event: error`` / ``data: {"type":"error","error":{"message":...,"type":"server_error","param":null,
  "code":"server_error"}}`` and closes the body cleanly; ``inject("stream_disconnect", after_events=k)`` aborts
  the TCP connection after k events; ``inject("stream_hang", after_events=k)`` stops sending after k events and
  keeps the connection open. Same queue semantics as other failures (``times``, ``on`` - default
  ``/v1/images/edits``, pass ``on=OpenAIEmulator.GENERATIONS`` or ``on=None``); only streaming requests consume
  them. :meth:`fail_stream` takes a custom ``message``/``code``/``error_type``. ``k`` >= the number of events
  plays the failure after the completed event;
* client disconnects: when the client goes away while the emulator waits (``latency``, ``hang``, an injected
  ``hang``, between stream events, a stalled or gated stream), the emulator notices within
  ``disconnect_poll`` seconds (0.02 by default; 0 checks only when writing) and stops working on the request:
  the :class:`RecordedRequest` is appended to :attr:`client_disconnects`, and a stream's record gets
  ``client_disconnected=True`` and ``disconnected_at`` (perf_counter). A non-streaming request dropped that way
  keeps ``status=None``.

Points where the public record is thin (marked [UNCONFIRMED] in the reference) are made configurable
rather than guessed silently: see ``strict_response_format``, ``unknown_model_status``,
``multipart_moderation``, ``extra_params``, ``models``, ``default_gpt_generation_model``,
``dalle2_quality_unknown`` and ``echo_safety_identifier``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import json
import math
import secrets
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .base import RECORD, Canned, MalformedMultipart, Part, RecordedRequest, Reject, read_multipart
from .openai_rules import (
    _DATA_URL_RE,
    _HIGH_FIDELITY_EXTRA_TOKENS,
    _MIME_OF,
    _PALETTE,
    _RATE_HEADERS,
    DALLE2,
    DALLE2_MAX_BYTES,
    DALLE2_SIZES,
    DALLE2_UNKNOWN,
    DALLE3,
    DALLE3_QUALITIES,
    DALLE3_SIZES,
    DALLE_FAMILIES,
    DEFAULT_MODELS,
    EDIT_FAMILIES,
    FIDELITIES,
    FILE_PARAMS,
    FILE_PURPOSES,
    GENERATION_PARAMS,
    GPT_IMAGE_1_MINI,
    GPT_IMAGE_2,
    GPT_IMAGE_MAX_BYTES,
    GPT_ONLY_GENERATION_PARAMS,
    GPT_PROMPT_MAX,
    GPT_QUALITIES,
    IMAGE_MIMES,
    IMAGE_URL_MAX_CHARS,
    JSON_PARAMS,
    MASK_MAX_BYTES,
    MAX_IMAGES,
    MULTIPART_PARAMS,
    PROMPT_MAX,
    RESPONSE_FORMATS,
    STYLES,
    VARIATION_PARAMS,
    _APIError,
    _bad_mime,
    _check_body,
    _check_gpt2_size,
    _check_gpt_output,
    _check_gpt_size,
    _check_n,
    _check_prompt,
    _dumps,
    _duplicate,
    _get_enum,
    _get_str,
    _GptOutput,
    _image_tokens,
    _Img,
    _invalid_image,
    _invalid_type,
    _invalid_value,
    _json_kind,
    _mask_key,
    _missing,
    _norm_mime,
    _output_tokens,
    _parse_size,
    _probe,
    _render,
    _render_b64,
    _sse,
    _unknown_param,
)
from .streams import STREAM_INJECTABLE, StreamEvent, StreamFailure, StreamingEmulator, StreamRecord

__all__ = [
    "INJECTABLE",
    "STREAM_INJECTABLE",
    "OpenAIEmulator",
    "RecordedRequest",
    "StoredFile",
    "StreamEvent",
    "StreamFailure",
    "StreamRecord",
]

#: The request being handled in this task (lets ``_hang`` watch its client).
_CURRENT_REQUEST: contextvars.ContextVar[web.Request | None] = contextvars.ContextVar(
    "openai_emulator_request", default=None
)


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


@dataclass
class _Job:
    """One checked request: an edit, a generation or a variation."""

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
    #: ``"edit"``, ``"generation"`` or ``"variation"``.
    operation: str = "edit"
    #: dall-e-3 ``style`` (resolved).
    style: str | None = None
    #: what answers echo as ``safety_identifier`` (the request's, else its ``user``), if anything.
    safety_identifier: str | None = None


#: The name the edit path (and older tests) use.
_Edit = _Job


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

class OpenAIEmulator(StreamingEmulator):
    """Strict OpenAI Images API emulator (edits, generations, variations) on 127.0.0.1 (ephemeral port by
    default).

    Constructor arguments:
        api_key: the only accepted bearer key (``None`` disables auth).
        latency: seconds to wait before answering a successful request (settable attribute). Validation errors
            answer at once; injected failures wait their own ``delay``. Streams: see the module docstring.
        hang: when true, image requests are never answered (until ``stop()``) - for client-timeout tests.
        validate: decode image headers with Pillow (type, dimensions, mode); ``False`` keeps only the cheap
            wire checks (field names, MIME types, enums, ranges).
        strict_response_format: reject ``response_format`` for GPT image models with 400 unknown_parameter
            (observed live behaviour); ``False`` accepts and ignores it.
        models: model id -> rule family (``dall-e-2``, ``dall-e-3``, ``gpt-image-1``, ``gpt-image-1-mini``,
            ``gpt-image-1.5``, ``gpt-image-2``). Defaults to :data:`DEFAULT_MODELS`. Drop the DALL·E ids to
            play their retirement (404 ``model_not_found``).
        default_model: edit model used when the request has no ``model`` (``gpt-image-1.5`` per current SDKs).
        default_generation_model: generation model used when the request has no ``model`` (``dall-e-2``, the
            spec's default).
        default_gpt_generation_model: generation model used when the request has no ``model`` but carries a
            GPT-only parameter (the spec says "a GPT image model", not which: [UNCONFIRMED]). ``None``: use
            ``default_generation_model`` anyway (the GPT-only parameter is then refused as unknown).
        dalle2_quality_unknown: refuse any ``quality`` on dall-e-2 generations as an unknown parameter (what
            third parties observed in 2025) instead of accepting ``standard`` (what the spec says).
        echo_safety_identifier: answers (GPT JSON bodies, ``*.completed`` events) carry ``safety_identifier``
            - the request's, else its ``user`` - as openai-python 3.57's types describe.
        unknown_model_status: 404 ``model_not_found`` (default) or 400 ``invalid_value``.
        multipart_moderation: accept ``moderation`` in multipart edit bodies ([UNCONFIRMED] upstream).
        extra_params: further parameter names to accept and ignore on every route (e.g. newer SDK fields).
        stream_interval: seconds between consecutive stream events (None: spread ``latency``).
        stream_gate: hold each stream event until :meth:`release_stream_events` (settable attribute).
        disconnect_poll: how often (s) a waiting request checks whether its client has gone (0: only on writes).
        record: keep ``requests`` and ``streams``; turn off for long load tests.

    Failures are queued ``on`` a request path (default ``/v1/images/edits``; ``None``: every route).
    """

    #: Paths, for ``on=`` and for filtering :attr:`requests`.
    EDITS = "/v1/images/edits"
    GENERATIONS = "/v1/images/generations"
    VARIATIONS = "/v1/images/variations"

    failure_route = EDITS
    shutdown_timeout = 2.0
    #: stream frames carry orjson-encoded payloads, as every other answer.
    _sse_frame = staticmethod(_sse)

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
        default_generation_model: str = "dall-e-2",
        default_gpt_generation_model: str | None = "gpt-image-1",
        dalle2_quality_unknown: bool = False,
        echo_safety_identifier: bool = True,
        unknown_model_status: int = 404,
        multipart_moderation: bool = True,
        extra_params: Iterable[str] = (),
        stream_interval: float | None = None,
        stream_gate: bool = False,
        disconnect_poll: float = 0.02,
        record: bool = True,
        organization: str = "org-emulator",
        openai_version: str = "2020-10-01",
    ) -> None:
        super().__init__(latency=latency, hang=hang, host=host, port=port, record=record,
                         stream_interval=stream_interval, stream_gate=stream_gate, disconnect_poll=disconnect_poll)
        self.api_key = api_key
        self.validate = validate
        self.strict_response_format = strict_response_format
        self.models: dict[str, str] = dict(DEFAULT_MODELS if models is None else models)
        self.default_model = default_model
        self.default_generation_model = default_generation_model
        self.default_gpt_generation_model = default_gpt_generation_model
        self.dalle2_quality_unknown = dalle2_quality_unknown
        self.echo_safety_identifier = echo_safety_identifier
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
        self._generation_params = GENERATION_PARAMS | extra
        self._variation_params = VARIATION_PARAMS | extra

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
        r.add_post(self.EDITS, self._handle_edits)
        r.add_post(self.GENERATIONS, self._handle_generations)
        r.add_post(self.VARIATIONS, self._handle_variations)
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

    def _posts_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path and r.method == "POST"]

    @property
    def edit_requests(self) -> list[RecordedRequest]:
        """Recorded ``POST /v1/images/edits`` requests."""
        return self._posts_to(self.EDITS)

    @property
    def generation_requests(self) -> list[RecordedRequest]:
        """Recorded ``POST /v1/images/generations`` requests (``.json`` holds the body)."""
        return self._posts_to(self.GENERATIONS)

    @property
    def variation_requests(self) -> list[RecordedRequest]:
        """Recorded ``POST /v1/images/variations`` requests (``.fields`` / ``.files`` hold the form)."""
        return self._posts_to(self.VARIATIONS)

    @property
    def last_request(self) -> RecordedRequest | None:
        return self.requests[-1] if self.requests else None

    def clear(self) -> None:
        """Forget recorded requests, streams, disconnects and referenced URLs (pending failures and stored
        files stay)."""
        self.requests.clear()
        self.url_requests.clear()
        self.streams.clear()
        self.client_disconnects.clear()

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
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        token = _CURRENT_REQUEST.set(request)
        try:
            return await super()._middleware(request, handler)
        finally:
            _CURRENT_REQUEST.reset(token)

    def _dropped(self, request: web.Request) -> asyncio.CancelledError:
        """The client left while the emulator worked: note it and stop (the request keeps ``status=None``)."""
        self._note_disconnect(request)
        return asyncio.CancelledError()

    async def _hang(self) -> web.StreamResponse:
        """Never answer (until the emulator stops), but notice a client that gives up."""
        request = _CURRENT_REQUEST.get()
        if request is None:  # pragma: no cover - every route runs through _middleware
            return await super()._hang()
        while not self._closing.is_set():
            if not await self._wait(request, 3600.0):
                raise self._dropped(request)
        raise self._shutting_down()

    async def _read_json(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            raise _APIError(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
                "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
                "contact us through our help center at help.openai.com.)",
            ) from None
        request[RECORD].json = body
        return body

    @staticmethod
    def _bad_content_type(request: web.Request, expected: str) -> _APIError:
        return _APIError(
            400, f"Invalid Content-Type header ({request.headers.get('Content-Type', '')}), expected {expected}."
        )

    async def _answer(self, request: web.Request, job: _Job) -> web.StreamResponse:
        """A checked request's success answer: hang, stream, or JSON after ``latency``."""
        if self.hang:
            return await self._hang()
        if job.stream:
            return await self._stream(request, self._stream_frames(job), operation=job.operation, model=job.model,
                                      route=request.path, headers=_RATE_HEADERS)
        if not await self._wait(request, self.latency):
            raise self._dropped(request)
        return self._json_response(self._result(job), headers=_RATE_HEADERS)

    async def _receive(
        self, request: web.Request, accepts: tuple[str, ...], default_model: str
    ) -> tuple[list[Part], Any] | web.StreamResponse:
        """What every image route does first: read the body (a form or JSON, as ``accepts`` allows), check the
        key, play a failure queued for the route (returned: it is the answer; ``{model}`` in it is the request's
        model, else ``default_model``), then raise what was wrong with the body. (form parts, JSON body)."""
        rec = request[RECORD]
        parse_error: _APIError | None = None
        parts: list[Part] = []
        body: Any = None
        ctype = request.content_type
        try:
            if ctype == "multipart/form-data" and ctype in accepts:
                parts = await self._read_multipart(request)
                rec.add_parts(parts)
            elif ctype == "application/json" and ctype in accepts:
                body = await self._read_json(request)
            else:
                await request.read()
                raise self._bad_content_type(request, " or ".join(accepts))
        except _APIError as e:
            parse_error = e

        self._check_auth(request)
        model_hint = (
            rec.fields.get("model")
            if body is None
            else (body.get("model") if isinstance(body, dict) else None)
        )
        canned = await self._failure(
            request, request.path, model=model_hint if isinstance(model_hint, str) else default_model
        )
        if canned is not None:
            return canned
        if parse_error is not None:
            raise parse_error
        return parts, body

    def _resolve_model(self, model: Any, default: str | None = None) -> tuple[str, str]:
        if model is None:
            model = default or self.default_model
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

    def _check_edit_model(self, model: str, family: str) -> None:
        if family not in EDIT_FAMILIES:
            raise _invalid_value("model", model, [m for m, f in self.models.items() if f in EDIT_FAMILIES])

    # ---------------------------------------------------------------- /v1/images/edits

    async def _handle_edits(self, request: web.Request) -> web.StreamResponse:
        received = await self._receive(request, ("multipart/form-data", "application/json"), self.default_model)
        if isinstance(received, web.StreamResponse):
            return received
        parts, body = received
        edit = self._parse_multipart_edit(parts) if body is None else self._parse_json_edit(body)
        return await self._answer(request, edit)

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
        self._check_edit_model(model, family)
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
        _check_body(body, self._json_params)
        model, family = self._resolve_model(body.get("model"))
        self._check_edit_model(model, family)
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
            fetched = self._urls.get(value)
            if fetched is None:
                raise _APIError(400, f"Error while downloading {value}.", param=sub, code="invalid_image_url")
            probe = _probe(fetched)
            return _Img(param, index, fetched, _MIME_OF.get(probe[0]) if probe else "application/octet-stream")
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

        prompt = _check_prompt(raw, PROMPT_MAX[DALLE2] if dalle else GPT_PROMPT_MAX)
        n = _check_n(raw, form)

        # size / quality / formats
        if dalle:
            size_s = _get_str(raw, "size") or "1024x1024"
            if size_s not in DALLE2_SIZES:
                raise _invalid_value("size", size_s, DALLE2_SIZES)
            quality = _get_str(raw, "quality")
            if quality is not None and quality != "standard":
                raise _invalid_value("quality", quality, ("standard",))
            response_format = _get_enum(raw, "response_format", RESPONSE_FORMATS) or "url"
            out = _GptOutput(background="opaque")
        else:
            size_s = _check_gpt_size(family, raw)
            quality = _get_enum(raw, "quality", GPT_QUALITIES) or "auto"
            response_format = "b64_json"
            out = _check_gpt_output(raw, form)
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

        return _Job(
            model=model,
            family=family,
            prompt=prompt,
            images=images,
            mask=mask,
            n=n,
            size=_parse_size(size_s),
            quality=quality if not dalle else None,
            response_format=response_format,
            output_format=out.output_format,
            output_compression=out.output_compression,
            background=out.background,
            input_fidelity=fidelity if not dalle else None,
            stream=out.stream,
            partial_images=out.partial_images,
        )

    _check_gpt2_size = staticmethod(_check_gpt2_size)


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

    # ---------------------------------------------------------------- /v1/images/generations

    async def _handle_generations(self, request: web.Request) -> web.StreamResponse:
        received = await self._receive(request, ("application/json",), self.default_generation_model)
        if isinstance(received, web.StreamResponse):
            return received
        _parts, body = received
        return await self._answer(request, self._parse_generation(body))

    def _parse_generation(self, body: Any) -> _Job:
        _check_body(body, self._generation_params)

        def given(name: str) -> bool:  # an explicit null counts as absent: every field is nullable [SPEC]
            return body.get(name) is not None

        default = self.default_generation_model
        if self.default_gpt_generation_model and any(given(p) for p in GPT_ONLY_GENERATION_PARAMS):
            default = self.default_gpt_generation_model
        model, family = self._resolve_model(body.get("model"), default)
        dalle = family in DALLE_FAMILIES

        # model-specific parameter support
        if dalle:
            for name in GPT_ONLY_GENERATION_PARAMS:
                if given(name):
                    raise _unknown_param(name)
            if family == DALLE2 and given("style"):
                raise _unknown_param("style")
            if family == DALLE2 and self.dalle2_quality_unknown and given("quality"):
                raise _unknown_param("quality")
        else:
            if given("style"):
                raise _unknown_param("style")
            if given("response_format") and self.strict_response_format:
                raise _unknown_param("response_format")

        if "prompt" not in body:
            raise _missing("prompt")
        prompt = _check_prompt(body, PROMPT_MAX.get(family, GPT_PROMPT_MAX))
        n = _check_n(body, form=False)
        if family == DALLE3 and n != 1:
            raise _APIError(400, "You must provide n=1 for this model.")

        style = None
        if family == DALLE3:
            size_s = _get_str(body, "size") or "1024x1024"
            if size_s not in DALLE3_SIZES:
                # what dall-e-3 answered for 256x256 / 512x512 [3P, 2024]
                raise _APIError(400, "The size is not supported by this model.", code="invalid_size")
            quality = _get_enum(body, "quality", DALLE3_QUALITIES) or "standard"
            quality = "standard" if quality == "auto" else quality
            style = _get_enum(body, "style", STYLES) or "vivid"
        elif family == DALLE2:
            size_s = _get_str(body, "size") or "1024x1024"
            if size_s not in DALLE2_SIZES:
                raise _invalid_value("size", size_s, DALLE2_SIZES)
            quality = _get_enum(body, "quality", ("standard",)) or "standard"
        else:
            size_s = _check_gpt_size(family, body)
            quality = _get_enum(body, "quality", GPT_QUALITIES) or "auto"
        if dalle:
            response_format = _get_enum(body, "response_format", RESPONSE_FORMATS) or "url"
            out = _GptOutput(background="opaque")
        else:
            _get_enum(body, "response_format", RESPONSE_FORMATS)  # lenient mode: checked, then ignored
            response_format = "b64_json"
            out = _check_gpt_output(body, form=False)
        user = _get_str(body, "user")
        safety_identifier = _get_str(body, "safety_identifier")

        return _Job(
            model=model,
            family=family,
            prompt=prompt,
            images=[],
            mask=None,
            n=n,
            size=_parse_size(size_s),
            quality=quality,
            response_format=response_format,
            output_format=out.output_format,
            output_compression=out.output_compression,
            background=out.background,
            input_fidelity=None,
            stream=out.stream,
            partial_images=out.partial_images,
            operation="generation",
            style=style,
            safety_identifier=(safety_identifier or user or None) if self.echo_safety_identifier else None,
        )

    # ---------------------------------------------------------------- /v1/images/variations

    async def _handle_variations(self, request: web.Request) -> web.StreamResponse:
        received = await self._receive(request, ("multipart/form-data",), DALLE2)
        if isinstance(received, web.StreamResponse):
            return received
        parts, _body = received
        return await self._answer(request, self._parse_variation(parts))

    def _parse_variation(self, parts: list[Part]) -> _Job:
        seen: set[str] = set()
        for name, _fn, _ct, _value in parts:
            if name not in self._variation_params:
                raise _unknown_param(name)
            if name in seen:
                raise _duplicate(name)
            seen.add(name)
        raw: dict[str, Any] = {}
        images: list[_Img] = []
        for name, _fn, ct, value in parts:
            if name == "image":
                if not isinstance(value, bytes):
                    raise _invalid_type("image", "a file", "a string")
                images.append(_Img("image", 1, value, ct))
            elif isinstance(value, bytes):
                raise _invalid_type(name, "a string", "a file")
            else:
                raw[name] = value

        model = raw.get("model") or DALLE2
        if self.models.get(model) != DALLE2:
            # the live answer when an endpoint's model enum is just dall-e-2 [3P]
            raise _APIError(
                400, f"Invalid value: '{model}'. Value must be 'dall-e-2'.", param="model", code="invalid_value"
            )
        if not images:
            raise _missing("image")
        n = _check_n(raw, form=True)
        size_s = _get_enum(raw, "size", DALLE2_SIZES) or "1024x1024"
        response_format = _get_enum(raw, "response_format", RESPONSE_FORMATS) or "url"
        _get_str(raw, "user")
        # square PNG under 4 MB; no alpha needed (only dall-e-2 *edits* without a mask paint into transparency)
        self._check_dalle_image(images[0], has_mask=True)
        return _Job(
            model=model,
            family=DALLE2,
            prompt="",
            images=images,
            mask=None,
            n=n,
            size=_parse_size(size_s),
            quality=None,
            response_format=response_format,
            output_format="png",
            output_compression=100,
            background="opaque",
            input_fidelity=None,
            stream=False,
            partial_images=0,
            operation="variation",
        )

    # ---------------------------------------------------------------- results

    @staticmethod
    def _resolved_quality(job: _Job) -> str:
        return "high" if job.quality in (None, "auto") else job.quality

    @staticmethod
    def _resolved_background(job: _Job) -> str:
        return "transparent" if job.background == "transparent" else "opaque"

    def _usage(self, job: _Job, with_output_details: bool = True) -> dict[str, Any]:
        text = max(1, (len(job.prompt) + 3) // 4)
        image = sum(_image_tokens(img.width, img.height) for img in job.images)
        if job.images and (job.input_fidelity == "high" or job.family == GPT_IMAGE_2):
            image += _HIGH_FIDELITY_EXTRA_TOKENS
        out = _output_tokens(job.family, job.size, self._resolved_quality(job)) * job.n
        usage: dict[str, Any] = {
            "total_tokens": text + image + out,
            "input_tokens": text + image,
            "output_tokens": out,
            "input_tokens_details": {"text_tokens": text, "image_tokens": image},
        }
        if with_output_details:
            usage["output_tokens_details"] = {"image_tokens": out, "text_tokens": 0}
        return usage

    def _colour(self, job: _Job, i: int) -> int:
        seed = zlib.crc32(job.prompt.encode()) if job.prompt else zlib.crc32(job.images[0].data[:4096])
        return (seed + i) % len(_PALETTE)

    @staticmethod
    def _revised_prompt(job: _Job) -> str:
        """dall-e-3 rewrites every prompt; a deterministic stand-in that is visibly not the original."""
        look = "vivid, hyper-real and dramatic" if job.style == "vivid" else "natural, understated and realistic"
        return (
            f"{job.prompt.rstrip(' .')}. The scene is rendered in a {look} style, with careful attention to "
            "lighting, composition and fine detail."
        )

    def _result(self, job: _Job) -> dict[str, Any]:
        w, h = job.size
        created = int(time.time())
        if job.family in DALLE_FAMILIES:
            data = []
            for i in range(job.n):
                colour = self._colour(job, i)
                item: dict[str, Any] = {}
                if job.family == DALLE3:
                    item["revised_prompt"] = self._revised_prompt(job)
                if job.response_format == "b64_json":
                    item["b64_json"] = _render_b64(w, h, "png", colour, False, 100)
                else:
                    item["url"] = self._serve(_render(w, h, "png", colour, False, 100))
                data.append(item)
            return {"created": created, "data": data}
        transparent = job.background == "transparent"
        data = [
            {
                "b64_json": _render_b64(
                    w, h, job.output_format, self._colour(job, i), transparent, job.output_compression
                )
            }
            for i in range(job.n)
        ]
        result = {
            "created": created,
            "data": data,
            "background": self._resolved_background(job),
            "output_format": job.output_format,
            "size": f"{w}x{h}",
            "quality": self._resolved_quality(job),
            "usage": self._usage(job),
        }
        if job.safety_identifier:
            result["safety_identifier"] = job.safety_identifier
        return result

    def serve(self, png: bytes) -> str:
        """Serve `png` at a signed-looking URL of this emulator, as answers' `url`s are served; its URL."""
        return self._serve(png)

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

    # ---------------------------------------------------------------- streaming (edits and generations)

    def _stream_frames(self, job: _Job) -> list[tuple[str, dict[str, Any]]]:
        prefix = "image_generation" if job.operation == "generation" else "image_edit"
        w, h = job.size
        transparent = job.background == "transparent"
        common = {
            "created_at": int(time.time()),
            "size": f"{w}x{h}",
            "quality": self._resolved_quality(job),
            "background": self._resolved_background(job),
            "output_format": job.output_format,
        }

        def image(colour: int) -> str:
            return _render_b64(w, h, job.output_format, colour, transparent, job.output_compression)

        frames: list[tuple[str, dict[str, Any]]] = []
        for i in range(job.partial_images):
            name = f"{prefix}.partial_image"
            frames.append(
                (name, {"type": name, "b64_json": image(self._colour(job, i + 1)), **common, "partial_image_index": i})
            )
        name = f"{prefix}.completed"
        done = {"type": name, "b64_json": image(self._colour(job, 0)), **common}
        done["usage"] = self._usage(job, with_output_details=False)
        if job.safety_identifier:
            done["safety_identifier"] = job.safety_identifier
        frames.append((name, done))
        return frames

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
