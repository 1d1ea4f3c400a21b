"""Every peer connection of a worker on one UDP port, with aiortc peers on loopback.

The default (``media.rtc_udp_port = 0``): the worker binds its shared socket on the first free
port of ``rtc_min_port..rtc_max_port``; ``rtc_udp_port = N``: on port N; ``rtc_socket_per_peer``:
no shared socket, a socket per peer connection in the range. The daemon gathers one host
candidate on the shared socket for each publish and subscribe; its demultiplexer routes STUN
requests by ufrag and everything else by the remote address a check authenticated, and drops
the rest (counted on /metrics).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket

from typing import Any

import aiohttp
import aioice.stun

from bench.peers import publish, subscribe, wait_for
from jasmin_sfu.media import aiortc_adapter as adapter
from jasmin_sfu.media import fastpath
from tests.conftest import scrape_metrics, start_daemon_process, stop_daemons
from tests.realparts import free_udp_range, require_fastpath


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def candidate_ports(sdp: str) -> set[int]:
    return {int(line.split()[5]) for line in sdp.splitlines() if line.startswith("a=candidate:")}


async def readyz_udp(http: str) -> dict[str, Any]:
    """What the node's /readyz says of its ICE sockets."""
    async with aiohttp.ClientSession() as s, s.get(http + "/readyz") as r:
        assert r.status == 200
        return dict((await r.json())["media_udp"])


def daemon_fds(running) -> set[int]:  # type: ignore[no-untyped-def]
    """The sockets (inode numbers: each target holds a dup of its own) the daemon's C send targets write to."""
    return {
        os.fstat(c.lane.target.fd).st_ino
        for r in running.daemon.worker.routers.values()
        for c in r.consumers.values()
        if c.fast and c.lane.target is not None
    }


async def test_publisher_and_viewers_on_one_port_decode_and_a_closed_viewer_leaves_the_others_flowing(
    make_daemon,  # type: ignore[no-untyped-def]
) -> None:
    """Protects the shared port end to end: the publisher and three viewers are offered the one
    port and decode video and audio through it; the C fan-out writes every copy to that one
    socket with sendmmsg; closing one viewer unregisters its ufrag and address, and the two
    others keep decoding."""
    require_fastpath()
    port = free_udp_port()
    d = await make_daemon(rtc_udp_port=port)
    assert d.daemon.worker.shared_ports is not None
    shared = d.daemon.worker.shared_ports.ports
    assert [(s.address, s.port) for s in shared] == [("127.0.0.1", port)]
    assert await readyz_udp(d.http) == {"sockets": "shared", "port": port, "listen": [f"127.0.0.1:{port}"]}
    pub = await publish(d.url, "show-shared")
    viewers = list(await asyncio.gather(*(subscribe(d.url, "show-shared") for _ in range(3))))
    try:
        for peer in [pub, *viewers]:
            assert candidate_ports(peer.pc.remoteDescription.sdp) == {port}
        assert await wait_for(
            lambda: all(v.frames.get("video", 0) >= 10 and v.frames.get("audio", 0) >= 10 for v in viewers), 40
        ), [v.frames for v in viewers]
        assert len(shared[0].by_ufrag) == 4 and len(shared[0].by_addr) >= 4
        fds = daemon_fds(d)
        assert fds == {os.fstat(shared[0].transport.get_extra_info("socket").fileno()).st_ino}
        calls, datagrams = fastpath.fastpath_ext.batch_stats()
        seen = [v.frames.get("video", 0) for v in viewers]
        assert await wait_for(lambda: all(v.frames.get("video", 0) >= n + 5 for v, n in zip(viewers, seen)), 30)
        calls2, datagrams2 = fastpath.fastpath_ext.batch_stats()
        assert calls2 > calls and datagrams2 - datagrams >= 2 * (calls2 - calls)

        assert d.daemon.worker.stats.drops.get("send_failed", 0) == 0

        gone = viewers.pop(0)
        await gone.close()
        assert await wait_for(lambda: len(shared[0].by_ufrag) == 3, 20), shared[0].by_ufrag
        seen = [v.frames.get("video", 0) for v in viewers]
        assert await wait_for(lambda: all(v.frames.get("video", 0) >= n + 10 for v, n in zip(viewers, seen)), 30)
        assert len(shared[0].by_addr) == len({a for p in shared[0].by_ufrag.values() for a in p.addrs})
        staying = {v.transport_id for v in viewers}
        for r in d.daemon.worker.routers.values():
            for t in r.transports.values():
                if t.id in staying:
                    assert all(c.lane.target.send_errors == 0 for c in t.consumers.values())
    finally:
        for v in viewers:
            await v.close()
        await pub.close()


