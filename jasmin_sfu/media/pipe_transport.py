"""A relay between two nodes: one SRTP-protected UDP flow carrying a show's
media from its origin to an edge (mediasoup's PipeTransport).

One :class:`PipeTransport` per origin/target pair (the pair is ordered: the
flow from A to C is another pipe than the one from C to A), each end holding
the other's address and key. Keys are 30 bytes (AES-128 key and salt, the
``AES128_CM_SHA1_80`` profile); each end protects with its own key and
unprotects with the other's, as DTLS-SRTP does. The control channel
(``api/relay.py``) exchanges them.

On the **origin**, :meth:`offer` makes a producer relayable; it is fed to the
pipe only while the edge says it wants it (the edge has consumers of its
replica): the producer calls :meth:`_Relay.relay_rtp` per packet, which
protects the packet as received (the publisher's SSRC, sequence numbers,
extension ids) and sends it. RTX is unwrapped at the origin, so a
retransmission arrives as the original packet.

On the **edge**, :meth:`add_replica` creates a :class:`~.producer.Producer`
from the origin's description and hands it to the show's router: viewers
consume it as a local producer (same fan-out, NACK cache, keyframe cache,
layers). Its NACKs, PLIs, receiver reports and REMB go back up the pipe; the
origin serves NACKs from its own cache (asking its publisher for what it
lacks), turns PLIs into its producer's keyframe requests and counts the REMB
as one viewer's in its producer's REMB.

The pipe's own messages are RTCP APP packets (PT 204) inside SRTCP:

Producer ids travel in 32-byte slots (ASCII, NUL-padded; a uuid4 hex fills one).

* ``JMAP`` origin to edge: ``ssrc(4) layer(1) pad(3) producer id(32)`` per
  stream, sent when a stream is first relayed and every RTCP interval (a
  simulcast layer's SSRC is learnt from the publisher's first packets, after
  the control step described the producer).
* ``JGON`` origin to edge: producer ids that closed (each repeated three
  intervals); the edge closes the replica, and its viewers' consumers.
* ``JNEW`` origin to edge: a producer published after the edge opened the
  relay, as JSON ``{"router": id, "producer": describe(...)}`` (sent at once
  and repeated the next two intervals); the edge replicates it in its router
  of that id, if it holds one from this pipe.
* ``JWNT`` edge to origin: the producer ids the edge wants now, sent when one
  gains its first consumer or loses its last, and every interval. An origin
  that hears nothing from its edge for ``silence_timeout_s`` stops feeding it
  (the edge died) until the next ``JWNT``.
* ``JEVT`` origin to edge: the show's state for a router of the edge, as JSON
  ``{"router": id, "n": counter, "data": {...}}``, sent at once and repeated
  the next two intervals (only the newest per router); the edge's owner
  hears it through :class:`PipeListener`.
* ``JALV`` origin to edge: every interval while the origin offers producers.
  An edge that hears nothing from its origin for ``silence_timeout_s`` (the
  origin died, or its address changed) closes the pipe: its replicas close,
  and so do their viewers' consumers.

Datagrams from any address but the peer's are dropped and counted
(``relay_unknown_address``), as are those that do not unprotect
(``relay_srtp``). The hot path is synchronous: protect and ``sendto``.

**A new replica takes nothing sent before it.** :func:`describe` gives, per
stream the origin has received, ``next_seq``: the sequence number after the
newest packet it holds. Everything the origin ever relayed of that stream
(forwarded as received, or resent from its cache) is older. An edge's new
replica refuses (``relay_before_replica``) every packet of a stream older than
the ``next_seq`` it was created with: a datagram sent toward this edge's old copy
of a show (a private's, for its member there) and delayed by the network
cannot reach a viewer of the new copy, however late it lands (:meth:`hold_back`
does the same for an existing replica whose audience is about to widen: a
member's edge opening again at its private's end). The check is
RTP's half window of 16-bit sequence numbers; it is dropped once the replica
is 8192 packets past it, where the SRTP replay window (1024 packets) already
refuses anything older.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import struct
from typing import TYPE_CHECKING, Any, Callable, Protocol

from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session

from jasmin_codecs.errors import MalformedPacket
from jasmin_codecs.rtcp import (
    RTCP_APP,
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    SenderReport,
    UnknownRtcp,
    parse_rtcp,
)

from .errors import InvalidStateError
from .layer import Layer
from .producer import Producer
from .settings import MediaSettings
from .stats import MediaStats

if TYPE_CHECKING:
    from .router import Router

log = logging.getLogger(__name__)

KEY_LENGTH = 30
_MAP = struct.Struct("!IB3x32s")
_GONE_REPEATS = 3
# A replica's floor is forgotten this far past it (the SRTP replay window, 1024, refuses older).
_FLOOR_SPAN = 0x2000


def new_key() -> bytes:
    """A fresh SRTP master key and salt for one end of a pipe."""
    return os.urandom(KEY_LENGTH)


def _policy(key: bytes, direction: int) -> Policy:
    if len(key) != KEY_LENGTH:
        raise ValueError(f"an SRTP key is {KEY_LENGTH} bytes, not {len(key)}")
    p = Policy(key=key, ssrc_type=direction, srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
    # The origin resends cached packets (NACKs) under their first sequence numbers.
    p.allow_repeat_tx = True
    p.window_size = 1024
    return p


def _slot(producer_id: str) -> bytes:
    """A producer id in its 32-byte slot."""
    raw = producer_id.encode("ascii")
    if len(raw) > 32:
        raise ValueError(f"a relayed producer id is at most 32 ASCII characters: {producer_id!r}")
    return raw.ljust(32, b"\0")


def _ids(data: bytes) -> list[str]:
    """The producer ids of a run of 32-byte slots."""
    return [data[i : i + 32].rstrip(b"\0").decode("ascii", "replace") for i in range(0, len(data) - 31, 32)]


def _app(name: bytes, ssrc: int, data: bytes) -> bytes:
    return UnknownRtcp(packet_type=RTCP_APP, fmt=0, body=struct.pack("!I", ssrc) + name + data).to_bytes()


class PipeListener(Protocol):
    """What a pipe tells its owner: that it closed (once), and the origin's events for one of
    the edge's routers (``JEVT``, newest first: an older one arriving late is dropped)."""

    def on_pipe_closed(self, pipe: "PipeTransport") -> None: ...

    def on_pipe_event(self, pipe: "PipeTransport", router_id: str, data: dict[str, Any]) -> None: ...


