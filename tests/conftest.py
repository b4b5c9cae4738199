"""Shared fixtures: databases (SQLite and PostgreSQL), the gateway app, an SDK client, test images."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from tests.servers import Server

from imagegate.app import Gateway, build_gateway, create_app
from imagegate.config import DatabaseSettings, ProviderSettings, Settings, StorageSettings, load_settings
from imagegate.db.accounts import AccountStore
from imagegate.db.engine import create_engine, migrate, sessionmaker

PG_ADMIN = os.environ.get("IMAGEGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("CI") == "true" or os.environ.get("IMAGEGATE_REQUIRE_POSTGRES") == "1"


def png_bytes(size: tuple[int, int] = (64, 64), color: tuple[int, ...] = (200, 30, 30, 255),
              mode: str = "RGBA", fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img = Image.new(mode, size, color[: len(mode)] if mode != "L" else color[0])
    img.save(buf, format=fmt)
    return buf.getvalue()


def mask_bytes(size: tuple[int, int] = (64, 64), hole: tuple[int, int, int, int] = (16, 16, 48, 48)) -> bytes:
    img = Image.new("RGBA", size, (0, 0, 0, 255))
    img.paste((0, 0, 0, 0), hole)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# --- databases -----------------------------------------------------------------------------------
async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN.replace("postgresql://", "postgres://"), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pg_available() -> bool:
    try:
        asyncio.run(_pg_admin("SELECT 1"))
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_available() -> bool:
    ok = _pg_available()
    if not ok and REQUIRE_PG:
        pytest.fail(f"PostgreSQL at {PG_ADMIN} is required here (CI) but unreachable")
    return ok


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'imagegate.db'}"
        return
    if not request.getfixturevalue("pg_available"):
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    name = "imagegate_test_" + secrets.token_hex(6)
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'imagegate.db'}"


# --- the gateway ---------------------------------------------------------------------------------
def settings_on(db_url: str, blobs: Path, **sections: Any) -> Settings:
    """Settings on the database `db_url` with the blob store in `blobs`; other sections as given."""
    return Settings(database=DatabaseSettings(url=db_url),
                    storage=StorageSettings(path=str(blobs), public_base_url="http://gateway.test"), **sections)


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    return settings_on(sqlite_url, tmp_path / "blobs")


def with_providers(settings: Settings, *providers: ProviderSettings) -> Settings:
    return replace(settings, providers=(*settings.providers, *providers))


class Harness:
    """A built gateway, its ASGI app, an HTTP client on it, and a funded API key."""

    def __init__(self, gateway: Gateway, app: Any, client: httpx.AsyncClient, key: str) -> None:
        self.gateway = gateway
        self.app = app
        self.client = client
        self.key = key

    def sdk(self, key: str | None = None) -> Any:
        """The official openai SDK pointed at this gateway (no retries, so failures surface)."""
        from openai import AsyncOpenAI

        return AsyncOpenAI(base_url="http://gateway.test/v1", api_key=key or self.key, max_retries=0,
                           http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                                         timeout=60))

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.gateway.aclose()

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def new_key(self, account: str, credit: float | None = 10.0, **kwargs: Any) -> str:
        from imagegate.core.pricing import usd_to_micros

        if credit:
            await self.gateway.accounts.add_credit(account, usd_to_micros(credit))
        return await self.gateway.accounts.create_key(account, **kwargs)

    async def books(self, account: str = "alice") -> tuple[int, int, int]:
        """(balance, held, spent) in micro-USD, after checking that deposits = balance + held + spent."""
        s = await self.gateway.accounts.summary(account)
        assert s.deposits_micros == s.balance_micros + s.held_micros + s.spent_micros
        assert min(s.balance_micros, s.held_micros, s.spent_micros) >= 0
        return s.balance_micros, s.held_micros, s.spent_micros

    async def fetch_output(self, url: str) -> bytes:
        response = await self.client.get(url.replace("http://gateway.test", ""))
        assert response.status_code == 200, response.text
        return response.content


async def start_harness(settings: Settings, **build: Any) -> Harness:
    gateway = await build_gateway(settings, **build)
    app = create_app(settings, gateway=gateway)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test",
                               timeout=60)
    harness = Harness(gateway, app, client, "")
    harness.key = await harness.new_key("alice", credit=100.0)
    return harness


@contextlib.asynccontextmanager
async def running(settings: Settings, **build: Any) -> AsyncIterator[Harness]:
    """A harness for the length of a `with` block."""
    h = await start_harness(settings, **build)
    try:
        yield h
    finally:
        await h.aclose()


@pytest.fixture
async def harness(settings: Settings) -> AsyncIterator[Harness]:
    async with running(settings) as h:
        yield h


# --- real servers in child processes ---------------------------------------------------------------
Fund = Callable[[Path], Awaitable[tuple[AccountStore, str]]]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Callable[..., Server]]:
    """Makes servers on a config (`make(config, **Server options)`); every one is stopped when the test ends."""
    made: list[Server] = []

    def make(config: Path, **options: Any) -> Server:
        made.append(Server(config, tmp_path, **options))
        return made[-1]

    yield make
    for each in made:
        await each.stop()


@pytest.fixture
async def funded() -> AsyncIterator[Fund]:
    """Migrates a config's database and funds account "acme"; its account store and a key."""
    engines = []

    async def fund(config: Path) -> tuple[AccountStore, str]:
        url = load_settings(config).database.url
        await migrate(url)
        engines.append(create_engine(url, null_pool=True))
        accounts = AccountStore(sessionmaker(engines[-1]))
        await accounts.add_credit("acme", 50_000_000)
        return accounts, await accounts.create_key("acme")

    yield fund
    for engine in engines:
        await engine.dispose()


