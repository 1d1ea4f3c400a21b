"""The load tool's settings (``python -m bench.load``; bench/README.md).

Their own module so that ``bench.report`` reads them without importing ``bench.load``,
which imports the report: the imports run one way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.publisher import Workload


@dataclass
class Options:
    steps: list[int]
    seconds: float = 5.0
    settle: float = 2.0
    probes: int = 3
    probe_gap: float = 1.2
    concurrency: int = 16
    max_loss_pct: float = 1.0
    max_p99_ms: float = 50.0
    tool_cpu_limit: float = 90.0
    sfu_cpu: int | None = 0
    tool_cpu: int | None = 1
    stop_on_fail: bool = True
    retries: int = 1
    refine: int = 1
    sample_every: int = 4
    rtcp_every: float = 0.0  # viewers' RR + REMB interval, seconds (0: none, the method of the committed results)
    workload: Workload = field(default_factory=Workload)
