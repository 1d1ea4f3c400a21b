"""Types of the C fan-out (jasmin_sfu/media/_fastpath.c)."""

from typing import Any, Sequence

MAX_PACKET: int
MAX_PROFILES: int
FANOUT_BATCH: int

class Target:
    open: int
    fd: int  # the target's own dup of the socket fd given, -1 after close
    sent: int
    send_errors: int
    eagain: int
    refused: int
    protect_errors: int
    def __init__(self, protect: int, srtp: int, keep: Any, fd: int, host: str, port: int) -> None: ...
    def close(self) -> None: ...

class Lane:
    target: Target | None
    ssrc: int
    payload_type: int
    seq_off: int
    ts_off: int
    profile: int
    vp8: int
    pid_off: int
    tl0_off: int
    packets: int
    octets: int
    def __init__(self, ssrc: int, payload_type: int) -> None: ...

def fanout(
    lanes: tuple[Lane, ...], tails: Sequence[tuple[int, bytes] | tuple[int, bytes, int]], b1: int, seq: int, ts: int
) -> tuple[int, int, int]: ...
def rewrite(lane: Lane, tail: tuple[int, bytes] | tuple[int, bytes, int], b1: int, seq: int, ts: int) -> bytes: ...
def send(target: Target, packet: bytes) -> bool: ...
def batch_stats() -> tuple[int, int]: ...
