"""What the node's aiortc receivers keep (issue 16: memory per viewer and per show).

aiortc gives each video receiver a receive-side bandwidth estimator of 1000 bucket
objects (~97 KB); the node never feeds it (its RTP is tapped before the receiver, a
viewer sends none, the REMB toward a performer is the node's own), so its receivers
get a stand-in that builds it only on a first packet (``aiortc_adapter.lazy_receiver_estimators``).
"""

from __future__ import annotations

from typing import Any

from jasmin_sfu.media.aiortc_adapter import LazyBitrateEstimator
from jasmin_sfu.media.settings import MediaSettings
from jasmin_sfu.media.worker import Worker
from tests.media.test_listeners import consumed, published


def estimator(receiver: Any) -> Any:
    return getattr(receiver, "_RTCRtpReceiver__remote_bitrate_estimator", "moved")


async def test_the_nodes_receivers_keep_no_bandwidth_estimator_and_media_still_flows() -> None:
    """Protects the per-viewer saving: after negotiation, no receiver of the publisher's
    or the viewer's transport has built aiortc's estimator (its stand-in holds none), and
    the viewer's consumers still forward the publisher's packets."""
    w = Worker(MediaSettings())
    try:
        router, pub_t, producers, client = await published(w)
        view_t, consumers, viewer = await consumed(router)
        receivers = [t.receiver for t in pub_t.pc.getTransceivers() + view_t.pc.getTransceivers()]
        assert len(receivers) == 4
        # aiortc builds one for video receivers only (audio: None); the node's is the stand-in, empty.
        kept = [estimator(r) for r in receivers]
        assert all(e is None or (isinstance(e, LazyBitrateEstimator) and e.real is None) for e in kept), kept
        assert sum(isinstance(e, LazyBitrateEstimator) for e in kept) == 2, kept
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
