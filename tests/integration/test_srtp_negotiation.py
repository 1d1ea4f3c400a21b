"""Which SRTP profile the node's DTLS handshakes negotiate (media.srtp_profiles), who picks it,
and that the C fan-out forwards under each (docs/media.md, "SRTP profile"). Real aiortc peers
over loopback."""

from __future__ import annotations

from typing import Any

import pytest

from bench.peers import wait_for
from jasmin_sfu.media import aiortc_adapter as adapter
from jasmin_sfu.media.settings import SRTP_PROFILE_NAMES, MediaSettings
from tests.realparts import require_fastpath
from tests.support import after, performer, watch

AIORTC_ORDER = ["aead_aes_256_gcm", "aead_aes_128_gcm", "aes128_cm_sha1_80"]


def node_transports(daemon: Any, direction: str) -> list[Any]:
    return [t for r in daemon.daemon.worker.routers.values() for t in r.transports.values() if t.direction == direction]


def test_the_default_prefers_128_gcm() -> None:
    """Protects the default order (measured cheapest first, bench/srtp_profiles.py)."""
    assert MediaSettings().srtp_profiles == ("aead_aes_128_gcm", "aead_aes_256_gcm", "aes128_cm_sha1_80")
    assert set(SRTP_PROFILE_NAMES) == set(adapter.SRTP_PROFILES_BY_NAME)


@pytest.mark.parametrize(
    ("node", "offered", "expected"),
    [
        (None, None, "aead_aes_128_gcm"),
        (None, AIORTC_ORDER, "aead_aes_128_gcm"),
        (None, ["aead_aes_256_gcm", "aes128_cm_sha1_80"], "aead_aes_256_gcm"),
        (None, ["aes128_cm_sha1_80"], "aes128_cm_sha1_80"),
        (("aead_aes_256_gcm", "aead_aes_128_gcm", "aes128_cm_sha1_80"), None, "aead_aes_256_gcm"),
        (("aes128_cm_sha1_80", "aead_aes_128_gcm"), None, "aes128_cm_sha1_80"),
    ],
    ids=[
        "default-aiortc-viewer",
        "default-viewer-prefers-256",
        "default-viewer-without-128",
        "default-viewer-cm-sha1-only",
        "node-prefers-256",
        "node-prefers-cm-sha1",
    ],
)
async def test_the_node_picks_its_first_profile_the_viewer_offers_and_forwards_under_it(
    make_daemon: Any, node: tuple[str, ...] | None, offered: list[str] | None, expected: str
) -> None:
    """Protects media.srtp_profiles on the viewer leg and the C fan-out under every profile.

    The node offers the subscribe, the viewer answers a=setup:active, so the node is the DTLS
    server and OpenSSL takes the server's order: the node's first profile that the viewer
    offers, whatever the viewer's own order (aiortc lists 256-GCM first). A viewer that offers
    only AES128_CM_SHA1_80 (an old client) still connects and gets media. Under each profile
    the viewer's consumers are on C lanes, every payload it unprotects is byte-identical to one
    the performer sent, and it decodes frames.
    """
    require_fastpath()
    daemon = await make_daemon(**({"srtp_profiles": node} if node is not None else {}))
    show = "show-srtp"
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


@pytest.mark.parametrize(
    ("node", "expected"),
    [(None, "aead_aes_256_gcm"), (("aead_aes_128_gcm", "aes128_cm_sha1_80"), "aead_aes_128_gcm")],
    ids=["default", "node-without-256"],
)
async def test_the_publisher_picks_when_the_node_answers(
    make_daemon: Any, node: tuple[str, ...] | None, expected: str
) -> None:
    """Protects media.srtp_profiles on the node's DTLS client side: the node answers a
    publisher's offer (a=setup:active), so the publisher (the server) picks in its own order
    (aiortc: 256-GCM first), among the profiles the node offers: without 256-GCM in the list
    the node gets 128-GCM. The node's order does not count there (docs/media.md)."""
    daemon = await make_daemon(**({"srtp_profiles": node} if node is not None else {}))
    pub = await performer(daemon.url, "show-srtp-publisher")
    try:
        (node_leg,) = node_transports(daemon, "recv")
        assert await wait_for(lambda: adapter.srtp_negotiation(node_leg.pc) is not None, timeout=20)
        assert adapter.srtp_negotiation(node_leg.pc) == ("client", expected)
        assert adapter.srtp_negotiation(pub.pc) == ("server", expected)
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
        adapter.prefer_srtp_profiles(pc, AIORTC_ORDER)
    finally:
        await pc.close()
