"""H264 over WHIP as encoders signal it: which profile-level-ids the node accepts, and an
H264 publisher's frames decoded by a WHEP viewer (aiortc encodes with libx264)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from bench.peers import PatternTrack, ToneTrack, new_pc, wait_for
from bench.whip_peers import post_offer, whep_play
from tests.api.conftest import Api


async def h264_offer(pcs: list[Any]) -> tuple[RTCPeerConnection, str]:
    """An offer whose only video codec is H264 packetization-mode 1, profile-level-id 42e01f."""
    pc = new_pc()
    pcs.append(pc)
    video = pc.addTransceiver(PatternTrack(), direction="sendonly")
    caps = RTCRtpSender.getCapabilities("video").codecs
    video.setCodecPreferences(
        [c for c in caps if c.mimeType == "video/H264" and c.parameters.get("profile-level-id") == "42e01f"]
    )
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    assert "profile-level-id=42e01f" in sdp and "42001f" not in sdp and "VP8" not in sdp
    return pc, sdp


# What OBS and other encoders put in profile-level-id: Constrained Baseline, Baseline,
# Main, Constrained High; level 3.1 and 5.1. aiortc (which terminates the publisher leg)
# negotiates profile_idc 42 only, at any level.
@pytest.mark.parametrize(
    "profile_level_id,accepted",
    [("42e01f", True), ("42001f", True), ("42e033", True), ("4d001f", False), ("640c1f", False), ("64001f", False)],
)
async def test_which_h264_profiles_the_node_accepts(
    api: Api, pcs: list[Any], profile_level_id: str, accepted: bool
) -> None:
    """Protects the documented H264 matrix (docs/whip-whep.md): packetization-mode 1 with a
    Baseline/Constrained Baseline profile-level-id at any level is answered 201; Main and High
    are refused 400 unsupported_codec, not a 500, and no show goes live."""
    admin = await api.admin_token()
    token, _ = await api.performer(admin, "anna")
    _pc, sdp = await h264_offer(pcs)
    status, body, _ = await post_offer(api.http + "/whip/anna", sdp.replace("42e01f", profile_level_id), token)
    if accepted:
        assert status == 201, body
        assert "H264" in body and "packetization-mode=1" in body
    else:
        assert status == 400, body
        err = json.loads(body)["error"]
        assert err["code"] == "unsupported_codec" and "video" in err["message"]
        assert api.daemon.shows.get("anna") is None


async def test_h264_publisher_reaches_a_whep_viewer(api: Api, pcs: list[Any]) -> None:
    """Protects H264 end to end over WHIP and WHEP: a 42e01f packetization-mode 1 publisher
    (libx264 via aiortc) is forwarded to a WHEP viewer that decodes its frames."""
    admin = await api.admin_token()
    token, _ = await api.performer(admin, "anna")
    pc, sdp = await h264_offer(pcs)
    status, body, headers = await post_offer(api.http + "/whip/anna", sdp, token)
    assert status == 201, body
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    show = api.daemon.shows.get("anna")
    assert show is not None
    assert sorted(p.mime for p in show.router.producers.values()) == ["audio/opus", "video/H264"]
    status, g, _ = await api.call("POST", "/api/v1/guest-sessions", json={"adult_confirmed": True})
    viewer = await whep_play(api.http, "anna", g["token"])
    pcs.append(viewer)
    assert await wait_for(lambda: viewer.frames.get("video", 0) >= 10, 30)
    assert "H264" in viewer.pc.remoteDescription.sdp
