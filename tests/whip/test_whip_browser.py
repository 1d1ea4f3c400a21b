"""Clients no one here wrote, in headless Chromium: npm's @eyevinn/whip-web-client publishes
Chromium's fake camera to /whip, and npm's @eyevinn/webrtc-player plays it from /whep in
another page. Both pages come from another origin (a second port), listed in the node's
Origin allow-list, so CORS is exercised too.

The bundle is built by `make whip-clients` (npm + esbuild into tests/whip/js/build); without
it the test skips by name (and fails under CI=true)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from jasmin_sfu.api.origin import OriginPolicy
from jasmin_sfu.app import Daemon
from tests.api.conftest import Api
from tests.browser.conftest import (  # noqa: F401  (fixtures)
    _missing,
    async_playwright,
    browser,
    chromium_executable,
    loopback_only_network,
    node,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

BUNDLE = Path(__file__).parent / "js" / "build" / "whip-clients.js"
NO_BUNDLE = "WHIP/WHEP npm clients not built: run `make whip-clients` (npm install + esbuild in tests/whip/js)"
TIMEOUT_MS = 30_000

PAGE = """<!doctype html><meta charset="utf-8"><title>whip/whep</title>
<script>
  // Record every peer connection the third-party clients create, for getStats().
  window.pcs = [];
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.pcs.push(this); }
  };
  window.rtp = async (type) => {
    const out = {packets: 0, frames: 0, codecs: []};
    for (const pc of window.pcs) {
      const report = await pc.getStats();
      for (const s of report.values()) {
        if (s.type !== type) continue;
        out.packets += s.packetsReceived || s.packetsSent || 0;
        out.frames += s.framesDecoded || s.framesEncoded || 0;
        const c = s.codecId && report.get(s.codecId);
        if (c) out.codecs.push(c.mimeType);
      }
    }
    return out;
  };
</script>
<script src="/whip-clients.js"></script>
<video id="v" autoplay muted playsinline></video>
"""

PUBLISH_JS = """
async ([endpoint, token]) => {
  const stream = await navigator.mediaDevices.getUserMedia({video: true, audio: true});
  window.client = new WHIPClient({endpoint, opts: {iceServers: [], authkey: token}});
  await window.client.ingest(stream);
  return await window.client.getResourceUrl();
}
"""

PLAY_JS = """
async ([endpoint, token]) => {
  window.player = new WebRTCPlayer({video: document.getElementById('v'), type: 'whep', iceServers: []});
  await window.player.load(new URL(endpoint), 'Bearer ' + token);
}
"""


@pytest.fixture
async def pages_origin() -> AsyncIterator[str]:
    """Another origin on 127.0.0.1 serving the test page and the npm bundle."""
    if not BUNDLE.is_file():
        _missing(NO_BUNDLE)
    app = web.Application()

    async def page(_r: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def bundle(_r: web.Request) -> web.FileResponse:
        return web.FileResponse(BUNDLE)

    app.router.add_get("/", page)
    app.router.add_get("/whip-clients.js", bundle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/"
    await runner.cleanup()


async def test_npm_whip_client_publishes_and_npm_whep_player_plays(
    node: Daemon,  # noqa: F811 - the imported fixture
    browser: Any,  # noqa: F811 - the imported fixture
    pages_origin: str,
) -> None:
    """Protects interoperability with clients we did not write: @eyevinn/whip-web-client's
    POST/201/Location flow makes the show live from Chromium's camera, @eyevinn/webrtc-player's
    client-offer WHEP decodes its video in another page, and the publisher's destroy() (DELETE)
    ends the show."""
    http = f"http://127.0.0.1:{node.port}"
    # The pages' origin is listed, as a site lists its player pages (server.allowed_origins).
    node.whip.origins = OriginPolicy([pages_origin.rstrip("/")])
    async with aiohttp.ClientSession() as session:
        api = Api(node, http, http.replace("http", "ws") + "/ws", None, session)  # type: ignore[arg-type]
        admin = await api.admin_token()
        anna, _ = await api.performer(admin, "anna")
        status, g, _ = await api.call("POST", "/api/v1/guest-sessions", json={"adult_confirmed": True})
        assert status == 201
        guest = g["token"]

    pub = await browser.new_page()
    await pub.goto(pages_origin)
    resource = await pub.evaluate(PUBLISH_JS, [http + "/whip/anna", anna])
    assert resource.startswith(http + "/whip/anna/"), resource
    await pub.wait_for_function(
        "async () => (await window.rtp('outbound-rtp')).packets > 50", timeout=TIMEOUT_MS, polling=200
    )
    show = node.shows.get("anna")
    assert show is not None and show.machine.state.value == "free" and len(show.router.producers) == 2

    view = await browser.new_page()
    await view.goto(pages_origin)
    await view.evaluate(PLAY_JS, [http + "/whep/anna", guest])
    await view.wait_for_function(
        "async () => (await window.rtp('inbound-rtp')).frames > 30", timeout=TIMEOUT_MS, polling=200
    )
    await view.wait_for_function("document.getElementById('v').videoWidth > 0", timeout=TIMEOUT_MS)
    # Both kinds decoded: the audio stream's first stats (with its codec) may come a moment after 30
    # video frames (a fresh-clone CI run read them too early); if audio never comes this times out.
    await view.wait_for_function(
        "async () => { const s = await window.rtp('inbound-rtp');"
        " return s.codecs.some(c => c.startsWith('video/')) && s.codecs.includes('audio/opus'); }",
        timeout=TIMEOUT_MS,
        polling=200,
    )
    stats = await view.evaluate("window.rtp('inbound-rtp')")
    assert any(c.startswith("video/") for c in stats["codecs"]) and any(c == "audio/opus" for c in stats["codecs"])
    kinds = sorted(s.kind for s in node.whip.sessions.values())
    assert kinds == ["whep", "whip"]

    await pub.evaluate("window.client.destroy()")
    for _ in range(100):
        if node.shows.get("anna") is None:
            break
        await view.wait_for_timeout(100)
    assert node.shows.get("anna") is None
    await view.evaluate("window.player.unload()")
