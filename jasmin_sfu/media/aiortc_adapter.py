"""Every touch of an aiortc/aioice private name lives in this module.

aiortc terminates ICE, DTLS and SRTP for us; we forward RTP at the packet
level below its receivers and above its sockets. That needs private hooks, so
aiortc and aioice are pinned to exact versions in setup.cfg and
``tests/media/test_aiortc_adapter.py`` fails loudly when an upgrade moves a
name used here. :func:`self_check` runs the same checks at daemon start.

The hooks (measured on aiortc 1.16.0):

* ``RTCDtlsTransport._handle_rtp_data(data, arrival_time_ms)`` gets plain RTP
  right after SRTP decryption, before parsing, jitter buffer or decoder. We
  replace it per instance with a tap that hands packets of known SSRCs to the
  SFU and the rest to the original.
* ``RTCDtlsTransport._handle_rtcp_data(data)`` gets plain RTCP; the SFU reads
  feedback (NACK, PLI, FIR, REMB, SR, RR) there.
* Sending: ``RTCDtlsTransport._tx_srtp.protect`` and the nominated aioice
  pair's datagram transport, both synchronous, so the hot path never awaits.
* ``RTCRtpSender._run_rtcp`` (and its name-mangled started/exited events):
  replaced per sender by :func:`quiet_sender_rtcp` so that aiortc starts no
  RTCP task for a sender the SFU feeds; the worker's one timer
  (``sender_report_timer.py``) sends the SRs.
* ``RTCPeerConnection.__connect`` (name-mangled) is the task aiortc starts
  with ``asyncio.ensure_future`` after each description and never awaits: a
  peer that vanishes mid-handshake, or an SDP aiortc accepted but cannot
  connect with, left "Task exception was never retrieved" in the log.
  :class:`PeerConnection` overrides it to consume the failure and close.
* ``aioice.ice.Connection.query_consent`` is replaced (process-wide, by
  :func:`tolerant_consent`): see there.
* ``RTCCertificate._create_ssl_context`` builds the DTLS context with only
  ECDHE-ECDSA suites; :func:`rsa_dtls_peers` wraps it (process-wide) to add
  ECDHE-RSA ones: see there.
* ``RTCCertificate.generateCertificate`` (the classmethod ``RTCPeerConnection.__init__``
  calls): while a :class:`PeerConnection` of the node is made, it returns the node's one
  certificate (:func:`node_certificate`), whose DTLS context is made once and shared.
* ``aiortc.rtcrtpreceiver.RemoteBitrateEstimator`` (the name the receiver module imported):
  :func:`lazy_receiver_estimators` replaces it (process-wide) with one built on its first packet.
* ``aioice.ice.Connection.get_component_candidates`` is replaced (process-wide) to gather
  only on the configured addresses, in the port range, or, for the node's own connections
  given a worker's :class:`SharedPorts` (``media.rtc_udp_port``), on one shared socket
  through a stand-in ``StunProtocol`` (``_SharedStunProtocol``: aioice's transactions,
  ``request_received``/``data_received``, ``Connection._local_username``,
  ``RTCIceGatherer._connection``); :func:`_shared_port_check` names each.
* ``RTCDtlsTransport._srtp_profiles`` (the SRTP profiles its DTLS handshake offers, in order),
  ``._ssl`` and ``._role``: :func:`prefer_srtp_profiles` sets the first, :func:`srtp_negotiation`
  reads what the handshake chose; :func:`_srtp_profile_check` names each.
* The C fast path (``_fastpath.c``, loaded by ``fastpath.py``) needs three more private things, all
  resolved here and nowhere else: libsrtp's ``srtp_protect`` function pointer
  (pylibsrtp 1.0.0 links libsrtp 2.x statically into ``_binding.abi3.so`` and
  its cffi ``lib`` exposes it), the ``srtp_t`` of aiortc's tx ``Session``
  (``Session._srtp[0]``), and the nominated pair's UDP socket fd and remote
  address.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
import time
import weakref
from typing import Any, Callable

import aioice.ice
import aioice.stun
import aioice.utils
import aiortc
import pylibsrtp
import aiortc.rtcdtlstransport
import aiortc.rtcicetransport
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
from OpenSSL import SSL
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aiortc import MediaStreamTrack, RTCDtlsTransport, RTCPeerConnection, RTCRtpSender

from .errors import AdapterError

AIORTC_VERSION = "1.16.0"
AIOICE_VERSION = "0.13.0"
PYLIBSRTP_VERSION = "1.0.0"
# The cffi type of srtp_protect in libsrtp 2.x, as pylibsrtp 1.0.0 declares it;
# _fastpath.c calls it with exactly this signature (libsrtp 3 changed it).
SRTP_PROTECT_CTYPE = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"

from .fastpath import fastpath_ext  # the C fan-out, loaded in its own module (None when not built)

RtpTap = Callable[[bytes, int], bool]
"""Called with (plain RTP bytes, arrival ms); returns True when consumed."""
RtcpTap = Callable[[bytes], None]


# ---------------------------------------------------------------------------
# Host candidates: only the configured addresses, optionally a port range.

_HOST_ADDRESSES: list[str] = []
_PORT_RANGE: tuple[int, int] = (0, 0)
_original_get_host_addresses = aioice.ice.get_host_addresses
_original_get_component_candidates = aioice.ice.Connection.get_component_candidates


def _configured_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    out = []
    for addr in _HOST_ADDRESSES:
        is_v6 = ":" in addr
        if (is_v6 and use_ipv6) or (not is_v6 and use_ipv4):
            out.append(addr)
    return out


async def _bind_in_range(loop: asyncio.AbstractEventLoop, conn: Any, address: str) -> tuple[Any, Any]:
    """Bind a UDP socket for ``address`` inside the configured port range."""
    lo, hi = _PORT_RANGE
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    start = lo + (hash((address, time.monotonic_ns())) % (hi - lo + 1))
    for i in range(hi - lo + 1):
        port = lo + (start - lo + i) % (hi - lo + 1)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, port))
        except OSError:
            sock.close()
            continue
        sock.setblocking(False)
        return await loop.create_datagram_endpoint(lambda: aioice.ice.StunProtocol(conn), sock=sock)
    raise OSError(f"no free UDP port in {lo}-{hi} on {address}")


async def _component_candidates_in_range(
    self: Any, component: int, addresses: list[str], timeout: int = 5
) -> list[Candidate]:
    """Host candidates only (the SFU uses no STUN/TURN), bound in the port range."""
    loop = asyncio.get_running_loop()
    candidates = []
    for address in addresses:
        try:
            _transport, protocol = await _bind_in_range(loop, self, address)
        except OSError:
            continue
        self._protocols.append(protocol)
        sockname = protocol.transport.get_extra_info("sockname")
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", sockname[0]),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host"),
            host=sockname[0],
            port=sockname[1],
            type="host",
        )
        candidates.append(protocol.local_candidate)
    return candidates


def restrict_host_addresses(addresses: list[str] | tuple[str, ...], port_range: tuple[int, int] = (0, 0)) -> None:
    """Gather ICE host candidates only on ``addresses`` (process-wide).

    aioice by default offers every interface address except 127.0.0.1; the
    SFU must offer exactly what it is configured to listen on (127.0.0.1 in
    tests, a private address behind NAT in production).
    """
    global _PORT_RANGE
    _HOST_ADDRESSES[:] = list(addresses)
    _PORT_RANGE = port_range
    aioice.ice.get_host_addresses = _configured_host_addresses
    aioice.ice.Connection.get_component_candidates = _component_candidates  # type: ignore[method-assign]


# ---------------------------------------------------------------------------
# One UDP port for every peer connection of the worker (media.rtc_udp_port).
#
# Like mediasoup's WebRtcServer: one socket per listen address carries every ICE
# connection of the SFU. aioice gives each Connection a StunProtocol per socket; here
# each gets a _SharedStunProtocol, a stand-in whose transport writes to the shared
# socket and whose close() only unregisters it. The demultiplexer (SharedUdpPort)
# routes what arrives: STUN requests by the local ufrag in USERNAME, STUN answers by
# the transaction they answer, everything else (DTLS, SRTP, SRTCP) by the remote
# address learnt when an authenticated check succeeded. The rest is dropped and
# counted. The C fan-out sees one fd for every viewer and sends with sendmmsg.

# Drop reasons counted by SharedUdpPort (jasmin_rtp_drops_total{reason}).
DROP_UNKNOWN_ADDRESS = "shared_port_unknown_address"
DROP_UNKNOWN_UFRAG = "shared_port_unknown_ufrag"
DROP_UNKNOWN_STUN = "shared_port_unknown_transaction"
DROP_BAD_STUN = "shared_port_bad_stun"

Addr = tuple[str, int]
# Send and receive buffer asked for a shared socket (the kernel caps it at net.core.wmem_max /
# rmem_max, doubled): one video packet to 1000 viewers is ~1.2 MB of datagrams in flight.
SHARED_SOCKET_BUFFER = 4 * 1024 * 1024
# Remote addresses kept per connection (the newest ones learnt).
MAX_ADDRS_PER_CONNECTION = 8


class _SharedTransport:
    """What a Connection's stand-in protocol sees as its datagram transport: sends go to
    the shared socket, close() unregisters the connection and leaves the socket open."""

    __slots__ = ("_port", "_protocol", "_closing")

    def __init__(self, port: "SharedUdpPort", protocol: "_SharedStunProtocol") -> None:
        self._port = port
        self._protocol = protocol
        self._closing = False

    def sendto(self, data: bytes, addr: Addr) -> None:
        if not self._closing and self._port.transport is not None:
            self._port.transport.sendto(data, addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if self._port.transport is None:
            return default
        return self._port.transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._port.unregister(self._protocol)
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


class _SharedStunProtocol(aioice.ice.StunProtocol):
    """aioice's per-socket protocol, for one Connection on the shared socket."""

    def __init__(self, receiver: Any, port: "SharedUdpPort") -> None:
        super().__init__(receiver)
        self.port = port
        self.addrs: dict[Addr, None] = {}  # learnt, oldest first

    def stun_received(self, message: aioice.stun.Message, addr: Addr) -> None:
        """StunProtocol.datagram_received after the parse the demultiplexer already did."""
        if message.message_class in (aioice.stun.Class.RESPONSE, aioice.stun.Class.ERROR):
            transaction = self.transactions.get(message.transaction_id)
            if transaction is not None:
                transaction.response_received(message, addr)
        elif message.message_class == aioice.stun.Class.REQUEST:
            self.receiver.request_received(message, addr, self)

    def send_stun(self, message: aioice.stun.Message, addr: Addr) -> None:
        # aioice answers a Binding request with success only once its USERNAME and
        # MESSAGE-INTEGRITY checked out: the peer is who the ufrag says, at addr.
        if message.message_class == aioice.stun.Class.RESPONSE and message.message_method == aioice.stun.Method.BINDING:
            self.port.learn(addr, self)
        super().send_stun(message, addr)

    async def request(
        self,
        request: aioice.stun.Message,
        addr: Addr,
        integrity_key: bytes | None = None,
        retransmissions: int | None = None,
    ) -> tuple[aioice.stun.Message, Addr]:
        self.port.by_transaction[request.transaction_id] = self
        try:
            response, raddr = await super().request(request, addr, integrity_key, retransmissions)
        finally:
            self.port.by_transaction.pop(request.transaction_id, None)
        if integrity_key is not None:
            # An answer signed with the peer's password (aioice checked it): the peer is at raddr.
            self.port.learn(raddr, self)
        return response, raddr


