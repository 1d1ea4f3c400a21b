"""Chromium takes the node's RTCP sender reports (the worker's one timer, issue 16).

The demo performer page publishes (simulcast, as by default) and a viewer page watches;
the viewer's own ``getStats()`` shows a ``remote-outbound-rtp`` entry per stream, which
Chromium fills only from SRs it accepted: their packet and byte counts, how many came,
and the sender's NTP time.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from jasmin_sfu.app import Daemon
from jasmin_sfu.config import AccountsConfig, BillingConfig, Config, ServerConfig
from tests.support import open_page, poll, wait_state

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# Per kind: the viewer's inbound packets and bytes, and what its remote-outbound-rtp (the SRs) says.
SR_STATS_JS = """
async () => {
  const out = {};
  for (const pc of window.jasmin.pcs) {
    for (const s of (await pc.getStats()).values()) {
      if (s.type !== 'inbound-rtp' && s.type !== 'remote-outbound-rtp') continue;
      const acc = out[s.kind] || (out[s.kind] = {received: 0, sr: null});
      if (s.type === 'inbound-rtp') acc.received += s.packetsReceived || 0;
      else acc.sr = {packetsSent: s.packetsSent, bytesSent: s.bytesSent, reportsSent: s.reportsSent,
                     remoteTimestamp: s.remoteTimestamp};
    }
  }
  return out;
}
"""


@pytest.fixture
async def sfu() -> AsyncIterator[tuple[str, Daemon]]:
    daemon = Daemon(
        Config(
            server=ServerConfig(host="127.0.0.1", port=0),
            billing=BillingConfig(enabled=False),
            accounts=AccountsConfig(enabled=False, trust_client_ids=True),
        )
    )
    await daemon.start()
    try:
        yield f"http://127.0.0.1:{daemon.port}", daemon
    finally:
        await daemon.stop()


async def test_chromium_accepts_the_nodes_sender_reports(sfu: tuple[str, Daemon], browser: Any) -> None:
    """Protects the viewers' SRs in a real browser: for audio and video, Chromium's
    remote-outbound-rtp shows several reports with packet counts that are at most what
    it received (they count what was sent before each SR) and a sender NTP time."""
    url, daemon = sfu
    logs: list[str] = []
    performer = await open_page(browser, f"{url}/?role=performer&show=srs", logs)
    await performer.click("#go-live")
    await wait_state(performer, "live", logs)
    viewer = await open_page(browser, f"{url}/?role=viewer&show=srs", logs)
    await viewer.click("#watch")
    await wait_state(viewer, "live", logs)

    def ok(s: Any) -> bool:
        return all(
            k in s and s[k]["sr"] is not None and (s[k]["sr"]["reportsSent"] or 0) >= 3 for k in ("audio", "video")
        )

    stats = await poll(lambda: viewer.evaluate(SR_STATS_JS), ok)
    assert ok(stats), (stats, logs)
    for kind in ("audio", "video"):
        sr, received = stats[kind]["sr"], stats[kind]["received"]
        assert 0 < sr["packetsSent"] <= received, (kind, stats)
        assert sr["bytesSent"] > 0 and sr["remoteTimestamp"] > 0, (kind, stats)
    assert daemon.worker.sender_reports.streams >= 2  # type: ignore[union-attr]
