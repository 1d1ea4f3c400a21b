"""Which SRTP profile the node's DTLS handshakes negotiate, who picks it, and that the C fan-out
forwards under each (docs/media.md, "SRTP profile"). Real aiortc peers over loopback."""

from __future__ import annotations

from typing import Any

import pytest

from bench.peers import wait_for
from jasmin_sfu.media import aiortc_adapter as adapter
from tests.realparts import require_fastpath
from tests.support import after, performer, watch

ALL = ["aead_aes_256_gcm", "aead_aes_128_gcm", "aes128_cm_sha1_80"]


def node_transports(daemon: Any, direction: str) -> list[Any]:
    return [t for r in daemon.daemon.worker.routers.values() for t in r.transports.values() if t.direction == direction]


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (None, "aead_aes_256_gcm"),
        (["aead_aes_128_gcm", "aes128_cm_sha1_80", "aead_aes_256_gcm"], "aead_aes_256_gcm"),
        (["aead_aes_128_gcm", "aes128_cm_sha1_80"], "aead_aes_128_gcm"),
        (["aes128_cm_sha1_80"], "aes128_cm_sha1_80"),
    ],
    ids=["aiortc-default", "viewer-prefers-128", "viewer-without-256", "viewer-cm-sha1-only"],
)
async def test_the_node_picks_the_viewers_profile_and_forwards_under_it(
    daemon: Any, offered: list[str] | None, expected: str
) -> None:
    """Protects the SRTP negotiation of a websocket viewer and the C fan-out under every profile.

    The node offers the subscribe, the viewer answers a=setup:active, so the node is the DTLS
    server and OpenSSL takes the server's most preferred profile that the viewer offers: aiortc's
    order (256-GCM, 128-GCM, AES-CM/SHA1-80) whatever order the viewer lists them in. A viewer
    that offers only 128-GCM, or only AES128_CM_SHA1_80 (an old client), still connects and gets
    media: its consumers are on C lanes, and every payload it unprotects is byte-identical to one
    the performer sent; it decodes frames.
    """
    require_fastpath()
    show = f"show-srtp-{expected}-{offered is None}"
    pub = await performer(daemon.url, show)
    viewer = await watch(daemon.url, show, srtp_profiles=offered)
    try:
        assert await wait_for(
            lambda: viewer.frames.get("video", 0) >= 5 and viewer.frames.get("audio", 0) >= 5, timeout=30
        ), viewer.frames
        (node_leg,) = node_transports(daemon, "send")
        assert adapter.srtp_negotiation(node_leg.pc) == ("server", expected)
        assert adapter.srtp_negotiation(viewer.pc) == ("client", expected)
        consumers = list(node_leg.consumers.values())
        assert len(consumers) == 2 and all(c.fast and c.lane.packets >= 1 for c in consumers), [
            (c.fast, c.lane and c.lane.packets) for c in consumers
        ]
        # after() fails on a payload the performer never sent: the bytes came through intact.
        got = after(viewer, pub.log, 0.0)
        assert len(got) >= 10 and len({ssrc for ssrc, _ in got}) == 2
        assert daemon.daemon.worker.stats.drops.get("send_failed", 0) == 0
    finally:
        await viewer.close()
        await pub.close()


async def test_a_publisher_picks_the_profile_when_the_node_answers(daemon: Any) -> None:
    """Protects the other direction: the node answers a publisher's offer (a=setup:active), so
    the node is the DTLS client and the publisher (the server) picks; an aiortc publisher picks
    256-GCM, its first. The node's list only limits what it accepts there."""
    pub = await performer(daemon.url, "show-srtp-publisher")
    try:
        (node_leg,) = node_transports(daemon, "recv")
        assert await wait_for(lambda: adapter.srtp_negotiation(node_leg.pc) is not None, timeout=20)
        assert adapter.srtp_negotiation(node_leg.pc) == ("client", "aead_aes_256_gcm")
        assert adapter.srtp_negotiation(pub.pc) == ("server", "aead_aes_256_gcm")
    finally:
        await pub.close()


async def test_prefer_srtp_profiles_rejects_an_unknown_name() -> None:
    """Protects the adapter's contract: a profile name it does not know is a KeyError naming it,
    not a transport silently left with aiortc's list."""
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendonly")
    try:
        with pytest.raises(KeyError, match="aes_512"):
            adapter.prefer_srtp_profiles(pc, ["aead_aes_128_gcm", "aes_512"])
        adapter.prefer_srtp_profiles(pc, ALL)
    finally:
        await pc.close()
