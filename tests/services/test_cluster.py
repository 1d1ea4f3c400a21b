"""The cluster registry (jasmin_sfu/services/cluster.py) and the shared limits' windows (login
throttle and chat messages: jasmin_sfu/services/redis_windows.py) against the real Redis on 127.0.0.1:6379.

Each test uses its own key prefix and deletes its keys afterwards. Clocks are
injected where a test reads times; a record's TTL lapsing is Redis's own clock
(short TTLs, polled with a generous deadline: no test asserts how long it took).
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest

from jasmin_sfu.services.chat import ChatService, ChatUser
from jasmin_sfu.services.cluster import ClusterNode, ClusterSettings, ClusterUnavailable, NodeLoad, Placement
from jasmin_sfu.services.errors import ChatRateLimitedError, LoginRateLimitedError
from jasmin_sfu.services.login_throttle import LoginThrottle, ThrottleSettings
from jasmin_sfu.services.redis_windows import RedisWindows
from jasmin_sfu.store.sqlite_chat import SqliteChatStore
from tests.realparts import HOST, REDIS_PORT, REDIS_URL, FakeClock, closed_port, redis_key_prefix

SECRET = "s" * 40


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    async with redis_key_prefix("jcluster") as name:
        yield name


class Box:
    """A node's load and shows, as the daemon would report them."""

    def __init__(self, **load: Any) -> None:
        self.load = NodeLoad(**load)
        self.shows: set[str] = set()
        self.edges: set[str] = set()  # shows it relays from their origins


def node(
    prefix: str,
    node_id: str,
    box: Box,
    *,
    secret: str = SECRET,
    url: str | None = None,
    ttl_s: float = 10.0,
    redis_url: str = REDIS_URL,
    billing: str | None = None,
) -> ClusterNode:
    s = ClusterSettings(
        redis_url,
        prefix,
        node_id,
        url or f"ws://{node_id}.test:8080/ws",
        secret,
        heartbeat_interval_s=ttl_s / 4,
        ttl_s=ttl_s,
    )
    return ClusterNode(
        s,
        lambda: box.load,
        lambda: box.shows,
        edge_shows=lambda: box.edges,
        billing_node_id=billing or f"bill{node_id}",
    )


