"""Run the strict OpenAI Images API emulator as a standalone upstream for load tests.

    python bench/openai_upstream.py --port 9001 [--latency 0] [--api-key sk-upstream] [--no-validate]

Zero latency and full validation by default; request recording is off so memory stays flat under load.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.emulators.openai_emulator import OpenAIEmulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9001)
    p.add_argument("--api-key", default="sk-upstream", help="accepted bearer key ('' disables auth)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds before each successful answer")
    p.add_argument("--no-validate", action="store_true", help="skip Pillow header checks of input images")
    p.add_argument("--record", action="store_true", help="keep every request in memory (off by default)")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    emu = OpenAIEmulator(
        api_key=args.api_key or None,
        host=args.host,
        port=args.port,
        latency=args.latency,
        validate=not args.no_validate,
        record=args.record,
    )
    await emu.start()
    print(
        f"OpenAI emulator listening on {emu.base_url} (latency={args.latency}s, validate={emu.validate})",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # pragma: no cover - non-POSIX
            pass
    try:
        await stop.wait()
    finally:
        await emu.stop()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
