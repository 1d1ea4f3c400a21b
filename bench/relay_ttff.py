"""Time to first frame: a viewer on an edge (relayed) against a viewer on the show's origin.

    .venv/bin/python -m bench.relay_ttff [--probes 20] [--redis-url redis://127.0.0.1:6379/0] [--json out.json]

Starts two ``python -m jasmin_sfu serve`` nodes on 127.0.0.1 forming one site
through the given Redis (a key prefix of this run's own, deleted afterwards;
billing and accounts off), publishes an aiortc test pattern and tone on the
origin, keeps one viewer on each node (so the relay is open and flowing and
both keyframe caches are filled, the steady state of a show with an
audience on both nodes), then alternates probe viewers, one at a time: one
joining the origin, one joining the edge (served there through the relay).
TTFF is the time from the probe's ``join`` to its first decoded video frame,
on the tool's monotonic clock. Both kinds meet the same publisher and
machine load, alternately, so the difference is the edge's: a signed HTTP
round trip to the origin at join, and the media's extra hop. A *cold* edge
(its first viewer: the relay opens and waits for a keyframe from the
performer) is not measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from typing import Any

from bench.daemon_process import TOOL_ENV, DaemonProcess, start_daemon
from bench.peers import PatternTrack, ToneTrack, publish, subscribe, wait_for
from bench.whep_ttff import probe, summary

SHOW = "relayttff"


async def start_node(node_id: str, redis_url: str, prefix: str) -> DaemonProcess:
    return await asyncio.to_thread(
        start_daemon,
        {
            **TOOL_ENV,
            "JASMIN_CLUSTER_REDIS_URL": redis_url,
            "JASMIN_CLUSTER_KEY_PREFIX": prefix,
            "JASMIN_CLUSTER_NODE_ID": node_id,
            "JASMIN_CLUSTER_SECRET": "b" * 40,
            "JASMIN_CLUSTER_HEARTBEAT_INTERVAL_S": "0.5",
            "JASMIN_CLUSTER_TTL_S": "3",
        },
    )


async def drop_prefix(redis_url: str, prefix: str) -> None:
    import redis.asyncio as redis

    r = redis.from_url(redis_url)
    try:
        keys = [k async for k in r.scan_iter(f"{prefix}:*")]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


async def run(probes: int, redis_url: str) -> dict[str, Any]:
    prefix = f"jrelayttff{uuid.uuid4().hex[:8]}"
    nodes: list[DaemonProcess] = []
    try:
        nodes.append(await start_node("origin", redis_url, prefix))
        nodes.append(await start_node("edge", redis_url, prefix))
        origin, edge = nodes[0].url, nodes[1].url
        await asyncio.sleep(1.5)  # both nodes registered
        pub = await publish(origin, SHOW, tracks=[PatternTrack(), ToneTrack()])
        warm = [await subscribe(origin, SHOW), await subscribe(edge, SHOW)]
        if warm[1].client.moved_to is not None:
            raise RuntimeError("the edge answered moved: no relay to measure")
        await wait_for(lambda: all(w.frames.get("video", 0) >= 30 for w in warm), 30)
        out: dict[str, list[float]] = {"origin": [], "edge": []}
        for i in range(probes * 2):
            kind = "origin" if i % 2 == 0 else "edge"
            url = origin if kind == "origin" else edge
            out[kind].append(await probe(lambda url=url: subscribe(url, SHOW)))
            await asyncio.sleep(0.3)
        for w in warm:
            await w.close()
        await pub.close()
        res: dict[str, Any] = {
            "probes": {k: [round(x, 1) for x in v] for k, v in out.items()},
            "ttff_ms": {k: summary(v) for k, v in out.items()},
        }
        res["edge_vs_origin_p50"] = round(res["ttff_ms"]["edge"]["p50"] / res["ttff_ms"]["origin"]["p50"], 3)
        return res
    finally:
        await asyncio.gather(*(asyncio.to_thread(n.stop, 10) for n in nodes))
        await drop_prefix(redis_url, prefix)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--probes", type=int, default=20, help="probes of each kind, alternated")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args()
    res = asyncio.run(run(args.probes, args.redis_url))
    for kind, s in res["ttff_ms"].items():
        print(
            f"{kind:8} TTFF ms: p50 {s['p50']:7.1f}  p95 {s['p95']:7.1f}  min {s['min']:7.1f}  "
            f"max {s['max']:7.1f}  (n={s['n']})"
        )
    print(f"edge / origin p50: {res['edge_vs_origin_p50']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
