"""Teardown without noise: failed handshakes leave no error behind."""

from __future__ import annotations

import gc
import logging

import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCSessionDescription

from bench.peers import PatternTrack, new_pc, wait_for
from jasmin_sfu.media import aiortc_adapter as adapter

NEVER_RETRIEVED = "Task exception was never retrieved"


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_failed_connect_task_is_consumed_and_closes_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    """Protects item 10 of issue 11: aiortc runs its ICE/DTLS connect in a task nobody awaits;
    when it fails (here: DTLS cannot start without the peer's fingerprint, the AssertionError
    the issue saw) the loop logged "Task exception was never retrieved". The adapter's
    PeerConnection consumes it, logs one info line and closes the connection, which the
    transport's state handler sees. Two real aiortc peers over loopback."""
    caplog.set_level(logging.INFO, logger=adapter.__name__)
    client = new_pc()
    client.addTransceiver(PatternTrack(), direction="sendonly")
    await client.setLocalDescription(await client.createOffer())
    offer = "".join(x + "\r\n" for x in client.localDescription.sdp.split("\r\n") if x and not x.startswith("a=fingerprint"))
    server = adapter.PeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    await server.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    await server.setLocalDescription(await server.createAnswer())
    await client.setRemoteDescription(server.localDescription)
    assert await wait_for(lambda: server.connectionState == "closed", timeout=30), server.connectionState
    await client.close()
    gc.collect()
    assert any("could not connect: AssertionError" in r.getMessage() for r in caplog.records), caplog.text
    assert not [m for m in errors(caplog) if NEVER_RETRIEVED in m], caplog.text