class _SharedEndpoint(asyncio.DatagramProtocol):
    """The asyncio protocol of one shared socket: hands datagrams to its SharedUdpPort."""

    def __init__(self, port: "SharedUdpPort") -> None:
        self.port = port
        self.transport: asyncio.BaseTransport | None = None
        self.datagram_received = port.datagram_received  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.port.transport is self.transport and self.transport is not None:
            self.port.lost(exc)

    def error_received(self, exc: Exception) -> None:
        log.debug("shared UDP port %s:%d: %s", self.port.address, self.port.port, exc)


class SharedUdpPort:
    """One UDP socket (one listen address, one port) for every ICE connection of the worker."""

    def __init__(self, address: str, port: int, on_drop: Callable[[str], None]) -> None:
        self.address = address
        self.port = port
        self.on_drop = on_drop
        self.transport: asyncio.DatagramTransport | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sock: socket.socket | None = None
        self.by_ufrag: dict[str, _SharedStunProtocol] = {}
        self.by_addr: dict[Addr, _SharedStunProtocol] = {}
        self.by_transaction: dict[bytes, _SharedStunProtocol] = {}
        # Set while open() attaches the socket to a loop (see there).
        self._attaching: asyncio.Future[None] | None = None

    def bind(self) -> None:
        """Bind the socket now (raises OSError when the port is taken): the daemon fails at start."""
        if self.sock is None:
            family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((self.address, self.port))
                self.port = sock.getsockname()[1]  # the kernel's choice when asked for port 0
                # Every viewer's copies leave through this one socket's send buffer, and every
                # peer's packets arrive in its one receive buffer: ask for room for a burst.
                for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                    sock.setsockopt(socket.SOL_SOCKET, opt, SHARED_SOCKET_BUFFER)
            except OSError:
                sock.close()
                raise
            got = min(sock.getsockopt(socket.SOL_SOCKET, o) for o in (socket.SO_SNDBUF, socket.SO_RCVBUF))
            if got < SHARED_SOCKET_BUFFER:
                log.warning(
                    "shared UDP port %s:%d: socket buffers capped at %d bytes (asked %d): copies past"
                    " them are dropped (send_failed); raise net.core.wmem_max and net.core.rmem_max",
                    self.address,
                    self.port,
                    got,
                    SHARED_SOCKET_BUFFER,
                )
            sock.setblocking(False)
            self.sock = sock

    async def open(self) -> None:
        """Attach the socket to the running loop (again, on a fresh socket, if a previous loop ended).

        Gathers that start together (two publishers' first offers) wait for the one attaching
        it: a second ``create_datagram_endpoint`` on the same socket fails (EEXIST from epoll)."""
        loop = asyncio.get_running_loop()
        attaching = self._attaching
        if attaching is not None and attaching.get_loop() is loop and not attaching.done():
            await asyncio.shield(attaching)
        if self.transport is not None:
            if self.loop is loop and not self.transport.is_closing():
                return
            self.detach()
        self.bind()
        self.loop = loop
        self._attaching = done = loop.create_future()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: _SharedEndpoint(self), sock=self.sock)
            self.transport = transport
        finally:
            self._attaching = None
            if not done.done():
                done.set_result(None)  # the waiters go on: on this transport, or (it failed) each tries again

    def detach(self) -> None:
        """Close the socket and forget every connection on it."""
        transport, self.transport = self.transport, None
        sock, self.sock = self.sock, None
        if transport is not None:
            # The transport owns the socket from create_datagram_endpoint on and closes it
            # (asyncio and uvloop alike); closing it here too could close a reused fd number.
            try:
                transport.close()
                sock = None
            except RuntimeError:  # its loop already closed: nobody else will close it
                pass
        if sock is not None:
            sock.close()
        for protocol in set(self.by_ufrag.values()) | set(self.by_addr.values()):
            self.unregister(protocol)

    def lost(self, exc: Exception | None) -> None:
        """The socket closed under its connections (the loop ended): each hears it."""
        protocols = set(self.by_ufrag.values()) | set(self.by_addr.values())
        self.transport = None
        for protocol in protocols:
            self.unregister(protocol)
            protocol.connection_lost(exc)

    def register(self, conn: Any) -> _SharedStunProtocol:
        """A stand-in protocol for ``conn``, its local ufrag made unique on this socket."""
        while conn.local_username in self.by_ufrag:
            conn._local_username = aioice.utils.random_string(8)
        protocol = _SharedStunProtocol(conn, self)
        protocol.connection_made(_SharedTransport(self, protocol))  # type: ignore[arg-type]
        self.by_ufrag[conn.local_username] = protocol
        return protocol

    def learn(self, addr: Addr, protocol: _SharedStunProtocol) -> None:
        if self.by_ufrag.get(protocol.receiver.local_username) is not protocol:
            return  # closed meanwhile
        old = self.by_addr.get(addr)
        if old is not None:
            old.addrs.pop(addr, None)  # another connection's, or this one's (moved to the newest below)
        self.by_addr[addr] = protocol
        protocol.addrs[addr] = None  # now the newest
        if len(protocol.addrs) > MAX_ADDRS_PER_CONNECTION:
            # As mediasoup's IceServer (8 tuples): a peer cannot grow the table by checking
            # from ever more ports; an evicted address that is still in use is learnt again
            # by the peer's next consent check.
            oldest = next(iter(protocol.addrs))
            del protocol.addrs[oldest]
            if self.by_addr.get(oldest) is protocol:
                del self.by_addr[oldest]

    def unregister(self, protocol: _SharedStunProtocol) -> None:
        ufrag = protocol.receiver.local_username
        if self.by_ufrag.get(ufrag) is protocol:
            del self.by_ufrag[ufrag]
        for addr in protocol.addrs:
            if self.by_addr.get(addr) is protocol:
                del self.by_addr[addr]
        protocol.addrs.clear()
        for tid in [t for t, p in self.by_transaction.items() if p is protocol]:
            del self.by_transaction[tid]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        peer = (addr[0], addr[1])
        if data and data[0] > 3:  # not STUN (RFC 7983): DTLS, SRTP, SRTCP
            protocol = self.by_addr.get(peer)
            if protocol is None:
                self.on_drop(DROP_UNKNOWN_ADDRESS)
                return
            protocol.receiver.data_received(data, protocol.local_candidate.component)
            return
        try:
            message = aioice.stun.parse_message(data)
        except ValueError:
            self.on_drop(DROP_BAD_STUN)
            return
        if message.message_class == aioice.stun.Class.REQUEST:
            username = message.attributes.get("USERNAME")
            protocol = self.by_ufrag.get(username.partition(":")[0]) if isinstance(username, str) else None
            if protocol is None:
                self.on_drop(DROP_UNKNOWN_UFRAG)
                return
        else:
            protocol = self.by_transaction.get(message.transaction_id)
            if protocol is None:
                self.on_drop(DROP_UNKNOWN_STUN)
                return
        protocol.stun_received(message, peer)


