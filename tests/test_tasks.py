"""The one background-task helper (jasmin_sfu/tasks.py) and the show that uses it."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref

import pytest

from bench.peers import wait_for
from jasmin_sfu.media.settings import MediaSettings
from jasmin_sfu.config import ShowsConfig
from jasmin_sfu.media.worker import Worker
from jasmin_sfu.shows.events import EventBus
from jasmin_sfu.shows.show import Show
from jasmin_sfu.tasks import spawn_tracked


async def _forever() -> None:
    # The event is reachable only from this coroutine: nothing outside keeps the task alive.
    await asyncio.Event().wait()


async def test_a_failure_is_logged_once_with_the_task_name(caplog: pytest.LogCaptureFixture) -> None:
    """Protects failure reporting: a spawned task that raises is logged exactly once, at error
    level on the caller's logger, naming the task and the exception; it leaves the set."""
    tasks: set[asyncio.Task[object]] = set()
    logger = logging.getLogger("jasmin_sfu.test_tasks")

    async def boom() -> None:
        raise RuntimeError("the socket went away")

    with caplog.at_level(logging.ERROR, logger="jasmin_sfu.test_tasks"):
        spawn_tracked(tasks, boom(), "ending a revoked session", logger)
        assert await wait_for(lambda: not tasks, 10)
        await asyncio.sleep(0)  # any second report would come from the same loop turn
    records = [r for r in caplog.records if r.name == "jasmin_sfu.test_tasks"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert "ending a revoked session failed" in records[0].getMessage()
    assert "the socket went away" in records[0].getMessage()


async def test_the_helper_keeps_a_strong_reference_until_done() -> None:
    """Protects tasks from the garbage collector: the loop holds tasks weakly, so a pending
    task nobody references may be collected mid-flight. The helper's set keeps it until it
    is done, and lets it go after."""
    tasks: set[asyncio.Task[object]] = set()
    ref = weakref.ref(spawn_tracked(tasks, _forever(), "waiting"))
    await asyncio.sleep(0)  # the task runs to its first await
    gc.collect()
    task = ref()
    assert task is not None and not task.done() and task in tasks
    task.cancel()
    del task
    assert await wait_for(lambda: not tasks, 10)


async def test_a_show_keeps_its_background_tasks_alive() -> None:
    """Protects Show._spawn (closing a publisher after a private): its task must not be
    garbage-collected while pending. Before the fix the show kept no reference, and this
    task was collected by the first gc pass."""
    worker = Worker(MediaSettings())
    try:
        show = Show("s1", worker.create_router("r1"), EventBus(), ShowsConfig())
        show._spawn(_forever())
        await asyncio.sleep(0)
        mine = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "_forever"]  # type: ignore[union-attr]
        assert len(mine) == 1
        ref = weakref.ref(mine[0])
        del mine
        gc.collect()
        task = ref()
        assert task is not None and not task.done()
        task.cancel()
    finally:
        await worker.close()
