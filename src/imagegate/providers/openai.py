"""OpenAI Images API, and any server that speaks it (`type = "openai"`).

Sources go upstream as multipart: `image` for one file, `image[]` for several (a repeated scalar `image`
is refused by OpenAI with `duplicate_parameter`), with real part Content-Types. Only the options the
client sent and the model takes are forwarded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from imagegate.core.edits import EditJob, EditResult
from imagegate.core.errors import (
    GatewayError,
    InvalidRequest,
    ModerationBlocked,
    UpstreamError,
    UpstreamRateLimited,
)
from imagegate.core.media import ImageFormat, OutputImage
from imagegate.providers.http import UpstreamSession, retry_after, transport_error
from imagegate.providers.multipart import FilePart, MultipartBody, build_multipart

# Models that answer with a URL unless asked for Base64; the gateway always asks for Base64.
_RESPONSE_FORMAT_MODELS = frozenset({"dall-e-2"})
_ECHO_FIELDS = ("background", "output_format", "quality", "size")
_MODERATION_CODES = frozenset({"moderation_blocked", "content_policy_violation", "contentFilter"})
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
    images = []
    for item in body.get("data") or []:
        if item.get("b64_json"):
            images.append(OutputImage(b64_json=item["b64_json"], format=fmt))
    if not images:
        raise UpstreamError("The provider returned no image.", retryable=True)
    echo = {k: body[k] for k in _ECHO_FIELDS if body.get(k) is not None}
    return EditResult(images=images, usage=body.get("usage"), created=body.get("created"), echo=echo)


def translate_error(status: int, body: bytes, headers: Mapping[str, str], provider: str) -> GatewayError:
    """An OpenAI-style error answer as imagegate's error, by status code and structured fields.

    Also reads Azure's shapes: string codes ("DeploymentNotFound", "401", "429"), the `contentFilter` body,
    `inner_error.code` ResponsibleAIPolicyViolation, and a daily-quota 429 (known by its Retry-After).
    """
    try:
        error = orjson.loads(body).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {"message": str(error)}
    code = str(error.get("code") or error.get("type") or "")
    param = error.get("param") or None
    if code in _MODERATION_CODES or (error.get("inner_error") or {}).get("code") == \
            "ResponsibleAIPolicyViolation":
        return ModerationBlocked("The request was rejected by the provider's safety system.")
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
    if status in (400, 404, 422) and code not in ("invalid_api_key", "DeploymentNotFound", "404"):
        where = f" (parameter '{param}')" if param else ""
        return InvalidRequest(f"The provider rejected the request{where}: {code or 'invalid request'}.",
                              param=param, code="upstream_invalid_request")
    if status in (401, 403, 404):
        return UpstreamError(f"The provider '{provider}' refused the gateway's credentials or route.",
                             retryable=True)
    return UpstreamError(f"The provider '{provider}' failed (HTTP {status}).", retryable=status >= 500 or
                         status in (408, 409))


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
        form = edit_form(job)
        headers = {**self._headers, "Content-Type": form.content_type, "Content-Length": str(form.length)}
        try:
            async with self._session.get().post(self._url, data=form.body, headers=headers) as response:
                body = await response.read()
                if response.status != 200:
                    raise translate_error(response.status, body, response.headers, self._name)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_error(exc, self._name) from exc
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"The provider '{self._name}' sent an unreadable answer.",
                                retryable=True) from None
        return parse_images_response(parsed, job.options.get("output_format", "png"))

    async def aclose(self) -> None:
        await self._session.aclose()
