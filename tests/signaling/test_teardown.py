"""Teardown without noise: failed handshakes, ended shows and shutdown leave no error behind."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCSessionDescription

from bench.peers import PatternTrack, new_pc, publish, wait_for
from jasmin_signaling.client import SignalingClient
from jasmin_sfu.media import aiortc_adapter as adapter
from jasmin_sfu.shows.registry import ShowRegistry

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
    offer = "".join(
        x + "\r\n" for x in client.localDescription.sdp.split("\r\n") if x and not x.startswith("a=fingerprint")
    )
    server = adapter.PeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    await server.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    await server.setLocalDescription(await server.createAnswer())
    await client.setRemoteDescription(server.localDescription)
    assert await wait_for(lambda: server.connectionState == "closed", timeout=30), server.connectionState
    await client.close()
    gc.collect()
    assert any("could not connect: AssertionError" in r.getMessage() for r in caplog.records), caplog.text
    assert not [m for m in errors(caplog) if NEVER_RETRIEVED in m], caplog.text


class _Seat:
    """A participant of a show as the show sees it (the Participant protocol), without a socket."""

    def __init__(self, session_id: str, role: str) -> None:
        self.session_id, self.role = session_id, role
        self.member_id: str | None = None
        self.performer_id: str | None = None
        self.events: list[str] = []

    def notify(self, event: str, data: dict[str, object]) -> None:
        self.events.append(event)

    def show_ended(self) -> None:
        pass

    async def close_publisher(self, reason: str) -> None:
        pass


async def test_leaving_an_ended_show_is_idempotent(daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects item 12 of issue 11 at its root: removing a participant from a show that has
    already ended (a SIGTERM drain closes the shows while the sockets' close handlers still run)
    raised Rejected(invalid_state) from GoOffline. Now it is a no-op; and a late leave never
    closes a newer show opened under the same id."""
    shows: ShowRegistry = daemon.daemon.shows
    performer = _Seat("s-perf", "performer")
    old = shows.open("ended-show")
    old.add(performer)  # type: ignore[arg-type]
    await shows.close("ended-show")
    assert old.closed
    assert old.remove(performer) is False  # type: ignore[arg-type]
    new = shows.open("ended-show")
    assert new is not old
    await shows.close("ended-show", old)
    assert shows.get("ended-show") is new and not new.closed
    await shows.close("ended-show")


async def test_a_socket_closing_after_its_show_ended_logs_no_error(daemon, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """Protects item 12 of issue 11 end to end: a performer and viewers in a show; the viewers
    leave; the show is closed the way the SIGTERM drain closes it; then the performer's socket
    closes. Its close handler leaves the ended show: no `close handler failed` traceback."""
    pub = await publish(daemon.url, "show-drain")
    viewers = [await SignalingClient.connect(daemon.url) for _ in range(3)]
    for v in viewers:
        await v.request("join", show_id="show-drain", role="viewer")
    for v in viewers:
        await v.request("leave")
        await v.close()
    await daemon.daemon.shows.close("show-drain")
    await pub.close()
    assert await wait_for(lambda: not daemon.daemon.sessions, timeout=20)
    assert errors(caplog) == [], caplog.text


async def test_stop_right_after_viewers_leave_logs_no_error(make_daemon, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """Protects item 12 of issue 11 as the issue saw it: SIGTERM's drain (Daemon.stop) right
    after viewers left, three times over; no error-level record at all."""
    for round_ in range(3):
        d = await make_daemon()
        pub = await publish(d.url, f"show-stop-{round_}")
        viewer = await SignalingClient.connect(d.url)
        await viewer.request("join", show_id=f"show-stop-{round_}", role="viewer")
        await viewer.request("leave")
        await d.daemon.stop()
        await pub.pc.close()
        await pub.client.close()
        await viewer.close()
    gc.collect()
    assert errors(caplog) == [], caplog.text


async def test_refused_publishes_and_abrupt_disconnects_leave_no_unretrieved_task(  # type: ignore[no-untyped-def]
    daemon, caplog: pytest.LogCaptureFixture
) -> None:
    """Protects item 10 of issue 11 as the issue saw it: after `unsupported_codec` answers and
    abrupt disconnects (a publisher whose socket drops mid-handshake, its peer never answering)
    the log held "Task exception was never retrieved" from aiortc's connect task. Every task is
    consumed now: no error-level record at all, and no transport is left behind."""
    from tests.signaling.test_bad_input import audio_only

    for round_ in range(4):
        pc = new_pc()
        pc.addTransceiver(PatternTrack(), direction="sendonly")
        from bench.peers import ToneTrack

        pc.addTransceiver(ToneTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        c = await SignalingClient.connect(daemon.url)
        await c.request("join", show_id=f"show-abrupt-{round_}", role="performer")
        with pytest.raises(Exception) as e:
            await c.request("publish", sdp=audio_only("PCMU")(pc.localDescription.sdp))
        assert getattr(e.value, "code", None) == "unsupported_codec"
        await c.request("publish", sdp=pc.localDescription.sdp)  # accepted; the peer never answers
        await c.ws.close()  # abrupt: no leave, no unpublish
        await c.close()
        await pc.close()
    assert await wait_for(lambda: daemon.daemon.worker.counts()["transports"] == 0, timeout=20)
    gc.collect()
    await asyncio.sleep(0.1)
    gc.collect()
    assert errors(caplog) == [], caplog.text
