"""The C fan-out's batched send (sendmmsg) for copies on one shared UDP socket, over real SRTP and UDP.

With ``media.rtc_udp_port`` every viewer of a worker sends from one socket, and
``_fastpath.fanout`` hands consecutive copies on one fd to the kernel in batches
(``FANOUT_BATCH``) with one sendmmsg(2). What that must not change: the bytes each
viewer gets, and the per-copy accounting (a copy the kernel refuses is counted on its
own target, the others are still sent).
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Iterator

import pytest

from jasmin_sfu.media import aiortc_adapter as adapter
from jasmin_sfu.media import fastpath
from tests.realparts import require_fastpath
from tests.support import srtp_pair


@pytest.fixture(autouse=True)
def c_extension_built() -> None:
    require_fastpath()


class Viewers:
    """``n`` viewers (an SRTP session and a receiving socket each) sent to from one shared
    socket (``shared=True``) or from a socket each."""

    def __init__(self, n: int, shared: bool) -> None:
        fp = fastpath.fastpath_ext
        self.sockets: list[socket.socket] = []
        self.inboxes: list[socket.socket] = []
        self.rx = []
        self.targets = []
        self.lanes = []
        shared_out = self._out() if shared else None
        for i in range(n):
            tx, rx = srtp_pair()
            out = shared_out if shared_out is not None else self._out()
            inbox = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            inbox.bind(("127.0.0.1", 0))
            inbox.settimeout(2)
            inbox.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.inboxes.append(inbox)
            self.rx.append(rx)
            target = fp.Target(
                adapter.srtp_protect_address(),
                adapter.srtp_session_address(tx),
                tx,
                out.fileno(),
                "127.0.0.1",
                inbox.getsockname()[1],
            )
            lane = fp.Lane(0x10000 + i, 96)
            lane.seq_off = i
            lane.ts_off = 1000 * i
            lane.target = target
            self.targets.append(target)
            self.lanes.append(lane)

    def _out(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        self.sockets.append(s)
        return s

    def received(self, i: int, count: int) -> list[bytes]:
        return [self.inboxes[i].recv(4096) for _ in range(count)]

    def close(self) -> None:
        for s in self.sockets + self.inboxes:
            s.close()


@pytest.fixture
def made() -> Iterator[list[Viewers]]:
    out: list[Viewers] = []
    yield out
    for v in out:
        v.close()


def tails(k: int) -> list[tuple[int, bytes]]:
    body = struct.pack("!I", k) + bytes(range(200)) * 5
    return [(0x80, body)]


def test_copies_batched_on_one_socket_are_byte_identical_to_copies_sent_per_socket(made: list[Viewers]) -> None:
    """Protects the batched send: every viewer on the shared socket gets, datagram for datagram,
    the bytes (SRTP-protected, so header, payload and auth tag) the per-socket sendto path sends,
    across batch boundaries (150 viewers: batches of 64, 64, 22), and the batches really went
    through sendmmsg."""
    fp = fastpath.fastpath_ext
    n, packets = 150, 3
    per_socket, shared = Viewers(n, shared=False), Viewers(n, shared=True)
    made += [per_socket, shared]
    # each target sends through a dup of its own (distinct numbers), so compare the sockets
    assert len({t.fd for t in shared.targets}) == n
    assert len({os.fstat(t.fd).st_ino for t in shared.targets}) == 1
    assert len({os.fstat(t.fd).st_ino for t in per_socket.targets}) == n
    calls0, datagrams0 = fp.batch_stats()
    for k in range(packets):
        assert fp.fanout(tuple(per_socket.lanes), tails(k), 0x60, 100 + k, 5000 + 3000 * k)[0] == n
    calls1, datagrams1 = fp.batch_stats()
    assert (calls1, datagrams1) == (calls0, datagrams0), "copies on sockets of their own must go by sendto"
    for k in range(packets):
        sent, sent_bytes, failed = fp.fanout(tuple(shared.lanes), tails(k), 0x60, 100 + k, 5000 + 3000 * k)
        assert (sent, failed) == (n, 0)
        assert sent_bytes == n * (12 + len(tails(k)[0][1]))
    calls2, datagrams2 = fp.batch_stats()
    assert datagrams2 - datagrams1 == n * packets
    assert calls2 - calls1 == packets * -(-n // fp.FANOUT_BATCH)
    for i in range(n):
        a, b = per_socket.received(i, packets), shared.received(i, packets)
        assert a == b, f"viewer {i}: batched copies differ from per-socket copies"
        plain = shared.rx[i].unprotect(b[0])
        assert struct.unpack("!HI", plain[2:8]) == (100 + i, 5000 + 1000 * i)
        assert struct.unpack("!I", plain[8:12])[0] == 0x10000 + i
    assert [t.sent for t in shared.targets] == [packets] * n
    assert [lane.packets for lane in shared.lanes] == [packets] * n


def test_a_copy_the_kernel_refuses_is_counted_on_its_target_and_the_rest_of_the_batch_is_sent(
    made: list[Viewers],
) -> None:
    """Protects per-copy accounting inside a batch: one viewer whose address the socket cannot
    send to (an IPv6 address on the IPv4 socket) fails alone, counted on its target and in the
    fan-out's ``failed``; the viewers before and after it in the same batch get their packet."""
    fp = fastpath.fastpath_ext
    v = Viewers(10, shared=True)
    made.append(v)
    bad = 4
    tx, _ = srtp_pair()
    v.targets[bad] = fp.Target(
        adapter.srtp_protect_address(), adapter.srtp_session_address(tx), tx, v.sockets[0].fileno(), "::1", 9
    )
    v.lanes[bad].target = v.targets[bad]
    sent, _, failed = fp.fanout(tuple(v.lanes), tails(0), 0x60, 1, 1)
    assert (sent, failed) == (9, 1)
    assert (v.targets[bad].sent, v.targets[bad].send_errors) == (0, 1)
    for i in range(10):
        if i == bad:
            continue
        assert v.targets[i].sent == 1 and v.targets[i].send_errors == 0
        v.rx[i].unprotect(v.received(i, 1)[0])
    assert v.lanes[bad].packets == 0
