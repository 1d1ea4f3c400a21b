"""End to end over loopback: aiortc publisher -> daemon (a real process) -> aiortc viewers."""

from __future__ import annotations

import asyncio
import os
from typing import Any, AsyncIterator

import aiohttp
import numpy as np
import pytest

from bench.peers import publish, subscribe, wait_for
from tests.conftest import DaemonProcess, start_daemon_process, stop_daemons
from tests.realparts import require_fastpath


@pytest.fixture(params=["shared", "per_peer"])
async def sockets_daemon(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, DaemonProcess]]:
    """The daemon process in each ICE socket mode, and the mode: the default ("shared": one
    socket per worker) and media.rtc_socket_per_peer = true ("per_peer": a socket each)."""
    env = {"JASMIN_MEDIA_RTC_SOCKET_PER_PEER": "true"} if request.param == "per_peer" else {}
    dp = await start_daemon_process(env)
    yield request.param, dp
    await stop_daemons(dp.proc, timeout=10)


def candidate_ports(sdp: str) -> set[int]:
    return {int(line.split()[5]) for line in sdp.splitlines() if line.startswith("a=candidate:")}


def sockets_fds(running: Any) -> list[int]:
    """The sockets (inode numbers: each C target holds a dup of its own) the daemon's C lanes send on."""
    return [
        os.fstat(c.lane.target.fd).st_ino
        for r in running.daemon.worker.routers.values()
        for c in r.consumers.values()
        if c.fast and c.lane.target is not None
    ]


async def test_five_viewers_decode_video_and_audio_with_no_codec_in_the_daemon(
    sockets_daemon: tuple[str, DaemonProcess],
) -> None:
    """Protects the core promise, in both ICE socket modes: packets are forwarded, never
    decoded or re-encoded.

    Each of 5 aiortc viewers decodes the publisher's test pattern and tone; the
    daemon's own counters (it wraps aiortc's encoder/decoder factories) prove
    it created no encoder and no decoder while doing so. With the shared socket (the default)
    every peer is offered the one port /readyz names; with a socket per peer, six ports.
    """
    mode, daemon_process = sockets_daemon
    url = daemon_process.url
    pub = await publish(url, "show-five")
    viewers = await asyncio.gather(*(subscribe(url, "show-five") for _ in range(5)))
    try:
        async with aiohttp.ClientSession() as s, s.get(daemon_process.http + "/readyz") as r:
            said = (await r.json())["media_udp"]
        offered = set.union(*(candidate_ports(p.pc.remoteDescription.sdp) for p in [pub, *viewers]))
        assert said["sockets"] == mode, said
        if mode == "shared":
            assert offered == {said["port"]}, (said, offered)
        else:
            assert len(offered) == 6, (said, offered)
        ok = await wait_for(
            lambda: all(v.frames.get("video", 0) >= 15 and v.frames.get("audio", 0) >= 25 for v in viewers),
            timeout=40,
        )
        assert ok, [v.frames for v in viewers]
        m = await daemon_process.metrics()
        assert m["jasmin_aiortc_encoders_created_total"] == 0
        assert m["jasmin_aiortc_decoders_created_total"] == 0
        assert m["jasmin_consumers"] == 10
        assert m["jasmin_producers"] == 2
        # Every viewer is started: from here each packet in goes out to each of the 5, once.
        # One scrape is one step of the daemon's loop, and a packet's fan-out is one step too.
        seen = [v.frames.get("video", 0) for v in viewers]
        assert await wait_for(lambda: all(v.frames.get("video", 0) >= n + 10 for v, n in zip(viewers, seen)), 40)
        m2 = await daemon_process.metrics()

        def delta(name: str) -> float:
            return m2.get(name, 0.0) - m.get(name, 0.0)

        packets_in = delta("jasmin_rtp_packets_in_total")
        assert packets_in > 0
        resent = delta("jasmin_nack_packets_served_total") + delta("jasmin_keyframe_packets_replayed_total")
        failed = delta('jasmin_rtp_drops_total{reason="send_failed"}')
        assert delta("jasmin_rtp_packets_out_total") - resent + failed == 5 * packets_in
    finally:
        for v in viewers:
            await v.close()
        await pub.close()


