#!/usr/bin/python3
"""A WHIP client made of Debian's GStreamer (webrtcbin), run by tests/whip/test_whip_gstreamer.py.

Runs under the system Python with python3-gi (not the project's venv):
    /usr/bin/python3 gst_whip.py ENDPOINT TOKEN SECONDS
Publishes a live test pattern as H264 (x264enc, constrained baseline, packetization-mode 1) and a
sine tone as Opus to ENDPOINT with ``Authorization: Bearer TOKEN``, ICE on 127.0.0.1 only and no
STUN server, non-trickle (the offer carries every candidate). Prints one JSON line per step
("posted" with the status and Location, "connected", "deleted" with the DELETE's status) and exits
0 after SECONDS of sending and the DELETE.
"""

import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

PIPELINE = (
    "webrtcbin name=w bundle-policy=max-bundle "
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! videoconvert ! "
    "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bframes=0 ! "
    "video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 aggregate-mode=zero-latency ! "
    "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000 ! w. "
    "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc ! rtpopuspay ! "
    "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! w."
)


def say(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def request(method: str, url: str, token: str, body: bytes | None = None) -> tuple[int, str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/sdp"
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers
    except OSError as e:
        return 0, str(e), {}


def main() -> int:
    endpoint, token, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    Gst.init(None)
    pipe = Gst.parse_launch(PIPELINE)
    w = pipe.get_by_name("w")
    # Held for the whole run: PyGObject drops one reference too many when this wrapper dies,
    # which would free webrtcbin's ICE agent under it.
    agent = w.get_property("ice-agent")
    agent.emit("add-local-ip-address", "127.0.0.1")
    loop = GLib.MainLoop()
    state: dict[str, Any] = {"rc": 1, "agent": agent}

    def finish(rc: int) -> bool:
        state["rc"] = rc
        loop.quit()
        return False

    def delete() -> bool:
        status, _body, _h = request("DELETE", state["location"], token)
        say(step="deleted", status=status)
        return finish(0 if status == 200 else 1)

    def post_offer() -> None:
        # webrtcbin's own offer, a=setup:actpass and its default RSA certificate: the node is the
        # DTLS client and must offer ECDHE-RSA suites (media/aiortc_adapter.py, rsa_dtls_peers).
        offer = w.get_property("local-description").sdp.as_text()
        status, body, headers = request("POST", endpoint, token, offer.encode())
        location = headers.get("Location") if status == 201 else None
        setup = [line.strip() for line in offer.splitlines() if line.startswith("a=setup:")]
        say(
            step="posted",
            status=status,
            location=location,
            setup=setup,
            offer=offer if status != 201 else None,
            body=body if status != 201 else None,
        )
        if status != 201:
            finish(2)
            return
        state["location"] = urllib.request.urljoin(endpoint, location)
        _res, msg = GstSdp.SDPMessage.new_from_text(body)
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        w.emit("set-remote-description", answer, None)
        GLib.timeout_add(int(seconds * 1000), delete)

    def on_gathering(_w: Any, _pspec: Any) -> None:
        if (
            w.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE
            and "posted" not in state
        ):
            state["posted"] = True
            GLib.idle_add(lambda: post_offer() and False)

    def on_connection(_w: Any, _pspec: Any) -> None:
        s = w.get_property("connection-state")
        if s == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            say(step="connected")
        elif s == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            say(step="failed")
            finish(3)

    def on_offer(promise: Gst.Promise) -> None:
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None and reply.has_field("offer") else None
        if offer is None:
            say(step="no_offer", reply=reply.to_string() if reply is not None else None)
            finish(6)
            return
        w.emit("set-local-description", offer, None)

    def on_negotiation_needed(_w: Any) -> None:
        if "offered" in state:  # once: WHIP does not renegotiate
            return
        state["offered"] = True
        for i in range(2):
            t = w.emit("get-transceiver", i)
            if t is not None:
                t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        w.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer))

    w.connect("notify::ice-gathering-state", on_gathering)
    w.connect("notify::connection-state", on_connection)
    w.connect("on-negotiation-needed", on_negotiation_needed)
    bus = pipe.get_bus()
    bus.add_signal_watch()
    bus.connect("message::error", lambda _b, m: (say(step="error", error=str(m.parse_error())), finish(4)))
    pipe.set_state(Gst.State.PLAYING)
    GLib.timeout_add(int((seconds + 30) * 1000), lambda: (say(step="timeout"), finish(5))[1])
    loop.run()
    pipe.set_state(Gst.State.NULL)
    sys.stdout.flush()
    # Skip interpreter teardown (the over-released ICE agent wrapper would be unref'd again).
    os._exit(int(state["rc"]))


if __name__ == "__main__":
    sys.exit(main())