async def eventually(check: Callable[[], Any], timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_nodes_register_with_their_load_and_see_each_other(prefix: str) -> None:
    """Protects the registry: every node's record (id, URL, viewers, publishers, CPU, limits) is read
    by the others after a heartbeat, and a stopped node's record goes at once."""
    a_box, b_box = Box(viewers=3, publishers=1, cpu=0.2, max_viewers=10), Box(viewers=0)
    a, b = node(prefix, "a", a_box), node(prefix, "b", b_box)
    await a.start()
    await b.start()
    try:
        await a.beat()
        seen = {n.id: n for n in a.nodes or []}
        assert set(seen) == {"a", "b"}
        assert seen["a"].load == a_box.load and seen["b"].url == "ws://b.test:8080/ws"
        view = a.describe()
        assert view["registry"] == "ok" and view["placements"] == "accepted"
        assert [n["id"] for n in view["nodes"]] == ["a", "b"] and view["nodes"][0]["viewers"] == 3
        assert all(n["heartbeat_age_s"] >= 0 for n in view["nodes"])
    finally:
        await b.stop()
    await a.beat()
    assert [n.id for n in a.nodes or []] == ["a"]
    await a.stop()


async def test_a_node_with_room_places_a_show_on_itself(prefix: str) -> None:
    """Protects placement rule 1: a performer's join on a node with room is placed there, and every
    node then finds the show there (viewers of another node are sent to it)."""
    a, b = node(prefix, "a", Box(viewers=1, max_viewers=10)), node(prefix, "b", Box())
    await a.start()
    await b.start()
    try:
        placed = await a.place("show1")
        assert placed.url is None and placed.node == "a" and placed.decision == "local"
        where = await b.locate("show1")
        assert where is not None and where.node == "a" and where.url == "ws://a.test:8080/ws"
        again = await b.place("show1")  # the performer reconnecting through b
        assert again.node == "a" and again.decision == "held_elsewhere"
        assert (await a.place("show1")).decision == "held_here"
        assert await b.locate("nothing") is None
        assert b.stats.redirects == 2 and a.stats.placements["local"] == 1
        await b.beat()  # every node knows the show is live somewhere ("online" in REST answers)
        assert "show1" in b.live_shows
    finally:
        await a.stop()
        await b.stop()


async def test_a_full_node_places_on_the_least_loaded_node_by_viewers_and_cpu(prefix: str) -> None:
    """Protects placement rule 2: a node past its admission limits sends a new show to the node with
    room whose viewer/CPU share is least; publishers (connections) do not count, a full or draining
    node is never chosen, and with no room anywhere the show stays on the asking node."""
    full = Box(viewers=10, max_viewers=10)
    busy = Box(viewers=8, publishers=0, max_viewers=10)  # 80 % of its viewers
    hot = Box(viewers=0, publishers=0, cpu=0.7, max_cpu=0.8)  # 87 % of its CPU
    idle_but_many_publishers = Box(viewers=2, publishers=30, max_viewers=10, cpu=0.1, max_cpu=0.8)  # 20 %
    draining = Box(viewers=0, max_viewers=10, draining=True)
    nodes = [
        node(prefix, n, b)
        for n, b in (("a", full), ("b", busy), ("c", hot), ("d", idle_but_many_publishers), ("e", draining))
    ]
    for n in nodes:
        await n.start()
    try:
        placed = await nodes[0].place("show2")
        assert (placed.node, placed.url, placed.decision) == ("d", "ws://d.test:8080/ws", "remote")
        # The record names d: the performer arriving at d is held there.
        assert (await nodes[3].place("show2")).decision == "held_here"
        # Nobody else with room: the asking full node keeps it (its admission answers `overloaded`).
        idle_but_many_publishers.load = NodeLoad(viewers=10, max_viewers=10)
        busy.load = NodeLoad(viewers=10, max_viewers=10)
        hot.load = NodeLoad(cpu=0.9, max_cpu=0.8)
        for n in nodes:
            await n.beat()
        assert (await nodes[0].place("show3")).decision == "local"
    finally:
        for n in nodes:
            await n.stop()


async def test_a_full_edge_sends_a_viewer_to_the_edge_relaying_the_show_else_to_a_new_edge(prefix: str) -> None:
    """Protects issue 15's rule "served by the edge that already relays the show while it has
    room, else by a new edge": a full node sends a viewer of another node's show to a node with
    room that relays it already (even when another node with room is less loaded), else to the
    least loaded node with room, and to the show's origin only when no other node has room; the
    heartbeat carries each node's relayed shows."""
    origin_box = Box(viewers=1, max_viewers=100)
    full = Box(viewers=10, max_viewers=10)
    relaying = Box(viewers=6, max_viewers=10)
    idle = Box(viewers=0, max_viewers=10)
    relaying.edges.add("show9")
    o, a, b, c = (node(prefix, n, x) for n, x in (("o", origin_box), ("a", full), ("b", relaying), ("c", idle)))
    for n in (o, a, b, c):
        await n.start()
    try:
        assert (await o.place("show9")).decision == "local"
        where = await a.locate("show9", count=False)
        assert where is not None and where.node == "o"
        await a.beat()
        assert {n.id: n.edge_shows for n in a.nodes or []}["b"] == frozenset({"show9"})
        sent = a.edge_for("show9", where)
        assert (sent.node, sent.url, sent.decision) == ("b", "ws://b.test:8080/ws", "edge_elsewhere")
        # Another show nobody relays: the least loaded node with room becomes its new edge.
        assert a.edge_for("show10", Placement("o", "ws://o.test:8080/ws", "held_elsewhere")).node == "c"
        # The relaying edge full too: the new edge; every other node full: the origin.
        relaying.load = NodeLoad(viewers=10, max_viewers=10)
        await b.beat()
        await a.beat()
        assert a.edge_for("show9", where).node == "c"
        idle.load = NodeLoad(viewers=10, max_viewers=10)
        await c.beat()
        await a.beat()
        back = a.edge_for("show9", where)
        assert (back.node, back.decision) == ("o", "held_elsewhere")
        assert a.stats.placements["edge_elsewhere"] == 3 and a.stats.redirects == 4
    finally:
        for n in (o, a, b, c):
            await n.stop()


async def test_racing_performers_on_two_nodes_place_a_show_once(prefix: str) -> None:
    """Protects SET NX placement: two joins of one show deciding at once on two nodes agree on one node."""
    a, b = node(prefix, "a", Box()), node(prefix, "b", Box())
    await a.start()
    await b.start()
    try:
        for i in range(20):
            pa, pb = await asyncio.gather(a.place(f"race{i}"), b.place(f"race{i}"))
            assert pa.node == pb.node, (pa, pb)
    finally:
        await a.stop()
        await b.stop()


async def test_a_dead_node_lapses_after_its_ttl_and_its_show_is_placed_again(prefix: str) -> None:
    """Protects failure handling: a node that stops beating (killed: no goodbye) drops out of the
    registry when its TTL lapses, its show's record lapses with it, and the show's next performer
    join places it again on a live node; viewers meanwhile are not sent to the dead node."""
    a_box, b_box = Box(viewers=5, max_viewers=5), Box()
    a, b = node(prefix, "a", a_box, ttl_s=0.6), node(prefix, "b", b_box, ttl_s=0.6)
    await a.start()
    await b.start()
    try:
        placed = await a.place("show4")
        assert placed.node == "b"
        b_box.shows.add("show4")  # the performer arrived at b
        await b.beat()
        await b.halt()  # b dies: no more heartbeats, nothing deleted

        async def b_gone() -> bool:
            await a.beat()
            return [n.id for n in a.nodes or []] == ["a"]

        await eventually(b_gone)
        assert await a.locate("show4") is None  # not sent to a dead node

        async def not_live() -> bool:
            await a.beat()
            return "show4" not in a.live_shows

        await eventually(not_live)
        a_box.load = NodeLoad()  # a has room again
        replaced = await a.place("show4")
        assert (replaced.node, replaced.decision) == ("a", "local")
    finally:
        await a.stop()
        await b.stop()


async def test_a_node_with_another_secret_can_neither_register_nor_place(prefix: str) -> None:
    """Protects the signed records: a node configured with a wrong secret is not listed by the others,
    a show record it wrote is ignored (viewers are not sent to its URL) and replaced by the next
    placement; each ignored record is counted."""
    good = node(prefix, "good", Box())
    rogue = node(prefix, "rogue", Box(), secret="x" * 40, url="ws://evil.test/ws")
    await good.start()
    await rogue.start()
    try:
        await good.beat()
        assert [n.id for n in good.nodes or []] == ["good"]
        rogue_placed = await rogue.place("show5")
        assert rogue_placed.node == "rogue"  # it believes itself; nobody else does
        assert await good.locate("show5") is None
        placed = await good.place("show5")
        assert (placed.node, placed.decision) == ("good", "local")
        assert good.stats.bad_records >= 2
        assert await rogue.locate("show5") is None  # nor does it trust the good node's records
    finally:
        await good.stop()
        await rogue.stop()


class Outage:
    """A TCP forwarder to the real Redis that the test can cut and restore (an outage, then recovery)."""

    def __init__(self) -> None:
        self.port = closed_port()
        self.server: asyncio.AbstractServer | None = None
        self.links: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._link, HOST, self.port)

    async def down(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.links):
            w.transport.abort()
        self.links.clear()
        await self.server.wait_closed()
        self.server = None

    async def _link(self, r1: asyncio.StreamReader, w1: asyncio.StreamWriter) -> None:
        r2, w2 = await asyncio.open_connection(HOST, REDIS_PORT)
        self.links |= {w1, w2}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.transport.abort()

        await asyncio.gather(pipe(r1, w2), pipe(r2, w1))


