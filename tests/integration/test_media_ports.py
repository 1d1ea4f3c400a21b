"""A node whose UDP port range is used up answers with a clear error, on every path.

Only a node with a socket per peer connection (`media.rtc_socket_per_peer = true`) can run
out of ports: the default shared socket takes one port at start and every peer connection
shares it. The daemon runs as its own process (the port range is process-wide in aioice, and
the test's own aiortc peers must not be bound by it) with `media.rtc_min_port =
rtc_max_port`: one media port. The performer's transport takes it; every later
transport finds none and would hand its peer a description with no ICE candidate, a
connection that can never come up. The websocket answers `overloaded` with reason
`media_ports` (docs/signaling.md "Admission") and nothing is left behind; WHEP answers
503 `overloaded` with `Retry-After` (docs/whip-whep.md, tests/whip/test_whip_capacity.py).
"""

from __future__ import annotations

import asyncio
import signal
import socket

import pytest

from bench.peers import publish
from jasmin_signaling.client import Overloaded, SignalingClient
from tests.conftest import start_daemon_process


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_no_free_media_port_is_overloaded_on_the_websocket() -> None:
    """Protects the full-port-range answer: with one media port taken by the performer, a
    viewer's `subscribe` is refused `overloaded` (reason `media_ports`, retry_after_ms 5000)
    instead of getting an offer without candidates; its transport is closed (the node's
    transport count is back to the performer's one) and the connection stays usable (a
    second `subscribe` gets the same answer). WHEP's 503: tests/whip/test_whip_capacity.py."""
    port = free_udp_port()
    dp = await start_daemon_process(
        env={
            "JASMIN_MEDIA_RTC_MIN_PORT": str(port),
            "JASMIN_MEDIA_RTC_MAX_PORT": str(port),
            "JASMIN_MEDIA_RTC_SOCKET_PER_PEER": "true",
        }
    )
    pub = None
    viewer = None
    try:
        pub = await publish(dp.url, "show-ports")
        assert (await dp.metrics())["jasmin_transports"] == 1
        viewer = await SignalingClient.connect(dp.url)
        await viewer.request("join", show_id="show-ports", role="viewer")
        for _ in range(2):
            with pytest.raises(Overloaded) as info:
                await viewer.request("subscribe")
            assert info.value.code == "overloaded" and info.value.reason == "media_ports"
            assert info.value.retry_after_ms == 5000 and "media port" in info.value.message
        assert (await dp.metrics())["jasmin_transports"] == 1
    finally:
        if viewer is not None:
            await viewer.close()
        if pub is not None:
            await pub.close()
        dp.proc.send_signal(signal.SIGTERM)
        await asyncio.get_running_loop().run_in_executor(None, dp.proc.wait, 20)
