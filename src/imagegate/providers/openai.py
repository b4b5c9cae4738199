"""OpenAI Images API, and any server that speaks it (`type = "openai"`): edits, generations, variations,
and streams of partial images.

- Edits and variations go upstream as multipart: `image` for one file, `image[]` for several (a repeated
  scalar `image` is refused by OpenAI with `duplicate_parameter`), with real part Content-Types.
  Generations are JSON.
- Only the options the client sent and the model takes are forwarded.
- DALL·E models answer with a URL unless asked for Base64, and the gateway always asks for Base64. An
  upstream that answers with URLs all the same has them fetched at once (see ResultDownloads).
- A stream is `text/event-stream`: `image_edit.*` or `image_generation.*` partial images, then the completed
  image with its usage. Each event is checked as it arrives and handed on at once.

Azure speaks the same format (providers/azure.py) and uses this module with its own URLs and headers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import orjson

from imagegate.core.errors import (
    GatewayError,
    InvalidRequest,
    ModerationBlocked,
    UpstreamError,
    UpstreamRateLimited,
)
from imagegate.core.jobs import ImageJob, ImageResult, Operation, StreamEvent
from imagegate.core.ports import ResultFetcher
from imagegate.core.usage import TokenUsage
from imagegate.providers.http import (
    ResultDownloads,
    UpstreamSession,
    answer_bytes,
    base64_length,
    excerpt,
    gather_all,
    image_from_b64,
    json_object,
    param_name,
    parse_json,
    post,
    read_error_body,
    retry_after,
    transport_error,
)
from imagegate.providers.multipart import FilePart, build_multipart
from imagegate.providers.sse import ServerEvent, server_events

log = logging.getLogger("imagegate.providers.openai")

PATHS: dict[Operation, str] = {"edit": "/images/edits", "generate": "/images/generations",
                               "variation": "/images/variations"}
# Models that answer with a URL unless asked for Base64; the gateway always asks for Base64.
_RESPONSE_FORMAT_MODELS = frozenset({"dall-e-2", "dall-e-3"})
_ECHO_FIELDS = ("background", "output_format", "quality", "size")
_MODERATION_CODES = frozenset({"moderation_blocked", "content_policy_violation", "contentFilter"})
_AZURE_POLICY_CODE = "ResponsibleAIPolicyViolation"  # in `inner_error.code` of Azure's DALL·E-style body
# A 429 whose Retry-After is this long is a spent quota (Azure's daily "retry after 86400 seconds"), not a
# momentary rate limit: another route may serve the request, this one will not for hours.
_QUOTA_WAIT_SECONDS = 3600.0
_EVENT_OVERHEAD = 64 * 1024  # an event's fields besides its image


@dataclass(frozen=True, slots=True)
class WireRequest:
    """One upstream request's body: JSON or multipart."""

    content_type: str
    length: int
    body: Any  # bytes, or an async iterator of bytes for a large multipart body


def images_request(job: ImageJob, *, model: str | None = None, ask_b64: bool = True,
                   stream: bool = False) -> WireRequest:
    """The body OpenAI's endpoint for the job's operation expects.

    `model` overrides the model field (Azure's v1 API wants the deployment name there); `ask_b64=False`
    never sends `response_format`, for servers that refuse it and always answer Base64 (Azure).
    """
    fields: dict[str, Any] = {"model": model or job.upstream_model}
    if job.operation != "variation":
        fields["prompt"] = job.prompt
    if job.n != 1:
        fields["n"] = job.n
    fields.update(job.options)
    if ask_b64 and job.upstream_model in _RESPONSE_FORMAT_MODELS:
        fields["response_format"] = "b64_json"
    if stream:
        fields["stream"] = True
    if job.operation == "generate":
        data = orjson.dumps(fields)
        return WireRequest("application/json", len(data), data)
    name = "image" if len(job.images) == 1 else "image[]"
    files = [FilePart(name, f"image_{i}.{image.info.format}", image) for i, image in enumerate(job.images)]
    if job.mask is not None:
        files.append(FilePart("mask", "mask.png", job.mask))
    form = build_multipart([(k, _form_value(v)) for k, v in fields.items()], files)
    return WireRequest(form.content_type, form.length, form.body)


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_MAX_TOKENS = 10**9  # a count above this is not a real answer


