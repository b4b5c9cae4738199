"""The router: route order, failover, the circuit breaker and the request deadline, with fake time and chance."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from imagegate.core.catalog import Route
from imagegate.core.errors import (
    AllChannelsFailed,
    InvalidRequest,
    ModerationBlocked,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from imagegate.core.routing import Router, RoutingPolicy


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeProvider:
    """Answers each call with the next scripted outcome (the last one repeats).

    An outcome is a value to return, an exception to raise, or a callable run first whose result is the
    outcome (so a script can advance the clock or wait on an event).
    """

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes) or ["ok"]
        self.calls = 0

    async def edit(self, job: object) -> Any:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        while callable(outcome) and not isinstance(outcome, BaseException):
            outcome = outcome()
            if asyncio.iscoroutine(outcome):
                outcome = await outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def aclose(self) -> None:
        pass


def route(name: str, *outcomes: Any, priority: int = 1, weight: int = 1) -> Route:
    return Route(name, FakeProvider(*outcomes), priority=priority, weight=weight)


def calls(r: Route) -> int:
    provider = r.provider
    assert isinstance(provider, FakeProvider)
    return provider.calls


async def call(r: Route) -> Any:
    return await r.provider.edit(None)  # type: ignore[arg-type]


def retryable(message: str = "upstream 503", retry_after: float | None = None) -> UpstreamError:
    return UpstreamError(message, retryable=True, retry_after=retry_after)


def names(routes: list[Route]) -> list[str]:
    return [r.provider_name for r in routes]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_router(clock: FakeClock, rand: Callable[[], float] | None = None, **policy: Any) -> Router:
    return Router(RoutingPolicy(**policy), clock=clock, rand=rand or random.Random(7).random)


# order ---------------------------------------------------------------------------------------------
def test_order_goes_by_priority_lowest_first(clock: FakeClock) -> None:
    router = make_router(clock)
    routes = [route("c", priority=3), route("a", priority=1), route("b", priority=2)]
    for _ in range(20):
        assert names(router.order(routes)) == ["a", "b", "c"]


def test_weights_set_the_odds_of_going_first_within_a_priority(clock: FakeClock) -> None:
    router = make_router(clock, random.Random(1234).random)
    routes = [route("heavy", weight=3), route("light", weight=1), route("backup", priority=2, weight=9)]
    firsts = {"heavy": 0, "light": 0}
    for _ in range(4000):
        ordered = names(router.order(routes))
        assert sorted(ordered[:2]) == ["heavy", "light"] and ordered[2] == "backup"
        firsts[ordered[0]] += 1
    assert firsts["heavy"] / 4000 == pytest.approx(0.75, abs=0.03)


def test_weighted_pick_follows_the_random_number(clock: FakeClock) -> None:
    routes = [route("a", weight=1), route("b", weight=2), route("c", weight=1)]  # a: [0, .25) b: [.25, .75)
    assert names(make_router(clock, lambda: 0.1).order(routes))[0] == "a"
    assert names(make_router(clock, lambda: 0.25).order(routes))[0] == "b"
    assert names(make_router(clock, lambda: 0.5).order(routes))[0] == "b"
    assert names(make_router(clock, lambda: 0.99).order(routes))[0] == "c"


def test_weight_zero_is_only_used_when_nothing_else_is_left(clock: FakeClock) -> None:
    router = make_router(clock, random.Random(3).random)
    standby, live = route("standby", weight=0), route("live", weight=1)
    for _ in range(200):
        assert names(router.order([standby, live])) == ["live", "standby"]
    assert names(router.order([standby])) == ["standby"]


async def test_weight_zero_route_serves_when_the_others_fail(clock: FakeClock) -> None:
    router = make_router(clock)
    standby, live = route("standby", "from standby", weight=0), route("live", retryable())
    assert await router.run([standby, live], call, model="m") == "from standby"
    assert (calls(live), calls(standby)) == (1, 1)


# failover ------------------------------------------------------------------------------------------
async def test_retryable_failure_moves_on_to_the_next_route(clock: FakeClock) -> None:
    router = make_router(clock)
    first, second = route("first", retryable()), route("second", "done", priority=2)
    assert await router.run([first, second], call, model="m") == "done"
    assert (calls(first), calls(second)) == (1, 1)
    health = router.health()
    assert health["first"]["consecutive_failures"] == 1 and health["first"]["state"] == "closed"
    assert health["second"]["consecutive_failures"] == 0


@pytest.mark.parametrize("error", [
    ModerationBlocked("The prompt was blocked."),
    InvalidRequest("Bad size.", param="size"),
    UpstreamError("The provider rejected the image.", retryable=False),
])
async def test_final_errors_return_at_once_and_do_not_count_against_the_route(
        clock: FakeClock, error: Exception) -> None:
    router = make_router(clock, failure_threshold=2)
    first, second = route("first", error), route("second", priority=2)
    for _ in range(5):
        with pytest.raises(type(error)) as caught:
            await router.run([first, second], call, model="m")
        assert caught.value is error
    assert (calls(first), calls(second)) == (5, 0)
    assert router.health()["first"]["state"] == "closed"
    assert router.health()["first"]["consecutive_failures"] == 0


async def test_no_more_than_max_attempts_calls(clock: FakeClock) -> None:
    router = make_router(clock, max_attempts=3)
    routes = [route(f"r{i}", retryable(), priority=i) for i in range(5)]
    with pytest.raises(AllChannelsFailed):
        await router.run(routes, call, model="m")
    assert [calls(r) for r in routes] == [1, 1, 1, 0, 0]


async def test_a_single_failure_is_reraised_as_is(clock: FakeClock) -> None:
    error = UpstreamTimeout("The provider 'solo' did not answer in time.", retryable=True)
    router = make_router(clock)
    with pytest.raises(UpstreamTimeout) as caught:
        await router.run([route("solo", error)], call, model="m")
    assert caught.value is error


async def test_a_single_attempt_allowed_keeps_the_upstream_error(clock: FakeClock) -> None:
    error = UpstreamRateLimited("Slow down.", retryable=True, retry_after=12)
    router = make_router(clock, max_attempts=1)
    first, second = route("first", error), route("second", priority=2)
    with pytest.raises(UpstreamRateLimited) as caught:
        await router.run([first, second], call, model="m")
    assert caught.value is error and calls(second) == 0


async def test_several_failures_become_all_channels_failed_with_the_soonest_retry(clock: FakeClock) -> None:
    router = make_router(clock)
    routes = [route("alpha", UpstreamRateLimited("429", retryable=True, retry_after=20), priority=1),
              route("beta", retryable(retry_after=5), priority=2),
              route("gamma", UpstreamTimeout("slow", retryable=True), priority=3)]
    with pytest.raises(AllChannelsFailed) as caught:
        await router.run(routes, call, model="pic-edit")
    exc = caught.value
    assert exc.code == "all_channels_failed"
    assert exc.details == {"retryable": True, "retry_after": 5}
    assert "pic-edit" in exc.message
    assert not any(name in exc.message for name in ("alpha", "beta", "gamma"))


async def test_all_channels_failed_without_any_retry_hint(clock: FakeClock) -> None:
    router = make_router(clock)
    with pytest.raises(AllChannelsFailed) as caught:
        await router.run([route("a", retryable()), route("b", retryable())], call, model="m")
    assert caught.value.details == {"retryable": True, "retry_after": None}


# circuit breaker -----------------------------------------------------------------------------------
async def test_consecutive_failures_open_the_circuit_and_the_route_is_skipped(clock: FakeClock) -> None:
    router = make_router(clock, failure_threshold=3, cooldown=30)
    flaky, steady = route("flaky", retryable()), route("steady", "steady", priority=2)
    for _ in range(3):
        assert await router.run([flaky, steady], call, model="m") == "steady"
    health = router.health()["flaky"]
    assert health["state"] == "open" and health["consecutive_failures"] == 3
    assert health["opened_until"] == pytest.approx(clock.now + 30)
    assert names(router.order([flaky, steady])) == ["steady"]
    assert await router.run([flaky, steady], call, model="m") == "steady"
    assert (calls(flaky), calls(steady)) == (3, 4)


async def test_a_success_resets_the_failure_count(clock: FakeClock) -> None:
    router = make_router(clock, failure_threshold=3)
    flaky = route("flaky", retryable(), retryable(), "ok", retryable(), retryable(), "ok")
    fallback = route("fallback", priority=2)
    for _ in range(6):
        await router.run([flaky, fallback], call, model="m")
    assert calls(flaky) == 6
    assert router.health()["flaky"]["state"] == "closed"


async def opened(router: Router, r: Route, clock: FakeClock) -> None:
    """Fail `r` until its circuit opens (its script must fail)."""
    while router.health().get(r.provider_name, {}).get("state") != "open":
        with pytest.raises(UpstreamError):
            await router.run([r], call, model="m")


async def test_after_the_cooldown_one_probe_is_let_through_and_success_closes(clock: FakeClock) -> None:
    router = make_router(clock, failure_threshold=2, cooldown=30)
    flaky = route("flaky", retryable(), retryable(), "recovered")
    await opened(router, flaky, clock)
    clock.advance(29.9)
    assert router.order([flaky]) == []
    clock.advance(0.2)
    assert router.health()["flaky"]["state"] == "half_open"
    assert names(router.order([flaky])) == ["flaky"]
    assert await router.run([flaky], call, model="m") == "recovered"
    health = router.health()["flaky"]
    assert health["state"] == "closed" and health["consecutive_failures"] == 0 and health["opened_until"] is None


async def test_a_failed_probe_reopens_for_twice_as_long_up_to_the_cap(clock: FakeClock) -> None:
    router = make_router(clock, failure_threshold=1, cooldown=30, max_cooldown=100)
    down = route("down", retryable())
    await opened(router, down, clock)
    for expected in (60, 100, 100):
        clock.advance(router.health()["down"]["opened_until"] - clock.now)
        with pytest.raises(UpstreamError):
            await router.run([down], call, model="m")
        health = router.health()["down"]
        assert health["state"] == "open" and health["opened_until"] == pytest.approx(clock.now + expected)
    assert calls(down) == 4


async def test_only_one_probe_at_a_time(clock: FakeClock) -> None:
    router = make_router(clock, failure_threshold=1, cooldown=10)
    probe_started, release = asyncio.Event(), asyncio.Event()

    async def slow_success() -> str:
        probe_started.set()
        await release.wait()
        return "probe ok"

    flaky = route("flaky", retryable(), slow_success)
    other = route("other", "other", priority=2)
    await opened(router, flaky, clock)
    clock.advance(10)
    probe = asyncio.create_task(router.run([flaky, other], call, model="m"))
    await probe_started.wait()
    assert names(router.order([flaky, other])) == ["other"]
    assert await router.run([flaky, other], call, model="m") == "other"
    release.set()
    assert await probe == "probe ok"
    assert calls(flaky) == 2 and router.health()["flaky"]["state"] == "closed"


async def test_a_probe_ending_in_a_final_error_leaves_the_route_half_open(clock: FakeClock) -> None:
    router = make_router(clock, failure_threshold=1, cooldown=10)
    flaky = route("flaky", retryable(), ModerationBlocked("blocked"), "ok")
    await opened(router, flaky, clock)
    clock.advance(10)
    with pytest.raises(ModerationBlocked):
        await router.run([flaky], call, model="m")
    assert router.health()["flaky"]["state"] == "half_open"
    assert await router.run([flaky], call, model="m") == "ok"


async def test_every_circuit_open_fails_fast_until_the_earliest_probe(clock: FakeClock) -> None:
    router = make_router(clock, failure_threshold=1, cooldown=30)
    a, b = route("a", retryable()), route("b", retryable())
    await opened(router, a, clock)
    clock.advance(12)
    await opened(router, b, clock)
    with pytest.raises(AllChannelsFailed) as caught:
        await router.run([a, b], call, model="m")
    assert caught.value.details["retryable"] is True
    assert caught.value.details["retry_after"] == pytest.approx(18)
    assert (calls(a), calls(b)) == (1, 1)


# deadline ------------------------------------------------------------------------------------------
async def test_a_slow_call_is_cut_at_the_deadline() -> None:
    router = Router(RoutingPolicy(), clock=time.monotonic)
    slow = route("slow", lambda: asyncio.sleep(10))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as caught:
        await router.run([slow, route("next", priority=2)], call, model="m", deadline=started + 0.05)
    assert time.monotonic() - started < 5  # not the 10 s call
    assert caught.value.code == "timeout_error" and caught.value.retryable
    assert "m" in caught.value.message and "slow" not in caught.value.message
    assert router.health()["slow"]["consecutive_failures"] == 1


async def test_later_attempts_get_only_what_is_left_of_the_deadline(clock: FakeClock) -> None:
    router = make_router(clock)

    def fail_late() -> UpstreamError:
        clock.advance(4.95)
        return retryable()

    first, second = route("first", fail_late), route("second", lambda: asyncio.sleep(10), priority=2)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as caught:
        await router.run([first, second], call, model="m", deadline=clock.now + 5)
    assert 0.03 < time.monotonic() - started < 4  # second got the 0.05 s left, not a fresh 5 s
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert (calls(first), calls(second)) == (1, 1)


async def test_no_call_is_made_once_the_deadline_has_passed(clock: FakeClock) -> None:
    router = make_router(clock)

    def fail_too_late() -> UpstreamError:
        clock.advance(6)
        return retryable()

    first, second = route("first", fail_too_late), route("second", priority=2)
    with pytest.raises(UpstreamTimeout):
        await router.run([first, second], call, model="m", deadline=clock.now + 5)
    assert calls(second) == 0


# cancellation and foreign errors -------------------------------------------------------------------
async def test_cancellation_propagates_and_frees_the_probe(clock: FakeClock) -> None:
    router = make_router(clock, failure_threshold=1, cooldown=5)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(3600)

    flaky, other = route("flaky", retryable(), hang, "ok"), route("other", priority=2)
    await opened(router, flaky, clock)
    clock.advance(5)
    task = asyncio.create_task(router.run([flaky, other], call, model="m"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls(other) == 0
    assert router.health()["flaky"] == {"state": "half_open", "consecutive_failures": 1,
                                        "opened_until": clock.now, "cooldown": 5, "probe_in_flight": False}
    assert await router.run([flaky], call, model="m") == "ok"


@pytest.mark.parametrize("error", [asyncio.CancelledError(), RuntimeError("adapter bug"), TimeoutError()])
async def test_exceptions_from_outside_the_error_tree_pass_through_untouched(
        clock: FakeClock, error: BaseException) -> None:
    router = make_router(clock)
    first, second = route("first", error), route("second", priority=2)
    with pytest.raises(type(error)) as caught:
        await router.run([first, second], call, model="m")
    assert caught.value is error
    assert calls(second) == 0 and router.health()["first"]["consecutive_failures"] == 0


# policy and logs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [{"max_attempts": 0}, {"failure_threshold": 0}, {"cooldown": -1},
                                 {"cooldown": 500, "max_cooldown": 300}])
def test_policy_rejects_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RoutingPolicy(**bad)


async def test_logs_name_the_route_that_failed_and_the_one_that_served(
        clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    router = make_router(clock, failure_threshold=1)
    caplog.set_level(logging.INFO, logger="imagegate.routing")
    await router.run([route("first", retryable()), route("second", priority=2)], call, model="m")
    messages = [r.getMessage() for r in caplog.records if r.name == "imagegate.routing"]
    assert any("first failed for m" in m for m in messages)
    assert any("first taken out for 30 s" in m for m in messages)
    assert any("second served m" in m for m in messages)
