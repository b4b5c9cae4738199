"""OpenAI Images API, and any server that speaks it (`type = "openai"`).

Sources go upstream as multipart: `image` for one file, `image[]` for several (a repeated scalar `image`
is refused by OpenAI with `duplicate_parameter`), with real part Content-Types. Only the options the
client sent and the model takes are forwarded.
"""

from __future__ import annotations

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
from imagegate.core.media import ImageFormat, OutputImage
from imagegate.providers.http import (
    UpstreamSession,
    excerpt,
    json_object,
    param_name,
    post,
    retry_after,
    unreadable,
)
from imagegate.providers.multipart import FilePart, MultipartBody, build_multipart

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


def parse_images_response(body: Mapping[str, Any], default_format: ImageFormat) -> EditResult:
    """An ImagesResponse as an EditResult; `usage` and the echo fields pass through unchanged."""
    fmt = body.get("output_format") or default_format
    if fmt not in ("png", "jpeg", "webp"):
        fmt = default_format
    items = body.get("data")
    images = [OutputImage(b64_json=item["b64_json"], format=fmt) for item in (items if isinstance(items, list) else [])
              if isinstance(item, dict) and isinstance(item.get("b64_json"), str) and item["b64_json"]]
    if not images:
        raise UpstreamError("The provider returned no image.", retryable=True)
    echo = {k: body[k] for k in _ECHO_FIELDS if body.get(k) is not None}
    usage = body.get("usage")
    created = body.get("created")
    return EditResult(images=images, usage=usage if isinstance(usage, dict) else None,
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
                    provider: str, default_format: ImageFormat) -> EditResult:
    """POST an /images/edits multipart body and read the ImagesResponse (OpenAI and Azure alike)."""
    headers = {**headers, "Content-Type": form.content_type, "Content-Length": str(form.length)}
    body = await post(session, url, data=form.body, headers=headers, provider=provider, translate=translate_error)
    parsed = json_object(body)
    if parsed is None:
        raise unreadable(provider)
    return parse_images_response(parsed, default_format)


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
        return await post_edit(self._session.get(), self._url, edit_form(job), self._headers, provider=self._name,
                               default_format=job.options.get("output_format", "png"))

    async def aclose(self) -> None:
        await self._session.aclose()