class SharedPorts:
    """The shared sockets of one worker: one :class:`SharedUdpPort` per listen address."""

    def __init__(self, addresses: list[str] | tuple[str, ...], port: int, on_drop: Callable[[str], None]) -> None:
        self.port = port
        self.by_address = {a: SharedUdpPort(a, port, on_drop) for a in addresses}

    @property
    def ports(self) -> list[SharedUdpPort]:
        return list(self.by_address.values())

    def bind(self) -> None:
        """Bind every address on the one port (port 0: the port the kernel gives the first)."""
        for shared in self.by_address.values():
            shared.port = self.port
            shared.bind()
            self.port = shared.port

    def close(self) -> None:
        """Close every socket (its connections are gone); a later gather binds again."""
        for shared in self.by_address.values():
            shared.detach()


def open_shared_ports(
    addresses: list[str] | tuple[str, ...], port: int, on_drop: Callable[[str], None] = lambda reason: None
) -> SharedPorts:
    """One UDP socket on ``port`` per address for the peer connections given it (see
    :class:`PeerConnection`). Binds at once, so a taken port raises OSError here, at start."""
    shared = SharedPorts(addresses, port, on_drop)
    try:
        shared.bind()
    except OSError:
        shared.close()
        raise
    return shared


# Attempts at a kernel-chosen port free on every listen address (port range 0/0).
_KERNEL_PORT_ATTEMPTS = 16


