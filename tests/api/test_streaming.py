"""Streaming edits and generations (`stream: true`) through a real `imagegate serve` (a streamed answer needs
a real connection: an in-process transport would buffer it), against the OpenAI emulator and with the
official SDKs: events in OpenAI's shape, each passed on before the next is made, the hold settled from the
completed event or released when the stream fails or the client leaves."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image
from tests.conftest import Fund, png_bytes
from tests.emulators.openai_emulator import OpenAIEmulator
from tests.servers import Server, until, write_config

from imagegate.db.accounts import AccountStore

NODE_DIR = Path(__file__).resolve().parents[1] / "sdk" / "node"


def config_for(path: Path, emulator: OpenAIEmulator) -> Path:
    return write_config(path, f"""
[limits]
request_timeout = 30.0
[[providers]]
name = "openai"
type = "openai"
base_url = "{emulator.base_url}"
api_key = "sk-upstream"
models = ["gpt-image-1.5", "gpt-image-2", "dall-e-3"]
timeout = 30.0
[[providers]]
name = "local"
type = "local"
models = ["local-draw"]
""")


@pytest.fixture
async def emulator() -> AsyncIterator[OpenAIEmulator]:
    async with OpenAIEmulator(api_key="sk-upstream") as emu:
        yield emu


@pytest.fixture
async def live(tmp_path: Path, emulator: OpenAIEmulator, server: Callable[..., Server],
               funded: Fund) -> tuple[Server, AccountStore, str]:
    config = config_for(tmp_path / "imagegate.toml", emulator)
    accounts, key = await funded(config)
    gateway = server(config)
    await gateway.start()
    return gateway, accounts, key


async def books(accounts: AccountStore) -> tuple[int, int, int]:
    s = await accounts.summary("acme")
    assert s.deposits_micros == s.balance_micros + s.held_micros + s.spent_micros
    return s.balance_micros, s.held_micros, s.spent_micros


def sdk(gateway: Server, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway.base}/v1", api_key=key, max_retries=0)


async def test_sdk_streams_a_generation_and_it_is_billed_from_the_completed_usage(
        live: tuple[Server, AccountStore, str], emulator: OpenAIEmulator) -> None:
    gateway, accounts, key = live
    balance, _, _ = await books(accounts)
    async with sdk(gateway, key) as client:
        stream = await client.images.generate(model="gpt-image-1.5", prompt="a lighthouse", size="1024x1024",
                                              quality="low", stream=True, partial_images=2)
        events = [event async for event in stream]
    assert [e.type for e in events] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    for event in events:
        assert Image.open(io.BytesIO(base64.b64decode(event.b64_json))).size == (1024, 1024)
        assert (event.size, event.quality, event.output_format) == ("1024x1024", "low", "png")
    usage = events[-1].usage
    assert usage is not None and usage.output_tokens > 0
    [sent] = emulator.generation_requests
    assert sent.json["stream"] is True and sent.json["partial_images"] == 2
    charged = -(-(usage.input_tokens_details.text_tokens * 5_000_000 + usage.output_tokens * 32_000_000)
                // 1_000_000)
    assert await books(accounts) == (balance - charged, 0, charged)


async def test_sdk_streams_an_edit(live: tuple[Server, AccountStore, str], emulator: OpenAIEmulator) -> None:
    gateway, accounts, key = live
    async with sdk(gateway, key) as client:
        stream = await client.images.edit(model="gpt-image-2", prompt="add a hat", size="1024x1024",
                                          quality="low", image=("a.png", png_bytes(), "image/png"), stream=True,
                                          partial_images=1)
        events = [event async for event in stream]
    assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"]
    [sent] = emulator.edit_requests
    assert sent.fields["stream"] == "true" and sent.fields["partial_images"] == "1"
    _, held, spent = await books(accounts)
    assert held == 0 and spent > 0  # settled


async def test_each_event_is_passed_on_before_the_next_is_made(live: tuple[Server, AccountStore, str],
                                                               emulator: OpenAIEmulator) -> None:
    gateway, _, key = live
    emulator.stream_gate = True  # the emulator writes an event only when the test lets it
    emulator.release_stream_events(1)  # the first (the gateway answers once it has one)
    async with httpx.AsyncClient(timeout=30) as client, client.stream(
            "POST", f"{gateway.base}/v1/images/generations", headers={"Authorization": f"Bearer {key}"},
            json={"model": "gpt-image-1.5", "prompt": "x", "size": "1024x1024", "quality": "low", "stream": True,
                  "partial_images": 2}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-billing-transaction-id"].startswith("txn_")
        lines = response.aiter_lines()
        seen: list[str] = []
        for released in range(3):
            while not (line := await anext(lines)).startswith("data: "):
                if line.startswith("event: "):
                    seen.append(line[7:])
            assert len(emulator.last_stream.events) == released + 1  # this one arrived; the next is not made
            payload = json.loads(line[6:])
            assert payload["type"] == seen[-1]
            emulator.release_stream_events(1)
        assert seen == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
        assert payload["billing_transaction_id"] == response.headers["x-billing-transaction-id"]


async def test_a_stream_that_fails_midway_ends_with_an_error_event_and_is_released(
        live: tuple[Server, AccountStore, str], emulator: OpenAIEmulator) -> None:
    gateway, accounts, key = live
    before = await books(accounts)
    emulator.inject("stream_error", after_events=1, on=OpenAIEmulator.GENERATIONS)
    async with sdk(gateway, key) as client:
        stream = await client.images.generate(model="gpt-image-1.5", prompt="x", size="1024x1024", quality="low",
                                              stream=True, partial_images=2)
        events = []
        with pytest.raises(openai.APIError) as info:
            async for event in stream:
                events.append(event)
    assert [e.type for e in events] == ["image_generation.partial_image"]
    assert info.value.code == "upstream_error"
    assert await books(accounts) == before  # released: the stream never completed


async def test_a_client_that_leaves_cancels_the_upstream_stream_and_is_not_charged(
        live: tuple[Server, AccountStore, str], emulator: OpenAIEmulator) -> None:
    gateway, accounts, key = live
    before = await books(accounts)
    emulator.stream_gate = True
    emulator.release_stream_events(1)
    async with httpx.AsyncClient(timeout=30) as client, client.stream(
            "POST", f"{gateway.base}/v1/images/generations", headers={"Authorization": f"Bearer {key}"},
            json={"model": "gpt-image-1.5", "prompt": "x", "size": "1024x1024", "quality": "low", "stream": True,
                  "partial_images": 3}) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                break  # one partial image, then the client goes away
    record = emulator.last_stream
    await until(lambda: _now(record.client_disconnected), 20, "the upstream stream was never cancelled")
    await until(lambda: _held_is(accounts, before[1]), 20, "the hold of the abandoned stream stayed")
    assert await books(accounts) == before
    assert not record.completed


async def test_streaming_refusals(live: tuple[Server, AccountStore, str], emulator: OpenAIEmulator) -> None:
    gateway, _, key = live
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=gateway.base, headers=headers, timeout=30) as client:
        refused = await client.post("/v1/images/generations", json={"model": "dall-e-3", "prompt": "x",
                                                                     "stream": True})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "stream"
        keyed = await client.post("/v1/images/generations", headers={"Idempotency-Key": "k"},
                                  json={"model": "gpt-image-1.5", "prompt": "x", "stream": True})
        assert keyed.status_code == 400 and keyed.json()["error"]["param"] == "Idempotency-Key"
    assert emulator.generation_requests == []


async def test_the_offline_model_streams_too(live: tuple[Server, AccountStore, str]) -> None:
    gateway, _, key = live
    async with sdk(gateway, key) as client:
        stream = await client.images.generate(model="local-draw", prompt="a red kite", size="256x192", stream=True,
                                              partial_images=2)
        events = [event async for event in stream]
    assert [e.type for e in events] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    pictures = [Image.open(io.BytesIO(base64.b64decode(e.b64_json))) for e in events]
    assert all(p.size == (256, 192) for p in pictures)
    assert pictures[0].tobytes() != pictures[1].tobytes() != pictures[2].tobytes()  # drawn layer by layer


def _node_available() -> bool:
    return shutil.which("node") is not None and (NODE_DIR / "node_modules" / "openai").is_dir()


async def test_the_node_sdk_iterates_the_streams_to_the_end(live: tuple[Server, AccountStore, str],
                                                            tmp_path: Path) -> None:
    if not _node_available():
        reason = "openai-node is not installed in tests/sdk/node (scripts/setup.sh installs it where Node.js is)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    gateway, _, key = live
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes())
    proc = await asyncio.create_subprocess_exec(
        "node", "images.mjs", f"{gateway.base}/v1", key, "gpt-image-1.5", str(image), cwd=NODE_DIR,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    seen: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    assert seen["generate"] == {"images": 1, "b64": True}
    assert [e["type"] for e in seen["generate_stream"]] == (["image_generation.partial_image"] * 2
                                                             + ["image_generation.completed"])
    assert [e["type"] for e in seen["edit_stream"]] == ["image_edit.partial_image", "image_edit.completed"]
    assert seen["generate_stream"][-1]["usage"]["output_tokens"] > 0
    assert seen["refused"] == {"status": 400, "param": "stream"}


async def _now(value: bool) -> bool:
    return value


async def _held_is(accounts: AccountStore, held: int) -> bool:
    return (await accounts.summary("acme")).held_micros == held
