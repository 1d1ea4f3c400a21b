"""Overload over WHIP/WHEP: a node whose ICE port range is used up answers 503, not a 201 whose
answer no client could ever connect to. Only a node with a socket per peer connection
(`media.rtc_socket_per_peer = true`) can run out: the default shared socket is bound at start.
The node runs as its own process: the port range is a process-wide aioice hook, and the test's
own peers must not share it."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

import pytest

from bench.peers import publish
from bench.whip_peers import post_offer
from tests.conftest import DaemonProcess, start_daemon_process
from tests.realparts import closed_port
from tests.whip.test_whip_http import offer


@pytest.fixture
async def one_port_node() -> AsyncIterator[DaemonProcess]:
    port = closed_port()
    node = await start_daemon_process(
        {
            "JASMIN_MEDIA_RTC_MIN_PORT": str(port),
            "JASMIN_MEDIA_RTC_MAX_PORT": str(port),
            "JASMIN_MEDIA_LISTEN_IPS": "127.0.0.1",
            "JASMIN_MEDIA_RTC_SOCKET_PER_PEER": "true",
        }
    )
    yield node
    node.proc.terminate()
    node.proc.wait(10)


async def test_a_full_port_range_is_503(one_port_node: DaemonProcess, pcs: list[Any]) -> None:
    """Protects the overload status: with its only media port taken by the performer, the node
    answers a WHEP POST 503 `overloaded` with Retry-After (the websocket's `overloaded`, reason
    `media_ports`), instead of a 201 answer with no ICE candidate."""
    node = one_port_node
    pub = await publish(node.url, "show-full")  # the node's one port
    pcs.append(pub)
    status, body, headers = await post_offer(node.http + "/whep/show-full", await offer(pcs, send=False), None)
    assert (status, json.loads(body)["error"]["code"]) == (503, "overloaded"), body
    assert int(headers["Retry-After"]) > 0
