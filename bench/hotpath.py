"""Hot-path benchmark: packets through ``Producer.on_rtp`` to N consumers.

    python -m bench.hotpath                      # N = 1, 10, 100, 500, no sockets
    python -m bench.hotpath --consumers 1,50 --packets 20000 --json out.json
    python -m bench.hotpath --send python,c      # + SRTP protect and sendto on real sockets
    python -m bench.hotpath --send c,c-shared    # the C fan-out: a socket per viewer vs one shared (sendmmsg)
    python -m bench.hotpath --layers 3           # a 3-layer VP8 simulcast producer, viewers on the top layer
    python -m bench.hotpath --max-temporal 0     # an L1T3 stream, every viewer capped at temporal layer 0

``--layers 3`` makes the producer simulcast: three VP8 streams (payloads of
1000, 500 and 250 bytes, in the ratio of 720p/360p/180p layers) arrive
interleaved, every viewer is on the top one (switched there from the layer
below, so its VP8 picture ids are patched: in C with ``--send c``), and per
copy counts all three streams' ingest: the figure to set against a single-layer producer at
the same N.

``--max-temporal T`` gives the (single-layer) stream VP8 temporal layers
(L1T3: TIDs 0, 2, 1, 2 frame by frame, the T bit in every descriptor) and caps
every viewer at temporal layer T (3: no cap); per copy then counts the copies
actually forwarded, so the figure is the CPU per forwarded packet.

``--send`` adds the whole per-copy path on real UDP sockets to a sink on
127.0.0.1 (one sending socket and one SRTP session per consumer, as in the
daemon): ``python`` = Consumer.forward + pylibsrtp ``protect`` +
``socket.sendto`` (the fallback path), ``c`` = the C fan-out
(jasmin_sfu/media/_fastpath.c: rewrite + libsrtp + sendto in one call),
``c-shared`` = the same C fan-out with every consumer sending from one shared
socket, as a worker does by default (docs/media.md, "One UDP port per worker"; ``c``
is ``media.rtc_socket_per_peer = true``), copies batched into sendmmsg calls of up
to ``FANOUT_BATCH`` (``copies_per_syscall`` in the table).

Uses the real :class:`~jasmin_sfu.media.producer.Producer` and
:class:`~jasmin_sfu.media.consumer.Consumer` (built as in
``tests/media/test_forwarding_unit.py``); each consumer's sink is a fake
whose ``send`` only counts (``ready = True``), so what is timed is exactly
the forwarding core: header parse, keyframe check, packet cache, the
per-profile extension rewrite and the per-consumer header rewrite plus
``bytes`` concatenation. SRTP protect (~1.4-3 us) and ``sendto`` (~4-5 us)
per copy come on top in the daemon; see bench/README.md.

The packets are VP8-shaped like the load tool's (1.5 Mbit/s 720p-like, ~1 KB
payloads, a keyframe every 90 frames) and carry the two header extensions
aiortc negotiates for video (mid, abs-send-time); every consumer leg maps
them to other ids and writes its own mid, as the daemon does.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import socket
import struct
import sys
import time
from typing import Any

from jasmin_codecs.rtp import build_extensions, build_rtp
from jasmin_sfu.media.consumer import Consumer
from jasmin_sfu.media.keyframe_requester import KeyframeRequester
from jasmin_sfu.media.producer import Producer
from jasmin_sfu.media.stats import MediaStats

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


class CountingSink:
    """A consumer sink that only counts."""

    __slots__ = ("ready", "closed", "on_ready", "packets", "bytes")

    def __init__(self) -> None:
        self.ready = True
        self.closed = False
        self.on_ready: list[Any] = []
        self.packets = 0
        self.bytes = 0

    def send(self, pkt: bytes) -> bool:
        self.packets += 1
        self.bytes += len(pkt)
        return True

    def send_rtcp(self, pkt: bytes) -> bool:
        return True


class SocketSink:
    """A consumer sink like the daemon's SrtpSink: its own SRTP session and UDP socket."""

    def __init__(
        self,
        sink_addr: tuple[str, int],
        fast: bool,
        shared: socket.socket | None = None,
        srtp_profile: str = "aes128_cm_sha1_80",
    ) -> None:
        from jasmin_sfu.media import aiortc_adapter as adapter
        from jasmin_sfu.media import fastpath

        from .srtp_profiles import session

        self.session = session(srtp_profile)
        self.own_sock = shared is None
        if shared is None:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.sock.setblocking(False)
        else:
            self.sock = shared
        self.ready = True
        self.closed = False
        self.on_ready: list[Any] = []
        self.packets = 0
        self._protect = self.session.protect
        self._sendto = self.sock.sendto
        self._addr = sink_addr
        self.target: Any = None
        if fast:
            ext = fastpath.fastpath_ext
            if ext is None:
                raise SystemExit(f"the C fast path is unavailable: {fastpath.unavailable_reason}")
            self.target = ext.Target(
                adapter.srtp_protect_address(),
                adapter.srtp_session_address(self.session),
                self.session,
                self.sock.fileno(),
                *sink_addr,
            )

    def send(self, pkt: bytes) -> bool:
        self.packets += 1
        try:
            self._sendto(self._protect(pkt), self._addr)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self.target is not None:
            self.target.close()
        if self.own_sock:
            self.sock.close()


