"""The join-storm scenario (bench/joinstorm.py) times every join of a storm on the real daemon."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench import joinstorm, scenario


@pytest.mark.slow
async def test_joinstorm_times_every_join_of_a_small_storm(tmp_path: Path) -> None:
    """Protects the join-storm scenario itself: against a real daemon process (admission
    control at its defaults, far from its limits here), a storm of 5 joins within 1 s onto
    a live show with one watcher counts every join exactly once (all of them got media),
    times each from its subscribe request, keeps the watcher's media measured before and
    during the storm, and writes the JSON + PNG."""
    o = joinstorm.parser().parse_args(
        [
            "--targets",
            "jasmin",
            "--storms",
            "5/1",
            "--watchers",
            "1",
            "--batch",
            "2",
            "--seconds",
            "1",
            "--settle",
            "0.3",
            "--cpu",
            "-1",
            "--tool-cpu",
            "-1",
            "--reruns",
            "0",
        ]
    )
    r = await joinstorm.main_async(o)
    assert r["scenario"] == "joinstorm"
    (s,) = r["targets"]["jasmin"]["storms"]
    assert s["viewers"] == 5 and len(s["joins"]) == 5
    assert s["ok"] + s["overloaded"] + s["errors"] + s["timeouts"] == 5
    assert s["ok"] == 5, s["joins"]  # 5 joins are far below every default admission limit
    assert all(j["outcome"] == "ok" and j["ttff_ms"] > 0 for j in s["joins"])
    # From the subscribe request is later than from the join's first request.
    assert all(j["ttff_from_request_ms"] >= j["ttff_ms"] for j in s["joins"])
    assert 0 < s["ttff_ms_p50"] <= s["ttff_ms_p95"] <= s["ttff_ms_max"]
    assert s["ttff_ms_max"] == max(j["ttff_ms"] for j in s["joins"])
    # Batches of 2 spread over 1 s: 3 batches, the last one starting after the first.
    assert max(j["offset_ms"] for j in s["joins"]) > min(j["offset_ms"] for j in s["joins"])
    for w in (s["baseline"], s["storm"]):
        assert w["packets_out"] > 0 and w["expected"] > 0  # the watcher kept receiving
        assert 0.0 <= w["loss_pct"] <= 100.0
    assert s["viewer_rtcp_sent"] > 0
    q = r["targets"]["jasmin"]["summary"]
    assert (q["joins"], q["ok"], q["overloaded"]) == (5, 5, 0)
    assert q["joins_per_s_per_core_held"] in (0.0, 5.0)  # 5.0 when TTFF p95 stayed under 1 s
    out = tmp_path / "js.json"
    # The plot imports and runs matplotlib (seconds on a loaded machine): off the event loop,
    # as the CLI draws it after its loop ended (scenario.cli), so tests/loop_guard.py cannot trip.
    await asyncio.to_thread(scenario.write, r, str(out), joinstorm.plot)
    assert json.loads(out.read_text())["targets"]["jasmin"]["summary"]["joins"] == 5
    assert (tmp_path / "js.png").stat().st_size > 0


def test_join_outcomes_count_overloaded_apart() -> None:
    """Protects the outcome classification: jasmin-sfu's admission refusal (`overloaded`,
    the client's Overloaded) is counted apart from every other failure."""
    from jasmin_signaling.client import Overloaded, RemoteError

    from bench.shows import join_outcome

    assert join_outcome(None) == "ok"
    assert join_outcome(Overloaded("overloaded", "full", {"code": "overloaded", "reason": "viewers"})) == "overloaded"
    assert join_outcome(RemoteError("no_producers", "nothing live")) == "error"
    assert join_outcome(TimeoutError()) == "error"
    assert joinstorm.parse_storms("200/2,40/0.5") == [(200, 2.0), (40, 0.5)]


@pytest.mark.slow
async def test_joinstorm_counts_admission_refusals_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Protects the separate count of jasmin-sfu's refusals: with the daemon's admission
    control set (by configured threshold, not by timing) to 3 viewers per worker, one watcher
    and a storm of 5 joins give exactly 2 joins with media and 3 `overloaded` ones, all for
    the reason `viewers`, none counted as an error or a timeout, and the storm does not hold."""
    monkeypatch.setenv("JASMIN_ADMISSION_MAX_VIEWERS_PER_WORKER", "3")
    monkeypatch.setenv("JASMIN_ADMISSION_MAX_JOINS_IN_FLIGHT", "0")
    monkeypatch.setenv("JASMIN_ADMISSION_MAX_CPU_SHARE", "0")
    o = joinstorm.parser().parse_args(
        [
            "--targets",
            "jasmin",
            "--storms",
            "5/1",
            "--watchers",
            "1",
            "--batch",
            "1",
            "--seconds",
            "0.5",
            "--settle",
            "0.2",
            "--cpu",
            "-1",
            "--tool-cpu",
            "-1",
            "--reruns",
            "0",
            "--admission",
            "on",
        ]
    )
    r = await joinstorm.main_async(o)
    (s,) = r["targets"]["jasmin"]["storms"]
    assert (s["ok"], s["overloaded"], s["errors"], s["timeouts"]) == (2, 3, 0, 0), s["joins"]
    assert s["overloaded_reasons"] == {"viewers": 3}
    assert not s["held"]
    assert r["targets"]["jasmin"]["summary"]["overloaded"] == 3
