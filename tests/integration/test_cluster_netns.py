"""Three nodes, each in its own network namespace on a bridge, with a redis-server the test starts in a
namespace of its own (docs/cluster.md, issue 15's three-node test: placement, relays, failures).

Topology (all made here, deleted afterwards; needs root and ``ip``, ``redis-server``):

    hub namespace: bridge jclbr ── veth ── node a  (10.213.X.11)
                                ── veth ── node b  (10.213.X.12)
                                ── veth ── node c  (10.213.X.13)
                                ── veth ── redis   (10.213.X.2)
                                ── veth ── this process's namespace (10.213.X.1): the aiortc peers

The /24 is on the veths only, with no route beyond: nothing leaves the namespaces the test made. Each
daemon listens and gathers ICE on its own address; the peers here gather on 10.213.X.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterator

import aiohttp
import pytest

import bench.peers
from bench import netns
from bench.peers import publish, ssrc_of, subscribe, wait_for
from jasmin_signaling.client import RemoteError, SignalingClient
from jasmin_sfu.services.ledger import per_second_rate, wallet_account
from tests.conftest import REPO, drain_in_thread, seed_credits, stop_daemons
from tests.realparts import missing
from tests.support import after, performer, watch

SECRET = "n" * 40
PRICE = 6000  # hundredths of a credit per minute: 1 credit a second
RATE = per_second_rate(PRICE)
NET = f"10.213.{os.getpid() % 250}"
HOST_IP = f"{NET}.1"
REDIS_IP = f"{NET}.2"
NODE_IPS = {"a": f"{NET}.11", "b": f"{NET}.12", "c": f"{NET}.13"}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Net:
    hub: str
    spaces: dict[str, str]  # role (a, b, c, redis) -> namespace
    host_if: str


@pytest.fixture
def bridge() -> Iterator[Net]:
    """The namespaces, the bridge and the veths; everything is deleted afterwards."""
    with open("/proc/self/uid_map") as f:
        real_root = f.read().split()[:3] == ["0", "0", "4294967295"]
    reason = netns.available() or (None if real_root else "needs real root (not a user namespace)")
    if reason is None and shutil.which("redis-server") is None:
        reason = "needs redis-server (apt-get install redis-server)"
    if reason is not None:
        missing(f"cluster netns test: {reason}")
    tag = os.getpid() % 100000
    hub = f"jcl{tag}hub"
    spaces = {role: f"jcl{tag}{role}" for role in ("a", "b", "c", "redis")}
    host_if = f"jcl{tag}h"
    addrs = {**NODE_IPS, "redis": REDIS_IP}
    try:
        _ip("netns", "add", hub)
        _ip("-n", hub, "link", "add", "jclbr", "type", "bridge")
        _ip("-n", hub, "link", "set", "jclbr", "up")
        for i, (role, ns) in enumerate(spaces.items()):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", hub, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", hub, "link", "set", f"p{i}", "master", "jclbr", "up")
            _ip("-n", ns, "addr", "add", f"{addrs[role]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("link", "add", host_if, "type", "veth", "peer", "name", "ph", "netns", hub)
        _ip("-n", hub, "link", "set", "ph", "master", "jclbr", "up")
        _ip("addr", "add", f"{HOST_IP}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        _teardown(hub, spaces, host_if)
        missing(f"cluster netns test: cannot build the bridge ({exc}; {getattr(exc, 'stderr', '')})")
    try:
        yield Net(hub, spaces, host_if)
    finally:
        _teardown(hub, spaces, host_if)


def _teardown(hub: str, spaces: dict[str, str], host_if: str) -> None:
    subprocess.run(["ip", "link", "del", host_if], capture_output=True)
    for ns in [*spaces.values(), hub]:
        netns.delete(ns)


class Redis:
    """redis-server inside the redis namespace; ``kill`` and ``start`` make an outage and its end."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                "redis-server",
                "--bind",
                REDIS_IP,
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def redis_server(bridge: Net) -> Iterator[Redis]:
    r = Redis(bridge.spaces["redis"])
    r.start()
    try:
        yield r
    finally:
        r.kill()


@dataclass
class Node:
    name: str
    proc: subprocess.Popen[str]
    output: list[str]

    @property
    def url(self) -> str:
        return f"ws://{NODE_IPS[self.name]}:8080/ws"

    @property
    def http(self) -> str:
        return f"http://{NODE_IPS[self.name]}:8080"


