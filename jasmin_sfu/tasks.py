"""Background tasks: the one helper that starts a task, keeps it alive and logs its failure.

The event loop holds only weak references to its tasks: a task nothing else references
can be garbage-collected mid-flight, silently. ``spawn_tracked`` keeps each task in a set
the caller owns (so the caller can also wait for them on shutdown) until it is done, and
logs a failure once, at error level, with the task's name, so no exception is left
unretrieved ("Task exception was never retrieved").

Any layer may import this module (it imports nothing of ours); the media core keeps to
its own contract and does not.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Coroutine

log = logging.getLogger(__name__)


def spawn_tracked(
    tasks: "set[asyncio.Task[Any]]",
    coro: Coroutine[Any, Any, Any],
    what: str,
    logger: logging.Logger = log,
) -> "asyncio.Task[Any]":
    """Run ``coro`` as a task named ``what``, held in ``tasks`` until done; a failure is
    logged on ``logger`` (the caller's, so operators' filters keep working)."""
    task = asyncio.get_running_loop().create_task(coro, name=what)
    tasks.add(task)
    task.add_done_callback(functools.partial(_done, tasks, logger))
    return task


def _done(tasks: "set[asyncio.Task[Any]]", logger: logging.Logger, task: "asyncio.Task[Any]") -> None:
    tasks.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("%s failed: %r", task.get_name(), exc, exc_info=exc, extra={"task": task.get_name()})