async def test_by_default_each_daemon_binds_one_socket_on_a_free_port_inside_the_range(
    make_daemon,  # type: ignore[no-untyped-def]
) -> None:
    """Protects the default (media.rtc_udp_port = 0, no rtc_socket_per_peer): each daemon binds
    ONE shared socket on a free port inside rtc_min_port..rtc_max_port (firewall rules for the
    range stay true), two daemons in one process on the same range get different ports and no
    clash, /readyz names the port bound, and each daemon's publisher and viewer are offered that
    one port and decode through it."""
    lo, hi = free_udp_range(10)
    daemons = [await make_daemon(rtc_min_port=lo, rtc_max_port=hi, rtc_socket_per_peer=False) for _ in range(2)]
    ports = []
    for d in daemons:
        assert d.daemon.worker.shared_ports is not None, "the default is the shared socket"
        (shared,) = d.daemon.worker.shared_ports.ports
        ports.append(shared.port)
        assert await readyz_udp(d.http) == {
            "sockets": "shared",
            "port": shared.port,
            "listen": [f"127.0.0.1:{shared.port}"],
        }
    assert all(lo <= p <= hi for p in ports) and ports[0] != ports[1], (lo, hi, ports)
    peers = []
    try:
        for i, d in enumerate(daemons):
            pub = await publish(d.url, f"show-range-{i}")
            viewer = await subscribe(d.url, f"show-range-{i}")
            peers += [pub, viewer]
            for peer in (pub, viewer):
                assert candidate_ports(peer.pc.remoteDescription.sdp) == {ports[i]}
        viewers = peers[1::2]
        assert await wait_for(lambda: all(v.frames.get("video", 0) >= 5 for v in viewers), 40), [
            v.frames for v in viewers
        ]
    finally:
        for peer in reversed(peers):
            await peer.close()


async def test_socket_per_peer_gives_each_peer_connection_its_own_port_in_the_range() -> None:
    """Protects media.rtc_socket_per_peer = true (the old behaviour, kept): the worker binds no
    shared socket, /readyz says so with the range, and the publisher and two viewers are each
    offered a port of their own inside the range, and decode. The daemon runs as a process: the
    range is process-wide in aioice, and this test's own peers reset it in this process."""
    lo, hi = free_udp_range(20)
    dp = await start_daemon_process(
        env={
            "JASMIN_MEDIA_RTC_SOCKET_PER_PEER": "true",
            "JASMIN_MEDIA_RTC_MIN_PORT": str(lo),
            "JASMIN_MEDIA_RTC_MAX_PORT": str(hi),
        }
    )
    pub = viewers = None
    try:
        assert await readyz_udp(dp.http) == {"sockets": "per_peer", "port_range": [lo, hi]}
        pub = await publish(dp.url, "show-per-peer")
        viewers = [await subscribe(dp.url, "show-per-peer") for _ in range(2)]
        offered = [candidate_ports(p.pc.remoteDescription.sdp) for p in [pub, *viewers]]
        assert all(len(o) == 1 and lo <= min(o) <= hi for o in offered), (lo, hi, offered)
        assert len(set.union(*offered)) == 3, f"a port each: {offered}"
        assert await wait_for(lambda: all(v.frames.get("video", 0) >= 5 for v in viewers), 40), [
            v.frames for v in viewers
        ]
    finally:
        for v in viewers or []:
            await v.close()
        if pub is not None:
            await pub.close()
        await stop_daemons(dp.proc, timeout=10)