class _Relay:
    """One origin producer fed to one pipe (``RelaySink``)."""

    __slots__ = ("pipe", "producer", "audience_key", "remb", "mapped", "anchors")

    def __init__(self, pipe: "PipeTransport", producer: Producer) -> None:
        self.pipe = pipe
        self.producer = producer
        self.audience_key = pipe.audience_key
        self.remb = 0
        self.mapped: set[int] = set()
        # Per layer: the extended sequence number of the first packet relayed since the relay
        # was last (re)started. A NACK from the edge for anything older is never served: it may
        # be a private's packet, received while the audience excluded this relay.
        self.anchors: dict[Layer, int] = {}

    def relay_rtp(self, data: bytes, layer: Layer) -> None:
        ssrc = layer.ssrc
        if ssrc is not None and ssrc not in self.mapped:
            self.mapped.add(ssrc)
            self.pipe._send_rtcp(self.pipe._map_of(self))
        ext = layer.extend(int.from_bytes(data[2:4], "big"))
        anchor = self.anchors.get(layer)
        if anchor is None:
            self.anchors[layer] = ext
        elif ext < anchor:
            # A late packet (a retransmission) from before this stream began: maybe a private's.
            return
        self.pipe._send_rtp(data)

    def relay_sr(self, layer: Layer, ntp: int, rtp_ts: int) -> None:
        if layer.ssrc is not None:
            sr = SenderReport(ssrc=layer.ssrc, ntp_timestamp=ntp, rtp_timestamp=rtp_ts, packet_count=0, octet_count=0)
            self.pipe._send_rtcp(sr.to_bytes())

    def restart(self) -> None:
        """Fed again: new anchors, and a keyframe for the edge's viewers (their picture resumes)."""
        self.anchors = {}
        p = self.producer
        for layer in p.all_layers:
            p.request_keyframe(layer)

    def may_serve(self, layer: Layer, seq: int) -> bool:
        """Whether a NACKed packet of ``layer`` may go to the edge: the relay is admitted now,
        and the packet is not older than the relay's current stream."""
        anchor = self.anchors.get(layer)
        return anchor is not None and self.producer.admits(self.audience_key) and layer.extend(seq) >= anchor


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, pipe: "PipeTransport") -> None:
        self.pipe = pipe

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.pipe._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:  # pragma: no cover - ICMP unreachable and the like
        self.pipe.stats.drop("relay_socket_error")