def open_shared_ports_in_range(
    addresses: list[str] | tuple[str, ...],
    port_range: tuple[int, int],
    on_drop: Callable[[str], None] = lambda reason: None,
) -> SharedPorts:
    """:func:`open_shared_ports` on the first port of ``port_range`` free on every address
    (media.rtc_udp_port = 0, the default), so firewall rules written for the range hold;
    (0, 0): a port the kernel chooses. Raises OSError (EADDRINUSE) when none is free."""
    lo, hi = port_range
    tries = [0] * _KERNEL_PORT_ATTEMPTS if (lo, hi) == (0, 0) else range(lo, hi + 1)
    for port in tries:
        try:
            return open_shared_ports(addresses, port, on_drop)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(
        errno.EADDRINUSE,
        f"no UDP port of {lo}..{hi} (media.rtc_min_port..rtc_max_port) is free on {', '.join(addresses)}"
        " for the worker's shared socket",
    )


# The node's ICE connections and the shared ports they gather on (set by PeerConnection).
_CONNECTION_PORTS: "weakref.WeakKeyDictionary[Any, SharedPorts]" = weakref.WeakKeyDictionary()


async def _component_candidates(self: Any, component: int, addresses: list[str], timeout: int = 5) -> list[Candidate]:
    """Host candidates of a Connection: on the shared port for the SFU's own connections
    when one is set, else one socket each (in the port range when one is set)."""
    ports = _CONNECTION_PORTS.get(self)
    if ports is None:
        if _PORT_RANGE != (0, 0):
            return await _component_candidates_in_range(self, component, addresses, timeout)
        return await _original_get_component_candidates(self, component, addresses, timeout)
    candidates = []
    for address in addresses:
        shared = ports.by_address.get(address)
        if shared is None:
            continue
        await shared.open()
        protocol = shared.register(self)
        self._protocols.append(protocol)
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", address),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host"),
            host=address,
            port=shared.port,
            type="host",
        )
        candidates.append(protocol.local_candidate)
    return candidates


# ---------------------------------------------------------------------------
# Consent freshness (RFC 7675) that a busy event loop does not break.

log = logging.getLogger(__name__)

# RFC 7675 section 5.1: consent expires when no check has been answered for 30 s.
CONSENT_TIMEOUT_S = 30.0
# aioice 0.13 sends each check once (no retransmission, 0.5 s timeout) and
# gives up after 6 misses in a row. When either loop answers later than 0.5 s
# for 30 s (an overloaded SFU, or a peer whose loop stalls), a healthy leg is
# closed: in the load bench the publisher's leg, and with it the whole show.
# Two retransmissions (0.5 + 1 + 2 s) let a late answer count.
CONSENT_RETRANSMISSIONS = 2
_original_query_consent = aioice.ice.Connection.query_consent


async def _query_consent_tolerant(self: Any) -> None:
    """aioice's consent loop, expiring on 30 s without an answer instead of 6 late ones."""
    loop = asyncio.get_running_loop()
    last_ok = loop.time()
    while True:
        await asyncio.sleep(aioice.ice.CONSENT_INTERVAL * (0.8 + 0.4 * random.random()))
        for pair in list(self._nominated.values()):
            request = self.build_request(pair, nominate=False)
            try:
                await pair.protocol.request(
                    request,
                    pair.remote_addr,
                    integrity_key=self.remote_password.encode("utf8"),
                    retransmissions=CONSENT_RETRANSMISSIONS,
                )
                last_ok = loop.time()
            except aioice.stun.TransactionError:
                pass
        if loop.time() - last_ok >= CONSENT_TIMEOUT_S:
            log.info("ICE consent expired: no answer for %.0f s", loop.time() - last_ok)
            self._query_consent_task = None
            await self.close()
            return


def tolerant_consent(enabled: bool = True) -> None:
    """Install (or, with ``enabled=False``, remove) the tolerant consent loop, process-wide."""
    aioice.ice.Connection.query_consent = (  # type: ignore[method-assign]
        _query_consent_tolerant if enabled else _original_query_consent
    )


def announce_address(sdp: str, announced_ip: str) -> str:
    """Rewrite host candidate addresses and c= lines to ``announced_ip``."""
    if not announced_ip:
        return sdp
    out = []
    for line in sdp.split("\r\n"):
        if line.startswith("a=candidate:"):
            parts = line.split(" ")
            if len(parts) > 7 and parts[7] == "host":
                parts[4] = announced_ip
                line = " ".join(parts)
        elif line.startswith("c=IN IP"):
            kind = "IP6" if ":" in announced_ip else "IP4"
            line = f"c=IN {kind} {announced_ip}"
        out.append(line)
    return "\r\n".join(out)


# ---------------------------------------------------------------------------
# Taps on the receive side.


def install_taps(dtls: RTCDtlsTransport, on_rtp: RtpTap, on_rtcp: RtcpTap) -> None:
    """Route decrypted RTP/RTCP of ``dtls`` to the SFU first.

    RTP the tap does not consume goes on to aiortc unchanged. RTCP goes only
    to the SFU: aiortc's receivers and senders on these transports carry no
    media of their own, so its feedback handling would only waste time.
    A tap must not raise; if it does, the exception is swallowed here so that
    one bad packet cannot close the connection (aiortc's receive loop ends on
    any exception).
    """
    original_rtp = dtls._handle_rtp_data

    async def handle_rtp(data: bytes, arrival_time_ms: int) -> None:
        try:
            if on_rtp(data, arrival_time_ms):
                return
        except Exception:  # pragma: no cover - taps count their own errors
            return
        await original_rtp(data, arrival_time_ms=arrival_time_ms)

    async def handle_rtcp(data: bytes) -> None:
        try:
            on_rtcp(data)
        except Exception:  # pragma: no cover
            pass

    dtls._handle_rtp_data = handle_rtp  # type: ignore[method-assign]
    dtls._handle_rtcp_data = handle_rtcp  # type: ignore[method-assign]


# ---------------------------------------------------------------------------
# The send side.