async def test_viewer_frames_are_the_publishers_pattern(daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects bit-exact forwarding: the decoded viewer frame matches the source pattern.

    The pattern is a grey gradient with a white bar at x = 8n; a decoder fed
    with corrupted, truncated or mis-ordered packets would not reproduce it.
    """
    pub = await publish(daemon.url, "show-pattern")
    viewer = await subscribe(daemon.url, "show-pattern", decode=False)
    try:
        video = next(t for t in viewer.tracks if t.kind == "video")
        frame = await asyncio.wait_for(video.recv(), 20)
        img = frame.to_ndarray(format="gray").astype(int)
        assert img.shape == (240, 320)
        source = pub.tracks[0]
        errors = [np.abs(img - source.expected(n).astype(int)).mean() for n in range(40)]
        assert min(errors) < 6, f"decoded frame matches no source frame (best mean error {min(errors):.1f})"
    finally:
        await viewer.close()
        await pub.close()


@pytest.mark.parametrize("per_peer", [False, True], ids=["shared", "per_peer"])
async def test_viewers_decode_through_the_c_fast_path(make_daemon, per_peer: bool) -> None:  # type: ignore[no-untyped-def]
    """Protects the C fan-out with real aiortc viewers, in both ICE socket modes: their consumers
    are on C lanes, the lanes carried the packets, and the viewers decode what they sent; the
    lanes send on the worker's one shared socket (the default) or, with rtc_socket_per_peer, on
    one socket per viewer."""
    require_fastpath()
    daemon = await make_daemon(rtc_socket_per_peer=per_peer)
    pub = await publish(daemon.url, "show-fast")
    viewers = [await subscribe(daemon.url, "show-fast") for _ in range(2)]
    try:
        assert await wait_for(
            lambda: all(v.frames.get("video", 0) >= 10 and v.frames.get("audio", 0) >= 10 for v in viewers), timeout=30
        ), [v.frames for v in viewers]
        consumers = [c for r in daemon.daemon.worker.routers.values() for c in r.consumers.values()]
        assert len(consumers) == 4
        assert all(c.fast and c.lane.packets >= 5 for c in consumers), [(c.fast, c.lane.packets) for c in consumers]
        fds = sockets_fds(daemon)
        if per_peer:
            assert daemon.daemon.worker.shared_ports is None
            assert len(set(fds)) == 2, "a socket per viewer (its audio and video lanes share it)"
        else:
            (shared,) = daemon.daemon.worker.shared_ports.ports
            assert set(fds) == {os.fstat(shared.transport.get_extra_info("socket").fileno()).st_ino}
        assert daemon.daemon.worker.stats.drops.get("send_failed", 0) == 0
    finally:
        for v in viewers:
            await v.close()
        await pub.close()


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
async def test_publish_and_watch_over_both_encodings(daemon, binary: bool) -> None:  # type: ignore[no-untyped-def]
    """Protects the msgpack binding: the same flow works with binary frames."""
    pub = await publish(daemon.url, f"show-enc-{binary}", binary=binary)
    viewer = await subscribe(daemon.url, f"show-enc-{binary}", binary=binary)
    try:
        assert await wait_for(lambda: viewer.frames.get("video", 0) >= 3, timeout=20)
    finally:
        await viewer.close()
        await pub.close()


async def test_viewers_are_told_when_the_performer_leaves(daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects clean teardown: producer.removed and show.ended reach viewers; nothing leaks."""
    pub = await publish(daemon.url, "show-leave")
    viewer = await subscribe(daemon.url, "show-leave")
    assert await wait_for(lambda: viewer.frames.get("video", 0) >= 1, timeout=20)
    await pub.client.request("leave")
    removed = await viewer.client.next_event("producer.removed")
    assert removed["data"]["show_id"] == "show-leave"
    ended = await viewer.client.next_event("show.ended")
    assert ended["data"] == {"show_id": "show-leave"}
    counts = daemon.daemon.worker.counts()
    assert counts == {"routers": 0, "transports": 0, "producers": 0, "consumers": 0}
    await viewer.close()
    await pub.close()
