"""The bfl adapter against the BFL emulator: submit, regional polling, expiring samples, every failure."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator

import aiohttp
import pytest
from PIL import Image

from emulators.bfl_emulator import MODELS, BflEmulator
from imagegate.api.errors import status_and_type
from imagegate.catalog import builtin_specs
from imagegate.config import ProviderSettings
from imagegate.core.errors import (
    InvalidRequest,
    ModerationBlocked,
    TooManyImages,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from imagegate.providers.bfl import BflJob, BflProvider, backoff, family
from imagegate.providers.registry import build_provider

from .conftest import JobFactory, SourceFactory

KEY = "bfl-key"


class Schedule:
    """A poll schedule that answers at once and remembers what it was asked."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.attempts: list[int] = []

    def __call__(self, attempt: int) -> float:
        self.attempts.append(attempt)
        return self.delay


@pytest.fixture
async def emu() -> AsyncIterator[BflEmulator]:
    async with BflEmulator(KEY) as emulator:
        yield emulator


@pytest.fixture
def schedule() -> Schedule:
    return Schedule()


@pytest.fixture
async def bfl(emu: BflEmulator, schedule: Schedule) -> AsyncIterator[BflProvider]:
    provider = BflProvider(name="bfl", base_url=emu.base_url, api_key=KEY, timeout=5, poll_schedule=schedule)
    yield provider
    await provider.aclose()


async def test_kontext_pending_generating_ready(bfl: BflProvider, emu: BflEmulator, schedule: Schedule,
                                                source: SourceFactory, make_job: JobFactory) -> None:
    image = await source(size=(96, 64))
    result = await bfl.run(make_job([image], model="flux-kontext-pro", response_format="url"))
    [submit] = emu.submits
    assert submit.path == "/v1/flux-kontext-pro" and submit.headers["x-key"] == KEY
    assert submit.json == {"prompt": "add a hat", "input_image": base64.b64encode(image.read()).decode()}
    assert [r.path for r in emu.polls] == ["/us1/v1/get_result"] * 3  # the regional URL, as given
    assert all(r.headers["x-key"] == KEY for r in emu.polls)
    assert schedule.attempts == [0, 1]  # one wait after each non-terminal answer
    [download] = emu.downloads
    assert "x-key" not in download.headers  # the key never goes to the delivery host
    [output] = result.images
    assert output.format == "png" and output.data is not None
    assert Image.open(io.BytesIO(output.data)).size == (96, 64)
    assert result.cost_micros == 4 * 10_000 and result.echo == {"output_format": "png"}


async def test_kontext_references_seed_and_aspect_ratio(bfl: BflProvider, emu: BflEmulator, source: SourceFactory,
                                                        make_job: JobFactory) -> None:
    images = [await source(), await source(fmt="JPEG"), await source(fmt="WEBP"), await source()]
    await bfl.run(make_job(images, model="flux-kontext-max", options={"seed": 7, "aspect_ratio": "16:9",
                                                                       "output_format": "jpeg"}))
    body = emu.submits[0].json
    assert sorted(body) == ["aspect_ratio", "input_image", "input_image_2", "input_image_3", "input_image_4",
                            "output_format", "prompt", "seed"]
    assert body["seed"] == 7 and body["aspect_ratio"] == "16:9"


async def test_kontext_size_becomes_an_aspect_ratio(bfl: BflProvider, emu: BflEmulator, source: SourceFactory,
                                                    make_job: JobFactory) -> None:
    await bfl.run(make_job([await source()], model="flux-kontext-pro", options={"size": "1536x1024"}))
    assert emu.submits[0].json["aspect_ratio"] == "3:2" and "size" not in emu.submits[0].json


async def test_flux2_size_becomes_width_and_height(bfl: BflProvider, emu: BflEmulator, source: SourceFactory,
                                                   make_job: JobFactory) -> None:
    images = [await source() for _ in range(8)]
    result = await bfl.run(make_job(images, model="flux-2-pro", options={"size": "128x64",
                                                                          "output_format": "webp"}))
    body = emu.submits[0].json
    assert (body["width"], body["height"]) == (128, 64) and "size" not in body and "aspect_ratio" not in body
    assert "input_image_8" in body
    [output] = result.images
    assert output.format == "webp" and Image.open(io.BytesIO(output.data or b"")).size == (128, 64)
    # FLUX.2 pro: 3 credits for the first MP + 1.5 per input MP (8 x 64x64) = 3.05 credits, as reported
    [task] = emu.tasks.values()
    assert task.cost == 3.05 and result.cost_micros == 30_500


async def test_too_many_references_are_refused_before_sending(bfl: BflProvider, emu: BflEmulator,
                                                              source: SourceFactory, make_job: JobFactory) -> None:
    with pytest.raises(TooManyImages):
        await bfl.run(make_job([await source() for _ in range(5)], model="flux-kontext-pro"))
    assert emu.requests == []


