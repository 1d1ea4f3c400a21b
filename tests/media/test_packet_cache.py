"""The NACK cache's bounds as the daemon sets them (issue 16: memory per show).

The cache's behaviour on a stream is in tests/media/test_retransmit.py (a window of
a long stream held, a NACK inside it served, one past it refused and counted); here,
that a publisher's video producer built by the node gets the age bound at all.
"""

from __future__ import annotations

import dataclasses


from jasmin_sfu.media.settings import MediaSettings
from jasmin_sfu.media.worker import Worker
from tests.media.test_listeners import published


async def test_a_published_video_producers_cache_is_bounded_by_nack_max_delay() -> None:
    """Protects the wiring of the bound: the node's producer caches hold at most
    ``media.nack_max_delay_ms`` of video (in 90 kHz ticks) within ``packet_cache_size``
    packets; audio has no cache."""
    w = Worker(dataclasses.replace(MediaSettings(), nack_max_delay_ms=700, packet_cache_size=512))
    try:
        _router, _transport, producers, client = await published(w)
        video = next(p for p in producers if p.kind == "video")
        audio = next(p for p in producers if p.kind == "audio")
        assert video.cache is not None and video.cache.size == 512
        assert video.cache.max_age_ticks == 700 * 90
        assert audio.cache is None
        await client.close()
    finally:
        await w.close()
