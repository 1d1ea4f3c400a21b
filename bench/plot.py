"""PNG plot of a bench.load JSON record: viewers against SFU CPU, loss and p99 latency; the figure
every bench tool's PNG is drawn in (``figure``).

python -m bench.plot bench/results/2025-01-01-vs-janus.json   # writes the .png next to it
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

COLORS = {"jasmin": "tab:blue", "janus": "tab:orange"}


@contextlib.contextmanager
def figure(png: str, rows: int, height: float, title: str) -> Iterator[list[Any]]:
    """``rows`` axes one above the other sharing x (8 x ``height`` inches) to draw on; on leaving,
    every axis gets its grid and legend, the figure ``title``, and the PNG is written at ``png``
    (100 dpi). matplotlib is imported here, off the import of the tools, with the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, 1, figsize=(8, height), sharex=True)
    try:
        yield list(axes)
        for ax in axes:
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8, loc="upper left")
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
        fig.savefig(png, dpi=100)
    finally:
        plt.close(fig)


def plot(record: dict[str, Any], png: str) -> None:
    title = "SFU load: " + " vs ".join(record.get("targets", []))
    if record.get("ratio_viewers_per_core"):
        title += f"  (ratio {record['ratio_viewers_per_core']})"
    title += "\n" + record.get("date", "") + "  " + record.get("machine", {}).get("cpu", "")
    with figure(png, 3, 10, title) as axes:
        _draw(record, axes)


def _draw(record: dict[str, Any], axes: list[Any]) -> None:
    ax_cpu, ax_loss, ax_lat = axes
    crit = record.get("criteria", {})
    for name in record.get("targets", []):
        t = record.get(name)
        if not t:
            continue
        steps = sorted((s for s in t["steps"] if "retried" not in s["verdict"]), key=lambda s: s["viewers"])
        x = [s["viewers"] for s in steps]
        c = COLORS.get(name)
        label = f"{name} ({t.get('viewers_per_core')} viewers/core)"
        ax_cpu.plot(x, [s["sfu_cpu_pct"] for s in steps], "o-", color=c, label=f"{name} SFU")
        ax_cpu.plot(
            x, [s["tool_cpu_pct"] for s in steps], "x--", color=c, alpha=0.5, label=f"load tool (during {name})"
        )
        ax_loss.plot(x, [s["loss_pct"] for s in steps], "o-", color=c, label=label)
        ax_lat.plot(x, [max(0.1, s["p99_ms"]) for s in steps], "o-", color=c, label=f"{name} p99")
        ax_lat.plot(x, [max(0.1, s["p50_ms"]) for s in steps], ".:", color=c, alpha=0.6, label=f"{name} p50")
        hn = t.get("highest_clean_n")
        if hn:
            for ax in axes:
                ax.axvline(hn, color=c, alpha=0.25, lw=3)
    ax_cpu.axhline(100, color="grey", lw=0.8)
    ax_cpu.set_ylabel("CPU, % of one core")
    ax_loss.axhline(crit.get("max_loss_pct", 1.0), color="red", lw=0.8, ls="--", label="loss limit")
    ax_loss.set_ylabel("loss, %")
    ax_lat.axhline(crit.get("max_p99_ms", 50.0), color="red", lw=0.8, ls="--", label="p99 limit")
    ax_lat.set_ylabel("added latency, ms")
    ax_lat.set_yscale("log")
    ax_lat.set_ylim(0.1, 1000)
    ax_lat.set_xlabel("viewers (1 publisher: VP8 1.5 Mbit/s + Opus)")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    with open(argv[0]) as f:
        record = json.load(f)
    png = argv[1] if len(argv) > 1 else os.path.splitext(argv[0])[0] + ".png"
    plot(record, png)
    print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