async def test_n_submits_concurrent_tasks_with_distinct_seeds(bfl: BflProvider, emu: BflEmulator,
                                                              source: SourceFactory, make_job: JobFactory) -> None:
    result = await bfl.run(make_job([await source()], model="flux-kontext-pro", n=3, options={"seed": 41}))
    assert sorted(r.json["seed"] for r in emu.submits) == [41, 42, 43]
    assert len(result.images) == 3 and result.cost_micros == 3 * 4 * 10_000


@pytest.mark.parametrize(("kind", "stage"), [("request_moderated", "input"), ("content_moderated", "output")])
async def test_moderated_tasks(kind: str, stage: str, bfl: BflProvider, emu: BflEmulator, source: SourceFactory,
                               make_job: JobFactory) -> None:
    emu.inject(kind)
    with pytest.raises(ModerationBlocked) as caught:
        await bfl.run(make_job([await source()], model="flux-kontext-pro"))
    assert caught.value.details["stage"] == stage and emu.downloads == []


async def test_error_status_is_not_resubmitted(bfl: BflProvider, emu: BflEmulator, source: SourceFactory,
                                               make_job: JobFactory) -> None:
    emu.inject("error_status")
    with pytest.raises(UpstreamError) as caught:
        await bfl.run(make_job([await source()], model="flux-kontext-pro"))
    assert caught.value.retryable  # nothing was produced: another route may try
    assert len(emu.submits) == 1


@pytest.mark.parametrize("how", ["injected", "forgotten"])
async def test_task_not_found_is_final(how: str, bfl: BflProvider, emu: BflEmulator, source: SourceFactory,
                                       make_job: JobFactory) -> None:
    job = make_job([await source()], model="flux-kontext-pro")
    if how == "injected":
        emu.inject("task_not_found")
        pending = await bfl.submit(job)
    else:
        pending = await bfl.submit(job)
        emu.forget(pending.id)
    with pytest.raises(UpstreamError, match="not resubmitted") as caught:
        await bfl.poll(pending)
    assert type(caught.value) is UpstreamError and not caught.value.retryable
    assert len(emu.submits) == 1


async def test_submit_and_poll_apart_as_after_a_restart(emu: BflEmulator, bfl: BflProvider, source: SourceFactory,
                                                        make_job: JobFactory) -> None:
    pending = await bfl.submit(make_job([await source()], model="flux-2-max", options={"output_format": "png"}))
    assert pending.polling_url.startswith(f"{emu.base_url}/us1/v1/get_result?id=")
    assert pending.cost is not None and pending.cost > 0
    saved = BflJob(id=pending.id, polling_url=pending.polling_url, cost=pending.cost)
    fresh = BflProvider(name="bfl", base_url=emu.base_url, api_key=KEY, poll_schedule=Schedule())
    try:
        result = await fresh.poll(saved)
    finally:
        await fresh.aclose()
    assert result.images[0].format == "png" and len(emu.submits) == 1


async def test_short_lived_sample_is_fetched_in_time(source: SourceFactory, make_job: JobFactory) -> None:
    async with BflEmulator(KEY, sample_ttl=1.0) as emu:
        provider = BflProvider(name="bfl", base_url=emu.base_url, api_key=KEY, poll_schedule=Schedule())
        try:
            result = await provider.run(make_job([await source()], model="flux-kontext-pro"))
        finally:
            await provider.aclose()
    assert result.images[0].data and emu.downloads[0].status == 200


async def test_expired_sample_is_a_final_error(source: SourceFactory, make_job: JobFactory) -> None:
    async with BflEmulator(KEY, sample_ttl=0.0) as emu:
        provider = BflProvider(name="bfl", base_url=emu.base_url, api_key=KEY, poll_schedule=Schedule())
        try:
            with pytest.raises(UpstreamError, match="expired") as caught:
                await provider.run(make_job([await source()], model="flux-kontext-pro"))
        finally:
            await provider.aclose()
    assert not caught.value.retryable and [r.status for r in emu.downloads] == [403]


async def test_transient_poll_failures_are_ridden_out(bfl: BflProvider, emu: BflEmulator, source: SourceFactory,
                                                      make_job: JobFactory) -> None:
    emu.inject("server_error", on="poll", times=2)
    emu.inject("rate_limit", on="poll")
    result = await bfl.run(make_job([await source()], model="flux-kontext-pro"))
    assert result.images and len(emu.submits) == 1


async def test_persistent_poll_failure_gives_up_without_resubmitting(bfl: BflProvider, emu: BflEmulator,
                                                                     source: SourceFactory,
                                                                     make_job: JobFactory) -> None:
    emu.inject("unavailable", on="poll", times=10)
    with pytest.raises(UpstreamError, match="not resubmitted") as caught:
        await bfl.run(make_job([await source()], model="flux-kontext-pro"))
    assert not caught.value.retryable and len(emu.submits) == 1