async def test_datagrams_from_strangers_are_dropped_counted_and_unanswered(make_daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects the demultiplexer's edge: an SRTP-looking datagram from an address no check
    authenticated, and a STUN Binding request naming a ufrag no connection has, are dropped
    and counted by reason on /metrics; the stranger gets no answer; the viewer on the port
    keeps decoding."""
    port = free_udp_port()
    d = await make_daemon(rtc_udp_port=port)
    pub = await publish(d.url, "show-strangers")
    viewer = await subscribe(d.url, "show-strangers")
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    stranger.setblocking(False)
    try:
        assert await wait_for(lambda: viewer.frames.get("video", 0) >= 5, 40), viewer.frames
        stranger.sendto(b"\x80\x60" + os.urandom(100), ("127.0.0.1", port))
        request = aioice.stun.Message(
            message_method=aioice.stun.Method.BINDING, message_class=aioice.stun.Class.REQUEST
        )
        request.attributes["USERNAME"] = "nobody:x"
        request.add_message_integrity(b"some password")
        stranger.sendto(bytes(request), ("127.0.0.1", port))

        def counted() -> bool:
            drops = d.daemon.worker.stats.drops
            return drops.get(adapter.DROP_UNKNOWN_ADDRESS, 0) >= 1 and drops.get(adapter.DROP_UNKNOWN_UFRAG, 0) >= 1

        assert await wait_for(counted, 10), d.daemon.worker.stats.drops
        m = await scrape_metrics(d.http)
        assert m[f'jasmin_rtp_drops_total{{reason="{adapter.DROP_UNKNOWN_ADDRESS}"}}'] >= 1
        assert m[f'jasmin_rtp_drops_total{{reason="{adapter.DROP_UNKNOWN_UFRAG}"}}'] >= 1
        seen = viewer.frames.get("video", 0)
        assert await wait_for(lambda: viewer.frames.get("video", 0) >= seen + 10, 30)
        try:
            answer = stranger.recv(2048)
        except BlockingIOError:
            answer = None
        assert answer is None, f"the stranger was answered: {answer!r}"
    finally:
        stranger.close()
        await viewer.close()
        await pub.close()


async def test_the_daemon_process_on_uvloop_serves_viewers_on_its_shared_port() -> None:
    """Protects the shared port under the daemon's own event loop (uvloop, whose datagram
    transport owns the socket differently from asyncio's), as ``jasmin_sfu serve`` runs by
    default: the port it bound (said on /readyz) is offered to the publisher and two viewers,
    who decode; after one viewer leaves the other keeps decoding, and the daemon stops cleanly."""
    dp = await start_daemon_process()
    said = await readyz_udp(dp.http)
    assert said["sockets"] == "shared" and said["listen"] == [f"127.0.0.1:{said['port']}"], said
    port = said["port"]
    pub = await publish(dp.url, "show-uvloop")
    viewers = [await subscribe(dp.url, "show-uvloop") for _ in range(2)]
    try:
        for peer in [pub, *viewers]:
            assert candidate_ports(peer.pc.remoteDescription.sdp) == {port}
        assert await wait_for(
            lambda: all(v.frames.get("video", 0) >= 10 and v.frames.get("audio", 0) >= 10 for v in viewers), 40
        ), [v.frames for v in viewers]
        await viewers.pop(0).close()
        seen = viewers[0].frames.get("video", 0)
        assert await wait_for(lambda: viewers[0].frames.get("video", 0) >= seen + 10, 30)
    finally:
        for v in viewers:
            await v.close()
        await pub.close()
        dp.proc.send_signal(signal.SIGTERM)
        code = await asyncio.get_running_loop().run_in_executor(None, dp.proc.wait, 30)
    assert code == 0, "".join(dp.output[-30:])