async def test_a_redis_outage_keeps_shows_refuses_placements_and_recovers(prefix: str) -> None:
    """Protects Redis failure handling: with Redis gone the heartbeat fails without raising (counted),
    new placements and lookups are refused with ClusterUnavailable (the edge's `invalid_state`), the
    node says so in describe(); when Redis is back the next beat registers it and re-claims the record
    of the show it kept serving, which lapsed meanwhile."""
    proxy = Outage()
    await proxy.up()
    box = Box()
    n = node(prefix, "a", box, ttl_s=0.6, redis_url=f"redis://{HOST}:{proxy.port}/0")
    watcher = node(prefix, "w", Box())
    await n.start()
    await watcher.start()
    try:
        await n.place("show6")
        box.shows.add("show6")
        await proxy.down()
        await n.beat()
        assert not n.healthy and n.stats.heartbeat_failures >= 1
        assert n.describe()["placements"] == "refused"
        with pytest.raises(ClusterUnavailable):
            await n.place("show7")
        with pytest.raises(ClusterUnavailable):
            await n.locate("show8")

        async def lapsed() -> bool:
            return await watcher.locate("show6") is None

        await eventually(lapsed)
        await proxy.up()

        async def back() -> bool:
            await n.beat()
            return n.healthy

        await eventually(back)
        where = await watcher.locate("show6")
        assert where is not None and where.node == "a"
        assert (await n.place("show7")).decision == "local"
    finally:
        await n.stop()
        await watcher.stop()
        if proxy.server is not None:
            await proxy.down()