class PipeTransport:
    """One end of the relay flow between this node and ``peer_node`` (see the module docstring).

    ``role`` is ``origin`` (this node sends the show's media) or ``edge``
    (this node receives it into replica producers).
    """

    def __init__(
        self,
        *,
        peer_node: str,
        role: str,
        settings: MediaSettings,
        stats: MediaStats,
        clock: Callable[[], float],
        local_key: bytes | None = None,
        listener: PipeListener | None = None,
        audience_key: str = "",
        silence_timeout_s: float = 10.0,
    ) -> None:
        if role not in ("origin", "edge"):
            raise ValueError("role must be origin or edge")
        self.peer_node = peer_node
        self.role = role
        self.settings = settings
        self.stats = stats
        self.clock = clock
        self.listener = listener
        # The key this pipe's relays have in an origin producer's audience.
        self.audience_key = audience_key or f"relay:{peer_node}"
        self.local_key = local_key or new_key()
        self._tx = Session(_policy(self.local_key, Policy.SSRC_ANY_OUTBOUND))
        self._rx: Session | None = None
        self.remote_key: bytes | None = None
        self.remote: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._rtcp_ssrc = random.randint(1, 0xFFFFFFFF)
        self.closed = False
        # Closed by its tick once it carries nothing (a member's Cam2Cam's pipes: the owner sets it).
        self.close_when_idle = False
        self._task: asyncio.Task[None] | None = None
        self.silence_timeout_s = silence_timeout_s
        self.last_heard = clock()
        # Counters for /metrics.
        self.packets_out = 0
        self.packets_in = 0
        self.bytes_out = 0
        self.bytes_in = 0
        self.dropped_unknown_address = 0
        self.dropped_srtp = 0
        # Origin: producers offered to the edge, and those being relayed.
        self.offered: dict[str, Producer] = {}
        self.relaying: dict[str, _Relay] = {}
        self._gone: dict[str, int] = {}
        self._news: dict[str, tuple[bytes, int]] = {}
        self._events: dict[str, tuple[bytes, int]] = {}
        self._event_n = 0
        self._event_seen: dict[str, int] = {}
        # Edge: replicas by origin producer id, their router, and the SSRC routes.
        self.replicas: dict[str, Producer] = {}
        self._router_of: dict[str, "Router"] = {}
        self._routers: dict[str, "Router"] = {}
        self._by_ssrc: dict[int, tuple[Producer, Layer]] = {}
        # ... and per SSRC of a new replica, the oldest sequence number it takes (``next_seq``).
        self._floors: dict[int, int] = {}
        self.wanted: set[str] = set()

    # -- setup -------------------------------------------------------------------

    async def bind(self, host: str, port: int = 0) -> tuple[str, int]:
        """Open the pipe's UDP socket on ``host`` (port 0: any free one); returns the bound address."""
        if self._udp is not None:
            raise InvalidStateError("pipe already bound")
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), local_addr=(host, port))
        self._udp = transport
        sock = transport.get_extra_info("sockname")
        self.local = (str(sock[0]), int(sock[1]))
        self._task = loop.create_task(self._tick_loop())
        return self.local

    def connect(self, host: str, port: int, remote_key: bytes) -> None:
        """Accept datagrams from, and send to, ``host:port`` only, protected under ``remote_key``.

        Called again with another address or key (the peer restarted), it
        switches to them: the old peer's packets are unknown from then on."""
        if self.closed:
            raise InvalidStateError("pipe is closed")
        if self.remote_key != remote_key:
            self._rx = Session(_policy(remote_key, Policy.SSRC_ANY_INBOUND))
            self.remote_key = remote_key
        self.remote = (host, int(port))
        self.last_heard = self.clock()

    # -- sending -------------------------------------------------------------------

    def _send_rtp(self, data: bytes) -> None:
        udp, remote = self._udp, self.remote
        if udp is None or remote is None or self.closed:
            return
        try:
            out = self._tx.protect(data)
        except SrtpError:
            self.stats.drop("relay_protect_failed")
            return
        udp.sendto(out, remote)
        self.packets_out += 1
        self.bytes_out += len(out)

    def _send_rtcp(self, data: bytes) -> bool:
        udp, remote = self._udp, self.remote
        if udp is None or remote is None or self.closed or not data:
            return False
        try:
            out = self._tx.protect_rtcp(data)
        except SrtpError:
            self.stats.drop("relay_protect_failed")
            return False
        udp.sendto(out, remote)
        return True

    # -- origin side ---------------------------------------------------------------

    def offer(self, producer: Producer) -> dict[str, Any]:
        """Make ``producer`` relayable through this pipe; returns what the edge needs to replicate it."""
        if self.role != "origin":
            raise InvalidStateError("only an origin pipe offers producers")
        if self.closed:
            raise InvalidStateError("pipe is closed")
        if producer.closed:
            raise InvalidStateError(f"producer {producer.id} is closed")
        _slot(producer.id)  # an id the pipe's messages can carry (ValueError otherwise)
        self.offered[producer.id] = producer
        self._gone.pop(producer.id, None)
        return describe(producer)

    def announce(self, router_id: str, producer: Producer) -> None:
        """Offer ``producer`` and tell the edge of it now (``JNEW``): a track published after
        the edge opened the relay, for the edge's router ``router_id``."""
        desc = self.offer(producer)
        body = json.dumps({"router": router_id, "producer": desc}, separators=(",", ":")).encode()
        body += b" " * (-len(body) % 4)
        msg = _app(b"JNEW", self._rtcp_ssrc, body)
        self._news[producer.id] = (msg, _GONE_REPEATS - 1)
        self._send_rtcp(msg)

    def tell(self, router_id: str, data: dict[str, Any]) -> None:
        """Send the edge an event for its router ``router_id`` (``JEVT``); the newest one wins."""
        self._event_n += 1
        body = json.dumps({"router": router_id, "n": self._event_n, "data": data}, separators=(",", ":")).encode()
        body += b" " * (-len(body) % 4)
        msg = _app(b"JEVT", self._rtcp_ssrc, body)
        self._events[router_id] = (msg, _GONE_REPEATS - 1)
        self._send_rtcp(msg)

    def _map_of(self, relay: _Relay) -> bytes:
        p = relay.producer
        data = b"".join(
            _MAP.pack(layer.ssrc, layer.index, _slot(p.id)) for layer in p.all_layers if layer.ssrc is not None
        )
        return _app(b"JMAP", self._rtcp_ssrc, data) if data else b""

    def _want(self, ids: set[str]) -> None:
        """The edge wants exactly ``ids`` now: start and stop relays to match."""
        for pid in list(self.relaying):
            if pid not in ids:
                relay = self.relaying.pop(pid)
                relay.producer.remove_relay(relay)
        for pid in ids:
            p = self.offered.get(pid)
            if p is None or p.closed or pid in self.relaying:
                continue
            relay = _Relay(self, p)
            self.relaying[pid] = relay
            p.add_relay(relay)  # restart(): the edge's viewers start from a keyframe

    def _origin_feedback(self, pkt: Any) -> None:
        if isinstance(pkt, Pli):
            found = self._origin_layer(pkt.media_ssrc)
            if found is not None:
                self.stats.plis_received += 1
                found[0].request_keyframe(found[1])
        elif isinstance(pkt, Fir):
            for ssrc, _ in pkt.entries:
                found = self._origin_layer(ssrc)
                if found is not None:
                    found[0].request_keyframe(found[1])
        elif isinstance(pkt, Nack):
            found = self._origin_layer(pkt.media_ssrc)
            if found is not None:
                self._serve_nack(self.relaying[found[0].id], found[1], pkt.lost)
        elif isinstance(pkt, Remb):
            for relay in self.relaying.values():
                if any(relay.producer.layer_by_ssrc(s) is not None for s in pkt.ssrcs):
                    relay.remb = pkt.bitrate
        elif isinstance(pkt, UnknownRtcp) and pkt.packet_type == RTCP_APP and pkt.body[4:8] == b"JWNT":
            data = pkt.body[8:]
            self._want(set(_ids(data)))

    def _origin_layer(self, ssrc: int) -> tuple[Producer, Layer] | None:
        for relay in self.relaying.values():
            layer = relay.producer.layer_by_ssrc(ssrc)
            if layer is not None:
                return relay.producer, layer
        return None

    def _serve_nack(self, relay: _Relay, layer: Layer, lost: tuple[int, ...]) -> None:
        """Resend what the origin's cache holds; ask the publisher for the rest. Never a packet
        from before the relay's current stream (a private's, while the relay was cut)."""
        self.stats.nacks_received += 1
        p = relay.producer
        missing = []
        for seq in lost:
            if not relay.may_serve(layer, seq):
                self.stats.nack_packets_refused += 1
                continue
            data = layer.cache.get(seq) if layer.cache is not None else None
            if data is None:
                missing.append(seq)
            else:
                self.stats.nack_packets_served += 1
                self._send_rtp(data)
        if missing:
            self.stats.nack_packets_missed += len(missing)
            p.nack_upstream(missing, layer)

    # -- edge side -------------------------------------------------------------------

    def add_replica(
        self, router: "Router", desc: dict[str, Any], exclusive_to: frozenset[str] | None = None
    ) -> Producer:
        """A replica of the origin producer ``desc`` (from :func:`describe`), held by ``router``;
        the same one again when it exists. ``exclusive_to`` makes it exclusive to that audience
        before the router holds it (a member's Cam2Cam from its edge: the performers only)."""
        if self.role != "edge":
            raise InvalidStateError("only an edge pipe holds replicas")
        if self.closed:
            raise InvalidStateError("pipe is closed")
        pid = str(desc["producer_id"])
        have = self.replicas.get(pid)
        if have is not None and not have.closed:
            return have
        layers = desc.get("layers") or []
        rids = tuple(str(lay["rid"]) for lay in layers if lay.get("rid") is not None)
        replica = Producer(
            producer_id=pid,
            kind=str(desc["kind"]),
            mime=str(desc["mime"]),
            clock_rate=int(desc["clock_rate"]),
            payload_type=int(desc["payload_type"]),
            ssrc=None,
            rtx_ssrc=None,
            rtx_payload_type=None if desc.get("rtx_payload_type") is None else int(desc["rtx_payload_type"]),
            codec_parameters=dict(desc.get("codec_parameters") or {}),
            extensions={str(k): int(v) for k, v in (desc.get("extensions") or {}).items()},
            send_rtcp=self._send_rtcp,
            rtcp_ssrc=self._rtcp_ssrc,
            stats=self.stats,
            cache_size=self.settings.packet_cache_size,
            cache_ms=self.settings.nack_max_delay_ms,
            keyframe_cache=self.settings.keyframe_cache,
            keyframes=router.keyframe_requester,
            app_data=dict(desc.get("app_data") or {}, relayed_from=self.peer_node),
            listener=self,
            rids=rids,
        )
        for lay in layers:
            if lay.get("ssrc") is not None:
                self._map(replica, int(lay["index"]), int(lay["ssrc"]))
                if lay.get("next_seq") is not None:
                    # In this step, before any datagram can reach the replica.
                    self._floors[int(lay["ssrc"])] = int(lay["next_seq"]) & 0xFFFF

        def on_demand(watched: bool, pid: str = pid) -> None:
            if watched:
                self.wanted.add(pid)
            else:
                self.wanted.discard(pid)
            self._send_want()

        replica.on_demand = on_demand
        self.replicas[pid] = replica
        self._router_of[pid] = router
        self._routers[router.id] = router
        if exclusive_to is not None:
            replica.exclusive = True
            replica.audience = exclusive_to
        router.adopt(replica)
        return replica

    def hold_back(self, producer_id: str, layers: list[dict[str, Any]]) -> None:
        """From now on the replica of ``producer_id`` takes no packet older than each layer's
        ``next_seq`` (as :func:`describe` gives them at the origin): its audience is about to
        widen, and what the origin relayed before that moment was for its narrower one."""
        replica = self.replicas.get(producer_id)
        if replica is None or replica.closed:
            return
        for lay in layers:
            ssrc, next_seq = lay.get("ssrc"), lay.get("next_seq")
            if ssrc is not None and next_seq is not None and self._by_ssrc.get(int(ssrc), (None,))[0] is replica:
                self._floors[int(ssrc)] = int(next_seq) & 0xFFFF

    def _map(self, replica: Producer, index: int, ssrc: int) -> None:
        layers = replica.all_layers
        if not 0 <= index < len(layers):
            self.stats.drop("relay_bad_map")
            return
        layer = layers[index]
        if layer.ssrc is not None and layer.ssrc != ssrc:
            self._by_ssrc.pop(layer.ssrc, None)
            self._floors.pop(layer.ssrc, None)
        layer.ssrc = ssrc
        self._by_ssrc[ssrc] = (replica, layer)

    def _send_want(self) -> None:
        ids = b"".join(_slot(pid) for pid in sorted(self.wanted))
        self._send_rtcp(_app(b"JWNT", self._rtcp_ssrc, ids))

    def _edge_control(self, pkt: Any, now: float) -> None:
        if isinstance(pkt, SenderReport):
            found = self._by_ssrc.get(pkt.ssrc)
            if found is not None:
                found[0].on_sender_report(pkt.ntp_timestamp, pkt.rtp_timestamp, now, found[1])
        elif isinstance(pkt, UnknownRtcp) and pkt.packet_type == RTCP_APP:
            name, data = pkt.body[4:8], pkt.body[8:]
            if name == b"JMAP":
                for off in range(0, len(data) - _MAP.size + 1, _MAP.size):
                    ssrc, index, raw = _MAP.unpack_from(data, off)
                    replica = self.replicas.get(raw.rstrip(b"\0").decode("ascii", "replace"))
                    if replica is not None and not replica.closed:
                        self._map(replica, index, ssrc)
            elif name == b"JNEW":
                self._on_new(data)
            elif name == b"JEVT":
                self._on_event(data)
            elif name == b"JGON":
                for pid in _ids(data):
                    replica = self.replicas.get(pid)
                    if replica is not None:
                        replica.close()

    def _on_new(self, data: bytes) -> None:
        try:
            news = json.loads(data)
            router = self._routers.get(str(news["router"]))
            if router is None or router.closed:
                return
            self.add_replica(router, news["producer"])
        except (ValueError, KeyError, TypeError, InvalidStateError):
            self.stats.drop("relay_bad_new")

    def _on_event(self, data: bytes) -> None:
        try:
            ev = json.loads(data)
            router_id, n, body = str(ev["router"]), int(ev["n"]), ev["data"]
            if not isinstance(body, dict):
                raise TypeError("data is not an object")
        except (ValueError, KeyError, TypeError):
            self.stats.drop("relay_bad_event")
            return
        if n <= self._event_seen.get(router_id, 0):
            return  # a repeat, or an older one arriving late
        self._event_seen[router_id] = n
        if self.listener is not None:
            self.listener.on_pipe_event(self, router_id, body)

    def on_producer_closed(self, producer: Producer) -> None:
        """ProducerListener: a replica closed; forget its routes, tell its router."""
        if self.replicas.pop(producer.id, None) is None:
            return
        for layer in producer.all_layers:
            if layer.ssrc is not None:
                self._by_ssrc.pop(layer.ssrc, None)
                self._floors.pop(layer.ssrc, None)
        self.wanted.discard(producer.id)
        router = self._router_of.pop(producer.id, None)
        if router is not None:
            router.on_transport_producer_closed(self, producer)
        self._send_want()

    # -- receiving -------------------------------------------------------------------

    def _on_datagram(self, data: bytes, addr: tuple[Any, ...]) -> None:
        remote = self.remote
        rx = self._rx
        if remote is None or rx is None or addr[0] != remote[0] or addr[1] != remote[1]:
            self.dropped_unknown_address += 1
            self.stats.drop("relay_unknown_address")
            return
        if len(data) < 12:
            self.stats.drop("too_short")
            return
        # RFC 5761: RTCP packet types 192-223 in the second byte.
        rtcp = 192 <= data[1] <= 223
        try:
            plain = rx.unprotect_rtcp(data) if rtcp else rx.unprotect(data)
        except SrtpError:
            self.dropped_srtp += 1
            self.stats.drop("relay_srtp")
            return
        self.packets_in += 1
        self.bytes_in += len(data)
        self.last_heard = self.clock()
        if rtcp:
            self._on_rtcp(plain)
            return
        ssrc = int.from_bytes(plain[8:12], "big")
        found = self._by_ssrc.get(ssrc)
        if found is None:
            self.stats.drop("relay_unknown_ssrc")
            return
        if self._floors and ssrc in self._floors and self._before_floor(ssrc, plain, found[1]):
            self.stats.drop("relay_before_replica")
            return
        found[0].on_rtp(plain, int(self.clock() * 1000), found[1])

    def _before_floor(self, ssrc: int, plain: bytes, layer: Layer) -> bool:
        """Whether ``plain`` is older than what its new replica takes (sent toward an earlier
        copy of the show here); forgets the floor once the replica is far past it."""
        floor = self._floors[ssrc]
        if (int.from_bytes(plain[2:4], "big") - floor) & 0xFFFF >= 0x8000:
            return True
        if layer.base_seq is not None and _FLOOR_SPAN <= (layer.max_seq - floor) & 0xFFFF < 0x8000:
            del self._floors[ssrc]
        return False

    def _on_rtcp(self, data: bytes) -> None:
        try:
            packets = parse_rtcp(data)
        except MalformedPacket as exc:
            self.stats.drop("rtcp_" + exc.reason)
            return
        self.stats.rtcp_packets_in += 1
        now = self.clock()
        for pkt in packets:
            if self.role == "origin":
                self._origin_feedback(pkt)
            else:
                self._edge_control(pkt, now)

    # -- periodic ----------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.settings.rtcp_interval_s)
            try:
                self.tick(self.clock())
            except Exception:  # pragma: no cover - a tick must not end the pipe
                log.exception("pipe tick failed")

    def tick(self, now: float) -> None:
        """Once per RTCP interval. Origin: re-announce the streams, say which
        producers closed. Edge: measure the replicas' layers (as the router does
        for a publisher's producers), send receiver reports and REMB up, and the
        wanted list."""
        if self.role == "origin":
            if self.relaying and now - self.last_heard > self.silence_timeout_s:
                # The edge stopped saying what it wants (it died, or lost its route): stop feeding it.
                log.warning(
                    "relay to %s silent for %.1f s: stopping its streams", self.peer_node, now - self.last_heard
                )
                self._want(set())
            for pid, p in list(self.offered.items()):
                if p.closed:
                    del self.offered[pid]
                    self._gone[pid] = _GONE_REPEATS
                    relay = self.relaying.pop(pid, None)
                    if relay is not None:
                        p.remove_relay(relay)
            for relay in self.relaying.values():
                self._send_rtcp(self._map_of(relay))
            if self.offered:
                self._send_rtcp(_app(b"JALV", self._rtcp_ssrc, b""))
            for pending in (self._news, self._events):
                for k, (msg, left) in list(pending.items()):
                    self._send_rtcp(msg)
                    if left <= 1:
                        del pending[k]
                    else:
                        pending[k] = (msg, left - 1)
            if self._gone:
                self._send_rtcp(_app(b"JGON", self._rtcp_ssrc, b"".join(_slot(pid) for pid in self._gone)))
                for pid in list(self._gone):
                    self._gone[pid] -= 1
                    if self._gone[pid] <= 0:
                        del self._gone[pid]
            if self.close_when_idle and not (self.offered or self._gone or self._news):
                self.close()  # nothing left to send (its ends told to the edge: JGON repeated)
            return
        if self.close_when_idle and not self.replicas:
            self.close()  # nothing left to receive
            return
        if self.replicas and now - self.last_heard > self.silence_timeout_s:
            log.warning("relay from %s silent for %.1f s: closing its replicas", self.peer_node, now - self.last_heard)
            self.close()
            return
        for rid, router in list(self._routers.items()):
            if router.closed:
                del self._routers[rid]
                self._event_seen.pop(rid, None)
        for replica in list(self.replicas.values()):
            replica.tick(now)
            if replica.consumers:
                self._send_rtcp(self._feedback(replica, now))
        self._send_want()

    def _feedback(self, replica: Producer, now: float) -> bytes:
        """An RR for the replica's streams and, for video, a REMB with the best estimate of the
        viewers here that count (as ``Producer.remb`` counts them), 0 when none sent one: the
        origin counts it as one viewer's estimate, and 0 as none (never the ceiling by default)."""
        blocks = tuple(b for b in (layer.report_block(now) for layer in replica.all_layers) if b is not None)
        out = ReceiverReport(ssrc=self._rtcp_ssrc, reports=blocks).to_bytes() if blocks else b""
        ssrcs = tuple(layer.ssrc for layer in replica.all_layers if layer.ssrc is not None)
        if replica.is_video and ssrcs:
            best = max(
                (
                    c.remb
                    for c in replica.consumers.values()
                    if not (c.closed or c.user_paused or c.blocked or c.congested or c.layer_paused)
                ),
                default=0,
            )
            out += Remb(
                sender_ssrc=self._rtcp_ssrc, bitrate=min(best, self.settings.remb_max_bps), ssrcs=ssrcs
            ).to_bytes()
        return out

    # -- lifecycle -------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "peer_node": self.peer_node,
            "role": self.role,
            "local": list(self.local) if self.local else None,
            "remote": list(self.remote) if self.remote else None,
            "relaying": sorted(self.relaying),
            "replicas": sorted(self.replicas),
            "packets_in": self.packets_in,
            "packets_out": self.packets_out,
            "dropped_unknown_address": self.dropped_unknown_address,
        }

    def close(self) -> None:
        """Stop relaying, close the replicas (their viewers' consumers with them) and the socket, once."""
        if self.closed:
            return
        self.closed = True
        for relay in self.relaying.values():
            relay.producer.remove_relay(relay)
        self.relaying.clear()
        self.offered.clear()
        for replica in list(self.replicas.values()):
            replica.close()
        if self._task is not None:
            self._task.cancel()
        if self._udp is not None:
            self._udp.close()
        if self.listener is not None:
            self.listener.on_pipe_closed(self)


def describe(p: Producer) -> dict[str, Any]:
    """What an edge needs to replicate ``p`` (JSON-ready): codec, extensions, layers."""
    return {
        "producer_id": p.id,
        "kind": p.kind,
        "mime": p.mime,
        "clock_rate": p.clock_rate,
        "payload_type": p.payload_type,
        "rtx_payload_type": p.rtx_payload_type,
        "codec_parameters": {k: v for k, v in p.codec_parameters.items() if isinstance(v, (str, int, float))},
        "extensions": dict(p.extensions),
        "app_data": {k: v for k, v in p.app_data.items() if isinstance(v, (str, int, float, bool))},
        "layers": [
            {
                "index": lay.index,
                "rid": lay.rid,
                "ssrc": lay.ssrc,
                # The sequence number after the newest packet received (None before the first):
                # every packet relayed so far is older, and a new replica takes none of them.
                "next_seq": None if lay.base_seq is None else (lay.max_seq + 1) & 0xFFFF,
            }
            for lay in p.all_layers
        ],
    }
