"""A real `imagegate serve` against slow and idle clients, and stopped by a signal.

Idle and dripping connections beyond the soft open-file limit do not lock anyone out; headers and bodies
that stall are cut off; SIGTERM ends the process with exit code 0. A server whose open-file limit is left
where it was shows that the first test would catch the lock-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from tests.conftest import Fund, png_bytes
from tests.servers import Server, write_config

SOFT_LIMIT = 1024  # a common default (systemd's) that the gateway starts with below
IDLE = 1_000
DRIPPING = 100
# The CLI started with a soft open-file limit of 1024, as a service manager would leave it.
LIMITED = ("-c", f"""
import resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, ({SOFT_LIMIT}, hard))
from imagegate.cli import main
sys.exit(main(sys.argv[1:]))
""")
# The same, with the gateway's own raise of the limit removed: a broken guard.
LIMITED_UNGUARDED = ("-c", LIMITED[1].replace("from imagegate.cli import main", """
import imagegate.server
imagegate.server.raise_open_file_limit = lambda: (1024, 1024)
from imagegate.cli import main"""))


def config_for(path: Path, *, header_timeout: float = 10.0, body_timeout: float = 30.0) -> Path:
    return write_config(path, f"[limits]\nheader_timeout = {header_timeout}\nbody_timeout = {body_timeout}\n")


@pytest.fixture
def many_files() -> None:
    """This process needs room for more than a thousand sockets of its own."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * (IDLE + DRIPPING)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.fail(f"the hard open-file limit ({hard}) is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))


@contextlib.asynccontextmanager
async def crowd(port: int) -> AsyncIterator[None]:
    """IDLE connections that send nothing and DRIPPING ones that send a header byte every half second."""
    writers: list[asyncio.StreamWriter] = []
    stop = asyncio.Event()

    async def drip(writer: asyncio.StreamWriter) -> None:
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 1000:
            if stop.is_set():
                return
            writer.write(bytes([byte]))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    for _ in range(IDLE + DRIPPING):
        with contextlib.suppress(OSError):  # a server out of descriptors may refuse some
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writers.append(writer)
    drippers = [asyncio.create_task(drip(w)) for w in writers[IDLE:]]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*drippers, return_exceptions=True)
        for writer in writers:
            writer.close()


async def served_while_crowded(gateway: Server, key: str) -> tuple[int, int]:
    """(health probes answered, of those sent) and whether an edit got through, with the crowd connected."""
    answered = 0
    probes = 20
    async with crowd(gateway.port), httpx.AsyncClient(base_url=gateway.base, timeout=5) as client:
        for _ in range(probes):
            with contextlib.suppress(httpx.TransportError):
                answered += (await client.get("/healthz")).status_code == 200
            await asyncio.sleep(0.05)
        with contextlib.suppress(httpx.TransportError):
            edit = await client.post("/v1/images/edits", headers={"Authorization": f"Bearer {key}"},
                                     data={"model": "local-edit", "prompt": "grayscale"},
                                     files={"image": ("a.png", png_bytes(), "image/png")})
            answered += edit.status_code == 200
    return answered, probes + 1


def open_file_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise LookupError("Max open files")


async def test_a_crowd_of_idle_and_dripping_connections_locks_no_one_out(
        tmp_path: Path, server: Callable[..., Server], funded: Fund, many_files: None) -> None:
    config = config_for(tmp_path / "imagegate.toml")
    _, key = await funded(config)
    gateway = server(config, python=LIMITED)
    await gateway.start()
    assert open_file_limit(gateway.pid) > SOFT_LIMIT  # raised to the hard limit at start
    answered, sent = await served_while_crowded(gateway, key)
    assert answered == sent


async def test_without_raising_the_limit_the_crowd_locks_others_out(
        tmp_path: Path, server: Callable[..., Server], funded: Fund, many_files: None) -> None:
    config = config_for(tmp_path / "imagegate.toml")
    _, key = await funded(config)
    gateway = server(config, python=LIMITED_UNGUARDED)
    await gateway.start()
    assert open_file_limit(gateway.pid) == SOFT_LIMIT
    answered, sent = await served_while_crowded(gateway, key)
    assert answered < sent  # what the test above would have seen without the guard


async def test_headers_that_never_finish_are_cut_off(tmp_path: Path, server: Callable[..., Server]) -> None:
    gateway = server(config_for(tmp_path / "imagegate.toml", header_timeout=1.0))
    await gateway.start()
    silent_reader, silent = await asyncio.open_connection("127.0.0.1", gateway.port)
    slow_reader, slow = await asyncio.open_connection("127.0.0.1", gateway.port)
    slow.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    async with asyncio.timeout(30):  # the server closes both: EOF, not this test's timeout
        assert await silent_reader.read() == b""
        assert await slow_reader.read() == b""
    silent.close()
    slow.close()
    async with httpx.AsyncClient(base_url=gateway.base) as client:  # a keep-alive client is not hurried
        assert (await client.get("/healthz")).status_code == 200
        await asyncio.sleep(1.5)
        assert (await client.get("/healthz")).status_code == 200


async def test_a_body_that_stalls_gets_408_and_the_connection_closed(tmp_path: Path, server: Callable[..., Server],
                                                                     funded: Fund) -> None:
    config = config_for(tmp_path / "imagegate.toml", body_timeout=1.0)
    _, key = await funded(config)
    gateway = server(config)
    await gateway.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"POST /v1/images/edits HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\":")
    await writer.drain()
    async with asyncio.timeout(30):
        answer = await reader.read()  # to EOF: the server closes after answering
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in head.lower()
    assert b'"code":"request_timeout"' in body


async def test_sigterm_stops_the_server_with_exit_code_0(tmp_path: Path, server: Callable[..., Server]) -> None:
    gateway = server(config_for(tmp_path / "imagegate.toml"))
    await gateway.start()
    assert await gateway.terminate() == 0