LAYER_SSRCS = (0x11111111, 0x11111112, 0x11111113)
WARM_SIMULCAST = 600  # packets per layer before the timing: past the switch at packet 540
LAYER_PAYLOADS = (250, 500, 1000)
LAYER_SIZES = ((320, 180), (640, 360), (1280, 720))


def make_producer(stats: MediaStats, layers: int = 1) -> Producer:
    clock = time.monotonic
    p = Producer(
        producer_id="bench",
        kind="video",
        mime="video/VP8",
        clock_rate=90000,
        payload_type=96,
        ssrc=0x11111111,
        rtx_ssrc=0x22222222,
        rtx_payload_type=97,
        codec_parameters={},
        extensions={MID: 4, ABS: 2},
        send_rtcp=lambda b: True,
        rtcp_ssrc=0xABCDEF01,
        stats=stats,
        cache_size=1024,
        keyframes=lambda prod: KeyframeRequester(0.3, clock, prod.send_pli, lambda delay, fn: None),
        rids=("q", "h", "f")[:layers] if layers > 1 else (),
    )
    if layers > 1:
        for layer, ssrc in zip(p.all_layers, LAYER_SSRCS):
            layer.ssrc = ssrc  # as the transport binds them from the RIDs
    return p


def add_consumers(
    p: Producer,
    stats: MediaStats,
    n: int,
    send: str = "none",
    sink_addr: tuple[str, int] = ("127.0.0.1", 9),
    srtp_profile: str = "aes128_cm_sha1_80",
) -> list[Any]:
    sinks: list[Any] = []
    shared = None
    if send == "c-shared":
        shared = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        shared.bind(("127.0.0.1", 0))
        shared.setblocking(False)
        shared.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    for i in range(n):
        sink = (
            CountingSink()
            if send == "none"
            else SocketSink(sink_addr, fast=send in ("c", "c-shared"), shared=shared, srtp_profile=srtp_profile)
        )
        c = Consumer(
            consumer_id=f"c{i}",
            producer=p,
            ssrc=0x30000000 + i,
            payload_type=100,
            sink=sink,  # type: ignore[arg-type]
            stats=stats,
            clock=time.monotonic,
        )
        # Viewer leg: mid id 1 carrying the viewer's own mid, abs-send-time id 3.
        c.profile = p.profile_for({4: 1, 2: 3}, {1: b"0"})
        p.add_consumer(c)
        sinks.append(sink)
    return sinks


