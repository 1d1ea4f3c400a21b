"""The cluster at the daemon's edges (docs/cluster.md): WHIP/WHEP redirects, a registry outage as seen
by a client, /readyz and /metrics, and the login throttle shared by two daemons' REST.

Daemons run in this process on 127.0.0.1 with a ``[cluster]`` section on the real Redis (a key prefix
of the test's own, deleted afterwards), or on a closed port for the outage.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCSessionDescription

from bench.peers import new_pc, publish, subscribe, wait_for
from jasmin_signaling.client import RemoteError, SignalingClient
from jasmin_sfu.app import Daemon
from jasmin_sfu.config import AdmissionConfig, BillingConfig, Config, PaymentsConfig
from tests.api.conftest import Api, MakeNode, accounts_config
from tests.conftest import scrape_metrics
from tests.conftest import test_config as loopback_config
from tests.realparts import FakeClock, closed_port


async def whep_offer() -> tuple[Any, str]:
    pc = new_pc()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, str(pc.localDescription.sdp)


async def post_whep(s: aiohttp.ClientSession, url: str, pcs: list[Any]) -> tuple[int, str, dict[str, Any]]:
    """A WHEP POST of a fresh recvonly offer to ``url``, redirects not followed: status, Location, JSON body."""
    pc, sdp = await whep_offer()
    pcs.append(pc)
    async with s.post(url, data=sdp.encode(), allow_redirects=False, headers={"Content-Type": "application/sdp"}) as r:
        body = await r.json() if r.content_type == "application/json" else {}
        return r.status, r.headers.get("Location", ""), body


async def test_whep_on_a_node_without_the_show_is_served_through_a_relay_and_307_when_full(
    prefix: str, make_node: MakeNode
) -> None:
    """Protects WHEP across nodes (docs/cluster.md, "Relays"): a WHEP POST for a show live on node a,
    sent to node b with room, is answered by b itself (201) with a relayed copy of the show (b's
    transport consumes replica producers, and b's metrics count the edge placement); once b is full
    (admission), the next one is 307 with Location /whep/{show} on a (RFC 9725's redirect, `moved`),
    and b makes no session for it."""
    a = await make_node("a", prefix)
    full_at_one = loopback_config().replace(admission=AdmissionConfig(max_viewers_per_worker=1, max_cpu_share=0))
    b = await make_node("b", prefix, base=full_at_one)
    pub = await publish(f"ws://127.0.0.1:{a.port}/ws", "anna")
    pcs: list[Any] = []
    try:
        async with aiohttp.ClientSession() as s:
            status, _, body = await post_whep(s, f"http://127.0.0.1:{b.port}/whep/anna", pcs)
            assert status == 201, body
            assert b.relays is not None and b.relays.is_edge("anna")
            replicas = list(b.shows.shows["anna"].router.producers.values())
            assert {p.kind for p in replicas} == {"audio", "video"}
            assert all(p.app_data.get("relayed_from") == "a" for p in replicas)
            assert b.worker.counts()["transports"] == 1
            assert b.cluster is not None and b.cluster.stats.placements["edge"] == 1

            status, location, body = await post_whep(s, f"http://127.0.0.1:{b.port}/whep/anna", pcs)
            assert status == 307, body
            assert location == f"http://127.0.0.1:{a.port}/whep/anna"
            assert body["error"]["code"] == "moved"
        assert b.worker.counts()["transports"] == 1
    finally:
        for pc in pcs:
            await pc.close()
        await pub.close()


async def test_a_full_edge_sends_a_whep_viewer_where_a_websocket_viewer_goes_not_always_to_the_origin(
    prefix: str, make_node: MakeNode
) -> None:
    """Protects WHEP's share of issue 15's placement (docs/cluster.md, "Placement"): a WHEP POST on a
    full edge b is answered 307 to the node with room that already relays the show (c, although the
    idle d is less loaded), then, c full, to the least loaded node with room (d, a new edge), and to the
    show's origin a only when no other node has room; each Location is that node's /whep/{show}, and
    POSTing the same kind of offer there is served (201) by it through its relay. b counts each as a
    websocket join is counted (edge_elsewhere twice, held_elsewhere once) and makes no session for
    any of them. A full edge sending every WHEP viewer to the origin fails at the first 307."""
    a = await make_node("a", prefix)

    def room(n: int) -> Config:
        return loopback_config().replace(admission=AdmissionConfig(max_viewers_per_worker=n, max_cpu_share=0))

    b = await make_node("b", prefix, base=room(1))
    c = await make_node("c", prefix, base=room(2))
    d = await make_node("d", prefix, base=room(1))
    pub = await publish(f"ws://127.0.0.1:{a.port}/ws", "anna")
    fan = await SignalingClient.connect(f"ws://127.0.0.1:{c.port}/ws")
    pcs: list[Any] = []

    async def beats(*nodes: Daemon) -> None:
        # The full node decides from the last heartbeats: the others' first, then its own read.
        for n in (*nodes, b):
            assert n.cluster is not None
            await n.cluster.beat()

    try:
        await fan.request("join", show_id="anna", role="viewer")
        assert fan.moved_to is None and c.relays is not None and c.relays.is_edge("anna")
        async with aiohttp.ClientSession() as s:
            status, _, body = await post_whep(s, f"http://127.0.0.1:{b.port}/whep/anna", pcs)
            assert status == 201, body  # b's one viewer: b is full from now on
            await beats(a, c, d)
            for then in (c, d, a):
                status, location, body = await post_whep(s, f"http://127.0.0.1:{b.port}/whep/anna", pcs)
                assert status == 307 and body["error"]["code"] == "moved", body
                assert location == f"http://127.0.0.1:{then.port}/whep/anna", ([c.port, d.port, a.port], location)
                if then is not a:
                    status, _, body = await post_whep(s, location, pcs)
                    assert status == 201, body  # served there, through its relay: now full too
                    assert then.relays is not None and then.relays.is_edge("anna")
                    await beats(then)
        assert b.worker.counts()["transports"] == 1
        assert b.cluster is not None
        placements = b.cluster.stats.placements
        assert (placements["edge"], placements["edge_elsewhere"], placements["held_elsewhere"]) == (1, 2, 1)
        m = await scrape_metrics(f"http://127.0.0.1:{b.port}")
        assert m['jasmin_cluster_placements_total{decision="edge_elsewhere"}'] == 2
    finally:
        for pc in pcs:
            await pc.close()
        await fan.close()
        await pub.close()


async def test_a_node_without_redis_serves_its_own_and_refuses_the_rest_with_invalid_state(make_node: MakeNode) -> None:
    """Protects the outage contract at the edge: with the registry unreachable, a new show's performer
    and a viewer of a show not live here get invalid_state (never a crash, never `moved` to a guess),
    /readyz stays 200 and says placements are refused, /metrics counts the failed heartbeats."""
    d = await make_node("lonely", "jcluster_none", redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    url = f"ws://127.0.0.1:{d.port}/ws"
    for role in ("performer", "viewer"):
        c = await SignalingClient.connect(url)
        with pytest.raises(RemoteError) as e:
            await c.request("join", show_id="new-show", role=role)
        assert e.value.code == "invalid_state" and "registry" in e.value.message
        assert not c.closed  # the connection stays up
        await c.close()
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{d.port}/readyz") as r:
            body = await r.json()
    assert r.status == 200
    assert body["cluster"]["registry"] == "unreachable" and body["cluster"]["placements"] == "refused"
    m = await scrape_metrics(f"http://127.0.0.1:{d.port}")
    assert m["jasmin_cluster_heartbeat_failures_total"] >= 1 and m["jasmin_cluster_registry_up"] == 0
    assert m["jasmin_cluster_unavailable_refusals_total"] >= 1


async def test_failed_logins_through_two_nodes_count_once(tmp_path: Path, prefix: str, make_node: MakeNode) -> None:
    """Protects the shared login throttle through REST: 10 failed logins of one name spread over two
    nodes lock the name on both (429 with Retry-After, even with the right password), where two
    separate in-process counts would each still allow 5 more. The chat's limits count in the same
    shared windows (their rules: tests/services/test_cluster.py)."""
    clock = FakeClock()
    base = loopback_config(accounts=accounts_config(str(tmp_path)))
    a = await make_node("a", prefix, base=base, clock=clock)
    b = await make_node("b", prefix, base=base, clock=clock)
    assert a.accounts is not None
    for node in (a, b):
        assert node.chat is not None and node.limit_windows is not None and node.chat.windows is node.limit_windows
    async with aiohttp.ClientSession() as s:
        async with s.post(
            f"http://127.0.0.1:{a.port}/api/v1/accounts",
            json={"username": "gina", "password": "password-gina", "adult_confirmed": True},
        ) as r:
            assert r.status == 201, await r.text()
        for i in range(10):
            node = a if i % 2 else b
            async with s.post(
                f"http://127.0.0.1:{node.port}/api/v1/sessions", json={"username": "gina", "password": "nope-nope"}
            ) as r:
                assert r.status == 401
        for node in (a, b):
            async with s.post(
                f"http://127.0.0.1:{node.port}/api/v1/sessions", json={"username": "gina", "password": "password-gina"}
            ) as r:
                assert r.status == 429 and int(r.headers["Retry-After"]) == 900
        clock.advance(901)
        async with s.post(
            f"http://127.0.0.1:{b.port}/api/v1/sessions", json={"username": "gina", "password": "password-gina"}
        ) as r:
            assert r.status == 201


async def test_search_on_one_node_sees_a_performer_live_on_another(
    tmp_path: Path, prefix: str, make_node: MakeNode
) -> None:
    """Protects "online" across nodes (docs/cluster.md, Limits): a performer live on node a is online in
    node b's search (after b's next heartbeat) and offline again there once the show ended on a."""
    clock = FakeClock()

    # One ledger and one accounts store for the site; an outbox per node (each owns its own: docs/money.md).
    def billing(node_id: str) -> BillingConfig:
        return BillingConfig(data_dir=str(tmp_path), outbox_dir=str(tmp_path / node_id), node_id=node_id)

    base = loopback_config(
        billing=billing("api1"), accounts=accounts_config(str(tmp_path)), payments=PaymentsConfig(provider="test")
    )
    a = await make_node("a", prefix, base=base, clock=clock)
    b = await make_node("b", prefix, base=base.replace(billing=billing("api2")), clock=clock)
    async with aiohttp.ClientSession() as session:
        on_a = Api(a, f"http://127.0.0.1:{a.port}", f"ws://127.0.0.1:{a.port}/ws", clock, session)
        on_b = Api(b, f"http://127.0.0.1:{b.port}", f"ws://127.0.0.1:{b.port}/ws", clock, session)
        performer, _ = await on_a.performer(await on_a.admin_token(), "cat")
        member, _ = await on_b.member("sam")

        async def online_on_b() -> list[str]:
            assert b.cluster is not None
            await b.cluster.beat()
            status, body, _ = await on_b.call("GET", "/api/v1/search/performers?online=true", token=member)
            assert status == 200, body
            return [r["username"] for r in body["results"]]

        assert await online_on_b() == []
        live = await SignalingClient.connect(on_a.ws)
        await live.request("join", show_id="cat", role="performer", token=performer)
        try:
            assert await online_on_b() == ["cat"]
        finally:
            await live.close()
        assert a.cluster is not None

        async def ended() -> bool:
            assert a.cluster is not None
            await a.cluster.beat()  # the origin releases the record of a show that ended
            return await online_on_b() == []

        for _ in range(100):
            if await ended():
                break
            await asyncio.sleep(0.05)
        assert await online_on_b() == []


async def test_an_edge_serves_guests_and_members_and_sends_performers_to_the_origin(
    prefix: str, make_node: MakeNode
) -> None:
    """Protects the money and the privacy rule across nodes: an edge show has no performer and no private
    flow of its own. A member reaching it is served there, and its private request goes to the
    origin's flow (tests/api/test_cluster_edge_members.py has the private itself); the show's
    performer joining through the edge is sent to the origin instead of becoming the edge show's
    performer. /readyz
    lists the edge show and its pipe; a second guest of the flowing relay is served without waiting
    for the origin (the relay's refresh runs in the background)."""
    a = await make_node("a", prefix)
    b = await make_node("b", prefix)
    pub = await publish(f"ws://127.0.0.1:{a.port}/ws", "anna")
    guest = await SignalingClient.connect(f"ws://127.0.0.1:{b.port}/ws")
    member = await SignalingClient.connect(f"ws://127.0.0.1:{b.port}/ws")
    second = await SignalingClient.connect(f"ws://127.0.0.1:{b.port}/ws")
    try:
        joined = await guest.request("join", show_id="anna", role="viewer")
        assert guest.moved_to is None and len(joined["producers"]) == 2
        assert joined["state"] == "free"  # the origin's state, not the edge show's own (offline)
        assert b.relays is not None and b.relays.is_edge("anna")
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{b.port}/readyz") as r:
            relays = (await r.json())["cluster"]["relays"]
        assert relays["edge_shows"] == {"anna": "a"}
        assert [(p["peer_node"], p["role"], len(p["replicas"])) for p in relays["pipes"]] == [("a", "edge", 2)]

        await member.request("join", show_id="anna", role="viewer", member_id="m1")
        assert member.moved_to is None
        assert (await member.request("private.request"))["state"] == "free"
        assert set(a.shows.shows["anna"].machine.requests) == {"m1"}
        assert not b.shows.shows["anna"].machine.requests  # the edge show runs no private flow

        # A second guest of the flowing relay is served at once; the refresh runs in the background.
        await second.request("join", show_id="anna", role="viewer")
        assert second.moved_to is None and b.relays.stats.served_warm == 2  # the member's join was warm too
        assert await wait_for(lambda: b.relays is not None and b.relays.stats.opened_as_edge == 3, 10)
        await second.request("leave")
        await second.request("join", show_id="anna", role="performer")
        assert second.moved_to == f"ws://127.0.0.1:{a.port}/ws"
        assert not b.shows.shows["anna"].performers
    finally:
        await guest.close()
        await member.close()
        await second.close()
        await pub.close()


async def test_a_relay_refresh_keeps_the_edges_keyframe_cache(prefix: str, make_node: MakeNode) -> None:
    """Protects the edge's time to first frame: each viewer join refreshes the relay (the track list),
    and the refresh must not clear the replica's keyframe cache, the frame a new viewer of the edge is
    shown at once (clearing it made every edge viewer wait for the performer's next keyframe: about
    1.4x the origin's TTFF in bench.relay_ttff)."""
    a = await make_node("a", prefix)
    b = await make_node("b", prefix)
    pub = await publish(f"ws://127.0.0.1:{a.port}/ws", "anna")
    viewer = await subscribe(f"ws://127.0.0.1:{b.port}/ws", "anna")
    joiner = await SignalingClient.connect(f"ws://127.0.0.1:{b.port}/ws")
    try:
        assert viewer.client.moved_to is None
        assert await wait_for(lambda: viewer.frames.get("video", 0) >= 5, 30)
        (video,) = [p for p in b.shows.shows["anna"].router.producers.values() if p.kind == "video"]
        kc = video.keyframe_cache
        assert kc is not None and kc.frame
        frame = kc.frame
        assert b.relays is not None
        opened = b.relays.stats.opened_as_edge
        await joiner.request("join", show_id="anna", role="viewer")  # no subscribe: no keyframe request
        assert await wait_for(lambda: b.relays is not None and b.relays.stats.opened_as_edge == opened + 1, 10)
        assert kc.frame is frame
    finally:
        await joiner.close()
        await viewer.close()
        await pub.close()


async def test_a_track_published_after_the_relay_opened_reaches_the_edges_viewers(
    prefix: str, make_node: MakeNode
) -> None:
    """Protects `producer.added` across nodes: a second performer of a group show publishes on the origin
    after an edge opened its relay; the edge learns of the new tracks over the pipe (JNEW, no viewer join
    needed), replicates them, and its viewer is told `producer.added` for each, then subscribes to them
    and they stream."""
    a = await make_node("a", prefix)
    b = await make_node("b", prefix)
    first = await publish(f"ws://127.0.0.1:{a.port}/ws", "duo")
    fan = await SignalingClient.connect(f"ws://127.0.0.1:{b.port}/ws")
    second = None
    try:
        joined = await fan.request("join", show_id="duo", role="viewer")
        assert fan.moved_to is None and len(joined["producers"]) == 2
        second = await publish(f"ws://127.0.0.1:{a.port}/ws", "duo")
        new_ids = {p["producer_id"] for p in second.producers}
        told = {(await fan.next_event("producer.added"))["data"]["producer"]["producer_id"] for _ in range(2)}
        assert told == new_ids
        assert new_ids <= set(b.shows.shows["duo"].router.producers)
        viewer = new_pc()
        try:
            res = await fan.request("subscribe", producer_ids=sorted(new_ids))
            await viewer.setRemoteDescription(RTCSessionDescription(sdp=res["sdp"], type="offer"))
            await viewer.setLocalDescription(await viewer.createAnswer())
            await fan.request("answer", transport_id=res["transport_id"], sdp=viewer.localDescription.sdp)
            replicas = [b.shows.shows["duo"].router.producers[i] for i in new_ids]
            assert await wait_for(lambda: all(p.packets > 20 for p in replicas), 20)
        finally:
            await viewer.close()
    finally:
        await fan.close()
        if second is not None:
            await second.close()
        await first.close()


async def test_an_edge_show_outlives_a_republish_and_ends_with_the_origins_show(
    prefix: str, make_node: MakeNode
) -> None:
    """Protects an edge show's lifetime: the performer unpublishing and publishing again (seconds
    apart) leaves the edge show up, its viewer told producer.removed then producer.added for the new
    tracks, never show.ended; the performer leaving the origin ends the edge show (show.ended)."""
    a = await make_node("a", prefix)
    b = await make_node("b", prefix)
    pub = await publish(f"ws://127.0.0.1:{a.port}/ws", "solo")
    fan = await SignalingClient.connect(f"ws://127.0.0.1:{b.port}/ws")
    try:
        await fan.request("join", show_id="solo", role="viewer")
        assert b.relays is not None and b.relays.is_edge("solo")
        await pub.client.request("unpublish")
        await pub.pc.close()
        for _ in range(2):
            await fan.next_event("producer.removed")
        await asyncio.sleep(2.5)  # more than two RTCP intervals with no track on the edge
        assert b.relays.is_edge("solo") and not b.shows.shows["solo"].closed
        again = await publish(f"ws://127.0.0.1:{a.port}/ws", "solo", client=pub.client)
        new_ids = {p["producer_id"] for p in again.producers}
        told = {(await fan.next_event("producer.added"))["data"]["producer"]["producer_id"] for _ in range(2)}
        assert told == new_ids
        await again.pc.close()
        await pub.client.request("leave")
        ended = await fan.next_event("show.ended")
        assert ended["data"]["show_id"] == "solo"
        assert await wait_for(lambda: b.relays is not None and not b.relays.is_edge("solo"), 10)
    finally:
        await fan.close()
        await pub.close()


async def test_a_refused_relay_falls_back_to_moved(
    prefix: str, make_node: MakeNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Protects the failure path of an edge: when the origin refuses the relay (here: the edge signs its
    control request with another secret, as a misconfigured node would), the guest is answered `moved`
    to the origin, never an error or a dead show, and the failure is counted; no edge show is left."""
    a = await make_node("a", prefix)
    b = await make_node("b", prefix)
    assert b.relays is not None
    monkeypatch.setattr(b.relays, "secret", "w" * 40)
    pub = await publish(f"ws://127.0.0.1:{a.port}/ws", "anna")
    guest = await SignalingClient.connect(f"ws://127.0.0.1:{b.port}/ws")
    try:
        await guest.request("join", show_id="anna", role="viewer")
        assert guest.moved_to == f"ws://127.0.0.1:{a.port}/ws"
        assert b.relays.stats.failures == 1 and not b.relays.is_edge("anna")
        assert a.relays is not None and a.relays.stats.refused == 1
        m = await scrape_metrics(f"http://127.0.0.1:{b.port}")
        assert m["jasmin_relay_failures_total"] == 1
    finally:
        await guest.close()
        await pub.close()
