"""Three real daemons forming one site through the real Redis (docs/cluster.md).

Each node is a ``python -m jasmin_sfu serve`` process with a ``[cluster]``
section (environment), a key prefix of this test's own and a short TTL. The
performers and viewers are aiortc peers in this process, speaking to the nodes
through the Python SDK (jasmin_signaling.client), which follows a `moved`
answer once. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bench.peers import publish, subscribe, wait_for
from jasmin_signaling.client import Moved, RemoteError, SignalingClient
from tests.conftest import DaemonProcess, start_daemon_process, stop_daemons
from tests.realparts import REDIS_URL, redis_key_prefix
from tests.support import after, performer, watch

SECRET = "c" * 40


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    async with redis_key_prefix("jcluster") as name:
        yield name


def node_env(prefix: str, node_id: str, max_viewers: int, **extra: str) -> dict[str, str]:
    return {
        "JASMIN_CLUSTER_REDIS_URL": REDIS_URL,
        "JASMIN_CLUSTER_KEY_PREFIX": prefix,
        "JASMIN_CLUSTER_NODE_ID": node_id,
        "JASMIN_BILLING_NODE_ID": f"bill{node_id}",
        "JASMIN_CLUSTER_SECRET": SECRET,
        "JASMIN_CLUSTER_HEARTBEAT_INTERVAL_S": "0.2",
        "JASMIN_CLUSTER_TTL_S": "1.5",
        # Room is counted in viewers here; the CPU limit is off (the load tool shares these cores).
        "JASMIN_ADMISSION_MAX_VIEWERS_PER_WORKER": str(max_viewers),
        "JASMIN_ADMISSION_MAX_CPU_SHARE": "0",
        **extra,
    }


async def readyz(dp: DaemonProcess) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.get(dp.http + "/readyz") as r:
            body: dict[str, Any] = await r.json()
            assert r.status == 200, body
            return body


async def cluster_view(dp: DaemonProcess) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in (await readyz(dp))["cluster"]["nodes"]}


async def until(check: Any, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


async def test_three_nodes_place_redirect_and_replace_a_killed_origin(prefix: str) -> None:
    """Protects the cluster's control plane end to end:

    * three nodes register and each /readyz lists all three with their load;
    * a performer joining a full node is placed on the least loaded other node (by viewers) and the
      SDK follows the `moved` answer there; a viewer reaching a third node with room is served there
      through a relay from the show's node and receives media; one reaching the full node is sent
      to the show's node;
    * SIGKILL of that origin: its registry entry lapses after the TTL, the performer's next join
      (through the full node again) places the show on a live node, and a viewer that reconnects is
      sent there and receives media;
    * /metrics counts the placement decisions, the redirects and the relay on both of its ends.
    """
    a = await start_daemon_process(env=node_env(prefix, "a", 1))
    # b and c hold 2 viewers each: b's one viewer is half its room, far above any idle CPU share of c.
    b = await start_daemon_process(env=node_env(prefix, "b", 2))
    c = await start_daemon_process(env=node_env(prefix, "c", 2))
    peers: list[Any] = []
    try:

        async def all_three() -> bool:
            views = [set(await cluster_view(n)) for n in (a, b, c)]
            return all(v == {"a", "b", "c"} for v in views)

        await until(all_three)

        # a: one show with one viewer, so a is full (1 viewer of 1). b: one show with one viewer (1 of 2).
        for node, show in ((a, "on-a"), (b, "on-b")):
            pub = await publish(node.url, show)
            assert pub.client.moved_to is None  # a node with room keeps its own performer
            peers.append(pub)
            peers.append(await subscribe(node.url, show, decode=False, count=True))

        async def loads_seen() -> bool:
            # c settled too: a node's CPU share just after its start (imports, migrations, the
            # first heartbeats) can outweigh b's one viewer of 2 on a loaded machine.
            view = await cluster_view(c)
            return view["a"]["viewers"] == 1 and view["b"]["viewers"] == 1 and view["c"]["cpu"] < 0.3

        await until(loads_seen, 60.0)

        # A performer reaching the full node a goes to c (0 viewers), the least loaded with room.
        star = await publish(a.url, "star")
        peers.append(star)
        assert star.client.moved_to == c.url
        # A viewer reaching b (with room) is served by b, an edge fed by a relay from c, and receives
        # the show's media there; a viewer reaching the full node a is sent to c.
        fan = await subscribe(b.url, "star", decode=False, count=True)
        peers.append(fan)
        assert fan.client.moved_to is None
        assert await wait_for(lambda: fan.counter is not None and sum(fan.counter.packets.values()) >= 20, 30)

        async def b_full_seen_by_a() -> bool:
            # A full node sends a viewer to a node relaying the show while it has room, by loads
            # one heartbeat old: until a has seen b's second viewer, a would send this one to b
            # (full by then, which sends it on to c: the SDK follows `moved` once).
            return (await cluster_view(a))["b"]["viewers"] == 2

        await until(b_full_seen_by_a)
        sent = await subscribe(a.url, "star", decode=False, count=True)
        peers.append(sent)
        assert sent.client.moved_to == c.url
        ma, mb, mc = await a.metrics(), await b.metrics(), await c.metrics()
        assert ma['jasmin_cluster_placements_total{decision="remote"}'] == 1
        assert ma["jasmin_cluster_redirects_total"] >= 2
        assert mb['jasmin_cluster_placements_total{decision="edge"}'] == 1
        assert mb["jasmin_relay_replica_producers"] == 2 and mb["jasmin_relay_streams_in"] == 2
        assert mc["jasmin_relay_streams_out"] == 2 and mc["jasmin_relay_packets_out_total"] > 0

        # c dies without a word.
        c.proc.send_signal(signal.SIGKILL)
        await asyncio.get_running_loop().run_in_executor(None, c.proc.wait, 15)

        async def c_gone() -> bool:
            return set(await cluster_view(a)) == {"a", "b"}

        await until(c_gone)
        # Nobody is sent to the dead node: the show is not live anywhere until its performer returns.
        probe = await SignalingClient.connect(b.url)
        with pytest.raises(RemoteError) as e:
            await probe.request("join", show_id="star", role="viewer")
        assert e.value.code == "unknown_show"
        await probe.close()
        for p in (star, fan, sent):
            peers.remove(p)
            await p.close()

        async def b_has_room() -> bool:
            return (await cluster_view(a))["b"]["viewers"] == 1  # the relayed viewer has left b

        await until(b_has_room)
        # The performer comes back through the full node a: placed on b, the only node with room.
        star2 = await publish(a.url, "star")
        peers.append(star2)
        assert star2.client.moved_to == b.url
        fan2 = await subscribe(a.url, "star", decode=False, count=True)
        peers.append(fan2)
        assert fan2.client.moved_to == b.url
        assert await wait_for(lambda: fan2.counter is not None and sum(fan2.counter.packets.values()) >= 20, 30)
    finally:
        for p in peers:
            await p.close()
        await stop_daemons(a.proc, b.proc, c.proc)


async def test_a_client_follows_moved_only_once() -> None:
    """Protects the SDK's contract (docs/signaling.md, `moved`): a join answered `moved` twice in a row
    raises Moved with the second URL instead of wandering from node to node (a real websocket server
    that always answers `moved`, pointing at itself)."""
    port = 0

    async def always_moved(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame.get("type") == "hello":
                await ws.send_str(json.dumps({"type": "welcome", "session_id": "x", "protocol": "jasmin/1"}))
            elif frame.get("type") == "request":
                await ws.send_str(
                    json.dumps(
                        {
                            "type": "response",
                            "id": frame["id"],
                            "ok": False,
                            "error": {
                                "code": "moved",
                                "message": "elsewhere",
                                "url": f"ws://127.0.0.1:{port}/ws",
                                "node": "loop",
                                "http_url": f"http://127.0.0.1:{port}",
                            },
                        }
                    )
                )
        return ws

    app = web.Application()
    app.router.add_get("/ws", always_moved)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        client = await SignalingClient.connect(f"ws://127.0.0.1:{port}/ws")
        with pytest.raises(Moved) as e:
            await client.request("join", show_id="x", role="viewer")
        assert e.value.url == f"ws://127.0.0.1:{port}/ws" and e.value.node == "loop"
        assert client.moved_to == e.value.url  # followed once, then raised
        await client.close()
    finally:
        await runner.cleanup()


async def test_a_private_on_the_origin_cuts_every_relay_at_the_accept(prefix: str) -> None:
    """Protects exclusivity across nodes (issue 15): with a show published on node a, free viewers on a
    and on two edges b and c (served through relays), and the member on a, from ``accepted_at`` the free
    viewers of every node receive zero packets the performer sent after it, counted in payloads as in
    the single-node test, and are told the show is private (edges relay the origin's state); the
    member keeps getting video and audio; the origin stops feeding both relays in that step. Back to free chat, the edges' viewers decode video again (the relays restart
    on a fresh keyframe)."""
    # Billing off: this test counts packets (billing across nodes is the origin's, as on one node).
    free_privates = {"JASMIN_BILLING_ENABLED": "false"}
    a = await start_daemon_process(env=node_env(prefix, "a", 10, **free_privates))
    b = await start_daemon_process(env=node_env(prefix, "b", 10, **free_privates))
    c = await start_daemon_process(env=node_env(prefix, "c", 10, **free_privates))
    peers: list[Any] = []
    try:

        async def all_three() -> bool:
            return all([set(await cluster_view(n)) == {"a", "b", "c"} for n in (a, b, c)])

        await until(all_three)
        pub = await performer(a.url, "duo")
        peers.append(pub)
        free = [await watch(a.url, "duo"), await watch(b.url, "duo"), await watch(c.url, "duo")]
        member = await watch(a.url, "duo", member_id="m1")
        peers += [*free, member]
        assert all(v.client.moved_to is None for v in free)  # b and c serve their viewer as edges
        everyone = [*free, member]
        assert await wait_for(
            lambda: all(v.frames.get("video", 0) >= 3 and v.frames.get("audio", 0) >= 3 for v in everyone), 30
        )

        await member.client.request("private.request")
        await pub.client.next_event("private.requested")
        accepted = await pub.client.request("private.accept", member_id="m1")
        t_accept = accepted["accepted_at"]

        def member_after() -> list[tuple[int, float]]:
            return after(member, pub.log, t_accept)

        assert await wait_for(lambda: len({s for s, _ in member_after()}) == 2 and len(member_after()) >= 60, 20)
        assert sum(1 for t in pub.log.sent.values() if t > t_accept) >= 60  # not vacuous
        for v in free:
            assert after(v, pub.log, t_accept) == [], "a free viewer received media sent after the accept"
        for v in free:  # told on every node, without the member's identity
            ev = await v.client.next_event("show.state")
            assert ev["data"]["state"] == "private" and "member_id" not in ev["data"]
        assert (await a.metrics())["jasmin_relay_streams_out"] == 4  # still wanted by the edges...
        sent = (await a.metrics())["jasmin_relay_packets_out_total"]
        await asyncio.sleep(1.0)
        # ...but no media left a for them since (at most a NACK's resend of an older packet).
        assert (await a.metrics())["jasmin_relay_packets_out_total"] - sent < 20

        await member.client.request("private.end")
        await pub.client.request("show.free")
        edge_viewers = free[1:]
        for v in edge_viewers:  # through whatever the private's end passes by, to free chat
            while (await v.client.next_event("show.state"))["data"]["state"] != "free":
                pass
        counts = [v.frames.get("video", 0) for v in edge_viewers]
        assert await wait_for(lambda: all(v.frames.get("video", 0) >= n + 5 for v, n in zip(edge_viewers, counts)), 30)
    finally:
        for p in peers:
            await p.close()
        await stop_daemons(a.proc, b.proc, c.proc)
