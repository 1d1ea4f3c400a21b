"""Time to first frame: a WHEP viewer against a websocket viewer of the same show.

    .venv/bin/python -m bench.whep_ttff [--probes 20] [--json out.json]

Starts ``python -m jasmin_sfu serve`` on 127.0.0.1 (accounts off, legacy
token-less joins trusted, billing off), publishes an aiortc test pattern (VP8)
and tone from a websocket performer, then alternates probe viewers, one at a
time: a websocket viewer (``join`` + ``subscribe`` + ``answer``, bench/peers.py)
and a WHEP viewer (one ``POST /whep/{show}``, bench/whip_peers.py). TTFF is the
time from the probe's first request to its first decoded video frame, on the
tool's monotonic clock; the node runs in its own process. Both kinds meet the
same node, publisher and machine load, alternately, so the difference is the
protocol's: one HTTP round trip against three websocket requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any, Awaitable, Callable

from bench.daemon_process import start_daemon
from bench.peers import PatternTrack, ToneTrack, publish, subscribe, wait_for
from bench.whip_peers import whep_play

SHOW = "ttff"


async def probe(start: Callable[[], Awaitable[Any]]) -> float:
    """ms from the first request to the first decoded video frame."""
    t0 = time.monotonic()
    peer = await start()
    ok = await wait_for(lambda: peer.frames.get("video", 0) >= 1, 20, interval=0.002)
    ms = (time.monotonic() - t0) * 1000
    await peer.close()
    if not ok:
        raise RuntimeError("a probe decoded no frame in 20 s")
    return ms


def summary(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "n": len(xs),
        "p50": round(statistics.median(xs), 1),
        "p95": round(xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))], 1),
        "min": round(xs[0], 1),
        "max": round(xs[-1], 1),
    }


async def run(probes: int) -> dict[str, Any]:
    node = await asyncio.to_thread(start_daemon)
    ws, http = node.url, node.http
    try:
        pub = await publish(ws, SHOW, tracks=[PatternTrack(), ToneTrack()])
        warm = await subscribe(ws, SHOW)  # the keyframe cache is filled before the first probe
        await wait_for(lambda: warm.frames.get("video", 0) >= 30, 20)
        out: dict[str, list[float]] = {"websocket": [], "whep": []}
        for i in range(probes * 2):
            if i % 2 == 0:
                out["websocket"].append(await probe(lambda: subscribe(ws, SHOW)))
            else:
                out["whep"].append(await probe(lambda: whep_play(http, SHOW, count=False)))
            await asyncio.sleep(0.3)
        await warm.close()
        await pub.close()
        return {
            "probes": {k: [round(x, 1) for x in v] for k, v in out.items()},
            "ttff_ms": {k: summary(v) for k, v in out.items()},
        }
    finally:
        await asyncio.to_thread(node.stop, 10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--probes", type=int, default=20, help="probes of each kind, alternated")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args()
    res = asyncio.run(run(args.probes))
    for kind, s in res["ttff_ms"].items():
        print(
            f"{kind:10} TTFF ms: p50 {s['p50']:7.1f}  p95 {s['p95']:7.1f}  min {s['min']:7.1f}  "
            f"max {s['max']:7.1f}  (n={s['n']})"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
