"""Decoding a signaling request's ``data``: ``parse_request`` against ``json.loads`` of its frame.

    python -m bench.signaling_decode            # join, answer (a 3.5 kB SDP), chat.send, ping
    python -m bench.signaling_decode --json out.json

For each hot verb: microseconds per ``jasmin_signaling.messages.parse_request`` call (the
validation a request goes through once its frame is decoded), and the ratio to
``json.loads`` of the same frame's text, timed in the same run (the peer: every request
pays it before parse_request). Best of ``--repeat`` runs of ``--number`` calls each.
"""

from __future__ import annotations

import argparse
import json
import timeit
from typing import Any

from jasmin_signaling.messages import parse_request

SDP = "v=0\r\no=- 3900000000 3900000000 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n" + "".join(
    f"a=candidate:{i} 1 udp 2130706431 127.0.0.1 {5000 + i} typ host\r\na=rtcp-fb:96 nack\r\n"
    "a=fmtp:111 minptime=10;useinbandfec=1\r\n"
    for i in range(30)
)
CASES: dict[str, tuple[str, Any]] = {
    "join": ("join", {"show_id": "alice", "role": "viewer", "token": "jas_" + "A" * 43}),
    "answer": ("answer", {"transport_id": "t-0123456789abcdef", "sdp": SDP}),
    "chat.send": ("chat.send", {"text": "hello there", "emoticons": [":fire:"]}),
    "ping": ("ping", None),
}


def _best(fn: Any, number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def run(number: int, repeat: int) -> dict[str, dict[str, float]]:
    out = {}
    for name, (method, data) in CASES.items():
        text = json.dumps({"type": "request", "id": 1, "method": method, "data": data})
        parse_us = _best(lambda m=method, d=data: parse_request(m, d), number, repeat)
        loads_us = _best(lambda t=text: json.loads(t), number, repeat)
        out[name] = {
            "parse_us": parse_us,
            "json_loads_us": loads_us,
            "ratio": parse_us / loads_us,
            "frame_bytes": float(len(text)),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--number", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    res = run(args.number, args.repeat)
    print(f"{'verb':10s} {'frame B':>8s} {'parse us':>9s} {'loads us':>9s} {'parse/loads':>12s}")
    for name, r in res.items():
        print(f"{name:10s} {r['frame_bytes']:8.0f} {r['parse_us']:9.2f} {r['json_loads_us']:9.2f} {r['ratio']:12.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
