"""Peak memory of one edit with many large images: are uploads streamed, or held in memory?

    .venv/bin/python bench/memory.py [--images 16] [--mb 48] [--out bench/results/memory.json]

Starts the OpenAI emulator and `imagegate serve` (as bench/edits.py does), sends one edit with `--images`
uncompressed PNGs of about `--mb` MB each to `gpt-image-1.5`, and prints the gateway's resident memory
before the request and at its peak (sampled every 20 ms, and the kernel's high-water mark).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import time
from pathlib import Path

import aiohttp
from edits import ROOT, report, running_stack
from PIL import Image


def status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def large_png(mb: float) -> bytes:
    """An RGB PNG of about `mb` MB (noise, stored uncompressed)."""
    side = int((mb * 1024 * 1024 / 3) ** 0.5)
    pixels = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buf = io.BytesIO()
    pixels.save(buf, "PNG", compress_level=0)
    return buf.getvalue()


async def run(args: argparse.Namespace) -> dict[str, object]:
    images = [large_png(args.mb) for _ in range(args.images)]
    async with running_stack() as stack:
        pid = stack.gateway.pid
        await asyncio.sleep(1.0)
        before = status_mb(pid, "VmRSS")
        peak = before
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, status_mb(pid, "VmRSS"))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        url, headers = stack.via
        form = aiohttp.FormData()
        form.add_field("model", "gpt-image-1.5")
        form.add_field("prompt", "add a small red hat")
        form.add_field("quality", "low")
        for i, image in enumerate(images):
            form.add_field("image[]", image, filename=f"{i}.png", content_type="image/png")
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.post(url, data=form, headers=headers) as response:
            body = await response.read()
        seconds = time.perf_counter() - started
        done.set()
        await sampler
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:300]!r}")
        return {"images": args.images, "image_mb": round(len(images[0]) / 1024 / 1024, 1),
                "request_mb": round(sum(map(len, images)) / 1024 / 1024, 1), "seconds": round(seconds, 2),
                "rss_before_mb": round(before, 1), "rss_peak_sampled_mb": round(peak, 1),
                "rss_high_water_mb": round(status_mb(pid, "VmHWM"), 1),
                "peak_growth_mb": round(max(peak, status_mb(pid, "VmHWM")) - before, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--mb", type=float, default=48.0, help="approximate size of each image in MB (limit: 50)")
    p.add_argument("--out", default=str(ROOT / "bench/results/memory.json"))
    args = p.parse_args()
    report(asyncio.run(run(args)), args.out)


if __name__ == "__main__":
    main()
