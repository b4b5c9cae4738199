"""Black Forest Labs FLUX (`type = "bfl"`): submit a task, poll its `polling_url`, download the sample.

Every BFL endpoint is asynchronous, and one endpoint per model serves both operations: a submit with
`input_image` fields edits, one without generates. `submit` posts the job to `{base}/v1/{model}` and
returns a `BflJob` (id, polling_url, cost) that the persisted task runner can keep across a restart;
`poll` follows that job to its end and downloads the result at once (the signed `result.sample` URL lives
ten minutes); `run` is the two together, with `n` tasks submitted concurrently.

Once a task is submitted it may be billed, so nothing after that point is resubmitted by this adapter or
marked retryable — except the `Error` status, a failed generation that produced nothing. The polling
URL is used exactly as given (it can name a regional cluster), never rebuilt from the id; `x-key` goes
only to hosts of the provider's own site, never to the sample's delivery host.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
import orjson

from imagegate.core.errors import (
    GatewayError,
    InvalidRequest,
    ModerationBlocked,
    TooManyImages,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from imagegate.core.jobs import ImageJob, ImageResult
from imagegate.core.media import ImageFormat
from imagegate.core.ports import ResultFetcher
from imagegate.core.validation import parse_size
from imagegate.providers.http import (
    MAX_RESULT_BYTES,
    ResultDownloads,
    UpstreamSession,
    b64encode,
    excerpt,
    gather_all,
    is_transient,
    json_object,
    param_name,
    post,
    read_body,
    retry_after,
)

DEFAULT_BASE_URL = "https://api.bfl.ai"
MICROS_PER_CREDIT = 10_000  # 1 credit = $0.01
PENDING_STATUSES = frozenset({"Pending", "Reasoning", "Generating"})
MODERATED_STATUSES = {"Request Moderated": "input", "Content Moderated": "output"}
_MAX_POLL_FAILURES = 5  # consecutive transient failures while polling before giving up
_STATE_BYTES = 1024 * 1024  # most a submit or poll answer (a small JSON object) may take
_MAX_CREDITS = 100_000.0  # $1,000: more is not a real price for one image
_MAX_ID_CHARS = 256
_MAX_URL_CHARS = 4096
_PARAMS = {"prompt": "prompt", "seed": "seed", "aspect_ratio": "aspect_ratio", "output_format": "output_format",
           "width": "size", "height": "size"}

T = TypeVar("T")
PollSchedule = Callable[[int], float]  # poll attempt (0, 1, …) → seconds to wait before the next poll


def backoff(first: float = 0.5, cap: float = 5.0, factor: float = 1.5, jitter: float = 0.25,
            rand: Callable[[], float] = random.random) -> PollSchedule:
    """Exponential delays from `first` to `cap` seconds, each jittered by ±`jitter` and kept in bounds."""
    def delay(attempt: int) -> float:
        base = min(cap, first * factor ** min(attempt, 64))
        return min(cap, max(first, base * (1 + jitter * (2 * rand() - 1))))
    return delay


@dataclass(frozen=True, slots=True)
class BflJob:
    """A submitted BFL task: enough to poll it again after a restart."""

    id: str
    polling_url: str
    cost: float | None = None  # credits, when the submit answer reported them


@dataclass(frozen=True, slots=True)
class Family:
    """What a group of BFL endpoints takes: reference count, how size is given, the default output."""

    max_images: int
    sizing: Literal["aspect_ratio", "width_height"]
    default_format: ImageFormat


# Longest matching prefix of the upstream model id wins; unknown ids are treated as FLUX.2.
FAMILIES: dict[str, Family] = {
    "flux-kontext": Family(4, "aspect_ratio", "png"),
    "flux-2-klein": Family(4, "width_height", "jpeg"),
    "flux-2": Family(8, "width_height", "jpeg"),
}


def family(model: str) -> Family:
    matches = [prefix for prefix in FAMILIES if model.startswith(prefix)]
    return FAMILIES[max(matches, key=len)] if matches else FAMILIES["flux-2"]


async def submit_body(job: ImageJob, index: int = 0) -> dict[str, Any]:
    """The JSON body for one BFL task; `index` > 0 shifts a given seed so n tasks give n images."""
    fam = family(job.upstream_model)
    if job.mask is not None:
        raise InvalidRequest(f"'{job.model}' does not take a mask.", param="mask")
    if len(job.images) > fam.max_images:
        raise TooManyImages(f"'{job.model}' takes at most {fam.max_images} source images.", param="image")
    body: dict[str, Any] = {"prompt": job.prompt}
    for i, encoded in enumerate(await asyncio.gather(*map(b64encode, job.images))):
        body["input_image" if i == 0 else f"input_image_{i + 1}"] = encoded
    options = job.options
    if "seed" in options:
        body["seed"] = (int(options["seed"]) + index) % 2**32
    size = parse_size(str(options.get("size", "")))
    if fam.sizing == "aspect_ratio":
        if "aspect_ratio" in options:
            body["aspect_ratio"] = options["aspect_ratio"]
        elif size is not None:
            gcd = math.gcd(*size)
            body["aspect_ratio"] = f"{size[0] // gcd}:{size[1] // gcd}"
    elif size is not None:
        body["width"], body["height"] = size
    if "output_format" in options:
        body["output_format"] = options["output_format"]
    return body


def _credits(value: Any) -> float | None:
    """A cost in credits as BFL reported it, when it is a plausible number; None otherwise."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        and 0 <= value <= _MAX_CREDITS else None


