"""The `consumer.set_layers` verb and the simulcast producer object, through the daemon's
signaling over a real websocket and real aiortc peers on 127.0.0.1 (issue 12).

The performer's offer is an aiortc offer rewritten as a browser's simulcast offer (no
a=ssrc, RID extmaps, a=rid and a=simulcast lines); no media needs to flow for what is
checked here (the answer, the objects, the caps, the errors, /metrics).
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
from aiortc import RTCSessionDescription

from bench.peers import PatternTrack, ToneTrack, new_pc, subscribe
from jasmin_codecs.simulcast import REPAIRED_RID_URI, RID_URI
from jasmin_signaling.client import RemoteError, SignalingClient


def simulcast_offer(sdp: str, rids: tuple[str, ...] = ("q", "h", "f")) -> str:
    out = []
    video = False
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            video = line.startswith("m=video")
        if video and (line.startswith("a=ssrc") or line.startswith("a=msid")):
            continue
        out.append(line)
        if video and line.startswith("a=mid:"):
            out += [f"a=extmap:10 {RID_URI}", f"a=extmap:11 {REPAIRED_RID_URI}"]
            out += [f"a=rid:{r} send" for r in rids]
            out.append("a=simulcast:send " + ";".join(rids))
    return "\r\n".join(out)


async def test_a_viewer_caps_its_layers_and_bad_requests_are_named(daemon: Any) -> None:
    """Protects the verb and the objects: a simulcast publish is answered with
    a=simulcast:recv and producers that list their three layers; a viewer's
    consumer.set_layers caps its video consumer (the answer says the cap and the layer it
    now gets, /metrics counts it on that layer); an out-of-range cap, an audio consumer
    and an unknown consumer are bad_request / unknown_consumer, and the connection stays up."""
    performer = await SignalingClient.connect(daemon.url)
    await performer.request("join", show_id="show-layers", role="performer")
    pc = new_pc()
    pc.addTransceiver(PatternTrack(), direction="sendonly")
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    res = await performer.request("publish", sdp=simulcast_offer(pc.localDescription.sdp))
    assert "a=simulcast:recv q;h;f" in res["sdp"]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=res["sdp"], type="answer"))
    video = next(p for p in res["producers"] if p["kind"] == "video")
    assert video["simulcast"] is True
    assert sorted(layer["rid"] for layer in video["layers"]) == ["f", "h", "q"]
    assert [layer["spatial"] for layer in video["layers"]] == [0, 1, 2]

    viewer = await subscribe(daemon.url, "show-layers", decode=False)
    vc = next(c for c in viewer.consumers if c["kind"] == "video")
    ac = next(c for c in viewer.consumers if c["kind"] == "audio")
    assert vc["spatial_layer"] == 2 and vc["max_spatial"] is None
    ans = await viewer.client.request("consumer.set_layers", consumer_id=vc["consumer_id"], max_spatial=0)
    assert ans["consumer"]["max_spatial"] == 0 and ans["consumer"]["spatial_layer"] == 0
    async with aiohttp.ClientSession() as http:
        async with http.get(daemon.http + "/metrics") as r:
            text = await r.text()
    assert re.search(r'^jasmin_layer_viewers\{layer="0"\} 1\.0$', text, re.M), text[-2000:]
    for data, code in (
        ({"consumer_id": vc["consumer_id"], "max_spatial": 3}, "bad_request"),
        ({"consumer_id": vc["consumer_id"], "max_temporal": -1}, "bad_request"),
        ({"consumer_id": vc["consumer_id"], "max_spatial": "1"}, "bad_request"),
        ({"consumer_id": ac["consumer_id"], "max_spatial": 0}, "bad_request"),
        ({"consumer_id": "nope"}, "unknown_consumer"),
    ):
        with pytest.raises(RemoteError) as e:
            await viewer.client.request("consumer.set_layers", **data)
        assert e.value.code == code, data
    ans = await viewer.client.request("consumer.set_layers", consumer_id=vc["consumer_id"])
    assert ans["consumer"]["max_spatial"] is None
    await viewer.client.request("ping")
    await viewer.close()
    await pc.close()
    await performer.close()


async def test_a_simulcast_viewer_is_told_its_layer(make_daemon: Any) -> None:
    """Protects the consumer.layer event: a viewer of a simulcast producer is told, on its
    own connection, which layer the node's adaptation forwards its video consumer (ids of
    its consumer and producer, spatial, temporal, rid; all null while its video is paused).
    Red if the router does not tell the transport, or the handler does not forward it."""
    daemon = await make_daemon(layer_adaptation=True)
    performer = await SignalingClient.connect(daemon.url)
    await performer.request("join", show_id="show-layer-event", role="performer")
    pc = new_pc()
    pc.addTransceiver(PatternTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    res = await performer.request("publish", sdp=simulcast_offer(pc.localDescription.sdp))
    await pc.setRemoteDescription(RTCSessionDescription(sdp=res["sdp"], type="answer"))
    video = next(p for p in res["producers"] if p["kind"] == "video")
    rids = {layer["spatial"]: layer["rid"] for layer in video["layers"]}

    viewer = await subscribe(daemon.url, "show-layer-event", decode=False)
    vc = next(c for c in viewer.consumers if c["kind"] == "video")
    ev = await viewer.client.next_event("consumer.layer", timeout=15)
    data = ev["data"]
    assert data["consumer_id"] == vc["consumer_id"] and data["producer_id"] == video["producer_id"]
    assert set(data) == {"producer_id", "consumer_id", "spatial", "temporal", "rid"}
    if data["spatial"] is None:
        assert data["rid"] is None and data["temporal"] is None
    else:
        assert data["rid"] == rids[data["spatial"]]
    await viewer.close()
    await pc.close()
    await performer.close()
