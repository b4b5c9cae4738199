"""Routing: which of a model's routes serves a request, failover between them, and a circuit breaker per route.

Routes are tried best first: by priority (lower first), then in a weighted random order within a priority.
A retryable upstream failure moves the request on to the next route, at most `max_attempts` calls within the
request's deadline; any other error is the answer. A route that fails `failure_threshold` times in a row is
left out for a cool-down, then one probe request is let through: success brings it back, failure sends it
out again for twice as long (up to `max_cooldown`). No I/O: time and chance come in as callables.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from imagegate.core.catalog import Route
from imagegate.core.errors import AllChannelsFailed, UpstreamError, UpstreamTimeout

log = logging.getLogger("imagegate.routing")

T = TypeVar("T")
AttemptObserver = Callable[[str, str, str, float], None]  # route, model, outcome ("ok" or a code), seconds


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    max_attempts: int = 3
    failure_threshold: int = 5  # consecutive retryable failures that open a route's circuit
    cooldown: float = 30.0  # seconds a circuit stays open before one probe is let through
    max_cooldown: float = 300.0  # each failed probe doubles the cool-down, up to this

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.failure_threshold < 1:
            raise ValueError("max_attempts and failure_threshold must be at least 1")
        if not 0 <= self.cooldown <= self.max_cooldown:
            raise ValueError("cooldown must be between 0 and max_cooldown")


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class _Circuit:
    """The breaker of one route name. Open until `opened_until`; half-open after it until a probe answers."""

    def __init__(self, policy: RoutingPolicy) -> None:
        self._policy = policy
        self.failures = 0
        self.opened_until: float | None = None
        self.cooldown = policy.cooldown
        self.probing = False

    def state(self, now: float) -> CircuitState:
        if self.opened_until is None:
            return CircuitState.CLOSED
        return CircuitState.OPEN if now < self.opened_until else CircuitState.HALF_OPEN

    def available(self, now: float) -> bool:
        state = self.state(now)
        return state is CircuitState.CLOSED or (state is CircuitState.HALF_OPEN and not self.probing)

    def begin(self, now: float) -> bool:
        """Admit one call (the caller checked `available`); True if it is the half-open probe."""
        probe = self.state(now) is CircuitState.HALF_OPEN
        self.probing = self.probing or probe
        return probe

    def release(self, probe: bool) -> None:
        if probe:
            self.probing = False

    def succeeded(self) -> None:
        self.failures, self.opened_until, self.cooldown = 0, None, self._policy.cooldown

    def failed(self, now: float, probe: bool) -> bool:
        """Count a retryable failure; True if it opened the circuit."""
        self.failures += 1
        if probe:
            self.cooldown = min(self.cooldown * 2, self._policy.max_cooldown)
        elif self.opened_until is not None or self.failures < self._policy.failure_threshold:
            return False  # still closed, or a late answer from a call started before the circuit opened
        self.opened_until = now + self.cooldown
        return True

    def snapshot(self, now: float) -> dict[str, Any]:
        return {"state": self.state(now).value, "consecutive_failures": self.failures,
                "opened_until": self.opened_until, "cooldown": self.cooldown, "probe_in_flight": self.probing}


class Router:
    """Chooses routes and fails over between them; keeps one circuit per route name across requests."""

    def __init__(self, policy: RoutingPolicy = RoutingPolicy(), *, clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random, observe: AttemptObserver | None = None) -> None:
        self.policy = policy
        self._clock = clock
        self._rand = rand
        self._observe = observe or (lambda route, model, outcome, seconds: None)
        self._circuits: dict[str, _Circuit] = {}

    def clock(self) -> float:
        """Now, in the time `run`'s deadline is measured in."""
        return self._clock()

    def order(self, routes: Sequence[Route]) -> list[Route]:
        """The routes to try, best first, without those whose circuit is open (or whose probe is out)."""
        now = self._clock()
        usable = sorted((r for r in routes if self._circuit(r.provider_name).available(now)),
                        key=lambda r: r.priority)
        ordered: list[Route] = []
        for _, group in itertools.groupby(usable, key=lambda r: r.priority):
            ordered.extend(self._shuffle(list(group)))
        return ordered

    async def run(self, routes: Sequence[Route], call: Callable[[Route], Awaitable[T]], *, model: str,
                  deadline: float | None = None) -> T:
        """`call` the best route; on a retryable failure try the next. `deadline` is in the clock's time."""
        candidates = self.order(routes)
        if not candidates:
            raise self._all_open(routes, model)
        failures: list[UpstreamError] = []
        attempts = 0
        for route in candidates:
            if attempts == self.policy.max_attempts:
                break
            circuit = self._circuit(route.provider_name)
            now = self._clock()
            if not circuit.available(now):
                continue  # another request took the probe while this one waited
            remaining = None if deadline is None else deadline - now
            if remaining is not None and remaining <= 0:
                raise _deadline_passed(model) from (failures[-1] if failures else None)
            attempts += 1
            probe = circuit.begin(now)
            scope = asyncio.timeout(remaining)
            outcome = "ok"
            try:
                async with scope:
                    result = await call(route)
            except (TimeoutError, UpstreamError) as exc:
                outcome = "deadline" if scope.expired() else getattr(exc, "code", "timeout")
                if scope.expired():
                    self._failed(route, circuit, probe, model, "deadline")
                    raise _deadline_passed(model) from exc
                if not isinstance(exc, UpstreamError) or not exc.retryable:
                    raise  # a final answer (or a stray TimeoutError): not a sign that the route is down
                self._failed(route, circuit, probe, model, exc.code)
                failures.append(exc)
                continue
            except BaseException as exc:
                outcome = getattr(exc, "code", type(exc).__name__)
                raise
            finally:
                circuit.release(probe)
                self._observe(route.provider_name, model, outcome, self._clock() - now)
            if probe:
                log.info("route %s is back after a successful probe", route.provider_name)
            circuit.succeeded()
            log.info("route %s served %s (attempt %d)", route.provider_name, model, attempts)
            return result
        if len(failures) == 1:
            raise failures[0]  # one route tried: keep the upstream's own error (502/504/429)
        if not failures:
            raise self._all_open(routes, model)
        retry_after = min((f.retry_after for f in failures if f.retry_after is not None), default=None)
        raise AllChannelsFailed(_unavailable(model), retryable=True, retry_after=retry_after)

    def health(self) -> dict[str, dict[str, Any]]:
        """Each known route's circuit, for logs and metrics."""
        now = self._clock()
        return {name: circuit.snapshot(now) for name, circuit in self._circuits.items()}

    def _circuit(self, name: str) -> _Circuit:
        if name not in self._circuits:
            self._circuits[name] = _Circuit(self.policy)
        return self._circuits[name]

    def _shuffle(self, group: list[Route]) -> list[Route]:
        """Weighted random order: each pick is proportional to weight; weight 0 only after all the others."""
        pool = [r for r in group if r.weight > 0]
        ordered: list[Route] = []
        while len(pool) > 1:
            x = self._rand() * sum(r.weight for r in pool)
            index = next((i for i, total in enumerate(itertools.accumulate(r.weight for r in pool)) if x < total),
                         len(pool) - 1)
            ordered.append(pool.pop(index))
        return ordered + pool + [r for r in group if r.weight <= 0]

    def _failed(self, route: Route, circuit: _Circuit, probe: bool, model: str, reason: str) -> None:
        log.warning("route %s failed for %s: %s", route.provider_name, model, reason)
        if circuit.failed(self._clock(), probe):
            log.warning("route %s taken out for %.0f s after %d consecutive failures",
                        route.provider_name, circuit.cooldown, circuit.failures)

    def _all_open(self, routes: Sequence[Route], model: str) -> AllChannelsFailed:
        """Nothing can be tried now; retry_after is the time until the earliest route may be probed."""
        now = self._clock()
        circuits = [self._circuit(r.provider_name) for r in routes]
        waits = [max(0.0, c.opened_until - now) if c.opened_until is not None else 0.0 for c in circuits]
        retry_after = max(1.0, min(waits)) if waits else None
        return AllChannelsFailed(_unavailable(model), retryable=True, retry_after=retry_after)


def _unavailable(model: str) -> str:
    return f"No provider could serve '{model}' right now. Try again later."


def _deadline_passed(model: str) -> UpstreamTimeout:
    return UpstreamTimeout(f"The request for '{model}' ran out of time before a provider answered.",
                           retryable=True)
