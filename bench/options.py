"""The bench tools' settings: the load tool's (``python -m bench.load``; bench/README.md) and the
command-line options the scenarios share.

Their own module so that ``bench.report`` reads them without importing ``bench.load``,
which imports the report: the imports run one way.
"""

from __future__ import annotations

import argparse
import os
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


# The command-line options the bench tools declare alike (``bench.joinstorm``, ``bench.longtail``,
# ``bench.memory``; the parser itself for ``bench.load`` too). Each helper adds its options in the
# order the tools list them in ``--help``, and under the names their JSON records carry in ``options``.


def tool_parser(prog: str, description: str | None, *, raw: bool = True) -> argparse.ArgumentParser:
    """A bench tool's parser: ``raw`` keeps the description's own line breaks (a module docstring)."""
    if raw:
        return argparse.ArgumentParser(
            prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
        )
    return argparse.ArgumentParser(prog=prog, description=description)


def target_list(text: str) -> list[str]:
    """``"jasmin,janus"`` -> ``["jasmin", "janus"]`` (the scenarios check the names)."""
    return [t for t in text.split(",") if t]


def scenario_parser(prog: str, description: str | None, *, raw: bool = True) -> argparse.ArgumentParser:
    """A scenario's parser with its first option, ``--targets``."""
    ap = tool_parser(prog, description, raw=raw)
    ap.add_argument(
        "--targets",
        type=target_list,
        default=["jasmin"],
        help="jasmin, janus (Janus runs in its own network namespace, as in bench.load)",
    )
    return ap


def add_disturbance(ap: argparse.ArgumentParser, what: str, again: str) -> None:
    """``--max-other`` and ``--reruns``: when ``what`` (a storm, a window) counts as disturbed by other
    work on the machine, and how many times to ``again`` (run / measure) it then."""
    ap.add_argument(
        "--max-other",
        type=float,
        default=15.0,
        help=f"other work on the machine (percent of one core) above which {what} is disturbed",
    )
    noun = what.split()[-1]
    ap.add_argument("--reruns", type=int, default=1, help=f"{again} a disturbed {noun} again this many times")


def add_pinning(ap: argparse.ArgumentParser, *, tool: bool = True) -> None:
    """``--cpu`` (the SFU's core) and, with ``tool``, ``--tool-cpu`` (this tool's); -1: not pinned."""
    several = (os.cpu_count() or 1) > 1
    ap.add_argument("--cpu", type=int, default=0 if several else None, help="core to pin the SFU to (-1: none)")
    if tool:
        ap.add_argument(
            "--tool-cpu", type=int, default=1 if several else None, help="core to pin this tool to (-1: none)"
        )


def add_record(ap: argparse.ArgumentParser, *, png: bool = True) -> None:
    """``--note`` and ``--json`` (with ``png``, a PNG is drawn next to the JSON)."""
    ap.add_argument("--note", default="", help="recorded in the JSON (e.g. what else loaded the machine)")
    ap.add_argument("--json", default="", help="write the record here" + (" (and a PNG next to it)" if png else ""))


def add_run_arguments(ap: argparse.ArgumentParser) -> None:
    """The options ``bench.longtail`` and ``bench.joinstorm`` end with alike: the viewers' RTCP and
    latency sampling, pinning, scheduling, and where the record goes."""
    ap.add_argument("--rtcp-every", type=float, default=1.0, help="viewers' RR + REMB interval, seconds (0: none)")
    ap.add_argument("--sample-every", type=int, default=4, help="time 1 packet in K for latency")
    add_pinning(ap)
    ap.add_argument(
        "--sched",
        choices=("none", "rr", "nice"),
        default="none",
        help="scheduling of this tool and the SFUs (inherited); issue 16's method: none (normal priority)",
    )
    add_record(ap)