async def test_a_node_that_cannot_reach_redis_at_start_still_starts() -> None:
    """Protects start-up: no Redis at start is logged and counted, never a crash; placements are refused."""
    n = node("jcluster_none", "a", Box(), redis_url=f"redis://{HOST}:{closed_port()}/0")
    await n.start()
    try:
        assert not n.healthy and n.describe()["registry"] == "unreachable"
        with pytest.raises(ClusterUnavailable):
            await n.place("show9")
    finally:
        await n.stop()


async def test_login_failures_are_counted_once_for_every_node(prefix: str) -> None:
    """Protects the shared login throttle: two nodes' throttles on the same Redis windows refuse the
    11th failure of a name wherever it comes from (not 10 per node), slide with the window, and a
    success on one node clears the name on both."""
    clock = FakeClock(1000.0)
    settings = ThrottleSettings(window_s=900, max_per_username=10, max_per_address=50)
    w1, w2 = RedisWindows(REDIS_URL, prefix), RedisWindows(REDIS_URL, prefix)
    n1, n2 = LoginThrottle(settings, clock, w1), LoginThrottle(settings, clock, w2)
    try:
        for i in range(10):
            t = n1 if i % 2 else n2
            await t.check("mia", "10.0.0.1")
            await t.failed("mia", "10.0.0.1")
            clock.advance(10)  # failures at 1000 .. 1090
        for t in (n1, n2):
            with pytest.raises(LoginRateLimitedError) as e:
                await t.check_name("mia")
            assert e.value.retry_after_s == 1000 + 900 - 1100
        await n2.check_name("otto")
        clock.now = 1900.5  # the oldest failure left the window
        await n1.check_name("mia")
        await n1.failed("mia", None)
        with pytest.raises(LoginRateLimitedError):
            await n2.check_name("mia")
        await n2.succeeded("mia")
        await n1.check_name("mia")
        assert w1.fallbacks == w2.fallbacks == 0
    finally:
        await w1.close()
        await w2.close()


async def test_login_windows_fall_back_to_this_process_when_redis_is_away() -> None:
    """Protects logins during a Redis outage: the throttle keeps counting, in this process, and says so
    (fallbacks); a login is neither refused for the outage nor let through unthrottled."""
    clock = FakeClock(1000.0)
    windows = RedisWindows(f"redis://{HOST}:{closed_port()}/0", "jcluster_none")
    t = LoginThrottle(ThrottleSettings(window_s=900, max_per_username=3, max_per_address=50), clock, windows)
    try:
        for _ in range(3):
            await t.check("mia", None)
            await t.failed("mia", None)
        with pytest.raises(LoginRateLimitedError):
            await t.check("mia", None)
        assert windows.fallbacks >= 4
    finally:
        await windows.close()


def test_records_are_signed_json() -> None:
    """Protects the record format docs/cluster.md gives: {"body": ..., "mac": HMAC-SHA256 hex}."""
    n = node("p", "a", Box())
    raw = n._show_record("s", "a", "ws://a/ws")
    obj = json.loads(raw)
    assert obj["body"] == {"show": "s", "node": "a", "url": "ws://a/ws"} and len(obj["mac"]) == 64
    assert n._open(raw) == obj["body"]
    obj["body"]["url"] = "ws://evil/ws"
    assert n._open(json.dumps(obj)) is None and n.stats.bad_records == 1


async def test_two_live_nodes_with_one_id_are_reported(prefix: str) -> None:
    """Protects operators from a copied config: a second node beating under an id that a node at another
    URL holds is counted (jasmin_cluster_node_id_conflicts_total) at every beat; the same node restarting
    (same URL) is not a conflict."""
    first = node(prefix, "n1", Box(), url="ws://one.test/ws")
    copy = node(prefix, "n1", Box(), url="ws://two.test/ws")
    again = node(prefix, "n1", Box(), url="ws://one.test/ws")
    await first.start()
    await copy.start()
    try:
        assert copy.stats.id_conflicts == 1
        await first.beat()
        assert first.stats.id_conflicts == 1
        await again.start()  # n1 restarting at its own URL (its last record still there): no conflict
        assert again.stats.id_conflicts == 0 and first.stats.id_conflicts == 1
    finally:
        for n in (first, copy, again):
            await n.stop()


