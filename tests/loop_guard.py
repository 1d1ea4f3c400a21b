"""The loop-block guard of the test suite: a test whose event loop is blocked fails.

Every asyncio callback (a task's step, a timer, a socket's read) runs through
``asyncio.events.Handle._run``. The guard times each run; one that holds the loop longer
than ``LIMIT_S`` means that while it ran nothing else on the loop did: no packet was
forwarded, no websocket answered, no billing tick happened. That is a defect in the daemon
(blocking I/O, a sleep, a long computation on the loop) or in the test itself, and the test
fails at teardown naming the callback and where the loop's thread was while it held it (a
watchdog thread takes that stack once the callback has run for half the limit).

The limit is far above what any callback of the daemon takes (the daemon's own monitor,
jasmin_sfu/loop_lag.py, warns at 100 ms): a run of the whole suite on this 2-core machine
with seven other sessions' tests beside it (load 10) saw no callback above 2.6 s of wall time,
so that a loaded machine's scheduling cannot trip it. ``SFU_TEST_LOOP_BLOCK_S`` changes
it; a test that blocks its loop on purpose says so with ``@pytest.mark.blocks_loop``.
"""

from __future__ import annotations

import asyncio.events
import os
import sys
import threading
import time
import traceback
from typing import Any

LIMIT_S = float(os.environ.get("SFU_TEST_LOOP_BLOCK_S") or 5.0)

blocks: list[tuple[float, str]] = []
_original_run = asyncio.events.Handle._run
# What runs now, per thread that runs a loop: (start, handle); the watchdog reads it.
_running: dict[int, tuple[float, Any]] = {}
_stacks: dict[int, str] = {}


def _timed_run(self: Any) -> None:
    tid = threading.get_ident()
    start = time.perf_counter()
    outer = _running.get(tid)
    _running[tid] = (start, self)
    try:
        _original_run(self)
    finally:
        if outer is None:
            del _running[tid]
        else:
            _running[tid] = outer
        held = time.perf_counter() - start
        stack = _stacks.pop(tid, "")
        if held > LIMIT_S:
            blocks.append((held, f"{self!r}\n{stack}"))


def _watch() -> None:
    while True:
        time.sleep(min(0.1, LIMIT_S / 4))
        now = time.perf_counter()
        for tid, (start, _handle) in list(_running.items()):
            if now - start > LIMIT_S / 2 and tid not in _stacks:
                frame = sys._current_frames().get(tid)
                if frame is not None:
                    _stacks[tid] = "".join(traceback.format_stack(frame, limit=12))


def install() -> None:
    """Time every callback of every asyncio loop of this process (the standard loop's handles)."""
    asyncio.events.Handle._run = _timed_run  # type: ignore[method-assign]
    threading.Thread(target=_watch, name="loop-guard", daemon=True).start()


def take() -> list[tuple[float, str]]:
    """The blocks seen since the last call, longest first."""
    out = sorted(blocks, reverse=True)
    blocks.clear()
    return out
