"""Many clients at once on a slow upstream: does the gateway hold them all, and at what cost?

    .venv/bin/python bench/concurrency.py [--clients 2000] [--latency 30] [--ramp 10]

Starts the OpenAI emulator with `--latency` seconds per answer and `imagegate serve` in front of it (as
bench/edits.py does), then starts `--clients` edits evenly over `--ramp` seconds (0: all at once), so that
with a ramp shorter than the latency all of them wait on the upstream together. It does this first
directly against the emulator, then through the gateway, and prints errors, the added p50/p99 (gateway
minus direct) and the gateway's peak RSS while the requests were waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
from edits import ROOT, form, image_bytes, pct, report, rss_mb, running_stack


async def wave(url: str, headers: dict[str, str], body: bytes, clients: int,
               ramp: float) -> tuple[list[float], list[str]]:
    """`clients` requests started over `ramp` seconds, each on its own connection; latencies and errors."""
    latencies: list[float] = []
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def one(i: int) -> None:
            await asyncio.sleep(i * ramp / clients)
            started = time.perf_counter()
            try:
                async with session.post(url, data=form(body), headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        errors.append(f"HTTP {r.status}")
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(type(exc).__name__)
                return
            latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one(i) for i in range(clients)))
    return latencies, errors


async def peak_rss(pid: int, stop: asyncio.Event) -> float:
    peak = 0.0
    while not stop.is_set():
        peak = max(peak, rss_mb(pid))
        await asyncio.sleep(0.2)
    return peak


async def run(args: argparse.Namespace) -> dict[str, object]:
    body = image_bytes(2_000)
    async with running_stack(latency=args.latency) as stack:
        direct, direct_errors = await wave(*stack.direct, body, args.clients, args.ramp)
        stop = asyncio.Event()
        sampler = asyncio.create_task(peak_rss(stack.gateway.pid, stop))
        idle = rss_mb(stack.gateway.pid)
        via, via_errors = await wave(*stack.via, body, args.clients, args.ramp)
        stop.set()
        peak = await sampler
    return {
        "clients": args.clients, "upstream_latency_s": args.latency, "ramp_s": args.ramp,
        "direct_errors": len(direct_errors), "gateway_errors": len(via_errors),
        "gateway_error_kinds": sorted(set(via_errors)),
        "direct_p50_s": round(pct(direct, 50) / 1000, 3) if len(direct) > 1 else None,
        "gateway_p50_s": round(pct(via, 50) / 1000, 3) if len(via) > 1 else None,
        "added_p50_ms": round(pct(via, 50) - pct(direct, 50), 1) if len(via) > 1 and len(direct) > 1 else None,
        "added_p99_ms": round(pct(via, 99) - pct(direct, 99), 1) if len(via) > 1 and len(direct) > 1 else None,
        "gateway_rss_before_mb": round(idle, 1), "gateway_peak_rss_mb": round(peak, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=2000)
    p.add_argument("--latency", type=float, default=30.0, help="seconds the upstream takes to answer")
    p.add_argument("--ramp", type=float, default=10.0, help="seconds over which the clients start")
    p.add_argument("--out", default=str(ROOT / "bench/results/concurrency.json"))
    args = p.parse_args()
    report(asyncio.run(run(args)), args.out)


if __name__ == "__main__":
    main()
