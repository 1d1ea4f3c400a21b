"""The server lifecycle, written once: listen, say so, wait for SIGINT/SIGTERM, drain.

Both ways the daemon runs go through :func:`run`: ``jasmin_sfu/app.py`` (``serve``: one
process) and ``jasmin_sfu/supervisor.py`` (``supervise``: a supervisor of N worker
processes). Each keeps only what is its own: the app it serves and its drain steps
(:class:`Service`). The pieces those share are here too: one aiohttp app on a TCP address
(:class:`HttpListener`), closing the websockets still open (:func:`close_websockets`),
a drain step with a time limit (:func:`drain`), and the line that says where the node
listens (:func:`listening_line`; a supervisor reads its workers' ports from it).
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from typing import Any, Awaitable, Callable, Iterable, Mapping, Protocol, Sequence

from aiohttp import web

from jasmin_sfu import __version__
from jasmin_sfu.api.rest_common import quiet_client_http_errors

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A worker's listening line, as its supervisor (and the tests' daemon fixture) read it.
LISTENING = re.compile(r"listening: demo page http://127\.0\.0\.1:(\d+)/")
# A websocket still open when the node drains is closed "going away" and given this long.
WS_CLOSE_TIMEOUT_S = 2.0


class Service(Protocol):
    """What :func:`run` drives: ``start`` listens (and sets ``port``), ``stop`` drains."""

    port: int | None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class HttpListener:
    """One aiohttp app on a TCP address: its runner, its site and the port it got."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host``:``port`` (0: a free port); returns the port bound."""
        quiet_client_http_errors()
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, host, port).start()
        addresses = self.runner.addresses
        self.port = addresses[0][1] if addresses else port
        return self.port

    async def close(self) -> None:
        """Stop listening and finish the app's cleanup (no-op when it never started)."""
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()


async def close_websockets(sockets: Iterable[web.WebSocketResponse]) -> None:
    """Close each websocket with 1001 ("server shutting down"), each within WS_CLOSE_TIMEOUT_S."""
    for ws in list(sockets):
        try:
            await asyncio.wait_for(ws.close(code=1001, message=b"server shutting down"), WS_CLOSE_TIMEOUT_S)
        except Exception:  # pragma: no cover - a peer gone mid-close
            pass


async def drain(step: Awaitable[Any], timeout_s: float, what: str, logger: logging.Logger = log) -> bool:
    """Wait for one drain ``step`` at most ``timeout_s``; False, with a warning on ``logger``
    naming ``what``, when it ran out (the caller then cuts what is left)."""
    try:
        await asyncio.wait_for(step, timeout_s)
        return True
    except TimeoutError:
        logger.warning("drain timed out", extra={"what": what, "timeout_s": timeout_s})
        return False


def listening_line(host: str, port: int, detail: str = "") -> str:
    """The line printed once the node listens (``make run``, the supervisor, tests and bench read it)."""
    url = f"http://{host}:{port}/"
    return f"jasmin-sfu {__version__} listening: demo page {url}  signaling {url}ws" + (
        f"  ({detail})" if detail else ""
    )


async def run(
    service: Service,
    host: str,
    *,
    logger: logging.Logger = log,
    detail: str = "",
    log_fields: Mapping[str, Any] | None = None,
    announce: Callable[[int], Awaitable[Sequence[str]]] | None = None,
    ready: Callable[[int], Any] | None = None,
) -> int:
    """Start ``service``, say where it listens, run until SIGINT or SIGTERM, then drain it.

    ``announce(port)`` runs once it listens and returns more lines to print after the
    listening line (the demo accounts); ``ready(port)`` is called after them. Log lines go
    to ``logger`` (the caller's, so operators' filters keep working). SIGINT and SIGTERM are
    handled from the end of ``start`` (during it they still end the process at once) until
    the drain is over; a second one during the drain changes nothing. Returns the exit
    status: 0 after a clean drain.
    """
    await service.start()
    # Before anyone is told the node listens: a parent that reads the listening line and
    # signals at once gets a drain, not the default action.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        port = service.port if service.port is not None else 0
        more = await announce(port) if announce is not None else ()
        url = f"http://{host}:{port}/"
        logger.info("listening", extra={"url": url, "ws": url + "ws", **(log_fields or {})})
        print(listening_line(host, port, detail), flush=True)
        for line in more:
            print(line, flush=True)
        if ready is not None:
            ready(port)
        await stop.wait()
        logger.info("shutting down")
        await service.stop()
        logger.info("stopped")
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    return 0
