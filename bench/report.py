"""The summary of one target's ramp, the printed table and the machine description.

Part of the load tool (``python -m bench.load``; bench/README.md).
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict
from typing import Any

from bench.measure import Step, pct
from bench.options import Options
from bench.targets import Target
from bench.viewers import Recorder


def summarize(
    t: Target, steps: list[Step], idle_cpu: float, base_rss: float, o: Options, errors: list[str], rec: Recorder
) -> dict[str, Any]:
    held = [s for s in steps if s.verdict in ("ok", "tool_saturated")]
    failed = [s for s in steps if s.verdict in ("sfu_limit", "tool_limit")]
    best = max(held, key=lambda s: s.viewers) if held else None
    first_fail = min(failed, key=lambda s: s.viewers) if failed else None
    sfu_limited = (
        first_fail is not None
        and first_fail.verdict == "sfu_limit"
        and (best is None or first_fail.viewers > best.viewers)
    )
    # Linear fit of SFU CPU (% of a core) against N over the steps that held.
    pts = [(0.0, idle_cpu)] + [(float(s.viewers), s.sfu_cpu_pct) for s in held]
    fixed, slope = _fit(pts)
    extrapolated = int((100.0 - fixed) / slope) if slope > 0 else None
    if best is None:
        vpc: float | None = 0
        method = "no step held"
    elif sfu_limited:
        vpc = best.viewers
        method = (
            f"measured: highest N that held (loss <= {o.max_loss_pct}%, p99 <= {o.max_p99_ms} ms); "
            f"N={first_fail.viewers} failed with the SFU as the bottleneck"
        )  # type: ignore[union-attr]
    else:
        vpc = extrapolated
        why = (
            "the load tool saturated first"
            if (first_fail and first_fail.verdict == "tool_limit") or best.verdict == "tool_saturated"
            else "the ramp ended before the SFU failed"
        )
        method = (
            f"extrapolated from cpu_per_viewer at N={best.viewers}: {why}; linear fit of SFU CPU vs N "
            f"over the steps that held (fixed {fixed:.1f}% + {slope:.3f}% per viewer), solved for 100% of one core "
            "(an upper bound: where the SFU was the limit, the p99 criterion broke at 75-90% CPU)"
        )
    # Memory from the largest N reached while ramping up (RSS does not shrink when viewers leave).
    grown = [s for s in steps if not s.refined]
    top = max(grown, key=lambda s: s.viewers) if grown else None
    all_probes = [x for s in held for x in s.ttff_ms_probe]
    phase_rows = [ph for s in held for ph in s.ttff_phases_probe]
    phases_p50 = (
        {
            k: round(pct([ph[k] for ph in phase_rows if ph[k] >= 0], 50), 1)
            for k in ("offer", "dtls_connected", "first_packet", "first_keyframe")
        }
        if phase_rows
        else None
    )
    summary: dict[str, Any] = {
        "viewers_per_core": vpc,
        "method": method,
        "highest_clean_n": best.viewers if best else 0,
        "first_failing_n": first_fail.viewers if first_fail else None,
        "limited_by": "sfu"
        if sfu_limited
        else ("load tool" if first_fail or (best and best.verdict == "tool_saturated") else "none (ramp ended)"),
        "ttff_ms_p50": round(pct(all_probes, 50), 1) if all_probes else None,
        "ttff_ms_p95": round(pct(all_probes, 95), 1) if all_probes else None,
        "ttff_samples": len(all_probes),
        "ttff_phases_ms_p50": phases_p50,
        "cpu_per_viewer": round(best.sfu_cpu_pct / best.viewers, 4) if best else None,
        "cpu_per_viewer_unit": "percent of one core per viewer, at highest_clean_n (includes the publisher ingest, amortised)",
        "cpu_per_viewer_marginal": round(slope, 4),
        "cpu_fixed_pct": round(fixed, 2),
        "viewers_per_core_extrapolated": extrapolated,
        "cpu_us_per_packet_out": best.cpu_us_per_packet_out if best else None,
        "mem_mb_per_viewer": round((top.rss_mb - base_rss) / top.viewers, 3) if top else None,
        "mem_mb_per_viewer_note": f"(RSS at N={top.viewers if top else 0} - RSS with the publisher only) / N",
        "rss_mb_publisher_only": round(base_rss, 1),
        "idle_cpu_pct_publisher_only": round(idle_cpu, 2),
        "loss_pct_at_n": best.loss_pct if best else None,
        "p99_ms_at_n": best.p99_ms if best else None,
        "tool_cpu_pct_max": max((s.tool_cpu_pct for s in steps), default=None),
        "packets_without_trailer": rec.no_trailer,
        "srtp_errors": rec.srtp_errors,
        "errors": errors[:20],
        "steps": [asdict(s) for s in steps],
    }
    summary.update(t.describe())
    return summary


def _fit(pts: list[tuple[float, float]]) -> tuple[float, float]:
    if len(pts) < 2:
        return (pts[0][1] if pts else 0.0), 0.0
    import numpy as np

    x = np.array([p[0] for p in pts], dtype=float)
    y = np.array([p[1] for p in pts], dtype=float)
    slope, fixed = np.polyfit(x, y, 1)
    return float(fixed), float(slope)


def print_table(record: dict[str, Any], out: Any = sys.stdout) -> None:
    cols = [
        "viewers",
        "pps_in",
        "pps_out",
        "loss_pct",
        "p50_ms",
        "p99_ms",
        "sfu_cpu_pct",
        "sfu_core_other_pct",
        "tool_core_other_pct",
        "cpu_us_per_packet_out",
        "rss_mb",
        "tool_cpu_pct",
        "tool_drop_pct",
        "ttff_ms_p50_all",
        "verdict",
    ]
    for name in record["targets"]:
        t = record[name]
        print(f"\n== {name}: {t.get('software', '')}", file=out)
        rows = [[str(s[c]) for c in cols] for s in t["steps"]]
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
        print("  ".join(c.rjust(w) for c, w in zip(cols, widths)), file=out)
        for r in rows:
            print("  ".join(v.rjust(w) for v, w in zip(r, widths)), file=out)
    print(
        "\n== summary (video 1.5 Mbit/s + Opus; loss <= %s%%, p99 <= %s ms)"
        % (record["criteria"]["max_loss_pct"], record["criteria"]["max_p99_ms"]),
        file=out,
    )
    keys = [
        "viewers_per_core",
        "highest_clean_n",
        "limited_by",
        "ttff_ms_p50",
        "ttff_ms_p95",
        "cpu_per_viewer",
        "cpu_us_per_packet_out",
        "mem_mb_per_viewer",
        "tool_cpu_pct_max",
    ]
    w = max(len(k) for k in keys)
    print(" ".join(["".ljust(w)] + [n.rjust(12) for n in record["targets"]]), file=out)
    for k in keys:
        print(" ".join([k.ljust(w)] + [str(record[n].get(k)).rjust(12) for n in record["targets"]]), file=out)
    for n in record["targets"]:
        print(f"{n}: {record[n]['method']}", file=out)
    if "ratio_viewers_per_core" in record:
        print(f"ratio_viewers_per_core (jasmin / janus): {record['ratio_viewers_per_core']}", file=out)


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import aiortc

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiortc": aiortc.__version__,
        "host": platform.node(),
    }
