"""xAI Grok Imagine images (`type = "xai"`): edits and generations.

xAI takes JSON only: an edit's sources go as base64 data URIs, `image` for one and `images` for two or
three; a generation is the same body without them, to /images/generations. The gateway always asks for
`b64_json` so nothing ephemeral is left upstream; if the answer carries URLs anyway they are downloaded at
once (ResultDownloads). `size` (and anything else the catalog does not list for the model) is never sent:
xAI answers "Argument not supported: size".

Errors come flat, `{"code": "<gRPC status text>", "error": "<message>"}`, or relayed OpenAI-style,
`{"error": {"message": …}}`. xAI uses one status (400 "Client specified an invalid argument") for bad
parameters, bad keys and moderation, and one (429 "Some resource has been exhausted") for both spent
credit and momentary capacity; see `translate_error` for how they are told apart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from imagegate.core.errors import (
    GatewayError,
    InvalidRequest,
    ModerationBlocked,
    TooManyImages,
    UpstreamError,
    UpstreamRateLimited,
)
from imagegate.core.jobs import ImageJob, ImageResult
from imagegate.core.media import OutputImage, SourceImage
from imagegate.core.ports import ResultFetcher
from imagegate.providers.http import (
    ResultDownloads,
    UpstreamSession,
    answer_bytes,
    b64encode,
    excerpt,
    gather_all,
    image_from_b64,
    json_object,
    parse_json,
    post,
    retry_after,
)

log = logging.getLogger("imagegate.providers.xai")

DEFAULT_BASE_URL = "https://api.x.ai/v1"
MAX_REFERENCES = 3
TICKS_PER_MICRO_USD = 10_000  # 10,000,000,000 ticks = $1 = 1,000,000 micro-USD
_FORWARDED = ("aspect_ratio", "resolution", "quality", "user")

# xAI gives no structured field for these cases: a 400 or 429 with the same gRPC status text covers them
# all, so the documented messages (providers.md §4.5) are the only signal there is.
_BAD_KEY_TEXT = "incorrect api key"
_MODERATION_TEXT = "rejected by content moderation"
_BILLING_TEXTS = ("used all available credits", "spending limit")


async def _data_uri(image: SourceImage) -> str:
    return f"data:{image.info.mime_type};base64,{await b64encode(image)}"


async def request_body(job: ImageJob) -> dict[str, Any]:
    """The JSON body xAI's endpoint for the job expects (/images/edits or /images/generations)."""
    if job.mask is not None:
        raise InvalidRequest(f"'{job.model}' does not take a mask.", param="mask")
    if len(job.images) > MAX_REFERENCES:
        raise TooManyImages(f"'{job.model}' takes at most {MAX_REFERENCES} source images.", param="image")
    refs = [{"url": uri, "type": "image_url"} for uri in await asyncio.gather(*map(_data_uri, job.images))]
    body: dict[str, Any] = {"model": job.upstream_model, "prompt": job.prompt, "n": job.n,
                            "response_format": "b64_json"}
    if len(refs) == 1:
        body["image"] = refs[0]
    elif refs:
        body["images"] = refs
    body.update((name, job.options[name]) for name in _FORWARDED if name in job.options)
    return body


_MAX_TICKS = 10**15  # $100,000: no single image request costs more


