"""`imagegate serve` in child processes, for tests that need a real server: kill it, stop it, measure it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import httpx


def write_config(path: Path, more: str = "") -> Path:
    """A config file at `path` for a server on a SQLite database and blob store beside it, plus `more` TOML."""
    path.write_text(f"""
[database]
url = "sqlite:///{path.parent / 'imagegate.db'}"
[storage]
path = "{path.parent / 'blobs'}"
{more}""")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`imagegate serve` in a child process on a free loopback port.

    `python` replaces the interpreter's arguments before the CLI's (a test may run the CLI under a wrapper
    that changes the process first); `env` adds to the environment.
    """

    def __init__(self, config: Path, cwd: Path, *, python: Sequence[str] = ("-m", "imagegate.cli"),
                 env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.config, self.cwd = config, cwd
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.python = tuple(python)
        self.env = dict(env or {})
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, *, wait: bool = True) -> None:
        out = open(self.log, "ab") if self.log is not None else None  # noqa: ASYNC230 - a log for the child
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, *self.python, "serve", "--port", str(self.port), "--no-access-log",
                env={**os.environ, "IMAGEGATE_CONFIG": str(self.config), **self.env}, cwd=self.cwd,
                stdout=asyncio.subprocess.DEVNULL, stderr=out or asyncio.subprocess.DEVNULL)
        finally:
            if out is not None:
                out.close()
        if wait:
            await self.wait_healthy()

    async def wait_healthy(self, seconds: float = 30.0) -> None:
        async with httpx.AsyncClient() as client:
            await until(lambda: healthy(client, self.base), seconds, "the server did not start")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def terminate(self, seconds: float = 20.0) -> int:
        """SIGTERM, then the exit code once the process has stopped."""
        assert self.proc is not None
        self.proc.terminate()
        return await asyncio.wait_for(self.proc.wait(), seconds)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 10)
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


async def healthy(client: httpx.AsyncClient, base: str) -> bool:
    try:
        return (await client.get(f"{base}/healthz")).status_code == 200
    except httpx.TransportError:
        return False


async def until(check: Callable[[], Awaitable[bool]], seconds: float, message: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.05)


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far, in bytes (VmHWM)."""
    return _status_kib(pid, "VmHWM") * 1024


def rss(pid: int) -> int:
    return _status_kib(pid, "VmRSS") * 1024


def reset_peak_rss(pid: int) -> None:
    """Start the peak-memory count again from the process's memory now."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)
