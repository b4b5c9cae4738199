"""A client that hangs up mid-edit: the upstream call still ends in the books, once, and a retry with the
same Idempotency-Key collects the result instead of paying again. Served by a real uvicorn on loopback."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace

import httpx
import pytest
import uvicorn
from tests.conftest import png_bytes
from tests.emulators.openai_emulator import OpenAIEmulator

from imagegate.app import build_gateway, create_app
from imagegate.config import ProviderSettings, Settings
from imagegate.core.pricing import usd_to_micros


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_client_that_hangs_up_is_billed_once_and_can_collect_its_result(settings: Settings) -> None:
    async with OpenAIEmulator(api_key="sk-up", latency=1.0) as upstream:
        configured = replace(settings, providers=(ProviderSettings(
            name="openai", type="openai", base_url=upstream.base_url, api_key="sk-up", models=("gpt-image-1.5",)),))
        gateway = await build_gateway(configured)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(configured, gateway=gateway), host="127.0.0.1",
                                               port=port, lifespan="off", log_level="warning"))
        serving = asyncio.create_task(server.serve())
        try:
            for _ in range(500):
                if server.started:
                    break
                await asyncio.sleep(0.01)
            await gateway.accounts.add_credit("alice", usd_to_micros(5))
            key = await gateway.accounts.create_key("alice")

            async def edit(patience: float) -> httpx.Response:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=patience) as client:
                    return await client.post("/v1/images/edits", headers={
                        "Authorization": f"Bearer {key}", "Idempotency-Key": "hang-up-1"},
                        data={"model": "gpt-image-1.5", "prompt": "a hat", "quality": "low"},
                        files={"image": ("a.png", png_bytes(), "image/png")})

            with pytest.raises(httpx.ReadTimeout):
                await edit(patience=0.3)  # the client gives up and closes the connection
            for _ in range(200):
                summary = await gateway.accounts.summary("alice")
                if upstream.edit_requests and summary.held_micros == 0 and summary.spent_micros:
                    break
                await asyncio.sleep(0.025)
            assert len(upstream.edit_requests) == 1
            assert summary.held_micros == 0 and summary.spent_micros > 0  # the upstream's work is billed
            assert summary.deposits_micros == summary.balance_micros + summary.spent_micros

            retried = await edit(patience=10)
            assert retried.status_code == 200 and retried.headers["Idempotent-Replayed"] == "true"
            assert retried.json()["data"][0]["url"]
            assert len(upstream.edit_requests) == 1  # not run again
            assert (await gateway.accounts.summary("alice")).spent_micros == summary.spent_micros
        finally:
            server.should_exit = True
            await serving
            await gateway.aclose()
