"""OpenAI Images API, and any server that speaks it (`type = "openai"`).

Sources go upstream as multipart: `image` for one file, `image[]` for several (a repeated scalar `image`
is refused by OpenAI with `duplicate_parameter`), with real part Content-Types. Only the options the
client sent and the model takes are forwarded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from imagegate.core.edits import EditJob, EditResult
from imagegate.core.errors import (
    GatewayError,
    InvalidRequest,
    ModerationBlocked,
    UpstreamError,
    UpstreamRateLimited,
)
from imagegate.core.usage import TokenUsage
from imagegate.providers.http import (
    UpstreamSession,
    answer_bytes,
    excerpt,
    gather_all,
    image_from_b64,
    json_object,
    param_name,
    parse_json,
    post,
    retry_after,
)
from imagegate.providers.multipart import FilePart, MultipartBody, build_multipart

log = logging.getLogger("imagegate.providers.openai")

# Models that answer with a URL unless asked for Base64; the gateway always asks for Base64.
_RESPONSE_FORMAT_MODELS = frozenset({"dall-e-2"})
_ECHO_FIELDS = ("background", "output_format", "quality", "size")
_MODERATION_CODES = frozenset({"moderation_blocked", "content_policy_violation", "contentFilter"})
_AZURE_POLICY_CODE = "ResponsibleAIPolicyViolation"  # in `inner_error.code` of Azure's DALL·E-style body
# A 429 whose Retry-After is this long is a spent quota (Azure's daily "retry after 86400 seconds"), not a
# momentary rate limit: another route may serve the request, this one will not for hours.
_QUOTA_WAIT_SECONDS = 3600.0


def edit_form(job: EditJob, *, model: str | None = None, ask_b64: bool = True) -> MultipartBody:
    """The multipart body OpenAI's /images/edits expects for this job.

    `model` overrides the model field (Azure's v1 API wants the deployment name there); `ask_b64=False`
    never sends `response_format`, for servers that refuse it and always answer Base64 (Azure).
    """
    fields: list[tuple[str, str]] = [("model", model or job.upstream_model), ("prompt", job.prompt)]
    if job.n != 1:
        fields.append(("n", str(job.n)))
    fields.extend((name, _form_value(value)) for name, value in job.options.items())
    if ask_b64 and job.upstream_model in _RESPONSE_FORMAT_MODELS:
        fields.append(("response_format", "b64_json"))
    name = "image" if len(job.images) == 1 else "image[]"
    files = [FilePart(name, f"image_{i}.{image.info.format}", image) for i, image in enumerate(job.images)]
    if job.mask is not None:
        files.append(FilePart("mask", "mask.png", job.mask))
    return build_multipart(fields, files)


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


async def parse_images_response(body: Mapping[str, Any], job: EditJob, *, provider: str) -> EditResult:
    """An ImagesResponse as an EditResult: each image decoded and checked, the usage parsed, the echo
    fields kept only when they are short strings."""
    items = body.get("data")
    items = [item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else []
    if not items:
        raise UpstreamError(f"The provider '{provider}' returned no image.", retryable=True)
    images = await gather_all(image_from_b64(item.get("b64_json"), provider=provider,
                                             max_bytes=job.max_output_bytes) for item in items[: job.n])
    echo = {k: body[k] for k in _ECHO_FIELDS if isinstance(body.get(k), str) and len(body[k]) <= 32}
    created = body.get("created")
    return EditResult(images=images, usage=parse_usage(body.get("usage")),
                      created=created if isinstance(created, int) and not isinstance(created, bool) else None,
                      echo=echo)


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


async def post_edit(session: aiohttp.ClientSession, url: str, form: MultipartBody, headers: Mapping[str, str], *,
                    job: EditJob, provider: str) -> EditResult:
    """POST an /images/edits multipart body and read the ImagesResponse (OpenAI and Azure alike)."""
    headers = {**headers, "Content-Type": form.content_type, "Content-Length": str(form.length)}
    body = await post(session, url, data=form.body, headers=headers, provider=provider, translate=translate_error,
                      max_bytes=answer_bytes(job.n, job.max_output_bytes))
    return await parse_images_response(await parse_json(body, provider), job, provider=provider)


class OpenAIProvider:
    def __init__(self, *, name: str, base_url: str, api_key: str, timeout: float = 600.0,
                 organization: str = "", project: str = "") -> None:
        self._name = name
        self._url = base_url.rstrip("/") + "/images/edits"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        if organization:
            self._headers["OpenAI-Organization"] = organization
        if project:
            self._headers["OpenAI-Project"] = project
        self._session = UpstreamSession(timeout=timeout)

    async def edit(self, job: EditJob) -> EditResult:
        return await post_edit(self._session.get(), self._url, edit_form(job), self._headers, job=job,
                               provider=self._name)

    async def aclose(self) -> None:
        await self._session.aclose()
