"""``--loop-profile`` of the join storm: where the SFU loop's time goes during a storm (issue 16).

``enable(prefix)`` makes the SFU processes started from then on load ``bench/loopprof``'s
``sitecustomize`` (see there: the loop thread's CPU per turn of the event loop and per
callback, asyncio's loop instead of uvloop); ``summarize`` reads what one process wrote and
cuts the baseline and storm windows out of it (monotonic times, the machine's clock).
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any

HOOK_DIR = str(Path(__file__).resolve().parent / "loopprof")

# Callback names (task coroutine > what it awaited, or the function) by phase of a join.
PHASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("negotiation (signaling frames: join, subscribe, answer; SDP, ICE gathering)", ("RequestHandler", "Signaling")),
    ("keyframe replay (in the gate's turn)", ("NegotiationGate._call",)),
    (
        "ICE checks, DTLS handshake, connect (aiortc's connect task, STUN)",
        ("__connect", "Connection.", "RTCIceTransport", "check_start", "StunProtocol", "consent"),
    ),
    ("media in (publisher SRTP, taps, fan-out)", ("RTCDtlsTransport.__run",)),
    ("UDP reads (media and STUN datagrams)", ("_SelectorDatagramTransport",)),
    ("RTCP (aiortc senders' SR, the router's RR/REMB)", ("_run_rtcp", "Router.")),
)


def enable(prefix: str) -> None:
    """SFU processes started after this call write ``<prefix>.<pid>.json``."""
    os.environ["BENCH_LOOP_PROFILE"] = prefix
    path = os.environ.get("PYTHONPATH", "")
    if HOOK_DIR not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join([HOOK_DIR] + ([path] if path else []))


def phase_of(name: str) -> str:
    for phase, needles in PHASES:
        if any(n in name for n in needles):
            return phase
    return "other"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q / 100 * len(s)))], 2)


def summarize(
    prefix: str, pid: int, baseline: tuple[float, float], storm: tuple[float, float], joins: int
) -> dict[str, Any]:
    """The loop's turns and CPU by phase in the storm window (and the baseline's rate), from one SFU process."""
    files = glob.glob(f"{prefix}.{pid}.json")
    if not files:
        return {"error": f"no {prefix}.{pid}.json (the SFU did not exit cleanly?)"}
    rec = json.loads(Path(files[0]).read_text())
    s0, s1 = storm
    turns = [ms for t, ms in rec["turns"] if s0 <= t <= s1]
    # A turn's join work: its callbacks of the phases a join adds (not media), from the make-up
    # of every turn over 2 ms. On a starved SFU a turn also carries a backlog of media; the
    # join work in it is what the node's design decides.
    join_phases = {p for p, _ in PHASES[:3]}
    join_work = [
        sum(ms for ms, _n, name in top if phase_of(name) in join_phases)
        for t, _ms, top in rec["long_turns"]
        if s0 <= t <= s1
    ]
    out: dict[str, Any] = {
        "join_work_ms_per_turn_max": round(max(join_work), 2) if join_work else 0.0,
        "turns_with_join_work_over_ms": {str(b): sum(1 for x in join_work if x > b) for b in (2, 5, 10, 20)},
        "gc_gen2_ms": [ms for t, ms, _n in rec.get("gc2", []) if s0 <= t <= s1],
        "turns_over_0_2ms": len(turns),
        "turn_cpu_ms_p50": _pct(turns, 50),
        "turn_cpu_ms_p99": _pct(turns, 99),
        "turn_cpu_ms_max": round(max(turns), 2) if turns else 0.0,
        "turns_over_ms": {str(b): sum(1 for x in turns if x > b) for b in (5, 10, 20, 50)},
        "longest_turns": sorted(
            ([t - s0, ms, top] for t, ms, top in rec["long_turns"] if s0 <= t <= s1), key=lambda x: -x[1]
        )[:5],
    }

    def by_phase(w0: float, w1: float) -> dict[str, float]:
        acc: dict[str, float] = {}
        for sec, names in rec["per_second"].items():
            if w0 - 0.5 <= int(sec) + 0.5 <= w1 + 0.5:
                for name, (_count, cpu_ms, _max) in names.items():
                    acc[phase_of(name)] = acc.get(phase_of(name), 0.0) + cpu_ms
        return acc

    base = by_phase(*baseline)
    during = by_phase(s0, s1)
    b_s = max(1e-9, baseline[1] - baseline[0])
    st_s = s1 - s0
    out["cpu_ms_per_join_by_phase"] = {
        phase: round(max(0.0, during.get(phase, 0.0) - base.get(phase, 0.0) / b_s * st_s) / max(1, joins), 2)
        for phase in [p for p, _ in PHASES] + ["other"]
    }
    out["note"] = (
        "loop thread CPU (time.thread_time) under asyncio's loop with per-callback timing; per join: storm"
        " window minus the baseline's rate, over the joins negotiated (ok or timed out), whole seconds at the window edges"
    )
    return out
