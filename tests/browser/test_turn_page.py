"""A viewer whose network drops all UDP watches the show through a real coturn (TURN over TCP
and over TLS), in real Chromium, and is blocked in a private and resumes after it.

Three network namespaces, nothing leaves the machine (``bench/coturn.py``):

* this test's own (``make test-browser`` runs it under ``unshare --net``): the
  daemon, the performer's and the member's Chromium;
* ``turn``: coturn, listening on 10.213.3.1 (towards the viewer) and relaying
  from 10.213.1.2 (towards the node's media address 10.213.1.1);
* ``viewer``: the viewer's Chromium, with an nftables rule dropping every UDP
  packet. It reaches the page and the websocket over TCP (10.213.2.1) and
  coturn over TCP (10.213.3.1). It also has a route to the node's media
  address (through 10.213.2.1), so without the UDP rule it would use the
  node's host candidate directly: the relay pair is the rule's doing, not a
  missing route.

The node needs nothing for TURN: the relayed candidate reaches its UDP host
candidate from coturn's relay address.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from bench import coturn
from jasmin_sfu.app import Daemon
from jasmin_sfu.config import AccountsConfig, BillingConfig, Config, MediaConfig, ServerConfig, TurnConfig
from tests.browser.conftest import CHROMIUM_ARGS
from tests.browser.test_demo_page import poll, wait_state
from tests.browser.test_private_page import IN_FLIGHT_FRAMES, IN_FLIGHT_PACKETS, counters, open_page, show_stats, until
from tests.turn.parts import require

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SECRET = "browser-turn-secret-0123456789"
NODE_MEDIA, COTURN_RELAY = "10.213.1.1", "10.213.1.2"  # this namespace <-> turn
NODE_HTTP, VIEWER_HTTP = "10.213.2.1", "10.213.2.2"  # this namespace <-> viewer
COTURN_LISTEN, VIEWER_TURN = "10.213.3.1", "10.213.3.2"  # turn <-> viewer
URLS = {
    "tcp": f"turn:{COTURN_LISTEN}:{coturn.TURN_PORT}?transport=tcp",
    "tls": f"turns:{COTURN_LISTEN}:{coturn.TURNS_PORT}?transport=tcp",
}


@dataclasses.dataclass
class Net:
    turn: str
    viewer: str
    coturn: coturn.Coturn


@pytest.fixture
def net(tmp_path: Path) -> Any:
    require("turnserver", "nft")
    with coturn.namespace("turn") as turn_ns, coturn.namespace("viewer") as viewer_ns:
        coturn.veth(None, NODE_MEDIA, turn_ns, COTURN_RELAY)
        coturn.veth(None, NODE_HTTP, viewer_ns, VIEWER_HTTP)
        coturn.veth(turn_ns, COTURN_LISTEN, viewer_ns, VIEWER_TURN)
        coturn.route(viewer_ns, NODE_MEDIA, NODE_HTTP)
        coturn.drop_udp(viewer_ns)
        server = coturn.Coturn(turn_ns, tmp_path, SECRET, COTURN_LISTEN, COTURN_RELAY)
        try:
            yield Net(turn_ns, viewer_ns, server)
        finally:
            server.stop()


def node_config(transport: str) -> Config:
    return Config(
        server=ServerConfig(host="0.0.0.0", port=0),
        media=MediaConfig(listen_ips=(NODE_MEDIA,)),
        billing=BillingConfig(enabled=False),
        accounts=AccountsConfig(enabled=False, trust_client_ids=True),
        turn=TurnConfig(urls=(URLS[transport],), secret=SECRET, ttl_s=600),
    )


async def viewer_browser(pw: Any, net: Net, tmp_path: Path) -> Any:
    """Chromium started inside the viewer namespace (a wrapper around /usr/bin/chromium);
    Playwright drives it over its pipes, which no namespace affects."""
    wrapper = tmp_path / "chromium-in-viewer-ns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {net.viewer} /usr/bin/chromium "$@"\n')
    wrapper.chmod(0o755)
    args = [a for a in CHROMIUM_ARGS if not a.startswith("--host-resolver-rules")] + [
        # The page and coturn (Chromium maps even IP literals through these rules, TURN over TCP too).
        f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {NODE_HTTP} , EXCLUDE {COTURN_LISTEN}",
        "--ignore-certificate-errors",  # coturn's test certificate, for TURN over TLS
    ]
    return await pw.chromium.launch_persistent_context(
        str(tmp_path / "viewer-profile"), executable_path=str(wrapper), headless=True, args=args
    )


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_udp_blocked_viewer_watches_through_coturn_and_is_held_in_a_private(
    net: Net, browser: Any, async_playwright: Any, tmp_path: Path, transport: str
) -> None:
    """Protects viewers behind UDP-blocking networks: with only the TURN server the join answer
    named, a Chromium viewer whose UDP is all dropped decodes the show through coturn; its own
    getStats names the selected pair's local candidate a relay reached over TCP or TLS. Over
    TCP it also goes through a private like a UDP viewer: its consumers are blocked and its
    counters stop, and it decodes again on the same peer connection when the show is free."""
    daemon = Daemon(node_config(transport))
    await daemon.start()
    logs: list[str] = []
    try:
        async with async_playwright() as pw:
            viewer_ctx = await viewer_browser(pw, net, tmp_path)
            try:
                await _watch(daemon, browser, viewer_ctx, net, transport, logs)
            finally:
                await viewer_ctx.close()
    finally:
        await daemon.stop()
    assert not [line for line in logs if "pageerror" in line], logs


async def _watch(daemon: Daemon, browser: Any, viewer_ctx: Any, net: Net, transport: str, logs: list[str]) -> None:
    performer = await open_page(browser, f"http://127.0.0.1:{daemon.port}/?role=performer&show=s1", "performer", logs)
    await performer.click("#go-live")
    await wait_state(performer, "live", logs)

    guest = await open_page(viewer_ctx, f"http://{NODE_HTTP}:{daemon.port}/?role=viewer&show=s1", "guest", logs)
    await guest.click("#watch")
    await wait_state(guest, "live", logs)
    assert await guest.evaluate("jasmin.iceServers.map(s => s.urls)") == [[URLS[transport]]]
    first = await poll(lambda: show_stats(guest), lambda s: s["video"]["framesDecoded"] > 10)
    assert first["video"]["framesDecoded"] > 10 and first["audio"]["packets"] > 0, await _why(guest, first, net, logs)
    pairs = await guest.evaluate("jasmin.showPairs()")
    assert pairs and all(
        p["localType"] == "relay" and p["relayProtocol"] == transport and p["state"] == "succeeded" for p in pairs
    ), pairs
    assert coturn.udp_dropped(net.viewer) > 0  # Chromium did try UDP; the rule dropped it
    if transport == "tls":
        return

    # A member (ordinary network) takes the show private: the relayed guest is held like any guest.
    member = await open_page(browser, f"http://127.0.0.1:{daemon.port}/?role=viewer&show=s1&member=m1", "member", logs)
    await member.click("#watch")
    await wait_state(member, "live", logs)
    await guest.evaluate("window.guestPc = jasmin.pc")
    guest_session = await guest.evaluate("jasmin.sessionId")
    show = daemon.shows.get("s1")
    assert show is not None
    router = show.router

    def guest_consumers() -> list[Any]:
        return [c for c in router.consumers.values() if c.audience_key == guest_session]

    await member.click("#request-private")
    await performer.click('.accept-private[data-member="m1"]')
    await until(performer, "jasmin.lastAccept", logs)
    assert len(guest_consumers()) == 2 and all(c.blocked for c in guest_consumers())
    await until(guest, "jasmin.showState === 'private'", logs)
    held = await show_stats(guest)
    server_held = sum(c.packets for c in guest_consumers())
    member_a = await show_stats(member)
    member_b = await poll(
        lambda: show_stats(member), lambda s: s["video"]["framesDecoded"] >= member_a["video"]["framesDecoded"] + 30
    )
    assert member_b["video"]["framesDecoded"] >= member_a["video"]["framesDecoded"] + 30, (member_a, member_b)
    grew = [b - a for a, b in zip(counters(held), counters(await show_stats(guest)))]
    assert grew[0] <= IN_FLIGHT_FRAMES and grew[1] <= IN_FLIGHT_PACKETS and grew[2] <= IN_FLIGHT_PACKETS, grew
    assert sum(c.packets for c in guest_consumers()) == server_held

    # The private ends, the performer returns to free chat: the guest decodes again, same pc, still relayed.
    await member.click("#end-private")
    await until(performer, "jasmin.showState === 'member_chat'", logs)
    before = await show_stats(guest)
    await performer.click("#back-to-free")
    await until(guest, "jasmin.showState === 'free'", logs)
    again = await poll(
        lambda: show_stats(guest), lambda s: s["video"]["framesDecoded"] > before["video"]["framesDecoded"] + 10
    )
    assert again["video"]["framesDecoded"] > before["video"]["framesDecoded"] + 10, (before, again, logs)
    assert await guest.evaluate("[jasmin.pcs.length, jasmin.pc === window.guestPc, jasmin.pc.connectionState]") == [
        1,
        True,
        "connected",
    ]
    pairs = await guest.evaluate("jasmin.showPairs()")
    assert all(p["localType"] == "relay" and p["relayProtocol"] == "tcp" for p in pairs), pairs


async def _why(page: Any, sample: Any, net: Net, logs: list[str]) -> str:
    """What the page, its peer connections and coturn say (for a failure message)."""
    state = await page.evaluate(
        "(async () => ({state: jasmin.state, error: jasmin.lastError, producers: jasmin.producers.size,"
        " pcs: jasmin.pcs.map(pc => [pc.connectionState, pc.iceConnectionState, pc.iceGatheringState]),"
        " pairs: await jasmin.showPairs()}))()"
    )
    return "\n".join([repr(sample), repr(state), *logs[-30:], net.coturn.log.read_text()[-3000:]])
