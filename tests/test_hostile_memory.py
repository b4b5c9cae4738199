"""What one hostile upstream answer costs a real `imagegate serve`: its peak memory grows by at most 64 MB,
and health probes keep being answered while the answer is handled.

The server runs in a child process so that its memory can be measured alone (peak RSS, VmHWM, reset before
each answer). The same measurement of a server whose body guard is deliberately removed shows that it
would catch the unbounded read: the guard is what keeps the numbers down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from tests.conftest import Fund, png_bytes
from tests.emulators.hostile import HostileUpstream, gzip_bomb
from tests.servers import Server, peak_rss, reset_peak_rss, rss, write_config

BUDGET = 64 * 1024 * 1024  # peak RSS growth allowed for one hostile answer (DESIGN.md)
PROBE_LIMIT = 1.0  # seconds a health probe may take while the answer is handled (a stall was 2.7-3.7 s)
# A child process whose upstream bodies are read whole and inflated, as before the guard: a broken guard.
UNGUARDED = ("-c", """
import sys
import aiohttp
import imagegate.providers.http as http

async def read_everything(response, *, max_bytes, provider, retryable=True):
    return await response.read()

def inflating_session(self):
    if self._session is None or self._session.closed:
        self._session = aiohttp.ClientSession(timeout=self._timeout, auto_decompress=True)
    return self._session

http.read_body = read_everything
http.UpstreamSession.get = inflating_session
from imagegate.cli import main
sys.exit(main(sys.argv[1:]))
""")


def config_for(path: Path, upstream: HostileUpstream) -> Path:
    return write_config(path, f"""
[limits]
request_timeout = 20.0
[[providers]]
name = "shady"
type = "openai"
base_url = "{upstream.base_url}"
api_key = "sk-up"
models = ["gpt-image-2"]
timeout = 4.0
""")


@pytest.fixture
async def upstream() -> AsyncIterator[HostileUpstream]:
    # random_b64 sends as much noise as a 1024x1024 answer may legitimately hold: decoded, then refused
    gzip_bomb()  # built before any probe is timed: this process's loop plays the upstream and the client
    async with HostileUpstream(noise_bytes=4 * 1024 * 1024, endless_limit=400 * 1024 * 1024) as up:
        yield up


async def answer_cost(server: Server, key: str, upstream: HostileUpstream, behaviour: str) -> tuple[int, int, float]:
    """(status, peak RSS growth in bytes, slowest health probe in seconds) of one edit answered `behaviour`."""
    async with httpx.AsyncClient(base_url=server.base, timeout=60) as client:
        async def edit() -> httpx.Response:
            return await client.post("/v1/images/edits", headers={"Authorization": f"Bearer {key}"},
                                     files={"image": ("a.png", png_bytes(), "image/png")},
                                     data={"model": "gpt-image-2", "prompt": "a hat", "size": "1024x1024",
                                           "quality": "low", "response_format": "b64_json"})

        upstream.behaviour = "ok"
        assert (await edit()).status_code == 200  # warm: everything a request loads is loaded
        upstream.behaviour = behaviour
        reset_peak_rss(server.pid)
        before = rss(server.pid)
        request = asyncio.create_task(edit())
        slowest = 0.0
        while not request.done():
            began = time.perf_counter()
            assert (await client.get("/healthz")).status_code == 200
            slowest = max(slowest, time.perf_counter() - began)
            await asyncio.sleep(0.02)
        response = await request
        return response.status_code, peak_rss(server.pid) - before, slowest


@pytest.mark.parametrize(("behaviour", "status"), [("endless", 502), ("gzip_bomb", 502), ("huge_length", 502),
                                                   ("drip", 504), ("random_b64", 502), ("reset_mid_body", 502)])
async def test_one_hostile_answer_costs_bounded_memory_and_stalls_no_one(
        tmp_path: Path, upstream: HostileUpstream, server: Callable[..., Server], funded: Fund,
        behaviour: str, status: int) -> None:
    config = config_for(tmp_path / "imagegate.toml", upstream)
    _, key = await funded(config)
    gateway = server(config)
    await gateway.start()
    answered, growth, slowest = await answer_cost(gateway, key, upstream, behaviour)
    assert answered == status
    assert growth <= BUDGET, f"{behaviour}: peak RSS grew {growth / 2**20:.0f} MiB"
    assert slowest < PROBE_LIMIT, f"{behaviour}: a health probe took {slowest:.2f} s"


@pytest.mark.parametrize("behaviour", ["endless", "gzip_bomb"])
async def test_without_the_body_guard_the_same_answers_break_the_budget(
        tmp_path: Path, upstream: HostileUpstream, server: Callable[..., Server], funded: Fund,
        behaviour: str) -> None:
    config = config_for(tmp_path / "imagegate.toml", upstream)
    _, key = await funded(config)
    unguarded = server(config, python=UNGUARDED)
    await unguarded.start()
    _, growth, _ = await answer_cost(unguarded, key, upstream, behaviour)
    assert growth > 2 * BUDGET  # the measurement above would have failed