def packets(
    count: int, payload: int = 1000, ssrc: int = 0x11111111, size: tuple[int, int] = (1280, 720), temporal: bool = False
) -> list[bytes]:
    """VP8-shaped packets: 6 per frame, a keyframe (first packet) every 90 frames;
    ``temporal``: L1T3 TIDs in the descriptor (a keyframe is TID 0)."""
    out: list[bytes] = []
    seq, ts, frame = 1000, 5000, 0
    filler = os.urandom(payload)
    i = 0
    while len(out) < count:
        for k in range(6):
            first = k == 0
            key = first and frame % 90 == 0
            desc = bytes([0x90 if first else 0x80, 0x80, 0x80 | (frame >> 8 & 0x7F), frame & 0xFF])
            if temporal:
                tid = 0 if frame % 90 == 0 else (0, 2, 1, 2)[frame % 4]
                desc = bytes([desc[0], 0xA0, desc[2], desc[3], tid << 6])
            body = (
                (b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", *size) if key else b"\x11\x02\x00") if first else b""
            )
            profile, ext = build_extensions([(4, b"0"), (2, struct.pack("!I", i & 0xFFFFFF)[1:])])
            section = struct.pack("!HH", profile, len(ext) // 4) + ext
            out.append(
                build_rtp(
                    marker=k == 5,
                    payload_type=96,
                    sequence=seq & 0xFFFF,
                    timestamp=ts,
                    ssrc=ssrc,
                    payload=desc + body + filler[: payload - len(desc) - len(body)],
                    ext_section=section,
                )
            )
            seq += 1
            i += 1
        ts += 3000
        frame += 1
    return out[:count]


def run(
    n: int,
    count: int,
    send: str = "none",
    layers: int = 1,
    max_temporal: int | None = None,
    srtp_profile: str = "aes128_cm_sha1_80",
) -> dict[str, Any]:
    stats = MediaStats()
    p = make_producer(stats, layers)
    drain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    drain.bind(("127.0.0.1", 0))  # never read: the kernel drops what overflows, after delivering it
    sinks = add_consumers(p, stats, n, send, drain.getsockname(), srtp_profile)
    on_rtp = p.on_rtp
    batches = _batch_stats()
    copied = 0
    if layers == 1:
        pkts = packets(count, temporal=max_temporal is not None)
        for pkt in pkts[:200]:  # warm up; the first keyframe anchors every consumer
            on_rtp(pkt, 0)
        if max_temporal is not None:
            for c in p.consumers.values():
                c.set_layer_caps(None, max_temporal)
            copied = sum(c.packets for c in p.consumers.values())
        body = pkts[200:]
        top = len(body)
        gc.collect()
        gc.disable()
        try:
            t0, c0, r0 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
            for pkt in body:
                on_rtp(pkt, 0)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            r1 = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            gc.enable()
    else:
        streams = [
            (layer, packets(count, size, ssrc, dims))
            for layer, size, ssrc, dims in zip(p.all_layers, LAYER_PAYLOADS, LAYER_SSRCS, LAYER_SIZES)
        ]
        mixed = [(layer, pkt) for i in range(count) for layer, pkts in streams for pkt in (pkts[i],)]
        # Every viewer starts one layer down and switches to the top one at its
        # second keyframe (frame 90, packet 540): its VP8 ids are then patched.
        consumers = list(p.consumers.values())
        for c in consumers:
            c.set_target_layer(layers - 2)
        for layer, pkt in mixed[: 200 * layers]:
            on_rtp(pkt, 0, layer)
        for c in consumers:
            c.set_target_layer(layers - 1)
        for layer, pkt in mixed[200 * layers : WARM_SIMULCAST * layers]:
            on_rtp(pkt, 0, layer)
        assert all(c.layer is p.all_layers[-1] for c in consumers) and stats.layer_switches >= n
        for c in consumers:
            c._packets = 0  # count the timed copies only
            if c.lane is not None:
                c.lane.packets = 0
        timed = mixed[WARM_SIMULCAST * layers :]
        top = count - WARM_SIMULCAST
        gc.collect()
        gc.disable()
        try:
            t0, c0, r0 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
            for layer, pkt in timed:
                on_rtp(pkt, 0, layer)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            r1 = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            gc.enable()
        body = [pkt for _, pkt in timed]
    batches = tuple(b - a for a, b in zip(batches, _batch_stats()))  # type: ignore[assignment]
    copies = sum(c.packets for c in p.consumers.values())
    copies_timed = top * n
    if max_temporal is not None:
        copies_timed = copies - copied
    assert copies >= copies_timed > 0, (copies, copies_timed)
    assert stats.drops.get("send_failed", 0) == 0, stats.drops
    if send in ("c", "c-shared"):
        assert all(c.fast for c in p.consumers.values())
    per_syscall: Any = "-"
    if send in ("python", "c"):
        per_syscall = 1
    elif send == "c-shared":
        calls, datagrams = batches
        # Copies of one packet to a single viewer go by sendto: one copy per call.
        per_syscall = round(copies / max(1, calls + (copies - datagrams)), 1)
    shared = {s.sock for s in sinks if isinstance(s, SocketSink) and not s.own_sock}
    for s in sinks:
        if isinstance(s, SocketSink):
            s.close()
    for sock in shared:
        sock.close()
    drain.close()
    return {
        "send": send,
        "srtp_profile": srtp_profile if send != "none" else "-",
        "layers": layers,
        "max_temporal": "-" if max_temporal is None else max_temporal,
        "consumers": n,
        "packets_in": len(body),
        "packets_in_per_s": round(len(body) / wall),
        "copies_per_s": round(copies_timed / wall),
        "us_per_packet_in": round(1e6 * wall / len(body), 2),
        "us_per_copy": round(1e6 * wall / copies_timed, 3),
        "cpu_us_per_copy": round(1e6 * cpu / copies_timed, 3),
        # The kernel's part (system time: the UDP send, and on loopback the delivery too).
        "cpu_sys_us_per_copy": round(1e6 * (r1.ru_stime - r0.ru_stime) / copies_timed, 3),
        "copies_per_syscall": per_syscall,
        "viewers_per_core_at_235pps": round(1.0 / (235 * wall / copies_timed)),
    }


def _batch_stats() -> tuple[int, int]:
    """(sendmmsg calls, datagrams they sent) of the C fan-out so far; (0, 0) without it."""
    from jasmin_sfu.media import fastpath

    ext = fastpath.fastpath_ext
    return ext.batch_stats() if ext is not None and hasattr(ext, "batch_stats") else (0, 0)


def print_table(rows: list[dict[str, Any]], cols: list[str] | None = None) -> None:
    """``rows`` as right-aligned columns (``cols``, or every key of the first row), one line a row."""
    cols = cols if cols is not None else list(rows[0].keys())
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(str(r[c]).rjust(w) for c, w in zip(cols, widths)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.hotpath", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--consumers", default="1,10,100,500", help="comma-separated consumer counts")
    ap.add_argument(
        "--packets", type=int, default=0, help="packets per count (default: enough for ~500k copies, at least 2000)"
    )
    ap.add_argument("--cpu", type=int, default=-1, help="pin to this CPU (sched_setaffinity); -1: no pinning")
    ap.add_argument(
        "--send",
        default="none",
        help="comma-separated: none (counting sink), python (pylibsrtp + sendto), c (C fan-out, a socket each),"
        " c-shared (C fan-out, one shared socket: sendmmsg)",
    )
    ap.add_argument(
        "--layers",
        type=int,
        default=1,
        choices=(1, 2, 3),
        help="spatial layers of the producer (simulcast VP8 for 2-3; viewers on the top one)",
    )
    ap.add_argument(
        "--max-temporal",
        type=int,
        default=None,
        choices=(0, 1, 2, 3),
        help="an L1T3 stream, every viewer capped at this temporal layer (3: no cap); single-layer only",
    )
    ap.add_argument(
        "--srtp-profile",
        default="aes128_cm_sha1_80",
        choices=("aes128_cm_sha1_80", "aead_aes_128_gcm", "aead_aes_256_gcm"),
        help="SRTP profile of every consumer's session with --send (the daemon negotiates media.srtp_profiles'"
        " first one the viewer supports; bench.srtp_profiles compares them)",
    )
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    rows = []
    for send in [x.strip() for x in args.send.split(",") if x.strip()]:
        for n in [int(x) for x in args.consumers.split(",") if x.strip()]:
            count = args.packets or max(2000, (500_000 if send == "none" else 100_000) // n)
            warm = 200 if args.layers == 1 else WARM_SIMULCAST
            rows.append(run(n, count + warm, send, args.layers, args.max_temporal, args.srtp_profile))
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tool": "bench.hotpath", "python": sys.version.split()[0], "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