class SrtpSink:
    """Synchronous SRTP send on one DTLS transport: protect, then sendto.

    Resolved once the DTLS transport is connected; before that, and after it
    closes, sends are dropped and counted by the caller (``send`` returns
    False). Never raises.
    """

    __slots__ = (
        "_dtls",
        "_protect",
        "_protect_rtcp",
        "_sendto",
        "_addr",
        "ready",
        "closed",
        "on_ready",
        "target",
        "_fast",
    )

    def __init__(self, dtls: RTCDtlsTransport, fast: bool = True) -> None:
        self._dtls = dtls
        # The C send target (protect + sendto in one call), when the extension
        # is built and ``fast``; None means every send goes through Python.
        self.target: Any = None
        self._fast = fast and fastpath_ext is not None
        self._protect: Callable[[bytes], bytes] | None = None
        self._protect_rtcp: Callable[[bytes], bytes] | None = None
        self._sendto: Callable[[bytes, Any], None] | None = None
        self._addr: Any = None
        self.ready = False
        self.closed = False
        # Called once when the sink can first send (DTLS connected, pair nominated).
        self.on_ready: list[Callable[[], None]] = []
        dtls.on("statechange", self._on_state)
        self._on_state()

    def _on_state(self) -> None:
        state = self._dtls.state
        if state == "connected" and not self.ready:
            self._resolve()
        elif state in ("closed", "failed"):
            self.ready = False
            self.closed = True
            if self.target is not None:
                # Releases the target's own dup of the socket (aioice may have
                # closed its fd already; the target never sends on that number).
                self.target.close()

    def _resolve(self) -> None:
        conn = self._dtls.transport._connection
        pair = conn._nominated.get(1)
        srtp = self._dtls._tx_srtp
        if pair is None or srtp is None or pair.protocol.transport is None:
            return
        self._protect = srtp.protect
        self._protect_rtcp = srtp.protect_rtcp
        self._sendto = pair.protocol.transport.sendto
        self._addr = pair.remote_addr
        if self._fast:
            self.target = fast_target(srtp, pair)
        self.ready = True
        callbacks, self.on_ready = self.on_ready, []
        for cb in callbacks:
            try:
                cb()
            except Exception:  # pragma: no cover - a callback must not break the sink
                pass

    def send(self, packet: bytes) -> bool:
        """Protect and send one RTP packet; False when it could not be sent."""
        if not self.ready and not self._try_resolve():
            return False
        if self.target is not None:
            return bool(fastpath_ext.send(self.target, packet))
        try:
            self._sendto(self._protect(packet), self._addr)  # type: ignore[misc]
        except Exception:
            return False
        return True

    def send_rtcp(self, packet: bytes) -> bool:
        """Protect and send one compound RTCP packet."""
        if not self.ready and not self._try_resolve():
            return False
        try:
            self._sendto(self._protect_rtcp(packet), self._addr)  # type: ignore[misc]
        except Exception:
            return False
        return True

    def _try_resolve(self) -> bool:
        if self.closed or self._dtls.state != "connected":
            return False
        self._resolve()
        return self.ready


def srtp_protect_address() -> int:
    """Address of libsrtp's ``srtp_protect`` inside pylibsrtp's cffi module."""
    from pylibsrtp._binding import ffi, lib

    return int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_protect")))


def srtp_session_address(session: pylibsrtp.Session) -> int:
    """The ``srtp_t`` of a pylibsrtp Session (valid while the Session lives)."""
    from pylibsrtp._binding import ffi

    return int(ffi.cast("uintptr_t", session._srtp[0]))


def fast_target(session: pylibsrtp.Session, pair: Any) -> Any:
    """A C send target for one viewer leg, or None when any piece is missing.

    The Target holds a reference to ``session``, so the ``srtp_t`` stays
    allocated as long as C may use it, and sends through its own ``dup()`` of
    the socket's fd, which it closes itself: aioice closes the socket (consent
    expired, ICE closed) before DTLS reports closed and SrtpSink closes the
    target, and the fd number may meanwhile belong to an accepted TCP socket.
    """
    if fastpath_ext is None:
        return None
    try:
        sock = pair.protocol.transport.get_extra_info("socket")
        fd = int(sock.fileno())
        host, port = pair.remote_addr[0], int(pair.remote_addr[1])
        return fastpath_ext.Target(
            srtp_protect_address(), srtp_session_address(session), (session, sock), fd, host, port
        )
    except Exception:  # pragma: no cover - fall back to the Python send path
        return None


