"""The composition root: builds every adapter from the settings, once, and the ASGI app around them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from imagegate.api.errors import error_body, error_response, json_response
from imagegate.api.middleware import EdgeMiddleware
from imagegate.api.routes import ROUTES
from imagegate.billing.ledger import SqlLedger
from imagegate.catalog import builtin_specs
from imagegate.config import ConfigError, Settings
from imagegate.core.catalog import Catalog, Route
from imagegate.core.errors import GatewayError
from imagegate.core.ports import Provider
from imagegate.core.routing import Router
from imagegate.core.service import ImageService
from imagegate.db.accounts import AccountStore
from imagegate.db.engine import create_engine, migrate, sessionmaker
from imagegate.db.files import FileRepository
from imagegate.db.idempotency import SqlIdempotencyStore
from imagegate.db.presence import Presence, new_instance_id
from imagegate.db.tasks import SqlTaskStore
from imagegate.db.transactions import Transactions
from imagegate.fetch import SafeFetcher
from imagegate.inputs import InputResolver
from imagegate.metrics import Metrics
from imagegate.providers.registry import build_provider
from imagegate.storage.local import LocalBlobStore
from imagegate.tasks.runner import TaskRunner
from imagegate.tasks.sweeper import Sweeper

log = logging.getLogger("imagegate")


@dataclass
class Gateway:
    """Everything a request needs, built once per process."""

    settings: Settings
    engine: AsyncEngine
    accounts: AccountStore
    files: FileRepository
    blobs: LocalBlobStore
    ledger: SqlLedger
    catalog: Catalog
    images: ImageService
    fetcher: SafeFetcher
    providers: dict[str, Provider]
    transactions: Transactions
    tasks: SqlTaskStore
    runner: TaskRunner
    sweeper: Sweeper
    idempotency: SqlIdempotencyStore
    metrics: Metrics
    presence: Presence

    def start(self) -> None:
        """Start the background work of a serving process: task workers and the sweeper."""
        self.runner.start()
        self.sweeper.start()

    async def aclose(self) -> None:
        await self.sweeper.aclose()
        await self.runner.aclose()
        for provider in self.providers.values():
            await provider.aclose()
        await self.fetcher.aclose()
        await self.presence.aclose()
        await self.transactions.aclose()
        await self.engine.dispose()


def build_catalog(settings: Settings, providers: dict[str, Provider]) -> Catalog:
    specs = builtin_specs(settings.prices)
    routes: dict[str, list[Route]] = {}
    for p in settings.providers:
        for model in p.models:
            spec = specs.get(model)
            if spec is None:
                raise ConfigError(f"[[providers]] {p.name}: unknown model {model!r}")
            if p.type not in spec.provider_types:
                raise ConfigError(f"[[providers]] {p.name}: a {p.type!r} provider cannot serve {model!r}")
            routes.setdefault(model, []).append(Route(p.name, providers[p.name], p.priority, p.weight, p.type))
    catalog = Catalog(specs, routes)
    default = settings.api.default_model
    if default is not None and default not in catalog:
        raise ConfigError(f"[api] default_model {default!r} is not served by any [[providers]]")
    return catalog


async def build_gateway(settings: Settings, *, fetcher: SafeFetcher | None = None) -> Gateway:
    """Build the gateway's components. `fetcher` may be injected (tests use a loopback-safe policy)."""
    await migrate(settings.database.url)
    engine = create_engine(settings.database.url)
    sessions = sessionmaker(engine)
    fetcher = fetcher or SafeFetcher(settings.fetch)
    providers = {p.name: build_provider(p, fetcher) for p in settings.providers}
    catalog = build_catalog(settings, providers)
    accounts = AccountStore(sessions)
    files = FileRepository(sessions)
    blobs = LocalBlobStore(settings.storage.path, settings.storage.public_base_url)
    transactions = Transactions(settings.database.url, engine)
    presence = Presence(transactions, new_instance_id(), lease=settings.tasks.lease)
    ledger = SqlLedger(transactions, hold_ttl=timedelta(seconds=settings.billing.hold_ttl), owner=presence.id)
    tasks = SqlTaskStore(transactions)
    new_tasks = asyncio.Event()
    metrics = Metrics()
    router = Router(settings.routing, observe=metrics.upstream_attempt)
    metrics.watch_circuits(router.health)
    images = ImageService(catalog, InputResolver(files, blobs, fetcher), ledger, blobs, tasks, router,
                          request_timeout=settings.limits.request_timeout, task_deadline=settings.tasks.deadline,
                          task_retention=settings.tasks.retention, task_accepted=new_tasks.set,
                          default_model=settings.api.default_model)
    idempotency = SqlIdempotencyStore(transactions, owner=presence.id, lease=presence.lease,
                                      stale_after=settings.billing.hold_ttl)
    runner = TaskRunner(tasks, images, blobs, settings.tasks, wake=new_tasks, ended=metrics.task_ended,
                        owner=presence.id)
    sweeper = Sweeper(settings, tasks, ledger, blobs, files, idempotency, presence, images.delivery.discard,
                      ended=metrics.task_ended)
    await presence.start()
    return Gateway(settings=settings, engine=engine, accounts=accounts, files=files, blobs=blobs,
                   ledger=ledger, catalog=catalog, images=images, fetcher=fetcher, providers=providers,
                   transactions=transactions, tasks=tasks, runner=runner, sweeper=sweeper,
                   idempotency=idempotency, metrics=metrics, presence=presence)


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    message = "Not found." if status == 404 else ("Method not allowed." if status == 405 else str(exc))
    return json_response(error_body(message, "invalid_request_error", "not_found" if status == 404
                                    else "method_not_allowed" if status == 405 else "http_error"), status,
                         headers=getattr(exc, "headers", None))  # a 405 names the methods allowed


def _observe(scope: Scope, status: int, seconds: float) -> None:
    """Count a request in its gateway's metrics, by the endpoint it was routed to."""
    gateway = getattr(scope["app"].state, "gateway", None)
    if gateway is not None:
        handler = getattr(scope.get("endpoint"), "__name__", "unmatched")
        gateway.metrics.http_request(handler, scope["method"], status, seconds)


def create_app(settings: Settings, *, gateway: Gateway | None = None, **build: Any) -> Starlette:
    """The ASGI app. The gateway is built in the lifespan unless one is given."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gw = gateway or await build_gateway(settings, **build)
        app.state.gateway = gw
        if gateway is None:
            gw.start()
        try:
            yield
        finally:
            if gateway is None:
                await gw.aclose()

    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(EdgeMiddleware, max_body=settings.limits.max_request_bytes,
                               body_timeout=settings.limits.body_timeout, observe=_observe)],
        exception_handlers={GatewayError: _gateway_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    if gateway is not None:
        app.state.gateway = gateway
    return app
