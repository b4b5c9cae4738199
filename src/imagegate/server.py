"""Running the gateway as a process: uvicorn, guarded against slow and idle clients, stopped in good order.

- A connection has `header_timeout` seconds, from when it opens or a request's first byte arrives, to finish
  sending that request's headers; then it is closed. Keep-alive connections idle between requests are
  closed after `keep_alive` seconds. (A request body that stalls is the edge middleware's business:
  `[limits] body_timeout` between two chunks, then 408.)
- The soft limit on open files is raised to the hard limit at start, so a thousand idle sockets cannot
  starve health probes and real requests of file descriptors.
- On SIGTERM or SIGINT the task workers stop claiming at once, while uvicorn stops accepting connections
  and lets the requests in flight finish; then the gateway closes (tasks handed back). A clean stop exits
  0 rather than dying again by the signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections.abc import Callable, Generator
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("imagegate.server")


class GatewayConfig(uvicorn.Config):
    def __init__(self, app: Any, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout = header_timeout


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's headers."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._header_timeout: float = getattr(config, "header_timeout", 10.0)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(self._header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


class GatewayServer(uvicorn.Server):
    """uvicorn's server, telling `on_stop` the moment a stop signal arrives, and exiting 0 after a clean stop."""

    def __init__(self, config: uvicorn.Config, *, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stop = on_stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            asyncio.get_running_loop().call_soon_threadsafe(self._on_stop)
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()  # stopped in good order: nothing to re-raise


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard limit; returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            log.warning("could not raise the open-file limit from %d", soft)
            return soft, soft
        return soft, target
    return soft, soft


STARTUP_FAILED = 3  # the exit code when the gateway never came up (uvicorn's)


def serve(app: Any, *, host: str, port: int, log_level: str, access_log: bool, header_timeout: float,
          keep_alive: float, on_stop: Callable[[], None]) -> int:
    """Serve until stopped; the process's exit code: 0 after a clean stop, STARTUP_FAILED if it never started."""
    before, after = raise_open_file_limit()
    if after != before:
        log.info("open-file limit raised from %d to %d", before, after)
    config = GatewayConfig(app, host=host, port=port, loop="uvloop", http=GuardedHttpProtocol,
                           log_level=log_level, access_log=access_log, timeout_keep_alive=int(keep_alive),
                           header_timeout=header_timeout)
    server = GatewayServer(config, on_stop=on_stop)
    server.run()
    return 0 if server.started else STARTUP_FAILED