def cost_micros(usage: Any) -> int | None:
    """`usage.cost_in_usd_ticks` in micro-USD, rounded up; None when xAI did not report a usable figure (then
    the request is priced from the catalog)."""
    ticks = usage.get("cost_in_usd_ticks") if isinstance(usage, Mapping) else None
    if isinstance(ticks, bool) or not isinstance(ticks, int | float) or not 0 <= ticks <= _MAX_TICKS:
        return None
    return -(-int(ticks) // TICKS_PER_MICRO_USD)


def translate_error(status: int, body: bytes, headers: Mapping[str, str], provider: str) -> GatewayError:
    """An xAI error answer (flat or relayed shape) as imagegate's error."""
    parsed = json_object(body)
    message, code = "", ""
    if parsed is not None:
        error = parsed.get("error")
        if isinstance(error, dict):  # relayed: {"error": {"message", "code"?, "type"?}}
            message, code = str(error.get("message") or ""), str(error.get("code") or error.get("type") or "")
        else:  # xAI's own: {"code": "<gRPC status>", "error": "<message>"}
            message, code = str(error or ""), str(parsed.get("code") or "")
    text = message.lower()
    if status in (401, 403) or (status == 400 and _BAD_KEY_TEXT in text):
        return UpstreamError(f"The provider '{provider}' refused the gateway's credentials.", retryable=True)
    if status == 400 and _MODERATION_TEXT in text:
        # xAI may bill a moderated request. The client is not charged for a refusal; the operator is told.
        charged = cost_micros(parsed.get("usage") if parsed is not None else None)
        if charged:
            log.warning("provider %s charged %d micro-USD for a request its moderation refused", provider, charged)
        return ModerationBlocked("The request was rejected by the provider's content moderation.")
    if status == 429:
        if any(phrase in text for phrase in _BILLING_TEXTS):
            return UpstreamError(f"The provider '{provider}' has no credit left (billing limit reached).",
                                 retryable=True)
        return UpstreamRateLimited(f"The provider '{provider}' is at capacity or rate limiting requests.",
                                   retryable=True, retry_after=retry_after(headers))
    if status in (400, 422):
        detail = excerpt(message) or excerpt(code, 64) or "invalid request"
        return InvalidRequest(f"The provider rejected the request: {detail}", code="upstream_invalid_request")
    if status == 404:
        return UpstreamError(f"The provider '{provider}' does not know this model or route.", retryable=True)
    return UpstreamError(f"The provider '{provider}' failed (HTTP {status}).",
                         retryable=status >= 500 or status in (408, 409))


class XaiProvider:
    def __init__(self, *, name: str, api_key: str, base_url: str = DEFAULT_BASE_URL, timeout: float = 600.0,
                 results: ResultFetcher | None = None) -> None:
        self._name = name
        self._base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self._session = UpstreamSession(timeout=timeout)
        self._downloads = ResultDownloads(name, self._session, self._base, results, timeout=timeout)

    async def run(self, job: ImageJob) -> ImageResult:
        data = orjson.dumps(await request_body(job))
        url = f"{self._base}/images/{'generations' if job.operation == 'generate' else 'edits'}"
        body = await post(self._session.get(), url, data=data, headers=self._headers, provider=self._name,
                          translate=translate_error, max_bytes=answer_bytes(job.n, job.max_output_bytes))
        parsed = await parse_json(body, self._name)
        images = await self._outputs(parsed.get("data"), job)
        created = parsed.get("created")
        return ImageResult(images=images, cost_micros=cost_micros(parsed.get("usage")),
                           created=created if isinstance(created, int) and not isinstance(created, bool) else None)

    async def _outputs(self, items: Any, job: ImageJob) -> list[OutputImage]:
        """The answer's images, checked; URLs (ephemeral on xAI's side) are downloaded now."""
        if not isinstance(items, Sequence) or not items:
            raise UpstreamError(f"The provider '{self._name}' returned no image.", retryable=True)

        async def output(item: Any) -> OutputImage:
            b64 = item.get("b64_json") if isinstance(item, Mapping) else None
            url = item.get("url") if isinstance(item, Mapping) else None
            if b64 is not None:
                return await image_from_b64(b64, provider=self._name, max_bytes=job.max_output_bytes)
            if isinstance(url, str) and url:  # a signed URL: fetched without credentials
                return await self._downloads.image(url, max_bytes=job.max_output_bytes)
            raise UpstreamError(f"The provider '{self._name}' returned an item without an image.", retryable=True)

        return await gather_all(output(item) for item in items[: job.n])

    async def aclose(self) -> None:
        await self._session.aclose()