async def start_node(net: Net, name: str, tmp: str, max_viewers: int = 10) -> Node:
    ip = NODE_IPS[name]
    data = os.path.join(tmp, name)
    os.makedirs(data, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
        "JASMIN_SERVER_HOST": ip,
        "JASMIN_SERVER_PORT": "8080",
        "JASMIN_MEDIA_LISTEN_IPS": ip,
        "JASMIN_LOG_LEVEL": "warning",
        "JASMIN_BILLING_DATA_DIR": data,
        "JASMIN_ACCOUNTS_DATA_DIR": data,
        "JASMIN_ACCOUNTS_TRUST_CLIENT_IDS": "true",
        "JASMIN_CLUSTER_REDIS_URL": f"redis://{REDIS_IP}:6379/0",
        "JASMIN_CLUSTER_NODE_ID": name,
        "JASMIN_BILLING_NODE_ID": f"bill{name}",
        "JASMIN_CLUSTER_SECRET": SECRET,
        "JASMIN_CLUSTER_HEARTBEAT_INTERVAL_S": "0.2",
        "JASMIN_CLUSTER_TTL_S": "1.5",
        "JASMIN_ADMISSION_MAX_VIEWERS_PER_WORKER": str(max_viewers),
        "JASMIN_ADMISSION_MAX_CPU_SHARE": "0",
    }
    proc = subprocess.Popen(
        ["ip", "netns", "exec", net.spaces[name], sys.executable, "-m", "jasmin_sfu", "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, proc.stdout.readline)
        if not line:
            proc.stdout.close()
            proc.wait()
            raise RuntimeError(f"node {name} exited before listening:\n" + "".join(lines))
        lines.append(line)
        if re.search(r"listening: demo page", line):
            drain_in_thread(proc.stdout, lines)
            return Node(name, proc, lines)


@pytest.fixture
async def nodes(bridge: Net, redis_server: Redis, tmp_path: Any) -> AsyncIterator[dict[str, Node]]:
    started: dict[str, Node] = {}
    # m1 holds 30 credits on a's ledger (the origin's, where a private's meter runs).
    await seed_credits(os.path.join(str(tmp_path), "a"), "m1", "p2999")
    try:
        for name in ("a", "b", "c"):
            started[name] = await start_node(bridge, name, str(tmp_path))
        yield started
    finally:
        await stop_daemons(*(n.proc for n in started.values()))


@pytest.fixture
async def peers(nodes: dict[str, Node], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[Any]]:
    """The test's aiortc peers: they gather on the veth only; closed after the test, before the
    nodes stop."""
    monkeypatch.setattr(bench.peers, "LOOPBACK", [HOST_IP])
    opened: list[Any] = []
    try:
        yield opened
    finally:
        for p in opened:
            await p.close()


async def readyz(node: Node) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.get(node.http + "/readyz") as r:
            body: dict[str, Any] = await r.json()
            return body


async def until(check: Any, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


async def until_registered(*nodes: Node) -> None:
    """Until each node's /readyz lists all three nodes."""

    async def registered() -> bool:
        views = [{n["id"] for n in (await readyz(x))["cluster"]["nodes"]} for x in nodes]
        return all(v == {"a", "b", "c"} for v in views)

    await until(registered)


def received(viewer: Any) -> int:
    return sum(viewer.counter.packets.values()) if viewer.counter is not None else 0


def received_kind(viewer: Any, kind: str) -> int:
    """RTP packets of ``kind`` (audio or video) the viewer received."""
    return viewer.counter.packets.get(ssrc_of(viewer.pc, kind), 0) if viewer.counter is not None else 0


async def relay_metrics(node: Node) -> dict[str, float]:
    async with aiohttp.ClientSession() as s:
        async with s.get(node.http + "/metrics") as r:
            text = await r.text()
    return {
        k: float(v)
        for k, _, v in (line.rpartition(" ") for line in text.splitlines())
        if k.startswith("jasmin_relay_") or k.startswith("jasmin_cluster_placements")
    }


async def test_three_nodes_on_a_bridge_redirect_replace_a_dead_origin_and_ride_out_a_redis_outage(
    nodes: dict[str, Node], redis_server: Redis, peers: list[Any]
) -> None:
    """Protects the cluster across real network namespaces:

    * three nodes on a bridge register through the test's own redis-server;
    * viewers on nodes a, b and c watch a show published on node a: the one on a from the origin,
      those on b and c served by their own node through a relay from a (no `moved`), each receiving
      video and audio; both edges count their replicas and a counts its relays;
    * SIGKILL of the origin a: its entry lapses, the edges' relayed copies end, the performer's next
      join (through c) places the show on a live node, and a viewer reconnecting through b is
      served by b through a relay from there and receives media;
    * redis-server killed: the running show keeps flowing to its (edge) viewer, a new show's join gets
      invalid_state, /readyz says placements are refused; redis-server back: placements work again;
    * SIGKILL of the edge b: its viewer, reconnecting through the origin, receives media there, and
      the origin stops feeding the dead edge's relay.
    """
    a, b, c = nodes["a"], nodes["b"], nodes["c"]
    await until_registered(a, b, c)
    star = await publish(a.url, "star")
    peers.append(star)
    assert star.client.moved_to is None
    fan = await subscribe(c.url, "star", decode=False, count=True)
    peers.append(fan)
    assert fan.client.moved_to is None  # served by c, an edge of a
    on_a = await subscribe(a.url, "star", decode=False, count=True)
    on_b = await subscribe(b.url, "star", decode=False, count=True)
    peers += [on_a, on_b]
    assert on_a.client.moved_to is None and on_b.client.moved_to is None
    for v in (fan, on_a, on_b):
        assert await wait_for(lambda v=v: received_kind(v, "video") >= 20 and received_kind(v, "audio") >= 20, 30)
    ma, mb, mc = [await relay_metrics(x) for x in (a, b, c)]
    assert ma["jasmin_relay_streams_out"] == 4 and ma["jasmin_relay_pipes_out"] == 2
    assert mb["jasmin_relay_replica_producers"] == 2 and mc["jasmin_relay_replica_producers"] == 2
    assert mc['jasmin_cluster_placements_total{decision="edge"}'] == 1
    assert mc["jasmin_relay_dropped_unknown_address_total"] == 0

    a.proc.send_signal(signal.SIGKILL)
    await asyncio.get_running_loop().run_in_executor(None, a.proc.wait, 15)

    async def a_gone() -> bool:
        return {n["id"] for n in (await readyz(c))["cluster"]["nodes"]} == {"b", "c"}

    await until(a_gone)
    for p in (star, fan, on_a, on_b):
        peers.remove(p)
        await p.close()
    star = await publish(c.url, "star")  # c has room: the show is placed on c
    peers.append(star)
    assert star.client.moved_to is None
    fan = await subscribe(b.url, "star", decode=False, count=True)
    peers.append(fan)
    assert fan.client.moved_to is None  # served by b, now an edge of c
    assert await wait_for(lambda: received_kind(fan, "video") >= 20 and received_kind(fan, "audio") >= 20, 30)

    redis_server.kill()

    async def refused() -> bool:
        return bool((await readyz(b))["cluster"]["placements"] == "refused")

    await until(refused)
    before = received(fan)
    assert await wait_for(lambda: received(fan) >= before + 20, 30)  # the running show goes on
    probe = await SignalingClient.connect(b.url)
    with pytest.raises(RemoteError) as e:
        await probe.request("join", show_id="newcomer", role="performer")
    assert e.value.code == "invalid_state"
    await probe.close()

    redis_server.start()

    async def placed_again() -> bool:
        client = await SignalingClient.connect(b.url)
        try:
            await client.request("join", show_id="newcomer", role="performer")
            return True
        except RemoteError as exc:
            assert exc.code == "invalid_state", exc
            return False
        finally:
            await client.close()

    await until(placed_again)

    async def both_back() -> bool:  # c re-registered too, and sees b again
        return {n["id"] for n in (await readyz(c))["cluster"]["nodes"]} == {"b", "c"}

    await until(both_back)

    # The edge b dies without a word: its viewer, reconnecting through c (the origin), receives
    # media there, and c stops feeding the dead edge's relay once it has heard nothing for the TTL.
    assert (await relay_metrics(c))["jasmin_relay_streams_out"] == 2
    b.proc.send_signal(signal.SIGKILL)
    await asyncio.get_running_loop().run_in_executor(None, b.proc.wait, 15)
    peers.remove(fan)
    await fan.close()
    again = await subscribe(c.url, "star", decode=False, count=True)
    peers.append(again)
    assert await wait_for(lambda: received_kind(again, "video") >= 20 and received_kind(again, "audio") >= 20, 30)

    async def relay_to_b_stopped() -> bool:
        return (await relay_metrics(c))["jasmin_relay_streams_out"] == 0

    await until(relay_to_b_stopped)


def billing_events(tmp: str, node: str, member_id: str) -> list[dict[str, Any]]:
    path = os.path.join(tmp, node, "billing-events.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        events = [json.loads(line) for line in f.read().splitlines()]
    return [e for e in events if e.get("data", {}).get("member_id") == member_id]


def cc_sessions(tmp: str, node: str, member_id: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(os.path.join(tmp, node, "ledger.sqlite3"))
    try:
        return db.execute(
            "SELECT used_seconds, charged, rate FROM cc_sessions WHERE wallet_id = ?", (wallet_account(member_id),)
        ).fetchall()
    finally:
        db.close()


async def test_a_private_on_a_with_its_member_on_c_reaches_only_the_member_and_is_billed_once(
    nodes: dict[str, Node], peers: list[Any], tmp_path: Any
) -> None:
    """Protects privacy and money across nodes with the member on an edge (issue 15's three-node
    test): a show published on node a, free viewers on a, b and c, and the member on c (served by c,
    no `moved`). The member's request on c reaches a's private flow; from `accepted_at` the free
    viewers on a, b and c receive zero payloads the performer sent after it (counted against its send
    log, as in the single-node exclusivity test), the member on c receives video and audio; the
    member's `private.end` on c ends it on a, whose one meter bills each second once: one closing
    billing event, and the ledger's charge is its seconds times the rate. A second private, then c
    SIGKILLed: a hears nothing from c for the TTL and ends it (reason `disconnect`), billed once too.
    Red when c skips its audience block (its free viewer gets the private)."""
    a, b, c = nodes["a"], nodes["b"], nodes["c"]
    tmp = str(tmp_path)
    await until_registered(a, b, c)
    pub = await performer(a.url, "duo")
    peers.append(pub)
    await pub.client.request("show.settings", price_per_minute=PRICE)
    free = [await watch(a.url, "duo"), await watch(b.url, "duo"), await watch(c.url, "duo")]
    member = await watch(c.url, "duo", member_id="m1")
    peers += [*free, member]
    assert all(v.client.moved_to is None for v in [*free, member])  # b and c serve as edges
    assert (await relay_metrics(a))["jasmin_relay_member_sessions_out"] == 1
    assert (await relay_metrics(c))["jasmin_relay_member_sessions_in"] == 1
    everyone = [*free, member]
    assert await wait_for(
        lambda: all(v.frames.get("video", 0) >= 3 and v.frames.get("audio", 0) >= 3 for v in everyone), 30
    )

    assert (await member.client.request("private.request"))["state"] == "free"
    await pub.client.next_event("private.requested")
    accepted = await pub.client.request("private.accept", member_id="m1")
    t_accept = accepted["accepted_at"]
    assert (await member.client.next_event("private.started"))["data"]["at"] == t_accept

    def member_after() -> list[tuple[int, float]]:
        return after(member, pub.log, t_accept)

    assert await wait_for(lambda: len({s for s, _ in member_after()}) == 2 and len(member_after()) >= 60, 30)
    assert await wait_for(lambda: any(t > t_accept + 3 for t in pub.log.sent.values()), 30)
    for v in free:
        assert after(v, pub.log, t_accept) == [], "a free viewer received media sent after the accept"

    ended = await member.client.request("private.end")
    ev = await pub.client.next_event("private.ended")
    assert ev["data"]["reason"] == "member_left" and ev["data"]["at"] == ended["ended_at"]
    lasted = ended["ended_at"] - t_accept

    def closing() -> list[dict[str, Any]]:
        return [e for e in billing_events(tmp, "a", "m1") if "closed" in e["type"]]

    assert await wait_for(lambda: len(closing()) == 1, 20)
    [closed] = closing()
    billed = closed["data"]["billed_seconds"]
    assert 3 <= billed <= lasted + 1, (billed, lasted)
    assert await wait_for(lambda: [r[0] for r in cc_sessions(tmp, "a", "m1")] == [billed], 20)
    [(used, charged, rate)] = cc_sessions(tmp, "a", "m1")
    assert charged == used * rate == billed * RATE == closed["data"]["total_amount"]
    for node in ("b", "c"):  # no meter ran anywhere else
        assert billing_events(tmp, node, "m1") == []
    await asyncio.sleep(1.0)
    assert closing() == [closed]  # and no second closing event follows

    # A second private; then the member's node dies without a word.
    await member.client.request("private.request")
    await pub.client.next_event("private.requested")
    t2 = (await pub.client.request("private.accept", member_id="m1"))["accepted_at"]
    assert await wait_for(lambda: len(after(member, pub.log, t2)) >= 60, 30)
    c.proc.send_signal(signal.SIGKILL)
    await asyncio.get_running_loop().run_in_executor(None, c.proc.wait, 15)
    peers.remove(member)
    peers.remove(free[2])
    ev = await pub.client.next_event("private.ended", timeout=30)
    assert ev["data"]["reason"] == "disconnect" and ev["data"]["member_id"] == "m1"
    ma = await relay_metrics(a)
    assert ma["jasmin_relay_member_edges_gone_total"] == 1 and ma["jasmin_relay_member_sessions_out"] == 0
    assert await wait_for(lambda: len(closing()) == 2, 20)
    second = closing()[1]["data"]
    assert 1 <= second["billed_seconds"] <= ev["data"]["at"] - t2 + 1
    expected = sorted([billed, second["billed_seconds"]])
    assert await wait_for(lambda: sorted(r[0] for r in cc_sessions(tmp, "a", "m1")) == expected, 20)
    assert all(charged == used * rate for used, charged, rate in cc_sessions(tmp, "a", "m1"))
