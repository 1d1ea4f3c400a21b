"""The demo page in real Chromium: a performer publishes, a viewer decodes.

Chromium's fake camera and microphone feed the performer page; both pages
speak signaling v1 to an in-process daemon on 127.0.0.1. The viewer's own
``RTCPeerConnection.getStats()`` is the proof that media made it through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from bench.peers import PatternTrack, publish
from jasmin_sfu.app import Daemon
from jasmin_signaling.client import SignalingClient
from jasmin_sfu.config import AccountsConfig, BillingConfig, Config, ServerConfig
from tests.support import open_page, poll, wait_state

pytestmark = [pytest.mark.slow, pytest.mark.browser]


# Sums the inbound/outbound RTP stats of every peer connection of the page.
RTP_STATS_JS = """
async () => {
  const out = {inbound: {}, outbound: {}, pairs: [], framesPerPc: []};
  for (const pc of window.jasmin.pcs) {
    const report = await pc.getStats();
    let frames = 0;
    for (const s of report.values()) {
      if (s.type === 'inbound-rtp') frames += s.framesDecoded || 0;
      if (s.type === 'inbound-rtp' || s.type === 'outbound-rtp') {
        const side = s.type === 'inbound-rtp' ? out.inbound : out.outbound;
        const acc = side[s.kind] || (side[s.kind] = {packets: 0, bytes: 0, framesDecoded: 0, framesEncoded: 0, codecs: []});
        acc.packets += (s.packetsReceived || s.packetsSent || 0);
        acc.bytes += (s.bytesReceived || s.bytesSent || 0);
        acc.framesDecoded += s.framesDecoded || 0;
        acc.framesEncoded += s.framesEncoded || 0;
        const codec = s.codecId && report.get(s.codecId);
        if (codec) acc.codecs.push(codec.mimeType);
      } else if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = report.get(s.selectedCandidatePairId);
        const local = report.get(pair.localCandidateId), remote = report.get(pair.remoteCandidateId);
        out.pairs.push([local.address, remote.address]);
      }
    }
    out.framesPerPc.push(frames);
  }
  return out;
}
"""


@pytest.fixture
async def sfu() -> AsyncIterator[str]:
    """The daemon in this event loop on 127.0.0.1; yields its base URL."""
    daemon = Daemon(
        Config(
            server=ServerConfig(host="127.0.0.1", port=0),
            billing=BillingConfig(enabled=False),
            accounts=AccountsConfig(enabled=False, trust_client_ids=True),
        )
    )
    await daemon.start()
    try:
        yield f"http://127.0.0.1:{daemon.port}"
    finally:
        await daemon.stop()


async def test_performer_page_publishes_and_viewer_page_plays_video_and_audio(
    sfu: str, browser: Any, tmp_path: Path
) -> None:
    """Protects the demo page end to end in a real browser on loopback only.

    The performer page publishes Chromium's fake camera (asked 1280x720) and
    microphone, the viewer page watches the show: its peer connection decodes
    video frames (counted twice: they keep coming) and receives audio packets,
    and its readout shows the received resolution, frame rate and bitrate.
    """
    logs: list[str] = []
    performer = await open_page(browser, f"{sfu}/?role=performer&show=alice", logs)
    await performer.click("#go-live")
    await wait_state(performer, "live", logs)

    viewer = await open_page(browser, f"{sfu}/?role=viewer&show=alice", logs)
    assert await viewer.input_value("#show-id") == "alice"
    await viewer.click("#watch")
    await wait_state(viewer, "live", logs)

    async def viewer_stats() -> Any:
        return await viewer.evaluate(RTP_STATS_JS)

    def decoded(s: Any) -> int:
        return int(s["inbound"].get("video", {}).get("framesDecoded", 0))

    first = await poll(viewer_stats, lambda s: decoded(s) > 0)
    assert decoded(first) > 0, (first, logs)
    second = await poll(viewer_stats, lambda s: decoded(s) > decoded(first))
    assert decoded(second) > decoded(first) > 0, (first, second, logs)

    audio = await poll(viewer_stats, lambda s: s["inbound"].get("audio", {}).get("packets", 0) > 0)
    assert audio["inbound"]["audio"]["packets"] > 0, (audio, logs)

    sent = await performer.evaluate(RTP_STATS_JS)
    video_codecs = set(sent["outbound"]["video"]["codecs"])
    assert video_codecs and video_codecs <= {"video/VP8", "video/H264"}, sent

    # The tests run in a loopback-only network namespace and the daemon listens
    # on 127.0.0.1 only: both ends of every selected ICE pair are 127.0.0.1.
    pairs = audio["pairs"] + sent["pairs"]
    assert len(pairs) == 2 and all(
        pair == ["127.0.0.1", "127.0.0.1"] or tuple(pair) == ("127.0.0.1", "127.0.0.1") for pair in pairs
    ), pairs

    # The <video> element renders the show (not just the peer connection).
    size = await poll(
        lambda: viewer.evaluate(
            "(() => { const v = document.querySelector('#remote-video'); return [v.videoWidth, v.paused]; })()"
        ),
        lambda s: s[0] > 0 and not s[1],
    )
    assert size[0] > 0 and not size[1], (size, logs)

    # The performer asks its camera for 1280x720 (the fake camera has it); the
    # viewer's readout shows what it receives, from its own getStats, once a second.
    camera = await performer.evaluate("window.jasmin.localStream.getVideoTracks()[0].getSettings()")
    assert (camera["width"], camera["height"]) == (1280, 720), camera
    readout = await poll(
        lambda: viewer.evaluate("window.jasmin.readout"),
        lambda r: bool(r and r["width"] > 0 and r["kbps"] and r["fps"] > 0),
    )
    assert readout and readout["width"] > 0 and readout["kbps"] > 0 and readout["fps"] > 0, (readout, logs)
    text = await viewer.inner_text("#readout")
    assert f"{readout['width']}x{readout['height']}" in text and "fps" in text and "kbit/s" in text, text
    # The demo performer publishes simulcast and the node picks each viewer's layer (issue 12, on by
    # default): the viewer is told which (`consumer.layer`) and the readout names it.
    readout = await poll(lambda: viewer.evaluate("window.jasmin.readout"), lambda r: bool(r and r["layer"]))
    layer = readout["layer"]
    assert layer and layer["spatial"] in (0, 1, 2) and layer["rid"] in ("q", "h", "f"), (readout, logs)
    text = await viewer.inner_text("#readout")
    assert f"layer {layer['rid']}" in text, text
    await viewer.screenshot(path=str(tmp_path / "viewer.png"))
    await performer.screenshot(path=str(tmp_path / "performer.png"))

    # The performer's Stop button ends the show for the viewer.
    await performer.click("#stop")
    await wait_state(viewer, "ended", logs)


async def test_viewer_page_shows_the_error_code_for_an_unknown_show(sfu: str, browser: Any) -> None:
    """Protects error reporting: a failed join is shown with its wire code."""
    logs: list[str] = []
    viewer = await open_page(browser, f"{sfu}/?role=viewer&show=nobody-here", logs)
    await viewer.click("#watch")
    await wait_state(viewer, "error", logs)
    assert await viewer.evaluate("window.jasmin.lastError.code") == "unknown_show"
    assert "unknown_show" in await viewer.text_content("#status")


async def test_viewer_page_follows_producers_as_they_come_and_go(sfu: str, browser: Any) -> None:
    """Protects the viewer's event handling: waiting, producer.added/removed, show.ended.

    aiortc performers drive the show. The viewer page joins before anything is
    published, subscribes when the show goes live, opens a second peer
    connection for a producer added later, drops it when it is removed, and
    stops when the show ends.
    """
    logs: list[str] = []
    ws_url = sfu.replace("http://", "ws://") + "/ws"
    host = await SignalingClient.connect(ws_url)  # keeps the show open, publishes nothing
    await host.request("join", show_id="bob", role="performer")
    viewer = await open_page(browser, f"{sfu}/?role=viewer&show=bob", logs)
    await viewer.click("#watch")
    await wait_state(viewer, "waiting", logs)

    async def stats() -> Any:
        return await viewer.evaluate(RTP_STATS_JS)

    first = await publish(ws_url, "bob")  # pattern + tone
    second = None
    try:
        await wait_state(viewer, "live", logs)
        s = await poll(stats, lambda s: s["framesPerPc"][:1] > [0])
        assert s["framesPerPc"][:1] > [0], (s, logs)

        second = await publish(ws_url, "bob", tracks=[PatternTrack()])
        s = await poll(stats, lambda s: len(s["framesPerPc"]) == 2 and s["framesPerPc"][1] > 0)
        assert len(s["framesPerPc"]) == 2 and s["framesPerPc"][1] > 0, (s, logs)
        assert await viewer.evaluate("window.jasmin.producers.size") == 3

        await second.close()
        second = None
        n = await poll(lambda: viewer.evaluate("window.jasmin.pcs.length"), lambda n: n == 1)
        assert n == 1, logs
        assert await viewer.evaluate("window.jasmin.producers.size") == 2
    finally:
        if second is not None:
            await second.close()
        await first.close()
        await host.close()
    await wait_state(viewer, "ended", logs)
    assert await viewer.evaluate("window.jasmin.pcs.length") == 0