class SilentTrack(MediaStreamTrack):
    """A track that never yields a frame.

    A sendonly transceiver carrying it gives an ``RTCRtpSender`` with an SSRC
    and SRTP context but no encoder: aiortc creates the encoder only after the
    first frame, which never comes. The SFU sends forwarded packets in its
    name instead.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._never: asyncio.Future[Any] = asyncio.get_event_loop().create_future()

    async def recv(self) -> Any:
        await asyncio.shield(self._never)

    def stop(self) -> None:
        if not self._never.done():
            self._never.cancel()
        super().stop()


def sender_ssrc(sender: RTCRtpSender) -> int:
    """The SSRC aiortc chose for ``sender`` (and wrote into the SDP)."""
    return int(sender._ssrc)


# ---------------------------------------------------------------------------
# Sender reports: the worker's one timer (sender_report_timer.py), not aiortc's task per sender.


def quiet_sender_rtcp(sender: RTCRtpSender) -> None:
    """Keep aiortc from starting its RTCP task (``_run_rtcp``) for ``sender``.

    aiortc's ``RTCRtpSender.send`` starts one task per sender that wakes every
    0.5-1.5 s to send an SR + SDES (7 % of the forwarding loop at 400 viewers);
    the SFU's :class:`~.sender_report_timer.SenderReportTimer` sends them for
    every forwarded sender of the worker instead. Call before ``send`` runs
    (that is, before the peer connection connects). ``send`` passes what
    ``_run_rtcp()`` returns to ``asyncio.ensure_future``, which returns a
    future as it is: an already finished one here, so no task exists, and
    ``stop`` (which waits for the loop's started/exited events and cancels it)
    finds both events set. aiortc's BYE on stop goes with it; the timer sends
    one when the consumer closes. Incoming RTCP never reached aiortc's sender
    (:func:`install_taps` routes it to the SFU), so nothing else changes.
    """

    def no_rtcp_task() -> asyncio.Future[None]:
        sender._RTCRtpSender__rtcp_started.set()  # type: ignore[attr-defined]
        sender._RTCRtpSender__rtcp_exited.set()  # type: ignore[attr-defined]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    sender._run_rtcp = no_rtcp_task  # type: ignore[method-assign,assignment]


def _sender_rtcp_check() -> list[str]:
    """The names :func:`quiet_sender_rtcp` relies on."""
    import inspect

    missing = []
    send_src = inspect.getsource(RTCRtpSender.send)
    if "asyncio.ensure_future(self._run_rtcp())" not in send_src:
        missing.append("RTCRtpSender.send no longer calls asyncio.ensure_future(self._run_rtcp())")
    stop_src = inspect.getsource(RTCRtpSender.stop)
    for field in ("self.__rtcp_started.wait()", "self.__rtcp_task.cancel()", "self.__rtcp_exited.wait()"):
        if field not in stop_src:
            missing.append(f"RTCRtpSender.stop {field}")
    return missing


# ---------------------------------------------------------------------------
# Proof that no media is decoded or encoded for viewers.


class CodecCounter:
    """Counts aiortc encoders and decoders created in this process."""

    def __init__(self) -> None:
        self.encoders = 0
        self.decoders = 0


CODECS_CREATED = CodecCounter()
_counting_installed = False


def count_codec_creation() -> CodecCounter:
    """Wrap aiortc's encoder/decoder factories so /metrics can prove zero."""
    global _counting_installed
    if not _counting_installed:
        orig_enc = aiortc.rtcrtpsender.get_encoder
        orig_dec = aiortc.rtcrtpreceiver.get_decoder

        def get_encoder(codec: Any) -> Any:
            CODECS_CREATED.encoders += 1
            return orig_enc(codec)

        def get_decoder(codec: Any) -> Any:
            CODECS_CREATED.decoders += 1
            return orig_dec(codec)

        aiortc.rtcrtpsender.get_encoder = get_encoder
        aiortc.rtcrtpreceiver.get_decoder = get_decoder
        _counting_installed = True
    return CODECS_CREATED


class PeerConnection(RTCPeerConnection):
    """aiortc's peer connection whose connect task never ends with an unretrieved exception.

    aiortc runs ``__connect`` (ICE, then DTLS, then the RTP senders) in a task
    nobody awaits. When the far end goes away or the handshake cannot start
    (the transport closed under it, DTLS parameters it cannot use), the
    exception was only reported by the event loop's "never retrieved" handler.
    Here it is consumed: logged at info (the peer's fault, not ours) and the
    connection closed, which our ``connectionstatechange`` handler sees.
    """

    def __init__(
        self,
        configuration: Any = None,
        shared_ports: SharedPorts | None = None,
        srtp_profiles: tuple[str, ...] | None = None,
    ) -> None:
        """``shared_ports``: gather on the worker's shared UDP port (media.rtc_udp_port)
        instead of a socket of this connection's own; ``srtp_profiles``: the DTLS-SRTP
        profiles offered, most preferred first (media.srtp_profiles; None: aiortc's)."""
        self._shared_ports = shared_ports
        self._srtp_profile_names = srtp_profiles
        # aiortc makes a new P-256 key and certificate for each peer connection (a key
        # generation and a signature on the loop, per join): ours take the node's.
        global _making_node_pc
        _making_node_pc = True
        try:
            super().__init__(configuration)
        finally:
            _making_node_pc = False

    async def setLocalDescription(self, sessionDescription: Any = None) -> None:
        # Gathering happens in here: this connection's ICE goes on the worker's shared UDP
        # port when it was given one (a test's or a bench's client peers never are).
        if self._shared_ports is not None:
            for t in self.getTransceivers():
                _CONNECTION_PORTS[t.receiver.transport.transport.iceGatherer._connection] = self._shared_ports
        # Every transceiver exists by now and no DTLS handshake has started: as the offerer it
        # starts once the answer is set, as the answerer at the end of this call.
        if self._srtp_profile_names is not None:
            prefer_srtp_profiles(self, self._srtp_profile_names)
        await super().setLocalDescription(sessionDescription)

    async def _RTCPeerConnection__connect(self) -> None:
        try:
            await super()._RTCPeerConnection__connect()  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the handshake raised, it is consumed here
            log.info("peer connection could not connect: %s: %s", type(exc).__name__, exc)
            try:
                await self.close()
            except Exception:  # pragma: no cover - best effort
                log.debug("close after a failed connect failed", exc_info=True)


# ---------------------------------------------------------------------------
# DTLS: peers with an RSA certificate.

# aiortc 1.16.0's list (ECDSA: its own certificate is P-256), then the ECDHE-RSA suites a peer
# with an RSA certificate needs when it is the DTLS server: as the client aiortc offers only
# what this list holds, and GStreamer's webrtcbin (RSA by default) answered "no shared cipher".
# As the server, OpenSSL picks only suites its own (ECDSA) certificate can sign: no change there.
DTLS_CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA"
    b":ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA"
)
_original_create_ssl_context = aiortc.rtcdtlstransport.RTCCertificate._create_ssl_context


def _create_ssl_context_rsa(self: Any, srtp_profiles: Any) -> Any:
    node = self is _node_certificate[0]
    key = tuple(p.openssl_profile for p in srtp_profiles)
    if node and key in _node_contexts:
        return _node_contexts[key]
    ctx = _original_create_ssl_context(self, srtp_profiles)
    ctx.set_cipher_list(DTLS_CIPHERS)
    if node:
        # One context for every DTLS connection of the node (OpenSSL counts its users), whose
        # connections give back their record buffers once idle: after the handshake a media
        # connection carries no DTLS record (SRTP has its own keys), so each keeps ~17 KB less.
        ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
        _node_contexts[key] = ctx
    return ctx


# ---------------------------------------------------------------------------
# One DTLS certificate for the node's peer connections.

# Browsers check a DTLS certificate by the fingerprint in the SDP only, never by its dates
# or issuer; aiortc's are valid 30 days. The node's is replaced after a day, for the
# connections made from then on (a live connection keeps the one it was made with).
NODE_CERTIFICATE_MAX_AGE_S = 86400.0
_original_generate_certificate = aiortc.rtcdtlstransport.RTCCertificate.generateCertificate
_making_node_pc = False
_node_certificate: list[Any] = [None, 0.0]  # the certificate, when it was made (monotonic)
_node_contexts: dict[tuple[bytes, ...], Any] = {}


def node_certificate() -> Any:
    """The certificate (and key) of the node's DTLS connections, made again when a day old."""
    cert, made = _node_certificate
    now = time.monotonic()
    if cert is None or now - made > NODE_CERTIFICATE_MAX_AGE_S:
        cert = _original_generate_certificate()
        _fix_fingerprints(cert)
        _node_certificate[:] = [cert, now]
        _node_contexts.clear()
    return cert


def _generate_certificate(cls: Any) -> Any:
    if _making_node_pc:
        return node_certificate()
    return _original_generate_certificate()


aiortc.rtcdtlstransport.RTCCertificate.generateCertificate = classmethod(_generate_certificate)  # type: ignore[method-assign,assignment]