async def test_poll_deadline(source: SourceFactory, make_job: JobFactory) -> None:
    async with BflEmulator(KEY, steps=("Pending",) * 100) as emu:
        provider = BflProvider(name="bfl", base_url=emu.base_url, api_key=KEY, poll_schedule=Schedule(0.02),
                               poll_timeout=0.1)
        try:
            with pytest.raises(UpstreamTimeout) as caught:
                await provider.run(make_job([await source()], model="flux-kontext-pro"))
        finally:
            await provider.aclose()
    assert not caught.value.retryable and 2 <= len(emu.polls) <= 6


async def test_foreign_polling_url_gets_no_key(bfl: BflProvider, emu: BflEmulator, source: SourceFactory,
                                               make_job: JobFactory) -> None:
    emu.fail_next(200, {"id": "t1", "polling_url": "https://collector.example/v1/get_result?id=t1"})
    with pytest.raises(UpstreamError, match="foreign host") as caught:
        await bfl.run(make_job([await source()], model="flux-kontext-pro"))
    assert not caught.value.retryable and emu.polls == []


@pytest.mark.parametrize(("kind", "expected", "retryable"), [
    ("insufficient_credits", UpstreamError, True), ("rate_limit", UpstreamRateLimited, True),
    ("validation", InvalidRequest, None), ("not_authenticated", UpstreamError, True),
    ("forbidden", UpstreamError, True), ("server_error", UpstreamError, True), ("unavailable", UpstreamError, True),
    ("disconnect", UpstreamError, True),
])
async def test_submit_errors(kind: str, expected: type[Exception], retryable: bool | None, bfl: BflProvider,
                             emu: BflEmulator, source: SourceFactory, make_job: JobFactory) -> None:
    emu.inject(kind)
    with pytest.raises(expected) as caught:
        await bfl.run(make_job([await source()], model="flux-kontext-pro"))
    assert type(caught.value) is expected
    if retryable is not None:
        assert caught.value.retryable is retryable  # type: ignore[attr-defined]
    if kind == "rate_limit":
        assert caught.value.retry_after == 1  # type: ignore[attr-defined]
    if kind == "validation":
        assert caught.value.param == "seed"  # type: ignore[attr-defined]
    assert emu.polls == []


async def test_concurrency_cap_is_a_rate_limit(source: SourceFactory, make_job: JobFactory) -> None:
    async with BflEmulator(KEY, concurrency={"flux-kontext-pro": 1}) as emu:
        provider = BflProvider(name="bfl", base_url=emu.base_url, api_key=KEY, poll_schedule=Schedule())
        try:
            job = make_job([await source()], model="flux-kontext-pro")
            first = await provider.submit(job)
            with pytest.raises(UpstreamRateLimited):
                await provider.submit(job)
            await provider.poll(first)  # finishing frees the slot
            await provider.submit(job)
        finally:
            await provider.aclose()


async def test_wrong_key_and_unknown_model(emu: BflEmulator, source: SourceFactory, make_job: JobFactory) -> None:
    provider = BflProvider(name="bfl", base_url=emu.base_url, api_key="wrong", poll_schedule=Schedule())
    try:
        with pytest.raises(UpstreamError) as caught:
            await provider.run(make_job([await source()], model="flux-kontext-pro"))
        assert caught.value.retryable and emu.submits[-1].status == 403
        with pytest.raises(UpstreamError):
            await provider.run(make_job([await source()], model="flux-9"))
    finally:
        await provider.aclose()


def test_default_backoff_grows_from_half_a_second_to_five() -> None:
    middle = backoff(rand=lambda: 0.5)  # no jitter
    assert [middle(a) for a in range(8)] == [0.5, 0.75, 1.125, 1.6875, 2.53125, 3.796875, 5.0, 5.0]
    low, high = backoff(rand=lambda: 0.0), backoff(rand=lambda: 0.999)
    assert low(0) == 0.5 and high(0) > 0.6 and low(20) == 3.75 and high(20) == 5.0
    jittered = backoff()
    assert all(0.5 <= jittered(a) <= 5.0 for a in range(50))


async def test_emulator_rejects_fields_a_model_does_not_take(emu: BflEmulator) -> None:
    async with aiohttp.ClientSession(headers={"x-key": KEY}) as session:
        async with session.post(f"{emu.base_url}/v1/flux-kontext-pro", json={"prompt": "x", "width": 64}) as r:
            assert r.status == 422 and (await r.json())["detail"][0]["type"] == "extra_forbidden"
        async with session.get(f"{emu.base_url}/us1/v1/get_result") as r:
            assert r.status == 422


