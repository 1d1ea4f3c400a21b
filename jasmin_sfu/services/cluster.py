"""Several nodes as one site: a registry of nodes and shows in Redis (docs/cluster.md).

Each node writes its record ``<prefix>:node:<id>`` (id, advertised signaling
URL, load: viewers, publishers, CPU share, its admission limits, the time of
the heartbeat) with a TTL, and refreshes it every ``heartbeat_interval_s``, as
LiveKit's nodes do: a node that dies drops out when its record lapses. Each
show held by a node has a record ``<prefix>:show:<show_id>`` naming that node
(its *origin*), with the same TTL, refreshed by the origin while the show is
live there: a dead origin's shows lapse with it, and the performer's next join
places the show again.

Placement (a performer's join of a show no node holds): this node if it has
room (under its admission limits and not draining), else the node with room
whose load is least, load being the larger of its viewer share and its CPU
share of its own limits (viewers and CPU, not connection counts); when no node
has room, this node (whose admission then refuses with `overloaded`). The show
record is written with ``SET NX``: two performers' joins racing on two nodes
place the show once.

Every record is signed with HMAC-SHA256 under ``cluster.secret``; a record
whose signature does not verify is ignored (and counted): a node configured
with another secret can neither register nor place a show, and a client of
Redis without the secret cannot point viewers at a URL of its choosing.

Redis failures never end anything here: the heartbeat logs and counts the
failure and tries again at the next beat; the node keeps serving the shows it
holds; a join that needs the registry (a placement, or a show that is not
here) raises :class:`ClusterUnavailable`, which the edge answers
``invalid_state``. When Redis comes back the next beat registers the node
again and re-claims its shows' records if they lapsed meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

log = logging.getLogger(__name__)

# Placement decisions, as in /metrics (jasmin_cluster_placements_total{decision}).
DECISIONS = ("local", "remote", "held_here", "held_elsewhere", "edge", "edge_elsewhere")

# Re-arm a show record: set it when missing (it lapsed while Redis was away), extend it when it is
# ours, leave another node's record alone (0: the show was placed elsewhere meanwhile).
_REFRESH = """
local v = redis.call('GET', KEYS[1])
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
# Replace a value only if it is still the one read (a stale or forged record).
_SWAP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1
end
return 0
"""
# Delete a value only if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ClusterUnavailable(Exception):
    """The registry (Redis) cannot be reached: no placement can be decided now."""


@dataclass(frozen=True)
class ClusterSettings:
    """The ``[cluster]`` config section: several nodes as one site, through Redis (docs/cluster.md).

    Declared here, where it is used; ``jasmin_sfu/config.py`` loads and validates it. Empty
    ``redis_url``: one node, no Redis, no registry (the embedded default). Set: the node registers
    in Redis with a heartbeat, places shows by load, serves or redirects (`moved`) viewers of shows
    held by another node, and shares the login throttle with the other nodes. The daemon hands the
    registry a copy with ``advertised_url`` resolved (its default names the listening port).
    """

    # redis://, rediss:// or unix:// URL of the registry; empty: no cluster.
    redis_url: str = ""
    # Keys are <key_prefix>:node:<id>, <key_prefix>:show:<show_id>, <key_prefix>:limit:...
    key_prefix: str = "jasmin"
    # This node's id in the registry: letters, digits, '.', '_', '-' (1..64).
    node_id: str = ""
    # The signaling URL clients are sent to (`moved`), ws:// or wss://, e.g. "wss://node2.example/ws".
    # Empty: ws://<server.host>:<listening port>/ws (server.host must then be an address, not 0.0.0.0).
    advertised_url: str = ""
    # Signs every registry record (HMAC-SHA256): a node with another secret can neither register
    # nor place a show, and nobody without it can point viewers at another URL. 32+ characters.
    secret: str = field(default="", repr=False)
    # The node's record and its shows' records are refreshed this often and lapse after ttl_s.
    heartbeat_interval_s: float = 2.0
    ttl_s: float = 10.0
    # The IP address this node's relay sockets (UDP, one per peer node) bind and announce to the
    # other nodes. Empty: the advertised URL's host when it is an IP address, else server.host when
    # it is not a wildcard; neither: no relays (viewers of other nodes' shows get `moved`).
    relay_host: str = ""


@dataclass(frozen=True)
class NodeLoad:
    """What a node says of its load in each heartbeat; limits are its admission limits (0: none)."""

    viewers: int = 0
    publishers: int = 0
    cpu: float = 0.0
    max_viewers: int = 0
    max_cpu: float = 0.0
    draining: bool = False

    @classmethod
    def parse(cls, body: Any) -> NodeLoad | None:
        """A load as JSON carries it (a heartbeat's ``load``, a worker's ``GET /internal/load``);
        None when it is not one."""
        if not isinstance(body, dict):
            return None
        try:
            return cls(
                viewers=int(body["viewers"]),
                publishers=int(body["publishers"]),
                cpu=float(body["cpu"]),
                max_viewers=int(body["max_viewers"]),
                max_cpu=float(body["max_cpu"]),
                draining=bool(body["draining"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def share(self) -> float:
        """The larger of the viewer share and the CPU share of the node's limits (CPU alone without one)."""
        v = self.viewers / self.max_viewers if self.max_viewers else 0.0
        c = self.cpu / self.max_cpu if self.max_cpu else self.cpu
        return max(v, c)

    def has_room(self) -> bool:
        """A new show may be placed here: under both limits and not draining."""
        if self.draining:
            return False
        if self.max_viewers and self.viewers >= self.max_viewers:
            return False
        return not (self.max_cpu and self.cpu >= self.max_cpu)