def _fix_fingerprints(cert: Any) -> None:
    """Compute the node certificate's SDP fingerprints once (aiortc hashes and hex-formats the
    certificate three times for every offer or answer); each call still gets its own list."""
    fingerprints = tuple(cert.getFingerprints())
    cert.getFingerprints = lambda: list(fingerprints)


def rsa_dtls_peers(enabled: bool = True) -> None:
    """Let DTLS peers with an RSA certificate in (process-wide; ``enabled=False`` restores aiortc's)."""
    aiortc.rtcdtlstransport.RTCCertificate._create_ssl_context = (  # type: ignore[method-assign]
        _create_ssl_context_rsa if enabled else _original_create_ssl_context
    )


# ---------------------------------------------------------------------------
# Join cost (issue 16, join storms): what aiortc builds per peer connection that the SFU
# never uses, built only when used.

_original_bitrate_estimator = aiortc.rtcrtpreceiver.RemoteBitrateEstimator


class LazyBitrateEstimator:
    """aiortc's receive-side bandwidth estimator, built on the first packet it is given.

    aiortc gives every video transceiver's receiver one, and its rate counter is a list of
    1000 bucket objects: in a viewer's sendonly transceiver (which never receives RTP) that
    was about a millisecond of CPU per join, on the loop that forwards media, and ~100 KB of
    memory per viewer. A publisher's receiver never gets a packet either while the SFU's
    taps consume them (install_taps): only RTP no tap takes builds the real one.
    """

    __slots__ = ("real",)

    def __init__(self) -> None:
        self.real: Any = None

    def add(self, **kwargs: Any) -> Any:
        if self.real is None:
            self.real = _original_bitrate_estimator()
        return self.real.add(**kwargs)


def lazy_receiver_estimators(enabled: bool = True) -> None:
    """Give aiortc's receivers a :class:`LazyBitrateEstimator` (process-wide; ``enabled=False`` restores aiortc's)."""
    estimator: Any = LazyBitrateEstimator if enabled else _original_bitrate_estimator
    aiortc.rtcrtpreceiver.RemoteBitrateEstimator = estimator  # type: ignore[misc]


def _join_cost_check() -> list[str]:
    """The names the join-cost section relies on."""
    import inspect

    missing = []
    if not hasattr(aiortc.rtcrtpreceiver, "RemoteBitrateEstimator"):
        missing.append("aiortc.rtcrtpreceiver.RemoteBitrateEstimator")
    src = inspect.getsource(aiortc.rtcrtpreceiver.RTCRtpReceiver)
    if "RemoteBitrateEstimator()" not in src:
        missing.append("RTCRtpReceiver no longer builds RemoteBitrateEstimator()")
    if "__remote_bitrate_estimator.add(" not in src:
        missing.append("RTCRtpReceiver no longer calls its estimator's add()")
    if "getFingerprints()" not in inspect.getsource(RTCDtlsTransport.getLocalParameters):
        missing.append("RTCDtlsTransport.getLocalParameters no longer takes the certificate's getFingerprints()")
    return missing


# ---------------------------------------------------------------------------
# DTLS-SRTP profiles (docs/media.md, "SRTP profile").
#
# aiortc offers SRTP_PROFILES (256-GCM, 128-GCM, AES-CM/HMAC-SHA1-80) from each
# RTCDtlsTransport's ``_srtp_profiles`` into OpenSSL's use_srtp extension, and reads back
# OpenSSL's ``get_selected_srtp_profile()`` on ``_ssl``. OpenSSL (and BoringSSL, in Chromium)
# picks the DTLS *server's* most preferred profile among those the client offers: the node
# chooses when it offers (a websocket viewer's subscribe: the answerer takes a=setup:active),
# the peer chooses when the node answers (a publisher, a WHEP viewer).

SRTP_PROFILES_BY_NAME: dict[str, Any] = {
    "aead_aes_256_gcm": aiortc.rtcdtlstransport.SRTP_AEAD_AES_256_GCM,
    "aead_aes_128_gcm": aiortc.rtcdtlstransport.SRTP_AEAD_AES_128_GCM,
    "aes128_cm_sha1_80": aiortc.rtcdtlstransport.SRTP_AES128_CM_SHA1_80,
}
_SRTP_NAME_BY_OPENSSL = {p.openssl_profile: name for name, p in SRTP_PROFILES_BY_NAME.items()}


def _dtls_transports(pc: RTCPeerConnection) -> list[RTCDtlsTransport]:
    out: list[RTCDtlsTransport] = []
    for t in pc.getTransceivers():
        dtls = t.receiver.transport
        if dtls is not None and all(d is not dtls for d in out):
            out.append(dtls)
    return out


def prefer_srtp_profiles(pc: RTCPeerConnection, names: list[str] | tuple[str, ...]) -> None:
    """Offer exactly these SRTP profiles, in this order, on every DTLS transport ``pc`` has now.

    Call it after the transceivers exist and before the handshake starts (an offerer: after
    ``addTransceiver``; an answerer: between ``setRemoteDescription`` and
    ``setLocalDescription``). Raises ``KeyError`` for a name not in :data:`SRTP_PROFILES_BY_NAME`.
    """
    profiles = [SRTP_PROFILES_BY_NAME[n] for n in names]
    for dtls in _dtls_transports(pc):
        dtls._srtp_profiles = profiles


