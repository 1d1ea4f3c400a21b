"""What the node's aiortc receivers keep (issue 16: memory per viewer and per show).

aiortc gives each video receiver a receive-side bandwidth estimator of 1000 bucket
objects (~97 KB); the node never feeds it (its RTP is tapped before the receiver, a
viewer sends none, the REMB toward a performer is the node's own), so its transports
let it go (``aiortc_adapter.drop_receive_estimator``).
"""

from __future__ import annotations

from typing import Any

from jasmin_sfu.media.settings import MediaSettings
from jasmin_sfu.media.worker import Worker
from tests.media.test_listeners import consumed, published


def estimator(receiver: Any) -> Any:
    return getattr(receiver, "_RTCRtpReceiver__remote_bitrate_estimator", "moved")


async def test_the_nodes_receivers_keep_no_bandwidth_estimator_and_media_still_flows() -> None:
    """Protects the per-viewer saving: after negotiation, no receiver of the publisher's
    or the viewer's transport holds aiortc's estimator (the test's own aiortc peers, not
    the node's, keep theirs), and the viewer's consumers still forward the publisher's
    packets."""
    w = Worker(MediaSettings())
    try:
        router, pub_t, producers, client = await published(w)
        view_t, consumers, viewer = await consumed(router)
        receivers = [t.receiver for t in pub_t.pc.getTransceivers() + view_t.pc.getTransceivers()]
        assert len(receivers) == 4
        assert all(estimator(r) is None for r in receivers), [estimator(r) for r in receivers]
        assert any(estimator(t.receiver) is not None for t in viewer.getTransceivers() if t.kind == "video")
        for _ in range(200):
            if all(c.packets > 0 for c in consumers):
                break
            import asyncio

            await asyncio.sleep(0.05)
        assert all(c.packets > 0 for c in consumers), [(c.kind, c.packets) for c in consumers]
        await client.close()
        await viewer.close()
    finally:
        await w.close()
