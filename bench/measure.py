"""Per-step measurement helpers: socket drops, core times, percentiles, the Step record and its verdict.

Part of the load tool (``python -m bench.load``; bench/README.md).
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field


def udp_drops(ports: set[int]) -> int:
    """Kernel receive-buffer drops summed over UDP sockets bound to ``ports``."""
    total = 0
    try:
        with open("/proc/net/udp") as f:
            next(f)
            for line in f:
                parts = line.split()
                port = int(parts[1].rsplit(":", 1)[1], 16)
                if port in ports:
                    total += int(parts[-1])
    except (OSError, ValueError, IndexError):
        pass
    return total


def core_times(cpu: int | None) -> tuple[float, float, float, float]:
    """(busy, softirq, steal, total) jiffies of one CPU from /proc/stat (zeros when unknown)."""
    if cpu is None:
        return 0.0, 0.0, 0.0, 0.0
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith(f"cpu{cpu} "):
                    v = [int(x) for x in line.split()[1:]]
                    idle = v[3] + v[4]
                    total = sum(v[:8])
                    return float(total - idle), float(v[6]), float(v[7]), float(total)
    except (OSError, ValueError, IndexError):
        pass
    return 0.0, 0.0, 0.0, 0.0


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def pct(values: list[float] | array, q: float) -> float:
    if not len(values):
        return -1.0
    import numpy as np

    return float(np.percentile(np.asarray(values), q))


@dataclass
class Step:
    viewers: int
    seconds: float
    pps_in: float
    video_kbps_in: float
    pps_out: float
    loss_pct: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    sfu_cpu_pct: float
    sfu_core_busy_pct: float
    sfu_core_softirq_pct: float
    sfu_core_steal_pct: float
    sfu_core_other_pct: float
    tool_core_other_pct: float
    cpu_us_per_packet_out: float
    rss_mb: float
    tool_cpu_pct: float
    tool_drop_pct: float
    sfu_in_drops: int
    not_started: int
    ttff_ms_probe: list[float] = field(default_factory=list)
    ttff_phases_probe: list[dict[str, float]] = field(default_factory=list)
    ttff_ms_p50_all: float = -1.0
    refined: bool = False  # measured after removing viewers (RSS then still holds the larger N's peak)
    verdict: str = ""


def judge(s: Step, max_loss: float, max_p99: float, tool_limit: float) -> str:
    failed = s.loss_pct > max_loss or s.p99_ms > max_p99 or s.not_started > 0
    tool_busy = s.tool_cpu_pct >= tool_limit
    tool_lossy = s.tool_drop_pct > max(0.2, 0.5 * s.loss_pct)
    if not failed:
        return "tool_saturated" if tool_busy else "ok"
    if tool_busy or (s.loss_pct > max_loss and tool_lossy and s.p99_ms <= max_p99):
        return "tool_limit"
    return "sfu_limit"
