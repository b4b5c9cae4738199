"""Prometheus metrics of one gateway process: HTTP requests, upstream attempts by route, route circuits,
ended tasks."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_CIRCUIT_STATES = ("closed", "half_open", "open")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _Circuits(Collector):
    """The router's circuit of each route, read when scraped."""

    def __init__(self, health: Callable[[], Mapping[str, Mapping[str, Any]]]) -> None:
        self._health = health

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("imagegate_route_circuit_state", "1 for the state each route's circuit is in",
                                   labels=["route", "state"])
        for route, circuit in self._health().items():
            for state in _CIRCUIT_STATES:
                family.add_metric([route, state], 1.0 if circuit["state"] == state else 0.0)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter("imagegate_http_requests", "HTTP requests answered, by handler, method and "
                                 "status (499: the client left first)", ["handler", "method", "status"],
                                 registry=self.registry)
        self._request_seconds = Histogram("imagegate_http_request_seconds", "Time to answer an HTTP request",
                                          ["handler"], registry=self.registry,
                                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                   2.5, 5, 10, 30, 60, 120, 300, 600))
        self._attempts = Counter("imagegate_upstream_attempts", "Calls to upstream routes by outcome",
                                 ["route", "model", "outcome"], registry=self.registry)
        self._seconds = Histogram("imagegate_upstream_seconds", "Time an upstream route took to answer",
                                  ["route"], registry=self.registry,
                                  buckets=(0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600))
        self._tasks = Counter("imagegate_tasks_ended", "Async tasks ended, by outcome", ["outcome"],
                              registry=self.registry)

    def watch_circuits(self, health: Callable[[], Mapping[str, Mapping[str, Any]]]) -> None:
        self.registry.register(_Circuits(health))

    def http_request(self, handler: str, method: str, status: int, seconds: float) -> None:
        """One answered request; `handler` is the route's endpoint name, never the raw path."""
        self._requests.labels(handler, method if method in _METHODS else "other", str(status)).inc()
        self._request_seconds.labels(handler).observe(seconds)

    def upstream_attempt(self, route: str, model: str, outcome: str, seconds: float) -> None:
        self._attempts.labels(route, model, outcome).inc()
        self._seconds.labels(route).observe(seconds)

    def task_ended(self, outcome: str) -> None:
        self._tasks.labels(outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
