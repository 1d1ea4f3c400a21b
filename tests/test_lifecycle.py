"""The one server lifecycle (jasmin_sfu/lifecycle.py) that both the single daemon and the supervisor run."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Iterator

import aiohttp
import pytest
from aiohttp import web

from jasmin_sfu.lifecycle import LISTENING, HttpListener, drain, listening_line, run


class Recorder:
    """A Service that serves a tiny app on 127.0.0.1 and records its calls."""

    def __init__(self) -> None:
        app = web.Application()
        app.router.add_get("/ping", self._ping)
        self.listener = HttpListener(app)
        self.port: int | None = None
        self.calls: list[str] = []

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="pong")

    async def start(self) -> None:
        self.calls.append("start")
        self.port = await self.listener.start("127.0.0.1", 0)

    async def stop(self) -> None:
        self.calls.append("stop")
        await self.listener.close()


@pytest.fixture
def sigterm_caught() -> Iterator[list[int]]:
    """SIGTERM outside run()'s handlers is recorded instead of ending pytest (a regression then
    fails the test by its timeout rather than killing the run)."""
    caught: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))
    yield caught
    signal.signal(signal.SIGTERM, previous)


async def test_run_listens_says_so_and_drains_on_sigterm(
    capsys: pytest.CaptureFixture[str], sigterm_caught: list[int]
) -> None:
    """Protects the lifecycle of `serve` and `supervise`: the service starts and listens on a
    free port, the listening line (which a supervisor parses for its workers' ports) names that
    port, the announced lines follow it, ready(port) is called, and one SIGTERM drains the
    service once and returns 0; a second signal during the drain changes nothing, and the
    handlers are gone afterwards."""
    service = Recorder()
    seen: list[int] = []

    async def announce(port: int) -> list[str]:
        return [f"more about {port}"]

    def ready(port: int) -> None:
        seen.append(port)
        os.kill(os.getpid(), signal.SIGTERM)

    stopping = asyncio.Event()
    original_stop = service.stop

    async def slow_stop() -> None:
        stopping.set()
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal mid-drain
        await asyncio.sleep(0)
        await original_stop()

    service.stop = slow_stop  # type: ignore[method-assign]
    task = asyncio.create_task(run(service, "127.0.0.1", detail="test", announce=announce, ready=ready))
    code = await asyncio.wait_for(task, 10)
    assert code == 0
    assert service.calls == ["start", "stop"] and stopping.is_set()
    assert seen == [service.port] and service.port
    out = capsys.readouterr().out.splitlines()
    assert out[0] == listening_line("127.0.0.1", service.port, "test")
    assert out[0].endswith("  (test)") and out[1] == f"more about {service.port}"
    m = LISTENING.search(out[0])
    assert m is not None and int(m.group(1)) == service.port
    assert service.listener.runner is None
    loop = asyncio.get_running_loop()
    assert not loop.remove_signal_handler(signal.SIGTERM), "run() leaves no handler behind"
    assert sigterm_caught == [], "both signals reached run()'s handlers"


async def test_http_listener_serves_on_the_port_it_reports() -> None:
    """Protects HttpListener: port 0 gets a free port, the app answers there, and close() stops
    listening (a second close is harmless)."""
    service = Recorder()
    await service.start()
    assert service.port
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{service.port}/ping") as r:
            assert r.status == 200 and await r.text() == "pong"
        await service.stop()
        await service.listener.close()
        with pytest.raises(aiohttp.ClientConnectionError):
            async with s.get(f"http://127.0.0.1:{service.port}/ping"):
                pass


async def test_drain_step_that_runs_out_is_reported_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """Protects the drain's time limit: a step that does not finish in time is cut, logged as a
    warning naming it, and reported False, so the caller can cut what is left and still exit."""
    never = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="jasmin_sfu.lifecycle"):
        assert await drain(never.wait(), 0.01, "the stuck step") is False
    assert [r.what for r in caplog.records if r.getMessage() == "drain timed out"] == ["the stuck step"]  # type: ignore[attr-defined]
    assert await drain(asyncio.sleep(0), 5, "a quick step") is True


async def test_a_node_freezes_its_startup_heap_once_it_listens(sigterm_caught: list[int]) -> None:
    """Protects the join-storm fix for collector pauses (issue 16): a node started by `serve`
    puts what it made at start (modules, app, stores) out of the cyclic collector's sight once
    it listens, so a collection of the oldest generation during a storm no longer walks the
    ~90 000 start-up objects (~65 ms of CPU on the loop in the storm profile)."""
    import gc

    from jasmin_sfu.app import serve
    from tests.conftest import test_config

    gc.unfreeze()
    frozen: list[int] = []

    def ready(port: int) -> None:
        frozen.append(gc.get_freeze_count())
        os.kill(os.getpid(), signal.SIGTERM)

    try:
        assert await asyncio.wait_for(serve(test_config(), ready=ready), 60) == 0
    finally:
        gc.unfreeze()
    assert frozen and frozen[0] > 10_000, frozen
