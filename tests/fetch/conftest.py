"""Fixtures for the fetcher's tests: loopback origins, a fake resolver and a connect tripwire.

No test here may send a packet to a non-loopback address, even when the code under test is wrong:
names resolve only through `FakeResolver`, every connect() goes through the autouse `tripwire` (which
refuses anything but the "public" test origin 127.0.0.2 and fails the test), and name lookups through
getaddrinfo are refused. 127.0.0.2 is public only to the test policy (`TEST_POLICY_CIDRS`); the production
policy refuses it (see test_policy.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from imagegate.core.jobs import UrlRef
from imagegate.core.media import SourceImage
from imagegate.fetch import AddressPolicy, SafeFetcher

from .support import (
    INTERNAL,
    NAMES,
    PUBLIC,
    TEST_POLICY_CIDRS,
    FakeResolver,
    Origin,
    Tripwire,
    settings_for,
)


@pytest.fixture(autouse=True)
def tripwire() -> Iterator[Tripwire]:
    wire = Tripwire(allowed=(PUBLIC,))
    with wire.armed():
        yield wire
    assert not wire.violations, f"tripwire: {wire.violations}"


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    server = await Origin(PUBLIC).start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def internal(origin: Origin) -> AsyncIterator[Origin]:
    """A real listener on a loopback address the policy refuses, on the same (allowed) port."""
    server = await Origin(INTERNAL, port=origin.port).start()
    try:
        yield server
    finally:
        await server.stop()
        assert server.requests == [], "the internal service was reached"


@pytest.fixture
def resolver() -> FakeResolver:
    return FakeResolver({name: list(answer) for name, answer in NAMES.items()})


MakeFetcher = Callable[..., SafeFetcher]


@pytest.fixture
async def make_fetcher(origin: Origin, resolver: FakeResolver) -> AsyncIterator[MakeFetcher]:
    fetchers: list[SafeFetcher] = []

    def make(policy: AddressPolicy | None = None, **overrides: Any) -> SafeFetcher:
        fetcher = SafeFetcher(settings_for(origin.port, **overrides), resolver=resolver,
                              policy=policy if policy is not None else AddressPolicy(TEST_POLICY_CIDRS))
        fetchers.append(fetcher)
        return fetcher

    yield make
    for fetcher in fetchers:
        await fetcher.aclose()


@pytest.fixture
def fetcher(make_fetcher: MakeFetcher) -> SafeFetcher:
    return make_fetcher()


Fetch = Callable[..., Awaitable[list[SourceImage]]]


@pytest.fixture
def fetch(fetcher: SafeFetcher) -> Fetch:
    """fetch("url", ...) -> images (closed at once; sizes and infos stay readable)."""
    async def run(*urls: str, using: SafeFetcher | None = None) -> list[SourceImage]:
        refs = [UrlRef(f"image_urls[{i}]", url) for i, url in enumerate(urls)]
        images = await (using or fetcher).fetch_all(refs)
        for image in images:
            image.close()
        return images
    return run
