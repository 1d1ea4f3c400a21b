"""The node's TURN credentials against a real coturn (Debian's ``turnserver``, use-auth-secret).

coturn runs in a namespace the test creates, listening on 127.0.0.1 there; the
TURN client (aioice's, over UDP, TCP and TLS) is created inside that namespace
too (``bench/coturn.py``), so no packet leaves it and the machine's own
namespace is not changed.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from bench import coturn
from jasmin_sfu.api.ice_servers import IceServers
from tests.realparts import FakeClock
from tests.turn.parts import require

SECRET = "coturn-test-secret-0123456789"
HOST = "127.0.0.1"
TIMEOUT_S = 20.0


@pytest.fixture
async def turn_ns(tmp_path: Path) -> AsyncIterator[tuple[str, coturn.Coturn]]:
    require("turnserver")
    with coturn.namespace("cred") as ns:
        server = coturn.Coturn(ns, tmp_path, SECRET, HOST, HOST)
        try:
            yield ns, server
        finally:
            server.stop()


class _Sink(asyncio.DatagramProtocol):
    pass


async def allocate(ns: str, transport: str, username: str, password: str) -> tuple[str, int]:
    """One TURN Allocate inside ``ns`` (TLS: ``transport='tls'``); returns the relayed address."""
    tls: ssl.SSLContext | None = None
    if transport == "tls":
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE  # the test's self-signed certificate
    port = coturn.TURNS_PORT if transport == "tls" else coturn.TURN_PORT
    # The client's socket is created in coturn's namespace (nothing else of this test runs meanwhile).
    with coturn.entered(ns):
        relay, _ = await asyncio.wait_for(
            create_turn_endpoint(
                _Sink, (HOST, port), username, password, ssl=tls, transport="udp" if transport == "udp" else "tcp"
            ),
            TIMEOUT_S,
        )
    address = relay.get_extra_info("sockname")
    relay.close()
    return tuple(address)


def _issued(clock: FakeClock, secret: str = SECRET, ttl_s: int = 600) -> dict[str, Any]:
    (server,) = IceServers((f"turn:{HOST}:{coturn.TURN_PORT}",), secret, ttl_s, clock).issue()
    return server


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_coturn_accepts_the_nodes_credentials(turn_ns: tuple[str, coturn.Coturn], transport: str) -> None:
    """Protects the scheme coturn checks: a credential the node issues now is accepted by a real
    coturn (use-auth-secret, the same static-auth-secret) and yields a relayed address, over
    TURN/UDP, TURN/TCP and TURN/TLS."""
    ns, _ = turn_ns
    issued = _issued(FakeClock(time.time()))
    host, port = await allocate(ns, transport, issued["username"], issued["credential"])
    assert host == HOST and port > 0


async def test_coturn_refuses_expired_and_forged_credentials(turn_ns: tuple[str, coturn.Coturn]) -> None:
    """Protects the limits of a handed-out credential: once the configured lifetime has passed
    coturn answers 401 (the clock the node issued with was ttl_s + 1 seconds behind), and a
    credential made with another secret, or a valid one for another username, is 401 too."""
    ns, server = turn_ns
    expired = _issued(FakeClock(time.time() - 601))
    forged = _issued(FakeClock(time.time()), secret="not-the-coturn-secret-000")
    valid = _issued(FakeClock(time.time()))
    other_user = {**valid, "username": valid["username"].split(":")[0] + ":someone-else"}
    for creds in (expired, forged, other_user):
        with pytest.raises(stun.TransactionFailed) as refused:
            await allocate(ns, "tcp", creds["username"], creds["credential"])
        assert refused.value.response.attributes["ERROR-CODE"][0] == 401, (creds, server.log.read_text()[-2000:])
    # And the same coturn still takes a good one (the refusals were about the credentials).
    await allocate(ns, "tcp", valid["username"], valid["credential"])
