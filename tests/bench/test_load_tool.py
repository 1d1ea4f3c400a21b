"""The load tool and the hot-path benchmark produce complete, sane records (no timing assertions)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import hotpath, load


@pytest.mark.slow
async def test_load_tool_measures_two_viewers_against_the_daemon(tmp_path: Path) -> None:
    """Protects the benchmark itself: one short step against the real daemon process
    yields the JSON record (and plot) that bench/results and the README rely on."""
    out = tmp_path / "load.json"
    args = load.parser().parse_args(
        [
            "--targets",
            "jasmin",
            "--viewers",
            "2",
            "--seconds",
            "2",
            "--settle",
            "0.5",
            "--probes",
            "1",
            "--probe-gap",
            "0.3",
            "--retries",
            "0",
            "--refine",
            "0",
            "--sfu-cpu",
            "-1",
            "--bench-cpu",
            "-1",
            "--sched",
            "none",
            "--netns",
            "off",
            "--quiet",
            "--json",
            str(out),
        ]
    )
    record = await load.run(args)
    assert set(json.loads(out.read_text())) >= {"jasmin", "workload", "criteria"}
    assert os.path.exists(str(out).replace(".json", ".png"))

    r = record["jasmin"]
    for key in (
        "viewers_per_core",
        "method",
        "ttff_ms_p50",
        "ttff_ms_p95",
        "cpu_per_viewer",
        "mem_mb_per_viewer",
        "highest_clean_n",
        "limited_by",
        "steps",
        "software",
        "config",
    ):
        assert key in r, key
    (step,) = r["steps"]
    assert step["viewers"] == 2
    assert step["not_started"] == 0
    assert 0.0 <= step["loss_pct"] <= 100.0
    assert step["pps_in"] > 100  # ~235 packets/s: video + Opus
    assert step["pps_out"] > step["pps_in"]  # forwarded to two viewers
    assert 0.0 <= step["p50_ms"] <= step["p99_ms"] <= step["max_ms"]
    assert step["sfu_cpu_pct"] > 0.0 and step["rss_mb"] > 10.0
    assert r["ttff_ms_p50"] is not None and r["ttff_ms_p50"] > 0.0
    assert r["packets_without_trailer"] == 0 and r["srtp_errors"] == 0
    for key in ("workload", "criteria", "measurement", "pinning", "machine"):
        assert key in record, key


def test_hotpath_forwards_every_packet_to_every_consumer() -> None:
    """Protects the hot-path benchmark: real Producer/Consumer, counting sinks, a complete row."""
    row = hotpath.run(3, 300)
    assert row["consumers"] == 3
    assert row["packets_in"] == 100
    assert row["copies_per_s"] > 0 and row["us_per_copy"] > 0.0
    assert set(row) >= {"packets_in_per_s", "us_per_packet_in", "cpu_us_per_copy"}


def test_hotpath_with_temporal_layers_counts_only_the_forwarded_copies() -> None:
    """Protects --max-temporal: an L1T3 stream whose viewers are capped at T0 forwards about a
    quarter of the packets, and the row's per-copy figures divide by those copies."""
    full = hotpath.run(2, 1400, max_temporal=3)
    capped = hotpath.run(2, 1400, max_temporal=0)
    assert capped["max_temporal"] == 0 and full["max_temporal"] == 3
    ratio = capped["copies_per_s"] / capped["packets_in_per_s"] / 2
    assert 0.2 < ratio < 0.3, ratio
    # Both rates are rounded to whole packets per second: their ratio may pass 1.0 by ~1e-5.
    assert 0.95 < full["copies_per_s"] / full["packets_in_per_s"] / 2 <= 1.001