def translate_error(status: int, body: bytes, headers: Mapping[str, str], provider: str) -> GatewayError:
    """A BFL error answer (FastAPI `{"detail": …}` or `{"error", "message"}`) as imagegate's error.

    Only a 400/422 quotes BFL, as a bounded excerpt; every other error is our own text.
    """
    parsed = json_object(body) or {}
    detail = parsed.get("detail")
    if status == 422 and isinstance(detail, list) and detail and isinstance(detail[0], dict):
        loc = detail[0].get("loc")
        field = param_name(loc[-1]) if isinstance(loc, list) and loc else None
        param = "image" if field and field.startswith("input_image") else _PARAMS.get(field or "")
        return InvalidRequest(f"The provider rejected {f'{field!r}' if field else 'the request'}: "
                              f"{excerpt(detail[0].get('msg')) or 'invalid value'}", param=param,
                              code="upstream_invalid_request")
    if status in (400, 422):
        text = excerpt(detail) or excerpt(parsed.get("message")) or "invalid request"
        return InvalidRequest(f"The provider rejected the request: {text}", code="upstream_invalid_request")
    if status == 402:
        return UpstreamError(f"The provider '{provider}' has no credits left.", retryable=True)
    if status == 429:
        return UpstreamRateLimited(f"The provider '{provider}' is at its concurrency or rate limit.",
                                   retryable=True, retry_after=retry_after(headers))
    if status in (401, 403):
        return UpstreamError(f"The provider '{provider}' refused the gateway's credentials.", retryable=True)
    if status == 404:
        return UpstreamError(f"The provider '{provider}' does not know this model endpoint.", retryable=True)
    return UpstreamError(f"The provider '{provider}' failed (HTTP {status}).",
                         retryable=status >= 500 or status in (408, 409))


def _same_site(base: str, url: str) -> bool:
    """Whether `url` belongs to the provider named by `base` (same host, or a sibling like api.us1.bfl.ai)."""
    b, u = urlsplit(base), urlsplit(url)
    if u.scheme not in ("https", b.scheme) or not u.hostname or not b.hostname:
        return False
    if u.hostname == b.hostname:
        return True
    try:
        ip_address(b.hostname)
        return False
    except ValueError:
        site = ".".join(b.hostname.split(".")[-2:])
        return u.hostname.endswith("." + site)