@dataclass(frozen=True)
class NodeInfo:
    """One node's record as read from the registry."""

    id: str
    url: str
    load: NodeLoad
    beat_at: float  # epoch seconds of the heartbeat that wrote it
    billing_node_id: str = ""
    # The shows this node relays from their origins (it is their edge), as of its heartbeat.
    edge_shows: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Placement:
    """Where a join goes: here (``url`` None) or to ``node`` at ``url``."""

    node: str
    url: str | None
    decision: str


@dataclass
class ClusterStats:
    """Counters for /metrics (jasmin_sfu/api/metrics.py)."""

    placements: dict[str, int] = field(default_factory=lambda: {d: 0 for d in DECISIONS})
    redirects: int = 0
    heartbeats: int = 0
    heartbeat_failures: int = 0
    bad_records: int = 0
    lost_shows: int = 0
    refused_unavailable: int = 0
    id_conflicts: int = 0
    billing_id_conflicts: int = 0


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class ClusterNode:
    """This node in the registry: heartbeat, placement, lookups.

    ``load``, ``local_shows`` and ``edge_shows`` are read at each heartbeat (the
    daemon passes its admission counts, the ids of the shows it holds and of those it
    relays as an edge). ``clock`` is the
    wall clock of the records' ``beat_at`` (ages in /readyz).
    """

    def __init__(
        self,
        settings: ClusterSettings,
        load: Callable[[], NodeLoad],
        local_shows: Callable[[], Iterable[str]],
        *,
        edge_shows: Callable[[], Iterable[str]] = tuple,
        billing_node_id: str = "",
        redis_client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.edge_shows = edge_shows
        # This node's billing.node_id: two nodes sharing one would close each other's credit-control
        # sessions at a restart (docs/money.md), so a heartbeat that finds it on another node says so.
        self.billing_node_id = billing_node_id
        self.load = load
        self.local_shows = local_shows
        self.clock = clock
        self.stats = ClusterStats()
        self._redis = redis_client
        self._owns_client = redis_client is None
        self._key = settings.secret.encode()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Shows whose record this node holds (refreshed each beat, released when they end here).
        self._claimed: set[str] = set()
        # The registry as last read, for /readyz; None before the first successful read.
        self.nodes: list[NodeInfo] | None = None
        # The shows live on any node as last read (each heartbeat): "online" answers of REST.
        self.live_shows: frozenset[str] = frozenset()
        self.last_error: str | None = None
        self.last_beat_ok: float | None = None

    # -- keys and records ---------------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self.settings.node_id

    def _node_key(self, node_id: str) -> str:
        return f"{self.settings.key_prefix}:node:{node_id}"

    @property
    def _ids_key(self) -> str:
        # The ids of the nodes that registered; an id whose record lapsed is removed by the next reader.
        return f"{self.settings.key_prefix}:nodes"

    @property
    def _show_ids_key(self) -> str:
        # The ids of shows placed; an id whose record lapsed is removed by the next reader.
        return f"{self.settings.key_prefix}:shows"

    def _show_key(self, show_id: str) -> str:
        return f"{self.settings.key_prefix}:show:{show_id}"

    def _sign(self, body: dict[str, Any]) -> str:
        mac = hmac.new(self._key, _canonical(body), hashlib.sha256).hexdigest()
        return json.dumps({"body": body, "mac": mac}, sort_keys=True, separators=(",", ":"))

    def _open(self, raw: Any) -> dict[str, Any] | None:
        """The body of a signed record, or None (and counted) when it does not verify."""
        try:
            obj = json.loads(raw)
            body, mac = obj["body"], obj["mac"]
            good = hmac.new(self._key, _canonical(body), hashlib.sha256).hexdigest()
            if isinstance(body, dict) and isinstance(mac, str) and hmac.compare_digest(mac, good):
                return body
        except (TypeError, ValueError, KeyError):
            pass
        self.stats.bad_records += 1
        return None

    def _show_record(self, show_id: str, node: str, url: str) -> str:
        # Deterministic for (show, node, url): the origin's refresh compares it byte for byte.
        return self._sign({"show": show_id, "node": node, "url": url})

    @property
    def _ttl_ms(self) -> int:
        return max(1, round(self.settings.ttl_s * 1000))

    # -- life -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and beat once (a failure is logged, not raised), then beat in the background."""
        if self._redis is None:
            import redis.asyncio as redis

            # A call waits at most this long: less than a TTL, so a stuck Redis is seen as down in time.
            timeout = min(5.0, max(2.0, self.settings.ttl_s / 2))
            self._redis = redis.from_url(
                self.settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        await self.beat()
        self._task = asyncio.get_running_loop().create_task(self._beat_loop())

    async def halt(self) -> None:
        """Stop the heartbeat, and wait for it (bounded). The loop also checks a flag: a cancellation
        that lands inside the Redis client can come out as a connection error, which a beat survives."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=max(2.0, self.settings.ttl_s))
            self._task = None

    async def stop(self) -> None:
        """Leave the registry: the node's record and its shows' records go at once (best effort)."""
        await self.halt()
        if self._redis is None:
            return
        try:
            await asyncio.wait_for(self._leave(), max(5.0, self.settings.ttl_s))
        except Exception as exc:  # noqa: BLE001 - records lapse by themselves
            log.warning("cluster: leaving the registry failed: %r", exc)
        if self._owns_client:
            try:
                await asyncio.wait_for(self._redis.aclose(), 5.0)
            except Exception:  # noqa: BLE001 - a broken connection; the process is leaving anyway
                pass
            self._redis = None

    async def _leave(self) -> None:
        for show_id in list(self._claimed):
            await self._release(show_id)
        await self._redis.delete(self._node_key(self.node_id))
        await self._redis.srem(self._ids_key, self.node_id)

    async def _beat_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            if not self._stopping:
                await self.beat()

    @property
    def healthy(self) -> bool:
        """The last heartbeat reached Redis."""
        return self.last_error is None and self.last_beat_ok is not None

    async def beat(self) -> None:
        """One heartbeat: this node's record, its shows' records, and a fresh read of every node."""
        try:
            await self._beat()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - Redis away: keep serving, try again next beat
            self.stats.heartbeat_failures += 1
            if self.last_error is None:
                log.error(
                    "cluster: heartbeat failed; new placements are refused until Redis answers",
                    extra={"error": repr(exc)},
                )
            self.last_error = repr(exc)
            return
        if self.last_error is not None:
            log.warning("cluster: heartbeat works again", extra={"node_id": self.node_id})
        self.last_error = None
        self.last_beat_ok = self.clock()
        self.stats.heartbeats += 1

    async def _beat(self) -> None:
        r = self._redis
        load = self.load()
        body = {
            "id": self.node_id,
            "url": self.settings.advertised_url,
            "load": asdict(load),
            "beat_at": self.clock(),
            "billing_node_id": self.billing_node_id,
            "edge_shows": sorted(self.edge_shows()),
        }
        # One command (SET ... PX ... GET, Redis >= 6.2): the record never exists without its TTL.
        old = await r.set(self._node_key(self.node_id), self._sign(body), px=self._ttl_ms, get=True)
        previous = _node_of(self._open(old)) if old is not None else None
        if previous is not None and previous.url != self.settings.advertised_url:
            # Two live nodes configured with one id overwrite each other's record: say so loudly.
            self.stats.id_conflicts += 1
            log.error(
                "cluster: another node with this node id is alive at another URL",
                extra={"node_id": self.node_id, "other_url": previous.url},
            )
        await r.sadd(self._ids_key, self.node_id)
        here = set(self.local_shows())
        for show_id in sorted(here):
            rec = self._show_record(show_id, self.node_id, self.settings.advertised_url)
            ok = await r.eval(_REFRESH, 1, self._show_key(show_id), rec, self._ttl_ms)
            if ok:
                self._claimed.add(show_id)
            elif show_id in self._claimed:
                # Our record lapsed (Redis was away longer than the TTL) and another node placed the show.
                self._claimed.discard(show_id)
                self.stats.lost_shows += 1
                log.error("cluster: a show held here is now placed on another node", extra={"show_id": show_id})
        for show_id in self._claimed - here:
            await self._release(show_id)
        if here:
            await r.sadd(self._show_ids_key, *sorted(here))
        self.nodes = await self._read_nodes()
        self.live_shows = await self._read_shows()
        mine = self.billing_node_id
        twins = [n.id for n in self.nodes if mine and n.id != self.node_id and n.billing_node_id == mine]
        if twins:
            self.stats.billing_id_conflicts += 1
            log.error(
                "cluster: another node uses this node's billing.node_id; give each node its own",
                extra={"billing_node_id": mine, "nodes": twins},
            )

    async def _release(self, show_id: str) -> None:
        rec = self._show_record(show_id, self.node_id, self.settings.advertised_url)
        await self._redis.eval(_RELEASE, 1, self._show_key(show_id), rec)
        self._claimed.discard(show_id)

    async def _read_shows(self) -> frozenset[str]:
        r = self._redis
        ids = sorted(x.decode() if isinstance(x, bytes) else str(x) for x in await r.smembers(self._show_ids_key))
        raws = await r.mget([self._show_key(i) for i in ids]) if ids else []
        live: set[str] = set()
        gone: list[str] = []
        for show_id, raw in zip(ids, raws):
            if raw is None:
                gone.append(show_id)
                continue
            body = self._open(raw)
            if body is not None and body.get("show") == show_id:
                live.add(show_id)
        if gone:
            await r.srem(self._show_ids_key, *gone)
        return frozenset(live)

    async def _read_nodes(self) -> list[NodeInfo]:
        r = self._redis
        ids = sorted(x.decode() if isinstance(x, bytes) else str(x) for x in await r.smembers(self._ids_key))
        raws = await r.mget([self._node_key(i) for i in ids]) if ids else []
        out: list[NodeInfo] = []
        for node_id, raw in zip(ids, raws):
            if raw is None:
                await r.srem(self._ids_key, node_id)  # its record lapsed: the node is gone
                continue
            body = self._open(raw)
            node = _node_of(body) if body is not None else None
            if node is not None:
                out.append(node)
        return sorted(out, key=lambda n: n.id)

    # -- placement --------------------------------------------------------------------------

    def _here(self, decision: str) -> Placement:
        self.stats.placements[decision] += 1
        return Placement(self.node_id, None, decision)

    def _there(self, node: str, url: str, decision: str) -> Placement:
        self.stats.placements[decision] += 1
        self.stats.redirects += 1
        return Placement(node, url, decision)

    async def place(self, show_id: str) -> Placement:
        """Where a performer's join of ``show_id`` goes (the show is not live here).

        Raises :class:`ClusterUnavailable` when Redis does not answer.
        """
        try:
            return await self._place(show_id)
        except ClusterUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - the registry is away
            self.stats.refused_unavailable += 1
            raise ClusterUnavailable(f"the cluster registry is unreachable: {exc!r}") from None

    async def _place(self, show_id: str) -> Placement:
        r = self._redis
        key = self._show_key(show_id)
        for _ in range(3):
            raw = await r.get(key)
            nodes = {n.id: n for n in await self._read_nodes()}
            self.nodes = sorted(nodes.values(), key=lambda n: n.id)
            if raw is not None:
                held = self._open(raw)
                node = nodes.get(str(held.get("node"))) if held is not None else None
                if held is not None and held.get("node") == self.node_id:
                    return self._here("held_here")
                if node is not None:
                    return self._there(node.id, node.url, "held_elsewhere")
                # Forged, or its node is gone: place it again, unless it changed meanwhile.
                chosen = self._choose(nodes)
                rec = self._show_record(show_id, chosen.id, chosen.url)
                if await r.eval(_SWAP, 1, key, raw, rec, self._ttl_ms):
                    await r.sadd(self._show_ids_key, show_id)
                    return self._decided(chosen)
                continue
            chosen = self._choose(nodes)
            rec = self._show_record(show_id, chosen.id, chosen.url)
            if await r.set(key, rec, px=self._ttl_ms, nx=True):
                await r.sadd(self._show_ids_key, show_id)
                return self._decided(chosen)
        raise ClusterUnavailable(f"show {show_id!r}: its placement kept changing; try again")

    def _decided(self, chosen: NodeInfo) -> Placement:
        if chosen.id == self.node_id:
            return self._here("local")
        return self._there(chosen.id, chosen.url, "remote")

    def _choose(self, nodes: dict[str, NodeInfo]) -> NodeInfo:
        me = NodeInfo(self.node_id, self.settings.advertised_url, self.load(), self.clock())
        if me.load.has_room():
            return me
        others = [n for n in nodes.values() if n.id != self.node_id and n.load.has_room()]
        if not others:
            return me  # nobody has room: this node's admission answers `overloaded`
        return min(others, key=lambda n: (n.load.share(), n.load.viewers, n.id))

    async def locate(self, show_id: str, count: bool = True) -> Placement | None:
        """Where a viewer's join of ``show_id`` goes (the show is not live here); None: not live anywhere.

        ``count=False``: the caller decides (:meth:`served_as_edge` or :meth:`redirected`).
        Raises :class:`ClusterUnavailable` when Redis does not answer.
        """
        try:
            raw = await self._redis.get(self._show_key(show_id))
            if raw is None:
                return None
            held = self._open(raw)
            if held is None or held.get("node") == self.node_id:
                return None  # forged; or ours, yet the show has ended here
            node_raw = await self._redis.get(self._node_key(str(held.get("node"))))
        except Exception as exc:  # noqa: BLE001
            self.stats.refused_unavailable += 1
            raise ClusterUnavailable(f"the cluster registry is unreachable: {exc!r}") from None
        node = _node_of(self._open(node_raw)) if node_raw is not None else None
        if node is None:
            return None  # its origin is gone: the record lapses with it
        if not count:
            return Placement(node.id, node.url, "held_elsewhere")
        return self._there(node.id, node.url, "held_elsewhere")

    def edge_for(self, show_id: str, origin: Placement) -> Placement:
        """Where a viewer goes when this edge is full (docs/cluster.md, "Placement"): the node
        with room that already relays ``show_id`` (least loaded first), else the least loaded
        node with room, which becomes a new edge; the show's origin when no other node has
        room. Read from the last heartbeat (up to one interval old: the chosen node's own
        admission still decides, and answers ``moved`` to its origin when full by then)."""
        others = [
            n for n in (self.nodes or []) if n.id not in (self.node_id, origin.node) and n.load.has_room() and n.url
        ]
        if not others:
            self.redirected()
            return origin
        chosen = min(others, key=lambda n: (show_id not in n.edge_shows, n.load.share(), n.load.viewers, n.id))
        self.redirected("edge_elsewhere")
        return Placement(chosen.id, chosen.url, "edge_elsewhere")

    def served_as_edge(self) -> None:
        """A viewer of a show held elsewhere is served here through a relay (docs/cluster.md)."""
        self.stats.placements["edge"] += 1

    def redirected(self, decision: str = "held_elsewhere") -> None:
        """A join located with ``count=False`` was answered ``moved`` after all (this edge is full)."""
        self.stats.placements[decision] += 1
        self.stats.redirects += 1

    async def release(self, show_id: str) -> None:
        """A performer's join placed ``show_id`` here and then failed: give the placement back."""
        try:
            await self._release(show_id)
        except Exception as exc:  # noqa: BLE001 - it lapses after the TTL
            log.warning("cluster: releasing a placement failed", extra={"show_id": show_id, "error": repr(exc)})

    def claimed(self, show_id: str) -> None:
        """A performer's join placed ``show_id`` here and it is live: refresh its record from now on."""
        self._claimed.add(show_id)

    def describe(self) -> dict[str, Any]:
        """The cluster as this node sees it (/readyz)."""
        now = self.clock()
        nodes = [
            {"id": n.id, "url": n.url, "heartbeat_age_s": round(max(0.0, now - n.beat_at), 3), **asdict(n.load)}
            for n in (self.nodes or [])
        ]
        return {
            "node_id": self.node_id,
            "url": self.settings.advertised_url,
            "registry": "ok" if self.healthy else "unreachable",
            "placements": "accepted" if self.healthy else "refused",
            "error": self.last_error,
            "nodes": nodes,
        }


def _node_of(body: dict[str, Any] | None) -> NodeInfo | None:
    if body is None:
        return None
    try:
        load = NodeLoad.parse(body["load"])
        if load is None:
            return None
        edges = body.get("edge_shows", [])
        return NodeInfo(
            str(body["id"]),
            str(body["url"]),
            load,
            float(body["beat_at"]),
            str(body.get("billing_node_id", "")),
            frozenset(str(s) for s in edges) if isinstance(edges, list) else frozenset(),
        )
    except (KeyError, TypeError, ValueError):
        return None
