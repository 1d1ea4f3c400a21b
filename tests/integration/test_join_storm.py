"""A join storm over loopback with real aiortc peers: the negotiations take turns, every join gets media."""

from __future__ import annotations

import asyncio

from bench.peers import publish, subscribe, wait_for
from jasmin_sfu.media.aiortc_adapter import LazyBitrateEstimator


async def test_a_storm_of_concurrent_joins_takes_turns_and_every_viewer_decodes(make_daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects issue 16's join-storm fix end to end: twelve viewers who join at once (join,
    subscribe, answer) each complete ICE and DTLS and decode the performer's video and audio; their
    negotiations and keyframe replays went through the worker's gate one at a time (some had to wait
    their turn, none overlapped), and no viewer's video transceiver built aiortc's receive-side
    estimator. One at a time (`media.negotiations_at_once = 1`), the strictest setting."""
    daemon = await make_daemon(negotiations_at_once=1)
    gate = daemon.daemon.worker.gate
    assert gate.at_once == 1
    pub = await publish(daemon.url, "show-storm")
    before = (gate.negotiations, gate.waited)
    viewers = await asyncio.gather(*(subscribe(daemon.url, "show-storm") for _ in range(12)))
    try:
        ok = await wait_for(
            lambda: all(v.frames.get("video", 0) >= 3 and v.frames.get("audio", 0) >= 5 for v in viewers),
            timeout=60,
        )
        assert ok, [v.frames for v in viewers]
        # A subscribe, an answer and the keyframe replay once DTLS is up, per viewer.
        assert gate.negotiations - before[0] == 36
        assert gate.waited - before[1] > 0
        assert gate.max_running == 1 and gate.running == 0
        router = daemon.daemon.worker.routers["show-storm"]
        sends = [t for t in router.transports.values() if t.direction == "send"]
        assert len(sends) == 12 and all(t.connection_state == "connected" for t in sends)
        for t in sends:
            for tr in t.pc.getTransceivers():
                if tr.kind == "video":
                    est = tr.receiver._RTCRtpReceiver__remote_bitrate_estimator
                    assert isinstance(est, LazyBitrateEstimator) and est.real is None
    finally:
        for v in viewers:
            await v.close()
        await pub.close()


async def test_the_default_gate_lets_a_few_negotiations_run_together(daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects the default (4 at a time, measured in bench/README.md): the worker's gate never
    runs more than four negotiations at once, and every viewer of a storm of eight decodes."""
    gate = daemon.daemon.worker.gate
    assert gate.at_once == 4
    pub = await publish(daemon.url, "show-storm-4")
    viewers = await asyncio.gather(*(subscribe(daemon.url, "show-storm-4") for _ in range(8)))
    try:
        assert await wait_for(lambda: all(v.frames.get("video", 0) >= 3 for v in viewers), timeout=60)
        assert 1 <= gate.max_running <= 4 and gate.running == 0
    finally:
        for v in viewers:
            await v.close()
        await pub.close()
