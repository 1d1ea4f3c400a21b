"""The loop-block guard (jasmin_sfu/loop_lag.py): a blocked event loop is measured, exported
in /metrics as jasmin_event_loop_lag_seconds and logged past [server] loop_lag_warn_ms."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from jasmin_sfu.config import ConfigError, load_config
from jasmin_sfu.loop_lag import LagHistogram, LoopLagMonitor
from tests.conftest import Running, scrape_metrics
from tests.realparts import FakeClock

BUCKET = 'jasmin_event_loop_lag_seconds_bucket{le="%s"}'


async def test_a_callback_that_blocks_the_loop_is_counted_in_metrics(daemon: Running) -> None:
    """Protects the guard itself: a callback that blocks the daemon's loop for 0.4 s (time.sleep)
    shows in /metrics as an observation above the 0.25 s bucket. The monitor sleeps 0.1 s, so
    the measurement that overlaps the block is late by at least 0.3 s, whatever the load."""
    hist = daemon.daemon.loop_lag.histogram
    before = await scrape_metrics(daemon.http)
    above_before = before["jasmin_event_loop_lag_seconds_count"] - before[BUCKET % "0.25"]
    asyncio.get_running_loop().call_soon(time.sleep, 0.4)
    start = hist.count
    while hist.count < start + 3:  # the monitor has woken up after the block, twice over
        await asyncio.sleep(0.05)
    after = await scrape_metrics(daemon.http)
    above_after = after["jasmin_event_loop_lag_seconds_count"] - after[BUCKET % "0.25"]
    assert above_after >= above_before + 1
    assert after[BUCKET % "+Inf"] == after["jasmin_event_loop_lag_seconds_count"]
    assert after["jasmin_event_loop_lag_seconds_sum"] >= 0.3


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    """Protects the export's shape: a lag equal to a bound counts in that bound's bucket (Prometheus'
    le), counts are cumulative, +Inf holds every observation, and above() counts the rest."""
    h = LagHistogram((0.01, 0.1, 1.0))
    for lag in (0.0, 0.01, 0.05, 0.1, 0.5, 7.0):
        h.observe(lag)
    assert h.cumulative() == [(0.01, 2), (0.1, 4), (1.0, 5), (float("inf"), 6)]
    assert (h.count, h.above(0.1), h.above(1.0)) == (6, 2, 1)
    assert h.sum == pytest.approx(7.66)
    with pytest.raises(ValueError):
        LagHistogram((0.1, 0.01))


def test_lag_past_the_threshold_is_logged_with_fields_at_most_every_10_s(caplog: pytest.LogCaptureFixture) -> None:
    """Protects the warning: a lag at or past loop_lag_warn_ms logs 'event loop blocked' with
    lag_ms, threshold_ms and blocked_times; shorter lags do not; within 10 s of a line further
    blocks are only counted, and the next line carries their number. Every lag is in the histogram."""
    clock = FakeClock()
    mon = LoopLagMonitor(100, clock=clock)
    caplog.set_level(logging.WARNING, logger="jasmin_sfu.loop_lag")
    mon.record(0.099)
    assert caplog.records == []
    mon.record(0.25)
    (line,) = caplog.records
    assert line.getMessage() == "event loop blocked"
    assert (line.lag_ms, line.threshold_ms, line.blocked_times) == (250.0, 100, 1)  # type: ignore[attr-defined]
    clock.now += 5
    mon.record(0.3)
    mon.record(0.4)
    assert len(caplog.records) == 1
    clock.now += 5
    mon.record(0.2)
    assert len(caplog.records) == 2
    assert (caplog.records[1].lag_ms, caplog.records[1].blocked_times) == (200.0, 3)  # type: ignore[attr-defined]
    assert mon.histogram.count == 5 and mon.histogram.above(0.1) == 4


def test_zero_turns_the_warning_off_and_negative_is_refused() -> None:
    """Protects the setting: loop_lag_warn_ms comes from [server] or JASMIN_SERVER_LOOP_LAG_WARN_MS,
    0 means measure but never warn, and a negative value is a named config error."""
    assert load_config(None, env={}).server.loop_lag_warn_ms == 100
    cfg = load_config(None, env={"JASMIN_SERVER_LOOP_LAG_WARN_MS": "0"})
    assert cfg.server.loop_lag_warn_ms == 0
    mon = LoopLagMonitor(cfg.server.loop_lag_warn_ms, clock=FakeClock())
    mon.record(10.0)
    assert mon.warnings == 0 and mon.histogram.above(5.0) == 1
    with pytest.raises(ConfigError, match="loop_lag_warn_ms"):
        load_config(None, env={"JASMIN_SERVER_LOOP_LAG_WARN_MS": "-1"})
