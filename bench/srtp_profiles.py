"""CPU of one SRTP protect per DTLS-SRTP profile, in the C fast path's terms.

    python -m bench.srtp_profiles --cpu 0
    python -m bench.srtp_profiles --repeat 3 --json bench/results/2026-12-05-srtp-profiles.json

The C fan-out (jasmin_sfu/media/_fastpath.c) protects every viewer copy with
libsrtp's ``srtp_protect`` on that viewer's own tx session; the session's
profile is whatever DTLS-SRTP negotiated (docs/media.md, "SRTP profile"). Per
profile (``aead_aes_256_gcm``, ``aead_aes_128_gcm``, ``aes128_cm_sha1_80``)
and packet size (1150-byte video, 100-byte audio, the load tool's sizes) this
times:

* ``c``: the very call the C fan-out makes, ``srtp_protect(srtp_t, buf, &len)``
  through the function pointer ``aiortc_adapter.srtp_protect_address()``
  gives, on the ``srtp_t`` of a pylibsrtp Session, in a C loop (compiled
  with ``cc`` on first use into a temporary directory, called once per
  measurement through ctypes): each call protects a fresh copy of the plain
  packet with the next sequence number, as the fan-out does; the figure is
  that loop's thread CPU time per call minus the same loop's without the
  protect (the copy), so it is libsrtp's work alone;
* ``python``: pylibsrtp's ``Session.protect`` (the Python fallback path).

With ``--fanout N`` it also runs bench.hotpath's C fan-out (``--send c``,
rewrite + protect + sendto on real sockets to N consumers) under each profile:
the per-copy figure the profile's share is taken of.

Every row gives the ratio to ``aead_aes_256_gcm``, the profile the node
negotiated with aiortc and Chromium viewers before ``media.srtp_profiles``.
The machine is shared: each configuration runs ``--repeat`` times
interleaved, the best (lowest) time is kept and the spread printed, with the
load average.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from pylibsrtp import Policy, Session

from jasmin_codecs.rtp import build_rtp

# name -> (libsrtp profile, master key + salt length)
PROFILES: dict[str, tuple[int, int]] = {
    "aead_aes_256_gcm": (Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 32 + 12),
    "aead_aes_128_gcm": (Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16 + 12),
    "aes128_cm_sha1_80": (Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16 + 14),
}
BASELINE = "aead_aes_256_gcm"
SIZES = {"video": 1150, "audio": 100}  # RTP payload bytes, as the load tool sends (bench/publisher.py)


def session(profile: str) -> Session:
    """A tx session of ``profile``, set up as aiortc sets up its own (RTCDtlsTransport._setup_srtp)."""
    libsrtp_profile, key_len = PROFILES[profile]
    policy = Policy(key=bytes(range(key_len)), ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=libsrtp_profile)
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return Session(policy)


def packet(payload: int, seq: int = 1000) -> bytes:
    return build_rtp(
        marker=False, payload_type=96, sequence=seq, timestamp=5000, ssrc=0x30000001, payload=b"\xa5" * payload
    )


_LOOP_C = r"""
#include <stdint.h>
#include <string.h>
#include <time.h>
typedef int (*protect_fn)(void *ctx, void *rtp_hdr, int *len_octets);
static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}
/* ns per call of: copy the plain packet, set its sequence number[, protect it]. */
double protect_loop(uintptr_t fn, uintptr_t srtp, const unsigned char *plain, int n, long calls, int protect) {
    static unsigned char buf[1500 + 16 + 128];
    protect_fn f = (protect_fn)fn;
    int len, errors = 0;
    double t0 = now_ns();
    for (long i = 0; i < calls; i++) {
        memcpy(buf, plain, (size_t)n);
        buf[2] = (unsigned char)(i >> 8);
        buf[3] = (unsigned char)i;
        len = n;
        if (protect && f((void *)srtp, buf, &len) != 0)
            errors++;
        __asm__ volatile("" : : "r"(buf) : "memory"); /* the copy is not optimised away */
    }
    double t = (now_ns() - t0) / (double)calls;
    return errors ? -1.0 : t;
}
"""
_loop_lib: Any = None


def _protect_loop() -> Any:
    """The C timing loop (compiled once per process)."""
    global _loop_lib
    if _loop_lib is None:
        tmp = tempfile.mkdtemp(prefix="srtp-profiles-")
        src, lib = os.path.join(tmp, "loop.c"), os.path.join(tmp, "loop.so")
        with open(src, "w") as f:
            f.write(_LOOP_C)
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", lib, src], check=True)
        fn = ctypes.CDLL(lib).protect_loop
        fn.restype = ctypes.c_double
        fn.argtypes = [
            ctypes.c_size_t,
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_long,
            ctypes.c_int,
        ]
        _loop_lib = fn
    return _loop_lib


def time_c(profile: str, payload: int, calls: int) -> float:
    """ns of libsrtp's work per srtp_protect, called from C as the fast path calls it."""
    from jasmin_sfu.media import aiortc_adapter as adapter

    sess = session(profile)
    loop = _protect_loop()
    fn, srtp = adapter.srtp_protect_address(), adapter.srtp_session_address(sess)
    plain = packet(payload)
    with_protect = loop(fn, srtp, plain, len(plain), calls, 1)
    if with_protect < 0:
        raise SystemExit(f"srtp_protect failed under {profile}")
    return float(with_protect - loop(fn, srtp, plain, len(plain), calls, 0))