def parse_usage(raw: Any) -> TokenUsage | None:
    """An ImagesUsage object as TokenUsage; None when absent or when any count is not a plausible integer.

    The counts decide what a token-priced request costs, so an answer whose counts cannot be trusted is
    priced as if it had none (Price.actual), and a warning names the provider's fault in the log.
    """
    if raw is None:
        return None

    def count(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_TOKENS:
            raise ValueError(value)
        return value

    def optional(details: Any, name: str) -> int | None:
        if details is None:
            return None
        if not isinstance(details, Mapping):
            raise ValueError(details)
        return None if details.get(name) is None else count(details[name])

    try:
        if not isinstance(raw, Mapping):
            raise ValueError(raw)
        details_in, details_out = raw.get("input_tokens_details"), raw.get("output_tokens_details")
        return TokenUsage(input_tokens=count(raw.get("input_tokens", 0)),
                          output_tokens=count(raw.get("output_tokens", 0)),
                          text_in=optional(details_in, "text_tokens"), image_in=optional(details_in, "image_tokens"),
                          cached_in=optional(details_in, "cached_tokens"),
                          text_out=optional(details_out, "text_tokens"),
                          image_out=optional(details_out, "image_tokens"))
    except ValueError:
        log.warning("an upstream reported token usage that is not usable; the request is priced without it")
        return None


async def parse_images_response(body: Mapping[str, Any], job: ImageJob, *, provider: str,
                                downloads: ResultDownloads) -> ImageResult:
    """An ImagesResponse as an ImageResult: each image decoded (or downloaded, for a URL) and checked, the
    usage parsed, the echo fields and revised prompts kept only when they are short strings."""
    items = body.get("data")
    items = [item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else []
    if not items:
        raise UpstreamError(f"The provider '{provider}' returned no image.", retryable=True)

    async def image(item: Mapping[str, Any]) -> Any:
        url = item.get("url")
        if item.get("b64_json") is None and isinstance(url, str) and url:
            output = await downloads.image(url, max_bytes=job.max_output_bytes)
        else:
            output = await image_from_b64(item.get("b64_json"), provider=provider, max_bytes=job.max_output_bytes)
        revised = item.get("revised_prompt")
        if isinstance(revised, str) and revised:
            output = replace(output, revised_prompt=revised[:32000])
        return output

    images = await gather_all(image(item) for item in items[: job.n])
    created = body.get("created")
    return ImageResult(images=images, usage=parse_usage(body.get("usage")), echo=_echo(body),
                       created=created if isinstance(created, int) and not isinstance(created, bool) else None)


def _echo(fields: Mapping[str, Any]) -> dict[str, str]:
    return {k: fields[k] for k in _ECHO_FIELDS if isinstance(fields.get(k), str) and len(fields[k]) <= 32}


async def parse_stream(events: AsyncIterator[ServerEvent], job: ImageJob, *,
                       provider: str) -> AsyncGenerator[StreamEvent, None]:
    """The upstream's server-sent events as checked StreamEvents. An `error` event, or any event carrying an
    `error` object, ends the stream with the error it names; unknown event types are skipped."""
    async for sse in events:
        data = json_object(sse.data.encode())
        if data is None:
            raise UpstreamError(f"The provider '{provider}' sent a stream event that is not JSON.", retryable=True)
        kind = str(data["type"]) if isinstance(data.get("type"), str) else sse.event
        if sse.event == "error" or kind == "error" or isinstance(data.get("error"), Mapping):
            raise stream_error(data.get("error"), provider)
        final = kind.endswith(".completed")
        if not final and not kind.endswith(".partial_image"):
            continue
        index = data.get("partial_image_index")
        created = data.get("created_at")
        yield StreamEvent(
            image=await image_from_b64(data.get("b64_json"), provider=provider, max_bytes=job.max_output_bytes),
            final=final, index=index if isinstance(index, int) and not isinstance(index, bool) else 0,
            created_at=created if isinstance(created, int) and not isinstance(created, bool) else None,
            echo=_echo(data), usage=parse_usage(data.get("usage")) if final else None)


def stream_error(error: Any, provider: str) -> GatewayError:
    """A mid-stream error object as imagegate's error (a stream's HTTP status is already 200)."""
    error = error if isinstance(error, Mapping) else {}
    status = {"rate_limit_exceeded": 429, "invalid_request_error": 400}.get(str(error.get("type")), 500)
    return translate_error(status, orjson.dumps({"error": dict(error)}), {}, provider)


def translate_error(status: int, body: bytes, headers: Mapping[str, str], provider: str) -> GatewayError:
    """An OpenAI-style error answer as imagegate's error, by status code and structured fields.

    Also reads Azure's shapes: string codes ("DeploymentNotFound", "401", "429"), the `contentFilter` body,
    `inner_error.code` ResponsibleAIPolicyViolation, and a daily-quota 429 (known by its Retry-After).
    Nothing of the vendor's message is passed on; an invalid request names the vendor's `code` and
    `param` only, bounded.
    """
    parsed = json_object(body) or {}
    error = parsed.get("error") or {}
    if not isinstance(error, dict):
        error = {}
    code = excerpt(str(error.get("code") or error.get("type") or ""), 64)
    param = param_name(error.get("param"))
    inner = error.get("inner_error")
    if code in _MODERATION_CODES or (isinstance(inner, dict) and inner.get("code") == _AZURE_POLICY_CODE):
        details = error.get("moderation_details")
        stage = details.get("moderation_stage") if isinstance(details, dict) else None
        return ModerationBlocked("The request was rejected by the provider's safety system.",
                                 **({"stage": stage} if stage in ("input", "output") else {}))
    if status == 429:
        wait = retry_after(headers)
        if code == "insufficient_quota":
            return UpstreamError(f"The provider '{provider}' has no quota left.", retryable=True)
        if wait is not None and wait >= _QUOTA_WAIT_SECONDS:
            return UpstreamError(f"The provider '{provider}' has used up its quota for now (it asks to wait "
                                 f"{wait:.0f} s); this is not a momentary rate limit.", retryable=True,
                                 retry_after=wait)
        return UpstreamRateLimited(f"The provider '{provider}' is rate limiting requests.", retryable=True,
                                   retry_after=wait)
    if status in (400, 422) and code != "invalid_api_key":
        where = f" (parameter '{param}')" if param else ""
        return InvalidRequest(f"The provider rejected the request{where}: {code or 'invalid request'}.",
                              param=param, code="upstream_invalid_request")
    if status in (400, 401, 403, 404):  # a key, organisation, deployment or model this route lacks
        return UpstreamError(f"The provider '{provider}' refused the gateway's credentials or route.",
                             retryable=True)
    return UpstreamError(f"The provider '{provider}' failed (HTTP {status}).", retryable=status >= 500 or
                         status in (408, 409))


class OpenAIProvider:
    """OpenAI's Images API at `base_url` (or any server speaking it)."""

    def __init__(self, *, name: str, base_url: str, api_key: str, timeout: float = 600.0,
                 organization: str = "", project: str = "", results: ResultFetcher | None = None) -> None:
        self._name = name
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        if organization:
            self._headers["OpenAI-Organization"] = organization
        if project:
            self._headers["OpenAI-Project"] = project
        self._session = UpstreamSession(timeout=timeout)
        self._downloads = ResultDownloads(name, self._session, self._base, results, timeout=timeout)

    def url(self, job: ImageJob) -> str:
        return self._base + PATHS[job.operation]

    def request(self, job: ImageJob, *, stream: bool = False) -> WireRequest:
        return images_request(job, stream=stream)

    def check(self, job: ImageJob) -> None:
        """Refuse, before anything is sent, what this route cannot do for the job."""

    async def run(self, job: ImageJob) -> ImageResult:
        self.check(job)
        wire = self.request(job)
        headers = {**self._headers, "Content-Type": wire.content_type, "Content-Length": str(wire.length)}
        body = await post(self._session.get(), self.url(job), data=wire.body, headers=headers, provider=self._name,
                          translate=translate_error, max_bytes=answer_bytes(job.n, job.max_output_bytes))
        return await parse_images_response(await parse_json(body, self._name), job, provider=self._name,
                                           downloads=self._downloads)

    async def stream(self, job: ImageJob) -> AsyncGenerator[StreamEvent, None]:
        self.check(job)
        wire = self.request(job, stream=True)
        headers = {**self._headers, "Content-Type": wire.content_type, "Content-Length": str(wire.length),
                   "Accept": "text/event-stream"}
        max_event = base64_length(job.max_output_bytes) + _EVENT_OVERHEAD
        try:
            async with self._session.get().post(self.url(job), data=wire.body, headers=headers) as response:
                if response.status != 200:
                    raise translate_error(response.status, await read_error_body(response), response.headers,
                                          self._name)
                events = server_events(response, provider=self._name, max_event_bytes=max_event)
                async for event in parse_stream(events, job, provider=self._name):
                    yield event
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc, self._name) from exc

    async def aclose(self) -> None:
        await self._session.aclose()