def srtp_negotiation(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """(DTLS role ``client``/``server``, SRTP profile name) of ``pc``'s first connected DTLS
    transport; None before a handshake completed."""
    for dtls in _dtls_transports(pc):
        if dtls.state == "connected" and dtls._ssl is not None:
            selected = dtls._ssl.get_selected_srtp_profile()
            return dtls._role, _SRTP_NAME_BY_OPENSSL.get(selected, selected.decode(errors="replace"))
    return None


def _srtp_profile_check() -> list[str]:
    """The names the SRTP profile section relies on."""
    import inspect

    from .settings import SRTP_PROFILE_NAMES

    missing = []
    if set(SRTP_PROFILE_NAMES) != set(SRTP_PROFILES_BY_NAME):
        missing.append(
            f"SRTP_PROFILES_BY_NAME {sorted(SRTP_PROFILES_BY_NAME)} != settings {sorted(SRTP_PROFILE_NAMES)}"
        )
    for name in ("SRTP_PROFILES", "SRTP_AEAD_AES_256_GCM", "SRTP_AEAD_AES_128_GCM", "SRTP_AES128_CM_SHA1_80"):
        if not hasattr(aiortc.rtcdtlstransport, name):
            missing.append(f"aiortc.rtcdtlstransport.{name}")
    init_src = inspect.getsource(RTCDtlsTransport.__init__)
    for field in ("self._srtp_profiles = ", "self._ssl", "self._role"):
        if field not in init_src:
            missing.append(f"RTCDtlsTransport {field.strip(' =')}")
    if "srtp_profiles=self._srtp_profiles" not in inspect.getsource(RTCDtlsTransport.start):
        missing.append("RTCDtlsTransport.start no longer builds its SSL context from self._srtp_profiles")
    if "self._ssl.get_selected_srtp_profile()" not in inspect.getsource(RTCDtlsTransport._setup_srtp):
        missing.append("RTCDtlsTransport._setup_srtp no longer reads self._ssl.get_selected_srtp_profile()")
    return missing


# ---------------------------------------------------------------------------


def self_check() -> None:
    """Raise :class:`AdapterError` naming every private hook that moved."""
    missing = []
    if aiortc.__version__ != AIORTC_VERSION:
        missing.append(f"aiortc version {aiortc.__version__} != pinned {AIORTC_VERSION}")
    checks: list[tuple[Any, str]] = [
        (RTCDtlsTransport, "_handle_rtp_data"),
        (RTCDtlsTransport, "_handle_rtcp_data"),
        (RTCDtlsTransport, "_recv_next"),
        (RTCRtpSender, "_RTCRtpSender__track"),  # class-private proves mangling scheme
        (aioice.ice, "get_host_addresses"),
        (aioice.ice, "StunProtocol"),
        (aioice.ice.Connection, "get_component_candidates"),
        (aiortc.rtcrtpsender, "get_encoder"),
        (aiortc.rtcrtpreceiver, "get_decoder"),
        (RTCPeerConnection, "_RTCPeerConnection__connect"),
        (aiortc.rtcdtlstransport.RTCCertificate, "_create_ssl_context"),
    ]
    for owner, name in checks:
        if name == "_RTCRtpSender__track":
            continue  # checked on an instance in the tests
        if not hasattr(owner, name):
            missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
    import inspect

    src = inspect.getsource(RTCDtlsTransport._recv_next)
    if "_handle_rtp_data(data, arrival_time_ms=" not in src:
        missing.append("RTCDtlsTransport._recv_next no longer calls _handle_rtp_data(data, arrival_time_ms=)")
    if "_tx_srtp" not in inspect.getsource(RTCDtlsTransport._setup_srtp):
        missing.append("RTCDtlsTransport._tx_srtp")
    if "RTCCertificate.generateCertificate()" not in inspect.getsource(RTCPeerConnection.__init__):
        missing.append(
            "RTCPeerConnection.__init__ no longer takes its certificate from RTCCertificate.generateCertificate()"
        )
    if "ctx.set_cipher_list(" not in inspect.getsource(_original_create_ssl_context):
        missing.append("RTCCertificate._create_ssl_context no longer sets the cipher list on its context")
    if "self._ssrc" not in inspect.getsource(RTCRtpSender):
        missing.append("RTCRtpSender self._ssrc")
    missing += _sender_rtcp_check()
    conn_src = inspect.getsource(aioice.ice.Connection)
    for owner, name in (
        (aioice.ice.Connection, "build_request"),
        (aioice.ice, "CONSENT_INTERVAL"),
        (aioice.stun, "TransactionError"),
    ):
        if not hasattr(owner, name):
            missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
    if "retransmissions" not in inspect.signature(aioice.ice.StunProtocol.request).parameters:
        missing.append("aioice StunProtocol.request(retransmissions=)")
    for field in ("self._nominated", "self._protocols", "self._query_consent_task", "self.remote_password"):
        if field not in conn_src:
            missing.append(f"aioice Connection {field}")
    missing += _fastpath_check()
    missing += _join_cost_check()
    missing += _shared_port_check()
    missing += _srtp_profile_check()
    if missing:
        raise AdapterError("aiortc private hooks moved: " + "; ".join(missing))


def _fastpath_check() -> list[str]:
    """The private names the C fast path resolves through this module."""
    import inspect

    missing = []
    if pylibsrtp.__version__ != PYLIBSRTP_VERSION:
        missing.append(f"pylibsrtp version {pylibsrtp.__version__} != pinned {PYLIBSRTP_VERSION}")
    try:
        from pylibsrtp._binding import ffi, lib

        if ffi.getctype(ffi.typeof(lib.srtp_protect)) != ffi.getctype(ffi.typeof(SRTP_PROTECT_CTYPE)):
            missing.append(f"pylibsrtp lib.srtp_protect is {ffi.typeof(lib.srtp_protect)}, not {SRTP_PROTECT_CTYPE}")
    except (ImportError, AttributeError) as exc:
        missing.append(f"pylibsrtp._binding ffi/lib.srtp_protect ({exc})")
    if "self._srtp = " not in inspect.getsource(pylibsrtp.Session.__init__):
        missing.append("pylibsrtp Session._srtp")
    pair_src = inspect.getsource(aioice.ice.CandidatePair)
    for field in ("self.protocol = protocol", "def remote_addr"):
        if field not in pair_src:
            missing.append(f"aioice CandidatePair {field}")
    return missing


def _shared_port_check() -> list[str]:
    """The aioice names the shared UDP port's stand-in protocol relies on."""
    import inspect

    missing = []
    for owner, name in (
        (aioice.stun, "parse_message"),
        (aioice.stun, "Class"),
        (aioice.stun.Method, "BINDING"),
        (aioice.stun.Transaction, "response_received"),
        (aioice.utils, "random_string"),
        (aioice.ice.StunProtocol, "send_stun"),
        (aioice.ice.StunProtocol, "connection_lost"),
        (aioice.ice.Connection, "request_received"),
        (aioice.ice.Connection, "data_received"),
        (aioice.ice.Connection, "local_username"),
    ):
        if not hasattr(owner, name):
            missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
    for field in ("self.transactions", "self.receiver", "self.transport"):
        if field not in inspect.getsource(aioice.ice.StunProtocol.__init__) + inspect.getsource(
            aioice.ice.StunProtocol.connection_made
        ):
            missing.append(f"aioice StunProtocol {field}")
    if "self._local_username = local_username" not in inspect.getsource(aioice.ice.Connection.__init__):
        missing.append("aioice Connection._local_username")
    if "self._connection = Connection(" not in inspect.getsource(aiortc.rtcicetransport.RTCIceGatherer.__init__):
        missing.append("aiortc RTCIceGatherer._connection")
    if "await self.__gather()" not in inspect.getsource(RTCPeerConnection.setLocalDescription):
        missing.append("RTCPeerConnection.setLocalDescription no longer gathers")
    return missing
