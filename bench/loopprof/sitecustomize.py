"""The loop profiler of ``python -m bench.joinstorm --loop-profile`` (issue 16), loaded by the SFU process.

bench/joinstorm.py puts this directory first on the SFU's PYTHONPATH and names an output
prefix in ``BENCH_LOOP_PROFILE``; Python imports ``sitecustomize`` at start, so the daemon
itself carries no profiling code. Only a ``python -m jasmin_sfu ...`` process is touched.

It times, in the loop thread's own CPU time (``time.thread_time``: what a loaded machine
does not stretch, unlike the wall clock):

* every turn of the event loop (one ``_run_once``: the callbacks that ran back to back while
  every packet waiting in a socket waited too), kept when over 0.2 ms, with its monotonic
  time (the clock is the machine's, so the bench can cut its windows out);
* every callback, by name (a task's coroutine and what it was awaiting, or the function),
  summed per second;
* the make-up of each turn over 2 ms (its twelve largest names);
* every garbage collection of the oldest generation (a pause inside whichever callback
  allocated last), with its wall time.

asyncio's own loop replaces uvloop in that process (uvloop's turns and callbacks cannot be
seen from Python), and the timing costs a few microseconds per callback: absolute figures
are the profiled process's, the comparison before/after is the point. At exit it writes
``<prefix>.<pid>.json``.
"""

from __future__ import annotations

import os
import sys

if os.environ.get("BENCH_LOOP_PROFILE") and "jasmin_sfu" in sys.orig_argv:
    import asyncio
    import asyncio.base_events
    import asyncio.events
    import atexit
    import json
    import time
    from typing import Any

    _OUT = os.environ["BENCH_LOOP_PROFILE"]
    _turns: list[tuple[float, float]] = []
    _long: list[tuple[float, float, list[tuple[float, int, str]]]] = []
    _per_second: dict[int, dict[str, list[float]]] = {}
    _current: list[tuple[str, float]] = []
    _gc2: list[tuple[float, float, int]] = []
    _gc_t0 = [0.0]
    _run_handle = asyncio.events.Handle._run
    _run_once = asyncio.base_events.BaseEventLoop._run_once

    def _name(handle: Any) -> str:
        cb = handle._callback
        owner = getattr(cb, "__self__", None)
        if isinstance(owner, asyncio.Task):
            outer = inner = owner.get_coro()
            for _ in range(8):
                nxt = getattr(inner, "cr_await", None) or getattr(inner, "gi_yieldfrom", None)
                if nxt is None:
                    break
                inner = nxt
            return (
                f"task:{getattr(outer, '__qualname__', '?')} > {getattr(inner, '__qualname__', type(inner).__name__)}"
            )
        return str(getattr(cb, "__qualname__", type(cb).__name__))[:80]

    def _timed_run(self: Any) -> None:
        name = _name(self)
        t0 = time.thread_time()
        _run_handle(self)
        _current.append((name, time.thread_time() - t0))

    def _timed_run_once(self: Any) -> None:
        _current.clear()
        t0 = time.thread_time()
        _run_once(self)
        cpu = time.thread_time() - t0
        now = time.monotonic()
        bucket = _per_second.setdefault(int(now), {})
        for name, c in _current:
            agg = bucket.setdefault(name, [0, 0.0, 0.0])
            agg[0] += 1
            agg[1] += c
            agg[2] = max(agg[2], c)
        if cpu > 0.0002:
            _turns.append((round(now, 4), round(cpu * 1000, 3)))
        if cpu > 0.002:
            by: dict[str, list[float]] = {}
            for name, c in _current:
                a = by.setdefault(name, [0.0, 0])
                a[0] += c
                a[1] += 1
            top = sorted(((round(v[0] * 1000, 2), int(v[1]), k) for k, v in by.items()), reverse=True)[:12]
            _long.append((round(now, 4), round(cpu * 1000, 2), top))

    def _on_gc(phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            _gc_t0[0] = time.perf_counter()
        else:
            _gc2.append(
                (
                    round(time.monotonic(), 4),
                    round((time.perf_counter() - _gc_t0[0]) * 1000, 2),
                    int(info.get("collected", 0)),
                )
            )

    def _dump() -> None:
        record = {
            "gc2": _gc2,
            "turns": _turns,
            "long_turns": _long,
            "per_second": {
                str(k): {n: [v[0], round(v[1] * 1000, 3), round(v[2] * 1000, 3)] for n, v in d.items()}
                for k, d in _per_second.items()
            },
        }
        with open(f"{_OUT}.{os.getpid()}.json", "w") as f:
            json.dump(record, f)

    asyncio.events.Handle._run = _timed_run  # type: ignore[method-assign]
    asyncio.base_events.BaseEventLoop._run_once = _timed_run_once  # type: ignore[method-assign]
    atexit.register(_dump)
    import gc

    gc.callbacks.append(_on_gc)
    try:
        import uvloop

        uvloop.run = lambda main, **kw: asyncio.run(main)  # type: ignore[assignment]
    except ImportError:  # pragma: no cover
        pass
