"""How long a streamed event waits in the gateway: from the upstream writing it to the client reading it.

    .venv/bin/python bench/streaming.py [--streams 40] [--partials 3] [--interval 0.05]

Runs the OpenAI emulator in this process (so its per-event `written_at` and this client's read times are on
one clock) and `imagegate serve` in front of it, then streams generations (`gpt-image-1.5`, 1024x1024,
`partial_images` partials and the completed image, `--interval` seconds apart) directly from the emulator
and through the gateway, interleaved. For each event: the time from the emulator's write to the client
reading the event's `data:` line. The gateway's added delay is the difference of the two. The budget
(DESIGN.md) is at most 5 ms added per event, never buffered.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import aiohttp
from edits import ROOT, pct, report, running_stack

sys.path.insert(0, str(ROOT))
from tests.emulators.openai_emulator import OpenAIEmulator

SIZES: list[int] = []  # bytes of each event's data line read through the gateway


async def one_stream(session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: dict[str, Any],
                     emulator: OpenAIEmulator) -> list[float]:
    """Seconds from each event's write upstream to its `data:` line arriving here."""
    arrived: list[float] = []
    async with session.post(url, json=body, headers=headers) as response:
        assert response.status == 200, await response.text()
        async for line in response.content:
            if line.startswith(b"data:"):
                arrived.append(time.perf_counter())
                SIZES.append(len(line))
    written = [event.written_at for event in emulator.last_stream.events]
    assert len(written) == len(arrived), (len(written), len(arrived))
    return [a - w for a, w in zip(arrived, written, strict=True)]


async def run(args: argparse.Namespace) -> dict[str, object]:
    body = {"model": "gpt-image-1.5", "prompt": "a lighthouse", "size": "1024x1024", "quality": "low",
            "stream": True, "partial_images": args.partials}
    async with OpenAIEmulator(api_key="sk-upstream", stream_interval=args.interval, record=True) as emulator, \
            running_stack(upstream_port=emulator.port) as stack, aiohttp.ClientSession() as session:
        direct_url = stack.direct[0].replace("/edits", "/generations")
        via_url = stack.via[0].replace("/edits", "/generations")
        for url, headers in ((direct_url, stack.direct[1]), (via_url, stack.via[1])):  # warm-up
            await one_stream(session, url, headers, body, emulator)
        direct: list[float] = []
        via: list[float] = []
        for _ in range(args.streams):
            direct += await one_stream(session, direct_url, stack.direct[1], body, emulator)
            via += await one_stream(session, via_url, stack.via[1], body, emulator)
            emulator.requests.clear()
    return {"events_each": len(direct), "mean_event_bytes": round(sum(SIZES) / len(SIZES)),
            "direct_p50_ms": round(pct(direct, 50), 3), "direct_p95_ms": round(pct(direct, 95), 3),
            "via_p50_ms": round(pct(via, 50), 3), "via_p95_ms": round(pct(via, 95), 3),
            "via_max_ms": round(max(via) * 1000, 3), "added_p50_ms": round(pct(via, 50) - pct(direct, 50), 3),
            "added_p95_ms": round(pct(via, 95) - pct(direct, 95), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=40, help="streams each way")
    p.add_argument("--partials", type=int, default=3, help="partial images per stream (0-3)")
    p.add_argument("--interval", type=float, default=0.05, help="seconds between the upstream's events")
    p.add_argument("--out", default=str(ROOT / "bench/results/streaming.json"))
    args = p.parse_args()
    report(asyncio.run(run(args)), args.out)


if __name__ == "__main__":
    main()