async def test_two_nodes_with_one_billing_node_id_are_reported(prefix: str) -> None:
    """Protects billing across nodes: two nodes sharing billing.node_id would close each other's
    credit-control sessions at a restart; their heartbeats find it and count it, distinct ids do not."""
    a = node(prefix, "a", Box(), billing="node1")
    b = node(prefix, "b", Box(), billing="node1")
    c = node(prefix, "c", Box(), billing="node3")
    for n in (a, b, c):
        await n.start()
    try:
        await a.beat()
        assert a.stats.billing_id_conflicts >= 1 and b.stats.billing_id_conflicts >= 1
        assert c.stats.billing_id_conflicts == 0
        await c.beat()
        assert c.stats.billing_id_conflicts == 0
    finally:
        for n in (a, b, c):
            await n.stop()


@asynccontextmanager
async def chat_nodes(tmp_path: Path, *windows: RedisWindows, clock: FakeClock) -> AsyncIterator[list[ChatService]]:
    """One chat service per windows, as one node each would run it (each its own store: the limits are
    all these tests read)."""
    services: list[ChatService] = []
    try:
        for i, w in enumerate(windows):
            store = await SqliteChatStore.open(str(tmp_path / f"chat{i}.sqlite3"))
            svc = ChatService(store, clock, windows=w)
            await svc.start()
            services.append(svc)
        yield services
    finally:
        for svc in services:
            await svc.close()
        for w in windows:
            await w.close()


MIA = ChatUser("u_mia", "mia", "member")
ANNA = ChatUser("u_anna", "anna", "performer")


async def test_chat_messages_are_limited_once_for_every_node(prefix: str, tmp_path: Path) -> None:
    """Protects the shared chat limits: a member writing in one room through two nodes gets 5 messages
    per 10 s in all (not 5 per node), refused on both with the same retry_after; slow mode's gap holds
    across nodes too; another room is another window; time passing lets the member write again."""
    clock = FakeClock(1000.0)
    async with chat_nodes(tmp_path, RedisWindows(REDIS_URL, prefix), RedisWindows(REDIS_URL, prefix), clock=clock) as (
        a,
        b,
    ):
        for i in range(5):
            await (a if i % 2 else b).send("anna", MIA, f"m{i}")
            clock.advance(1)  # messages at 1000 .. 1004
        for n in (a, b):
            with pytest.raises(ChatRateLimitedError) as e:
                await n.send("anna", MIA, "one too many")
            assert e.value.retry_after == pytest.approx(5.0)
        await b.send("otto", MIA, "another room")
        clock.advance(5.01)
        await a.send("anna", MIA, "again")
        for n in (a, b):
            await n.slow("anna", ANNA, 30, moderator=True)
        clock.advance(10)  # the rate window is free again; slow mode is not
        with pytest.raises(ChatRateLimitedError) as e:
            await b.send("anna", MIA, "too soon")
        assert "slow" in str(e.value) and e.value.retry_after == pytest.approx(20.0)
        await b.send("anna", ANNA, "performers are exempt")
        clock.advance(20)
        await b.send("anna", MIA, "after the gap")
        assert all(w.fallbacks == 0 for w in (a.windows, b.windows) if isinstance(w, RedisWindows))


async def test_chat_limits_count_in_this_process_while_redis_is_away(prefix: str, tmp_path: Path) -> None:
    """Protects chat during a Redis outage: a node keeps limiting its own messages in memory (the 6th in
    10 s refused, no crash, no message lost for the outage), counts the fallbacks, and shares the count
    again once Redis is back."""
    clock = FakeClock(1000.0)
    proxy = Outage()
    await proxy.up()
    cut = RedisWindows(f"redis://{HOST}:{proxy.port}/0", prefix)
    try:
        async with chat_nodes(tmp_path, cut, RedisWindows(REDIS_URL, prefix), clock=clock) as (a, b):
            await a.send("anna", MIA, "before")
            await proxy.down()
            clock.advance(20)
            for i in range(5):
                await a.send("anna", MIA, f"during {i}")
            with pytest.raises(ChatRateLimitedError):
                await a.send("anna", MIA, "one too many")
            assert cut.fallbacks >= 6
            await b.send("anna", MIA, "on the node that reaches Redis")
            await proxy.up()
            clock.advance(20)

            async def shared_again() -> bool:
                before = cut.fallbacks
                await a.windows.retry_after("chat:probe", 1, 1.0, clock())
                return cut.fallbacks == before

            await eventually(shared_again)
            for i in range(5):
                await (a if i % 2 else b).send("anna", MIA, f"after {i}")
            for n in (a, b):
                with pytest.raises(ChatRateLimitedError):
                    await n.send("anna", MIA, "one too many")
            assert len(await a.history("anna", MIA, sees_private=False, before=None, limit=None)) == 1 + 5 + 2
    finally:
        if proxy.server is not None:
            await proxy.down()
