"""The relay's CPU per packet against a viewer's copy, in one run (issue 15).

    python -m bench.relay                        # 20000 packets, every figure below
    python -m bench.relay --packets 50000 --json out.json

Per packet of one 1.5 Mbit/s VP8-shaped stream (bench.hotpath's packets):

* ``copy_python_us``: the origin forwarding it to one viewer on the Python
  path (``Producer.on_rtp`` + ``Consumer.forward`` + SRTP protect + ``sendto``),
  ``copy_c_us`` the same through the C fan-out: what one more viewer on the
  origin costs;
* ``relay_out_us``: the origin feeding it to an edge instead
  (``Producer.on_rtp`` + the relay: protect + ``sendto`` on the pipe's socket);
* ``relay_in_us``: the edge taking it (the pipe's address check + SRTP
  unprotect + the replica's ``on_rtp`` ingest, no viewer);
* ``relay_in_floor_us``: the same while the replica is new (each packet
  checked against the ``next_seq`` it was created with; timed over at most
  7800 packets, as the check ends 8192 packets past it);
* the ratios ``relay_out_us / copy_python_us`` and ``relay_in_us /
  copy_python_us``, which carry across machines; the microseconds do not.

CPU time is the process's (``time.process_time``), pinned with ``--cpu``.
Everything runs on 127.0.0.1; the datagrams sent are never read (the kernel
drops what overflows its buffer, after the send was paid for).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import time
from typing import Any, Callable

from pylibsrtp import Policy, Session

from bench.hotpath import add_consumers, make_producer, packets
from jasmin_sfu.media.pipe_transport import PipeTransport, describe
from jasmin_sfu.media.settings import MediaSettings
from jasmin_sfu.media.stats import MediaStats


class _RouterStub:
    """What ``PipeTransport.add_replica`` needs of a router: an id, a keyframe requester and adopt."""

    id = "bench"
    closed = False

    def keyframe_requester(self, producer: Any) -> Any:
        from jasmin_sfu.media.keyframe_requester import KeyframeRequester

        return KeyframeRequester(0.3, time.monotonic, producer.send_pli, lambda delay, fn: None)

    def adopt(self, producer: Any) -> None:
        pass

    def on_transport_producer_closed(self, transport: Any, producer: Any) -> None:
        pass


def _timed(fn: Callable[[bytes], None], pkts: list[bytes]) -> float:
    """Process CPU microseconds per packet of ``fn`` over ``pkts``."""
    gc.collect()
    gc.disable()
    try:
        c0 = time.process_time()
        for pkt in pkts:
            fn(pkt)
        return (time.process_time() - c0) / len(pkts) * 1e6
    finally:
        gc.enable()


async def measure(count: int) -> dict[str, Any]:
    pkts = packets(count + 200)
    warm, body = pkts[:200], pkts[200:]
    drain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    drain.bind(("127.0.0.1", 0))
    out: dict[str, Any] = {"packets": len(body)}
    try:
        for mode in ("python", "c"):
            stats = MediaStats()
            p = make_producer(stats)
            sinks = add_consumers(p, stats, 1, mode, drain.getsockname())
            for pkt in warm:
                p.on_rtp(pkt, 0)
            out[f"copy_{mode}_us"] = _timed(lambda b, f=p.on_rtp: f(b, 0), body)
            for s in sinks:
                s.close()

        settings = MediaSettings()
        stats = MediaStats()
        origin = PipeTransport(peer_node="edge", role="origin", settings=settings, stats=stats, clock=time.monotonic)
        edge = PipeTransport(peer_node="origin", role="edge", settings=settings, stats=stats, clock=time.monotonic)
        oh, op = await origin.bind("127.0.0.1")
        eh, ep = await edge.bind("127.0.0.1")
        origin.connect(eh, ep, edge.local_key)
        edge.connect(oh, op, origin.local_key)
        edges: list[PipeTransport] = []
        try:
            p = make_producer(stats)
            desc = describe(p)  # before any packet: the steady state, no floor
            origin.offer(p)
            origin._want({p.id})  # as the edge's JWNT would
            for pkt in warm:
                p.on_rtp(pkt, 0)
            out["relay_out_us"] = _timed(lambda b, f=p.on_rtp: f(b, 0), body)

            # The origin's protection of the same packets, made apart (its own SRTP state).
            tx = Session(Policy(key=origin.local_key, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
            wire = [tx.protect(b) for b in pkts]
            addr = (oh, op)
            # A new replica's floor at the first packet: every packet passes the check.
            first = dict(
                desc, layers=[dict(lay, next_seq=int.from_bytes(pkts[0][2:4], "big")) for lay in desc["layers"]]
            )
            for key, d in (("relay_in", desc), ("relay_in_floor", first)):
                edge.close()
                edge = PipeTransport(
                    peer_node="origin", role="edge", settings=settings, stats=stats, clock=time.monotonic
                )
                edges.append(edge)
                await edge.bind("127.0.0.1")
                edge.connect(oh, op, origin.local_key)
                replica = edge.add_replica(_RouterStub(), d)  # type: ignore[arg-type]
                assert replica.ssrc is not None
                on_datagram = edge._on_datagram
                for w in wire[:200]:
                    on_datagram(w, addr)
                # The floor is forgotten 8192 packets past it: time the packets it checks.
                timed = wire[200:] if key == "relay_in" else wire[200:8000]
                out[f"{key}_us"] = _timed(lambda w, f=on_datagram: f(w, addr), timed)
                out[f"{key}_replica_packets"] = replica.packets
        finally:
            origin.close()
            edge.close()
            for e in edges:
                e.close()
    finally:
        drain.close()
    base = out["copy_python_us"]
    out["relay_out_vs_copy_python"] = out["relay_out_us"] / base
    out["relay_in_vs_copy_python"] = out["relay_in_us"] / base
    out["relay_in_floor_vs_copy_python"] = out["relay_in_floor_us"] / base
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=20000)
    ap.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    ap.add_argument("--json", default=None, help="write the result here")
    args = ap.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    result = asyncio.run(measure(args.packets))
    for k, v in result.items():
        print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