def time_python(profile: str, payload: int, calls: int) -> float:
    """ns per pylibsrtp Session.protect (the Python fallback's call)."""
    protect = session(profile).protect
    plain = packet(payload)
    gc.collect()
    gc.disable()
    try:
        t0 = time.process_time_ns()
        for _ in range(calls):
            protect(plain)
        return (time.process_time_ns() - t0) / calls
    finally:
        gc.enable()


def time_fanout(profile: str, consumers: int, packets: int) -> float:
    """CPU us per copy of bench.hotpath's C fan-out (--send c) with ``profile`` sessions."""
    from bench import hotpath

    row = hotpath.run(consumers, packets + 200, "c", srtp_profile=profile)
    return float(row["cpu_us_per_copy"])


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (path, kind, profile), ``args.repeat`` times interleaved; one row each."""
    configs: list[tuple[str, str, str]] = []
    for path in args.paths:
        kinds = ["video"] if path == "fanout" else list(SIZES)
        configs += [(path, kind, profile) for kind in kinds for profile in PROFILES]
    samples: dict[tuple[str, str, str], list[float]] = {c: [] for c in configs}
    for _ in range(args.repeat):
        for path, kind, profile in configs:
            if path == "c":
                ns = time_c(profile, SIZES[kind], args.calls)
            elif path == "python":
                ns = time_python(profile, SIZES[kind], args.calls)
            else:
                ns = 1000 * time_fanout(profile, args.fanout, args.fanout_packets)
            samples[(path, kind, profile)].append(ns)
    rows = []
    for path, kind, profile in configs:
        got = samples[(path, kind, profile)]
        best = min(got)
        base = min(samples[(path, kind, BASELINE)])
        rows.append(
            {
                "path": path if path != "fanout" else f"fanout x{args.fanout}",
                "packet": f"{kind} {SIZES[kind]} B",
                "profile": profile,
                "ns": round(best),
                "per": "copy" if path == "fanout" else "protect",
                "spread_pct": round(100 * (max(got) - best) / best, 1),
                "ratio_to_256_gcm": round(best / base, 3),
                "saved_ns_vs_256_gcm": round(base - best),
            }
        )
    return rows


COLUMNS = ["path", "packet", "profile", "ns", "per", "spread_pct", "ratio_to_256_gcm", "saved_ns_vs_256_gcm"]


def print_table(rows: list[dict[str, Any]]) -> None:
    from bench import hotpath

    hotpath.print_table(rows, COLUMNS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.srtp_profiles", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cpu", type=int, default=-1, help="pin to this CPU (sched_setaffinity); -1: no pinning")
    ap.add_argument("--calls", type=int, default=1_000_000, help="protect calls per configuration and repeat")
    ap.add_argument("--repeat", type=int, default=3, help="runs of every configuration, interleaved; the best is kept")
    ap.add_argument("--paths", default="c,python", help="comma-separated: c, python, fanout")
    ap.add_argument("--fanout", type=int, default=50, help="consumers of the fanout path")
    ap.add_argument("--fanout-packets", type=int, default=2000, help="packets in of the fanout path")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    load_before = os.getloadavg()
    rows = measure(args)
    load_after = os.getloadavg()
    print_table(rows)
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min); {os.cpu_count()} CPUs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "tool": "bench.srtp_profiles",
                    "python": sys.version.split()[0],
                    "cpu_pinned": args.cpu,
                    "calls": args.calls,
                    "repeat": args.repeat,
                    "load_average_1min": [round(load_before[0], 2), round(load_after[0], 2)],
                    "cpus": os.cpu_count(),
                    "rows": rows,
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
