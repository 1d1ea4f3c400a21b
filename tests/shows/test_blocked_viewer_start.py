"""A viewer who joined during a private (blocked) starts on the cached keyframe when the
show returns to free, whether its DTLS came up before or after that; aiortc peers over
loopback.

The viewer's own DTLS start is held behind a gate the test opens, so "DTLS not up yet"
is a state the test sets, not a race it hopes to win.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc import RTCSessionDescription

from bench.peers import new_pc, ssrc_of, wait_for
from jasmin_codecs.rtp import parse_rtp
from jasmin_codecs.vp8 import vp8_is_keyframe
from jasmin_signaling.client import SignalingClient
from tests.support import performer, watch


def gate_dtls(pc: Any) -> asyncio.Event:
    """Hold ``pc``'s DTLS start (so its handshake, and the SFU's, waits) until the event is set."""
    gate = asyncio.Event()
    for dtls in {id(t.receiver.transport): t.receiver.transport for t in pc.getTransceivers()}.values():
        original = dtls.start

        async def start(params: Any, _original: Any = original) -> None:
            await gate.wait()
            await _original(params)

        dtls.start = start
    return gate


def tap_video(pc: Any, out: list[bytes]) -> None:
    """Keep every video RTP packet ``pc`` receives (after SRTP, before aiortc sees it)."""
    video = ssrc_of(pc, "video")
    for dtls in {id(t.receiver.transport): t.receiver.transport for t in pc.getTransceivers()}.values():
        original = dtls._handle_rtp_data

        async def handle(data: bytes, arrival_time_ms: int, _original: Any = original) -> None:
            if int.from_bytes(data[8:12], "big") == video:
                out.append(data)
            await _original(data, arrival_time_ms=arrival_time_ms)

        dtls._handle_rtp_data = handle


@pytest.mark.parametrize("dtls_up", ["after_unblock", "before_unblock"])
async def test_viewer_blocked_at_join_starts_on_the_cached_keyframe(daemon, dtls_up: str) -> None:  # type: ignore[no-untyped-def]
    """Protects time to first frame for a viewer who arrived during a private: when the
    private is over and the show is free again, the first video packet it receives is a
    keyframe. When its DTLS comes up only after it was unblocked, that keyframe is replayed
    from the producer's cache at once (the replay counter moves: the ready callback must be
    registered for a consumer that starts blocked, not only for an unpaused one). When DTLS
    was up already, nothing is replayed (the audience change emptied the cache) and it
    starts on the fresh keyframe the unblock asked for."""
    url, show_id = daemon.url, "show-late"
    pub = await performer(url, show_id)
    member = await watch(url, show_id, member_id="m1")
    assert await wait_for(lambda: member.frames.get("video", 0) >= 3, 30)  # a keyframe is cached
    await member.client.request("private.request")
    await pub.client.request("private.accept", member_id="m1")

    # The late viewer joins during the private: its consumers are blocked.
    late = await SignalingClient.connect(url)
    await late.request("join", show_id=show_id, role="viewer")
    res = await late.request("subscribe")
    pc = new_pc()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=res["sdp"], type="offer"))
    gate = gate_dtls(pc)
    await pc.setLocalDescription(await pc.createAnswer())
    received: list[bytes] = []
    tap_video(pc, received)
    await late.request("answer", transport_id=res["transport_id"], sdp=pc.localDescription.sdp)
    router = daemon.daemon.shows.get(show_id).router
    key = late.welcome["session_id"]
    video = next(
        c for p in router.producers.values() if p.is_video for c in p.consumers.values() if c.audience_key == key
    )
    assert video.blocked and not video.sink.ready
    if dtls_up == "after_unblock":
        gate.set()
        assert await wait_for(lambda: video.sink.ready, 20)
    assert received == []

    # The private ends (the member leaves) and the performer goes back to free: only the
    # late viewer is unblocked (the member's consumers are gone), so the replay counter is its.
    await member.close()
    await pub.client.next_event("private.ended", timeout=10)
    replayed = router.stats.keyframe_packets_replayed
    await pub.client.request("show.free")
    assert not video.blocked
    if dtls_up == "before_unblock":
        # The unblock asked for a fresh keyframe (the private's last one was dropped from
        # the cache with the audience change); it is cached while the viewer cannot receive.
        kc = video.producer.keyframe_cache
        assert await wait_for(lambda: bool(kc.frame), 20)
        assert not video.sink.ready and received == []
        gate.set()
        assert await wait_for(lambda: received and router.stats.keyframe_packets_replayed > replayed, 20), (
            f"no cached-keyframe replay when DTLS came up: {router.stats.keyframe_packets_replayed} replayed"
        )
    else:
        # Unblocked with DTLS up: the cache was emptied by the audience change (never replay
        # the private's last frame to a free viewer), so the viewer starts on the fresh keyframe.
        assert await wait_for(lambda: bool(received), 20)
        assert router.stats.keyframe_packets_replayed == replayed
    first = parse_rtp(received[0])
    payload = received[0][first.payload_offset : first.payload_end]
    assert vp8_is_keyframe(payload), "the viewer did not start on a keyframe"
    await pc.close()
    await late.close()
    await pub.close()