class BflProvider:
    def __init__(self, *, name: str, api_key: str, base_url: str = DEFAULT_BASE_URL, timeout: float = 600.0,
                 poll_schedule: PollSchedule | None = None, poll_timeout: float | None = None,
                 results: ResultFetcher | None = None) -> None:
        self._name = name
        self._base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self._headers = {"x-key": api_key}
        self._schedule = poll_schedule or backoff()
        self._poll_timeout = timeout if poll_timeout is None else poll_timeout
        self._request_timeout = aiohttp.ClientTimeout(total=min(timeout, 60.0), sock_connect=10)
        self._session = UpstreamSession(timeout=timeout)
        self._downloads = ResultDownloads(name, self._session, self._base, results, timeout=timeout)

    async def run(self, job: ImageJob) -> ImageResult:
        return await self.resume(await self.start(job), job)

    async def start(self, job: ImageJob) -> dict[str, Any]:
        """Submit the job's `n` tasks; their ids and polling URLs, as JSON data a restart can resume from."""
        jobs = await gather_all(self.submit(job, index=i) for i in range(job.n))
        return {"jobs": [{"id": j.id, "polling_url": j.polling_url, "cost": j.cost} for j in jobs]}

    async def resume(self, state: Mapping[str, Any], job: ImageJob) -> ImageResult:
        """Follow tasks `start` submitted (in this process or before a restart) to their images."""
        try:
            jobs = [BflJob(id=str(j["id"]), polling_url=str(j["polling_url"]), cost=_credits(j.get("cost")))
                    for j in state["jobs"]]
        except (KeyError, TypeError) as exc:
            raise UpstreamError(f"The saved state of a '{self._name}' job is unreadable.") from exc
        results = await gather_all(self.poll(j, max_bytes=job.max_output_bytes) for j in jobs)
        costs = [r.cost_micros for r in results]
        return ImageResult(images=[image for r in results for image in r.images], created=int(time.time()),
                          echo=results[0].echo,
                          cost_micros=None if None in costs else sum(c for c in costs if c is not None))

    async def submit(self, job: ImageJob, *, index: int = 0) -> BflJob:
        """Start one task upstream. Failures here are safe to retry elsewhere: nothing was accepted."""
        data = orjson.dumps(await submit_body(job, index))
        url = f"{self._base}/v1/{quote(job.upstream_model, safe='')}"
        headers = {**self._headers, "Content-Type": "application/json"}
        body = await post(self._session.get(), url, data=data, headers=headers, provider=self._name,
                          translate=translate_error, max_bytes=_STATE_BYTES)
        parsed = json_object(body) or {}
        task_id, polling_url = parsed.get("id"), parsed.get("polling_url")
        if not isinstance(task_id, str) or not 0 < len(task_id) <= _MAX_ID_CHARS \
                or not isinstance(polling_url, str) or not 0 < len(polling_url) <= _MAX_URL_CHARS:
            raise UpstreamError(f"The provider '{self._name}' accepted the task but gave no polling URL (or no "
                                "usable task id).")
        if not _same_site(self._base, polling_url):
            raise UpstreamError(f"The provider '{self._name}' named a polling URL on a foreign host; the "
                                "gateway will not send its key there.")
        return BflJob(id=task_id, polling_url=polling_url, cost=_credits(parsed.get("cost")))

    async def poll(self, bfl_job: BflJob, *, max_bytes: int = MAX_RESULT_BYTES) -> ImageResult:
        """Follow a submitted task to its end; download the result (at most `max_bytes`) at once and return it.

        The image passes the output check: bytes that are not a PNG, JPEG or WebP image are refused.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._poll_timeout
        attempt = 0
        while True:
            state = await self._poll_once(bfl_job)
            status = state.get("status")
            if status == "Ready":
                break
            if status in MODERATED_STATUSES:
                stage = MODERATED_STATUSES[status]
                raise ModerationBlocked(f"The provider's moderation rejected the {stage}.", stage=stage)
            if status == "Error":
                raise UpstreamError(f"The provider '{self._name}' failed to generate the image.", retryable=True)
            if status == "Task not found":
                raise UpstreamError(f"The provider '{self._name}' lost task {bfl_job.id}; it may have been "
                                    "billed, so it is not resubmitted.")
            delay = self._schedule(attempt)  # Pending, Reasoning, Generating, or a status not known yet
            attempt += 1
            if loop.time() + delay > deadline:
                raise UpstreamTimeout(f"The provider '{self._name}' did not finish task {bfl_job.id} in time.")
            await asyncio.sleep(delay)
        result = state.get("result")
        sample = result.get("sample") if isinstance(result, dict) else None
        if not isinstance(sample, str) or not 0 < len(sample) <= _MAX_URL_CHARS:
            raise UpstreamError(f"The provider '{self._name}' reported task {bfl_job.id} ready without a result.")
        # The signed sample expires (ten minutes), so it is fetched now; never with the key, and not
        # retryable elsewhere: the task is done and billed.
        image = await self._downloads.image(sample, max_bytes=max_bytes, retries=2, pause=self._schedule,
                                            retryable=False)
        credits = _credits(state.get("cost"))
        credits = bfl_job.cost if credits is None else credits
        return ImageResult(images=[image], created=int(time.time()), echo={"output_format": image.format},
                          cost_micros=None if credits is None else round(credits * MICROS_PER_CREDIT))

    async def _poll_once(self, bfl_job: BflJob) -> dict[str, Any]:
        """The task's state; transient failures (429, 5xx, network) are retried here, a few times."""
        failures = 0
        while True:
            try:
                async with self._session.get().get(bfl_job.polling_url, headers=self._headers,
                                                   timeout=self._request_timeout) as response:
                    status = response.status
                    body = await read_body(response, max_bytes=_STATE_BYTES, provider=self._name) \
                        if status == 200 else b""
            except (aiohttp.ClientError, TimeoutError, UpstreamError):  # UpstreamError: an unusable answer
                status, body = 0, b""
            if status == 200:
                if (parsed := json_object(body)) is not None:
                    return parsed
            elif status == 404:
                return {"status": "Task not found"}
            elif not is_transient(status):
                raise UpstreamError(f"The provider '{self._name}' refused to report task {bfl_job.id} (HTTP "
                                    f"{status}).")
            failures += 1
            if failures >= _MAX_POLL_FAILURES:
                raise UpstreamError(f"The provider '{self._name}' stopped answering about task {bfl_job.id}; "
                                    "it may still complete and be billed, so it is not resubmitted.")
            await asyncio.sleep(self._schedule(failures))

    async def aclose(self) -> None:
        await self._session.aclose()
