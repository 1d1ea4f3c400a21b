"""The C fan-out's send target owns its socket: a closed viewer socket's fd number, reused by
the kernel for a TCP connection, never receives SRTP.

aioice closes a pair's UDP socket (consent expired, ICE closed) before aiortc's DTLS transport
reports closed and :class:`SrtpSink` closes the C target: at least one loop turn later. The
kernel hands the freed fd number to the next ``accept()``; a target that kept only the number
then ``sendto()``-ed SRTP into that TCP stream (the address is ignored on a connected stream),
and a websocket handshake read RTP bytes. Real parts: an aioice ``StunProtocol`` on a real
asyncio datagram transport, closed the way aioice closes it, a real TCP connection, libsrtp.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Iterator

import aioice.ice
import pytest
from aioice.candidate import Candidate

from jasmin_sfu.media import aiortc_adapter as adapter
from jasmin_sfu.media import fastpath
from tests.realparts import require_fastpath
from tests.support import VP8_CONT, VP8_KEY, CSink, make_consumer, make_producer, pkt


@pytest.fixture(autouse=True)
def c_extension_built() -> None:
    require_fastpath()


@pytest.fixture
def closing() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    yield made
    for s in made:
        s.close()


def tcp_pending(closing: list[socket.socket]) -> tuple[socket.socket, socket.socket]:
    """A listener with one connection waiting to be accepted, and its client end (made before
    the viewer socket closes, so only the accept() takes a new fd number)."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    client.setblocking(False)
    closing += [listener, client]
    return listener, client


def accept_onto(closing: list[socket.socket], listener: socket.socket, fd: int) -> socket.socket:
    """Accept the waiting connection on fd number ``fd``: accept() takes the lowest free number,
    which is the one just freed; if something lower was free, dup2 puts it there all the same."""
    accepted, _ = listener.accept()
    closing.append(accepted)
    if accepted.fileno() != fd:
        with pytest.raises(OSError):
            os.fstat(fd)  # free: dup2 closes nothing of anyone's
        os.dup2(accepted.fileno(), fd)
        closing.append(socket.socket(fileno=fd))
    assert os.fstat(fd).st_ino == os.fstat(accepted.fileno()).st_ino
    return accepted


def stream_bytes(client: socket.socket) -> bytes:
    """What arrived on the TCP stream so far (loopback delivers within the send call)."""
    try:
        return client.recv(65536)
    except BlockingIOError:
        return b""


async def test_a_viewer_socket_closed_under_the_c_target_never_sends_into_a_tcp_socket_on_its_fd_number(
    closing: list[socket.socket],
) -> None:
    """Protects the node's TCP connections (websockets, the API) from SRTP: the viewer's UDP
    socket is closed by aioice while the C target still lists it, a TCP connection is accepted
    on the freed fd number, and the producer forwards (fan-out and single send, as for a NACK
    reply): the TCP peer gets nothing; the copies still leave on the viewer's UDP socket, which
    the target keeps open until it is closed itself, and then the port is free again."""
    loop = asyncio.get_running_loop()
    conn = aioice.ice.Connection(ice_controlling=True)
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: aioice.ice.StunProtocol(conn), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    viewer_fd = transport.get_extra_info("socket").fileno()
    cs = CSink()  # its SRTP pair and its inbox stand for the viewer
    remote = Candidate("1", 1, "udp", 1, "127.0.0.1", cs.inbox.getsockname()[1], "host")
    pair = aioice.ice.CandidatePair(protocol, remote)
    cs.target.close()
    cs.target = adapter.fast_target(cs.tx, pair)
    assert cs.target is not None and cs.target.open
    p, stats = make_producer()
    c, _ = make_consumer(p, stats, sink=cs)  # type: ignore[arg-type]
    p.on_rtp(pkt(1, 0, VP8_KEY), 0)
    assert c.fast and len(cs.received(1)) == 1

    listener, client = tcp_pending(closing)
    await protocol.close()  # what aioice's Connection.close does (consent expired, ICE closed)
    assert transport.get_extra_info("socket").fileno() == -1
    accept_onto(closing, listener, viewer_fd)

    p.on_rtp(pkt(2, 0, VP8_CONT), 0)
    assert cs.send(pkt(3, 0, VP8_CONT))
    assert stream_bytes(client) == b"", "SRTP written into a TCP connection on a reused fd number"
    assert len(cs.received(2)) == 2 and c.packets == 2
    assert stats.drops.get("send_failed", 0) == 0

    cs.target.close()  # SrtpSink does this when DTLS reports closed/failed
    assert not cs.target.open and cs.target.fd == -1
    p.on_rtp(pkt(4, 0, VP8_CONT), 0)
    assert stats.drops["send_failed"] == 1
    assert stream_bytes(client) == b"" and cs.nothing_received()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))  # the target let go of the viewer's socket
    cs.close()


def test_a_target_holds_its_own_fd_and_releases_it_on_close_and_when_freed() -> None:
    """Protects the ownership rule itself: a Target sends through a dup of the fd it is given
    (same socket, another number) and closes that dup on close() and when garbage-collected, so
    neither a reused number nor a leaked descriptor is possible."""
    fp = fastpath.fastpath_ext
    cs = CSink()
    try:
        for release in ("close", "free"):
            t = fp.Target(
                adapter.srtp_protect_address(),
                adapter.srtp_session_address(cs.tx),
                cs.tx,
                cs.out.fileno(),
                "127.0.0.1",
                cs.inbox.getsockname()[1],
            )
            own = t.fd
            assert own != cs.out.fileno() and os.fstat(own).st_ino == os.fstat(cs.out.fileno()).st_ino
            if release == "close":
                t.close()
            else:
                del t
            with pytest.raises(OSError):
                os.fstat(own)
    finally:
        cs.close()
