"""bench/loop_profile.py: what `bench.joinstorm --loop-profile` reports from the SFU's record."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import loop_profile


def test_summary_cuts_the_storm_window_and_splits_join_work_from_media(tmp_path: Path) -> None:
    """Protects the storm profile's figures: only turns inside the storm window count, a turn's
    join work is its negotiation/connect/replay callbacks (not the media in the same turn), and
    CPU per join by phase is the storm's minus the baseline's rate, over the joins."""
    prefix = str(tmp_path / "lp")
    neg = "task:RequestHandler._handle_request > SessionHandler._m_subscribe"
    media = "task:RTCDtlsTransport.__run > FutureIter"
    record = {
        "turns": [[5.0, 300.0], [100.5, 12.0], [101.5, 4.0], [200.0, 90.0]],
        "long_turns": [
            [5.0, 300.0, [[300.0, 1, neg]]],  # start-up: outside the window
            [100.5, 12.0, [[7.0, 2, neg], [5.0, 40, media]]],
            [101.5, 4.0, [[4.0, 30, media]]],
        ],
        "gc2": [[100.7, 55.0, 10], [5.0, 80.0, 0]],
        "per_second": {
            "90": {media: [100, 50.0, 1.0]},  # baseline: 50 ms of media per second
            "100": {neg: [10, 20.0, 7.0], media: [100, 50.0, 1.0]},
            "101": {neg: [10, 20.0, 7.0], media: [100, 50.0, 1.0]},
        },
    }
    (tmp_path / "lp.4242.json").write_text(json.dumps(record))
    q = loop_profile.summarize(prefix, 4242, (90.0, 91.0), (100.0, 102.0), joins=4)
    assert q["turn_cpu_ms_max"] == 12.0 and q["turns_over_ms"]["10"] == 1 and q["turns_over_ms"]["50"] == 0
    assert q["join_work_ms_per_turn_max"] == 7.0
    assert q["turns_with_join_work_over_ms"] == {"2": 1, "5": 1, "10": 0, "20": 0}
    assert q["gc_gen2_ms"] == [55.0]
    per = q["cpu_ms_per_join_by_phase"]
    assert per[loop_profile.phase_of(neg)] == 10.0  # 40 ms over 4 joins
    assert per[loop_profile.phase_of(media)] == 0.0  # the baseline's rate, not join work
    assert loop_profile.phase_of(neg) != loop_profile.phase_of(media)


def test_a_missing_record_is_said_not_raised(tmp_path: Path) -> None:
    """Protects a storm's result when the SFU did not exit cleanly: the summary says so."""
    q = loop_profile.summarize(str(tmp_path / "none"), 1, (0.0, 1.0), (1.0, 2.0), joins=1)
    assert "error" in q


def test_enable_puts_the_hook_first_on_the_sfus_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Protects the hook's loading: the SFU processes started afterwards find bench/loopprof first."""
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    monkeypatch.delenv("BENCH_LOOP_PROFILE", raising=False)
    loop_profile.enable("/tmp/x")
    assert os.environ["PYTHONPATH"].split(os.pathsep) == [loop_profile.HOOK_DIR, "/somewhere"]
    assert os.environ["BENCH_LOOP_PROFILE"] == "/tmp/x"
    assert (Path(loop_profile.HOOK_DIR) / "sitecustomize.py").exists()
