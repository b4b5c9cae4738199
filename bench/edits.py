"""Load benchmark: what imagegate adds to an image edit, against a zero-latency upstream emulator.

    .venv/bin/python bench/edits.py [--requests 2000] [--seconds 10] [--out bench/results/edits.json]

Starts the OpenAI emulator (bench/openai_upstream.py) and `imagegate serve` in front of it, both on
loopback, then in one run sends the same multipart edits directly to the emulator and through the
gateway (auth, ledger and logging on) and prints:
  - added latency p50/p99, one client, small image and 1 MiB image;
  - throughput with 8 concurrent clients, as a share of the upstream hit directly;
  - start to first GET /healthz 200, and idle RSS of the gateway process.
Ratios measured in the same run are what count: this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def image_bytes(target: int) -> bytes:
    """A PNG of about `target` bytes (noise does not compress)."""
    side = max(16, int((target / 3) ** 0.5))
    buf = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buf, "PNG", compress_level=0)
    return buf.getvalue()


def form(image: bytes) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("model", "gpt-image-1.5")
    data.add_field("prompt", "add a small red hat")
    data.add_field("quality", "low")
    data.add_field("image", image, filename="a.png", content_type="image/png")
    return data


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def wait_healthy(url: str, deadline: float) -> float:
    start = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() - start < deadline:
            try:
                async with session.get(url) as r:
                    if r.status == 200:
                        return time.perf_counter() - start
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.005)
    raise RuntimeError(f"{url} did not become healthy in {deadline}s")


async def one_client(url: str, headers: dict[str, str], body: bytes, count: int) -> list[float]:
    """Sequential requests on one keep-alive connection; returns latencies in seconds."""
    latencies = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for _ in range(count):
            started = time.perf_counter()
            async with session.post(url, data=form(body), headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{url}: HTTP {r.status}: {(await r.text())[:300]}")
            latencies.append(time.perf_counter() - started)
    return latencies


async def throughput(url: str, headers: dict[str, str], body: bytes, clients: int, seconds: float) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            async with session.post(url, data=form(body), headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}")
            done += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(clients)))
        return done / (time.perf_counter() - started)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


@dataclass
class Stack:
    """The upstream emulator and `imagegate serve` in front of it, as the benchmarks use them."""

    direct: tuple[str, dict[str, str]]  # the emulator's edits URL and auth
    via: tuple[str, dict[str, str]]  # the gateway's edits URL and auth
    gateway: subprocess.Popen[bytes]
    startup: float  # seconds from launching the gateway to its first /healthz 200


@contextlib.asynccontextmanager
async def running_stack(latency: float = 0.0, upstream_port: int | None = None) -> AsyncIterator[Stack]:
    """The emulator (a process of its own, unless `upstream_port` names one already running) and the gateway."""
    up_port, gw_port = upstream_port or free_port(), free_port()
    work = Path(tempfile.mkdtemp(prefix="imagegate-bench-"))
    config = work / "imagegate.toml"
    config.write_text(f"""
log_level = "warning"
[database]
url = "sqlite:///{work}/bench.db"
[storage]
path = "{work}/blobs"
[[providers]]
name = "openai"
type = "openai"
base_url = "http://127.0.0.1:{up_port}/v1"
api_key = "sk-upstream"
models = ["gpt-image-1.5"]
""")
    env = {**os.environ, "IMAGEGATE_CONFIG": str(config)}
    upstream = None if upstream_port else subprocess.Popen(
        [PYTHON, str(ROOT / "bench/openai_upstream.py"), "--port", str(up_port), "--latency", str(latency)])
    key = subprocess.run([PYTHON, "-m", "imagegate.cli", "keys", "create", "--account", "bench",
                          "--credit", "1000000"], env=env, check=True, capture_output=True, text=True).stdout.strip()
    started = time.perf_counter()
    gateway = subprocess.Popen([PYTHON, "-m", "imagegate.cli", "serve", "--port", str(gw_port)], env=env)
    try:
        await wait_healthy(f"http://127.0.0.1:{gw_port}/healthz", 30)
        yield Stack(direct=(f"http://127.0.0.1:{up_port}/v1/images/edits", {"Authorization": "Bearer sk-upstream"}),
                    via=(f"http://127.0.0.1:{gw_port}/v1/images/edits", {"Authorization": f"Bearer {key}"}),
                    gateway=gateway, startup=time.perf_counter() - started)
    finally:
        for proc in (gateway, upstream):
            if proc is not None:
                proc.terminate()
                proc.wait(10)


async def run(args: argparse.Namespace) -> dict[str, object]:
    async with running_stack() as stack:
        direct, via, gateway = stack.direct, stack.via, stack.gateway
        await asyncio.sleep(1.0)
        idle_rss = rss_mb(gateway.pid)
        results: dict[str, object] = {"startup_to_healthz_s": round(stack.startup, 3),
                                      "idle_rss_mb": round(idle_rss, 1)}
        for label, size, count in (("small", 2_000, args.requests), ("1MiB", 1024 * 1024, args.requests // 4)):
            body = image_bytes(size)
            await one_client(*via, body, 50)  # warm-up: connections, key cache, SQLite pages
            await one_client(*direct, body, 50)
            d1 = await one_client(*direct, body, count)
            g1 = await one_client(*via, body, count)
            d2 = await one_client(*direct, body, count)  # interleave to even out drift
            g2 = await one_client(*via, body, count)
            d, g = d1 + d2, g1 + g2
            results[f"{label}_direct_p50_ms"] = round(pct(d, 50), 3)
            results[f"{label}_gateway_p50_ms"] = round(pct(g, 50), 3)
            results[f"{label}_added_p50_ms"] = round(pct(g, 50) - pct(d, 50), 3)
            results[f"{label}_added_p99_ms"] = round(pct(g, 99) - pct(d, 99), 3)
        small = image_bytes(2_000)
        direct_rps = await throughput(*direct, small, 8, args.seconds)
        via_rps = await throughput(*via, small, 8, args.seconds)
        results["throughput_direct_rps"] = round(direct_rps, 1)
        results["throughput_gateway_rps"] = round(via_rps, 1)
        results["throughput_ratio"] = round(via_rps / direct_rps, 3)
        results["loaded_rss_mb"] = round(rss_mb(gateway.pid), 1)
        return results


def report(results: dict[str, object], out: str) -> None:
    """Write the results as JSON to `out` and print them, one per line."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=2))
    width = max(map(len, results))
    for name, value in results.items():
        print(f"{name:<{width}}  {value}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=1000, help="sequential requests per pass (small image)")
    p.add_argument("--seconds", type=float, default=8.0, help="duration of each throughput pass")
    p.add_argument("--out", default=str(ROOT / "bench/results/edits.json"))
    args = p.parse_args()
    report(asyncio.run(run(args)), args.out)


if __name__ == "__main__":
    main()
