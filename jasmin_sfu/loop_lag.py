"""How long the event loop is blocked: a monitor task and the histogram it fills.

Everything on a node runs on one event loop: a callback that blocks it (a synchronous
disk write, a slow regex, a CPU-heavy loop) delays every packet, websocket and billing
tick behind it. The monitor sleeps a fixed interval and measures how late it wakes up;
the lateness is the time the loop could not run anything. Each measurement goes into a
histogram (``jasmin_event_loop_lag_seconds`` in /metrics, api/metrics.py), and a lag past
``[server] loop_lag_warn_ms`` is logged as a warning with structured fields, at most once
per ``WARN_EVERY_S`` (the line counts the ones in between). docs/deploy.md.

Any layer may import this module (it imports nothing of ours but tasks.py); the
histogram is plain counters, prometheus_client is only in api/metrics.py.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from typing import Any, Callable

from jasmin_sfu.tasks import spawn_tracked

log = logging.getLogger(__name__)

# Upper bounds (seconds) of the histogram's buckets; +Inf is implied. Below 5 ms is
# scheduling noise; a quarter second is a frozen picture a viewer notices.
LAG_BUCKETS_S: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The monitor's sleep: ten wake-ups a second cost nothing and catch any block over ~100 ms
# whole (a shorter block may fall between two measurements only in part).
INTERVAL_S = 0.1
# At most one warning line per this many seconds, however often the loop blocks.
WARN_EVERY_S = 10.0


class LagHistogram:
    """Observations per bucket (``le`` semantics, as Prometheus), their count and sum."""

    def __init__(self, buckets: tuple[float, ...] = LAG_BUCKETS_S) -> None:
        if list(buckets) != sorted(set(buckets)):
            raise ValueError("buckets must be increasing")
        self.buckets = buckets
        self._counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.count += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= it)`` per bucket, +Inf last (as exported)."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip(self.buckets + (float("inf"),), self._counts):
            total += n
            out.append((bound, total))
        return out

    def above(self, bound: float) -> int:
        """Observations greater than ``bound``, which must be one of the buckets."""
        return self.count - dict(self.cumulative())[bound]


class LoopLagMonitor:
    """The task that measures the loop's lag into ``histogram`` while started."""

    def __init__(
        self,
        warn_ms: int,
        *,
        interval_s: float = INTERVAL_S,
        histogram: LagHistogram | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.warn_s = warn_ms / 1000 if warn_ms > 0 else None
        self.interval_s = interval_s
        self.histogram = histogram or LagHistogram()
        self.clock = clock
        self.warnings = 0  # lines logged
        self._over_since_warning = 0
        self._last_warning: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        if not self._tasks:
            spawn_tracked(self._tasks, self._run(), "loop-lag-monitor", log)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            t0 = self.clock()
            await asyncio.sleep(self.interval_s)
            self.record(max(0.0, self.clock() - t0 - self.interval_s))

    def record(self, lag_s: float) -> None:
        """One measurement: into the histogram, and a warning when past the threshold."""
        self.histogram.observe(lag_s)
        if self.warn_s is None or lag_s < self.warn_s:
            return
        self._over_since_warning += 1
        now = self.clock()
        if self._last_warning is not None and now - self._last_warning < WARN_EVERY_S:
            return
        log.warning(
            "event loop blocked",
            extra={
                "lag_ms": round(lag_s * 1000, 1),
                "threshold_ms": round(self.warn_s * 1000),
                "blocked_times": self._over_since_warning,
            },
        )
        self.warnings += 1
        self._last_warning = now
        self._over_since_warning = 0