async def test_registry_default_base_url() -> None:
    provider = build_provider(ProviderSettings(name="b", type="bfl", models=("flux-2-pro",), api_key="k"))
    assert isinstance(provider, BflProvider) and provider._base == "https://api.bfl.ai"
    await provider.aclose()


def test_families_match_the_catalog_and_bfl() -> None:
    catalog = [spec for spec in builtin_specs().values() if "bfl" in spec.provider_types]
    assert catalog, "the catalog lists BFL models"
    for spec in catalog:
        assert family(spec.upstream_model).max_images == spec.rules("edit").max_images == \
            MODELS[spec.upstream_model].max_images
    for name, model in MODELS.items():  # every edit endpoint the emulator plays, as providers.md §5.2 has them
        assert family(name).max_images == model.max_images, name
    assert family("flux-2-pro-preview").max_images == 8 and family("flux-2-klein-9b").max_images == 4


async def test_no_credits_is_an_upstream_failure_never_a_402(bfl: BflProvider, emu: BflEmulator,
                                                             source: SourceFactory, make_job: JobFactory) -> None:
    emu.inject("insufficient_credits")
    with pytest.raises(UpstreamError) as caught:
        await bfl.run(make_job([await source()], model="flux-kontext-pro"))
    assert status_and_type(caught.value)[0] == 502 and caught.value.retryable
    assert "credits" in caught.value.message and "Please add" not in caught.value.message


async def test_validation_message_is_a_bounded_excerpt(bfl: BflProvider, emu: BflEmulator, source: SourceFactory,
                                                       make_job: JobFactory) -> None:
    emu.fail_next(422, {"detail": [{"loc": ["body", "input_image_2"], "msg": "too big\n" * 400, "type": "x"}]})
    with pytest.raises(InvalidRequest) as caught:
        await bfl.run(make_job([await source()], model="flux-kontext-pro"))
    assert caught.value.param == "image" and "\n" not in caught.value.message
    assert len(caught.value.message) < 260
    emu.fail_next(422, {"detail": [{"loc": ["body", "x" * 300], "msg": "bad"}]})
    with pytest.raises(InvalidRequest) as caught:
        await bfl.run(make_job([await source()], model="flux-kontext-pro"))
    assert caught.value.param is None and "x" * 65 not in caught.value.message


async def test_transient_sample_failures_are_retried(bfl: BflProvider, emu: BflEmulator, source: SourceFactory,
                                                     make_job: JobFactory) -> None:
    emu.inject("server_error", on="sample")
    emu.inject("rate_limit", on="sample")
    result = await bfl.run(make_job([await source()], model="flux-kontext-pro"))
    assert result.images[0].data and [r.status for r in emu.downloads] == [500, 429, 200]
    assert len(emu.submits) == 1


async def test_sample_that_is_not_an_image_is_refused(bfl: BflProvider, emu: BflEmulator, source: SourceFactory,
                                                      make_job: JobFactory) -> None:
    emu.fail_next(200, "<html>AccessDenied</html>", on="sample")
    with pytest.raises(UpstreamError, match="not an image") as caught:
        await bfl.run(make_job([await source()], model="flux-kontext-pro", options={"output_format": "png"}))
    assert not caught.value.retryable and len(emu.submits) == 1


async def test_unreadable_submit_answer_is_not_resubmitted(bfl: BflProvider, emu: BflEmulator,
                                                           source: SourceFactory, make_job: JobFactory) -> None:
    emu.fail_next(200, "<html>ok</html>")
    with pytest.raises(UpstreamError, match="no polling URL") as caught:
        await bfl.run(make_job([await source()], model="flux-kontext-pro"))
    assert not caught.value.retryable and emu.polls == []


async def test_latency_beyond_the_timeout(source: SourceFactory, make_job: JobFactory) -> None:
    async with BflEmulator(KEY, latency=2.0) as emu:
        provider = BflProvider(name="bfl", base_url=emu.base_url, api_key=KEY, timeout=0.3,
                               poll_schedule=Schedule())
        try:
            with pytest.raises(UpstreamTimeout) as caught:
                await provider.run(make_job([await source()], model="flux-kontext-pro"))
        finally:
            await provider.aclose()
    assert caught.value.retryable and emu.polls == []  # the submit itself timed out


async def test_a_generation_is_a_submit_without_input_images(bfl: BflProvider, emu: BflEmulator,
                                                            make_job: JobFactory) -> None:
    result = await bfl.run(make_job([], model="flux-2-pro", operation="generate", prompt="a lake",
                                    options={"size": "1024x768", "seed": 3}))
    [sent] = emu.submits
    assert sent.json == {"prompt": "a lake", "seed": 3, "width": 1024, "height": 768}
    assert (result.images[0].width, result.images[0].height) == (1024, 768)
    assert result.cost_micros is not None and result.cost_micros > 0
