"""The aiortc private names the SFU relies on. These fail loudly when an upgrade moves one."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import aioice.ice
import aioice.stun
import aiortc
import pytest
from aiortc import RTCDtlsTransport, RTCPeerConnection, RTCRtpSender

from jasmin_sfu.media import aiortc_adapter as adapter
from tests.realparts import free_udp_range


def test_pinned_versions() -> None:
    """Protects the pin: the adapter was written against exactly these versions."""
    assert aiortc.__version__ == adapter.AIORTC_VERSION
    import importlib.metadata as md

    assert md.version("aioice") == adapter.AIOICE_VERSION


def test_self_check_passes() -> None:
    """Protects daemon start: Worker() runs the same check and refuses to start on a moved hook."""
    adapter.self_check()


def test_self_check_fails_loudly_when_a_hook_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    """Protects against a silent upgrade: a missing hook is named in the error."""
    monkeypatch.delattr(RTCDtlsTransport, "_handle_rtcp_data")
    with pytest.raises(adapter.AdapterError, match="_handle_rtcp_data"):
        adapter.self_check()


def test_receive_hooks_have_the_expected_signatures() -> None:
    """Protects the taps: arguments as _recv_next passes them."""
    assert list(inspect.signature(RTCDtlsTransport._handle_rtp_data).parameters) == ["self", "data", "arrival_time_ms"]
    assert list(inspect.signature(RTCDtlsTransport._handle_rtcp_data).parameters) == ["self", "data"]
    assert "self._rx_srtp.unprotect(data)" in inspect.getsource(RTCDtlsTransport._recv_next)


async def test_sender_private_fields_exist_on_an_instance() -> None:
    """Protects SR injection and SSRC lookup on a real RTCRtpSender."""
    pc = RTCPeerConnection()
    t = pc.addTransceiver(adapter.SilentTrack("video"), direction="sendonly")
    sender: RTCRtpSender = t.sender
    assert isinstance(adapter.sender_ssrc(sender), int)
    for name in ("rtcp_started", "rtcp_exited"):
        assert isinstance(getattr(sender, f"_RTCRtpSender__{name}"), asyncio.Event), name
    dtls = sender.transport
    for name in ("_tx_srtp", "_rx_srtp", "_handle_rtp_data", "_handle_rtcp_data"):
        assert hasattr(dtls, name), name
    assert hasattr(dtls.transport, "_connection")
    assert hasattr(dtls.transport._connection, "_nominated")
    await pc.close()


async def test_silent_track_never_yields() -> None:
    """Protects 'no encoder': the viewer-side track gives aiortc nothing to encode."""
    track = adapter.SilentTrack("video")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(track.recv(), 0.05)
    track.stop()


async def test_host_candidates_only_on_configured_addresses() -> None:
    """Protects 'traffic stays local' and NAT setups: candidates come from listen_ips only."""
    adapter.restrict_host_addresses(["127.0.0.1"])
    assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1"]
    conn = aioice.ice.Connection(ice_controlling=True)
    await conn.gather_candidates()
    assert {c.host for c in conn.local_candidates} == {"127.0.0.1"}
    await conn.close()


async def test_port_range_is_honoured() -> None:
    """Protects the Docker/firewall setup: host candidates bind inside rtc_min_port..rtc_max_port."""
    lo, hi = free_udp_range(10)  # the conftest's aioice_state fixture undoes the patch
    adapter.restrict_host_addresses(["127.0.0.1"], (lo, hi))
    conns = [aioice.ice.Connection(ice_controlling=True) for _ in range(3)]
    for c in conns:
        await c.gather_candidates()
    ports = [cand.port for c in conns for cand in c.local_candidates]
    assert len(ports) == 3 and all(lo <= p <= hi for p in ports)
    assert len(set(ports)) == 3
    for c in conns:
        await c.close()


def test_announced_address_rewrites_host_candidates() -> None:
    """Protects NAT: the announced address replaces the listen address in candidates."""
    sdp = "v=0\r\nc=IN IP4 10.0.0.5\r\na=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host\r\n"
    out = adapter.announce_address(sdp, "203.0.113.7")
    assert "203.0.113.7 40000 typ host" in out and "10.0.0.5" not in out
    assert adapter.announce_address(sdp, "") == sdp


def test_fastpath_private_names_exist() -> None:
    """Protects the C fast path: libsrtp's srtp_protect with the 2.x signature, Session._srtp,
    and the aioice pair fields it reads; an upgrade that moves one fails here."""
    import pylibsrtp
    from pylibsrtp._binding import ffi, lib

    assert pylibsrtp.__version__ == adapter.PYLIBSRTP_VERSION
    assert ffi.getctype(ffi.typeof(lib.srtp_protect)) == ffi.getctype(ffi.typeof(adapter.SRTP_PROTECT_CTYPE))
    assert adapter.srtp_protect_address() != 0
    session = pylibsrtp.Session(pylibsrtp.Policy(key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    assert adapter.srtp_session_address(session) != 0
    assert adapter._fastpath_check() == []


def test_the_c_extension_is_loaded_by_its_own_module_not_the_adapter() -> None:
    """Protects the seam: jasmin_sfu/media/fastpath.py loads _fastpath (the adapter only
    re-uses it for the send targets), so producer, consumer and adapter share one module object,
    and a built extension reports no reason to be unavailable."""
    import inspect

    from jasmin_sfu.media import consumer, fastpath, producer

    assert "import _fastpath" not in inspect.getsource(adapter)
    assert fastpath.fastpath_ext is not None and fastpath.unavailable_reason is None
    assert adapter.fastpath_ext is producer.fastpath_ext is consumer.fastpath_ext is fastpath.fastpath_ext


def test_fastpath_loader_names_why_the_extension_is_unusable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Protects the start-up report: an absent build and a stale build (a name the code calls is
    missing) each give None and a reason naming the problem, never an AttributeError per packet."""
    import sys
    import types

    from jasmin_sfu.media import fastpath

    ext, reason = fastpath.load("jasmin_sfu.media._no_such_extension")
    assert ext is None and reason is not None and reason.startswith("not built")
    stale = types.ModuleType("stale_fastpath")
    stale.Lane = stale.Target = object  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "stale_fastpath", stale)
    ext, reason = fastpath.load("stale_fastpath")
    assert ext is None and reason is not None and "missing fanout, rewrite, send" in reason


def test_a_worker_without_the_c_fast_path_says_why_at_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Protects the start-up report: a node forwarding in Python only (far fewer viewers per core)
    logs the loader's reason once and keeps it on the worker."""
    from jasmin_sfu.media import fastpath
    from jasmin_sfu.media.settings import MediaSettings
    from jasmin_sfu.media.worker import Worker

    monkeypatch.setattr(fastpath, "unavailable_reason", "not built (test)")
    with caplog.at_level("WARNING", logger="jasmin_sfu.media.worker"):
        w = Worker(MediaSettings())
    assert w.fastpath_unavailable == "not built (test)"
    assert "C fast path unavailable, forwarding in Python: not built (test)" in caplog.text


def test_self_check_names_a_moved_fastpath_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    """Protects against a silent pylibsrtp upgrade (its libsrtp may change srtp_protect)."""
    import pylibsrtp

    monkeypatch.setattr(pylibsrtp, "__version__", "9.9.9")
    monkeypatch.setattr(adapter, "SRTP_PROTECT_CTYPE", "int(*)(void *, void *, size_t *)")
    with pytest.raises(adapter.AdapterError, match="pylibsrtp version 9.9.9.*srtp_protect"):
        adapter.self_check()


class _ConsentPeer:
    """A stand-in aioice Connection for the consent loop: one nominated pair whose
    answers arrive after 0.5 s, so only a check with retransmissions gets one."""

    def __init__(self, answers: bool = True) -> None:
        self.answers = answers
        self.requests: list[int] = []
        self.closed = asyncio.Event()
        self._query_consent_task: object = "running"
        self.remote_password = "pw"
        pair = type("Pair", (), {})()
        pair.remote_addr = ("127.0.0.1", 9)
        pair.protocol = self
        self._nominated = {1: pair}

    def build_request(self, pair: object, nominate: bool) -> object:
        return object()

    def _Connection__log_info(self, *args: object) -> None:  # aioice's name-mangled logger
        pass

    async def request(self, request: object, addr: object, integrity_key: bytes, retransmissions: int = 6) -> None:
        self.requests.append(retransmissions)
        await asyncio.sleep(0)
        if not (self.answers and retransmissions >= 1):
            raise aioice.stun.TransactionError()

    async def close(self) -> None:
        self.closed.set()


async def _run_consent(loop_fn: object, peer: _ConsentPeer, until_requests: int) -> None:
    task = asyncio.ensure_future(loop_fn(peer))  # type: ignore[operator]
    while len(peer.requests) < until_requests and not task.done():
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_late_consent_answers_keep_a_leg_that_aioices_own_loop_would_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Protects shows on a busy node: a peer that answers consent checks late (after aioice's
    single 0.5 s try) keeps its leg. aioice's own loop closes it after 6 late answers; that is
    how an overloaded load-bench step lost its publisher and the whole show."""
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0)
    stock = _ConsentPeer()
    await _run_consent(adapter._original_query_consent, stock, 50)
    assert stock.closed.is_set() and stock.requests == [0] * 6  # the failure mode, reproduced
    ours = _ConsentPeer()
    await _run_consent(adapter._query_consent_tolerant, ours, 50)
    assert not ours.closed.is_set()
    assert set(ours.requests) == {adapter.CONSENT_RETRANSMISSIONS} and adapter.CONSENT_RETRANSMISSIONS >= 1


async def test_consent_still_expires_when_the_peer_never_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Protects RFC 7675: with no answer at all for CONSENT_TIMEOUT_S the leg is closed."""
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.001)
    monkeypatch.setattr(adapter, "CONSENT_TIMEOUT_S", 0.05)
    peer = _ConsentPeer(answers=False)
    await asyncio.wait_for(adapter._query_consent_tolerant(peer), timeout=10)
    assert peer.closed.is_set() and peer._query_consent_task is None


def test_the_daemon_installs_the_tolerant_consent_loop() -> None:
    """Protects the wiring: a media worker replaces aioice's consent loop process-wide."""
    from jasmin_sfu.media.settings import MediaSettings
    from jasmin_sfu.media.worker import Worker

    adapter.tolerant_consent(False)
    assert aioice.ice.Connection.query_consent is adapter._original_query_consent
    Worker(MediaSettings())
    assert aioice.ice.Connection.query_consent is adapter._query_consent_tolerant


def _rsa_dtls_server_handshake(client_ctx: object) -> str:
    """A DTLS handshake over memory BIOs: ``client_ctx`` as client, a pyOpenSSL server with an
    RSA certificate (as GStreamer's webrtcbin has); returns the cipher, or raises SSL.Error."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    from OpenSSL import SSL

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webrtcbin")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    server_ctx = SSL.Context(SSL.DTLS_METHOD)
    server_ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True)
    server_ctx.use_certificate(cert)
    server_ctx.use_privatekey(key)
    server_ctx.set_tlsext_use_srtp(b"SRTP_AES128_CM_SHA1_80")
    client, server = SSL.Connection(client_ctx, None), SSL.Connection(server_ctx, None)  # type: ignore[arg-type]
    client.set_connect_state()
    server.set_accept_state()
    done = {"client": False, "server": False}
    for _ in range(50):
        for side, conn, peer in (("client", client, server), ("server", server, client)):
            try:
                conn.do_handshake()
                done[side] = True
            except SSL.WantReadError:
                pass
            while True:
                try:
                    peer.bio_write(conn.bio_read(65536))
                except SSL.WantReadError:
                    break
        if all(done.values()):
            return str(client.get_cipher_name())
    raise AssertionError("the DTLS handshake did not finish")


def test_aiortc_as_dtls_client_shakes_hands_with_an_rsa_certificate() -> None:
    """Protects WHIP from GStreamer's webrtcbin (RSA certificate, a=setup:actpass): with
    rsa_dtls_peers, aiortc's DTLS client context offers ECDHE-RSA suites and the handshake with
    an RSA server completes; with aiortc's own list it fails with "no shared cipher"."""
    from OpenSSL import SSL

    from aiortc.rtcdtlstransport import RTCCertificate, SRTP_AES128_CM_SHA1_80

    cert = RTCCertificate.generateCertificate()
    try:
        adapter.rsa_dtls_peers(False)
        with pytest.raises(SSL.Error, match="no shared cipher|handshake failure"):
            _rsa_dtls_server_handshake(cert._create_ssl_context([SRTP_AES128_CM_SHA1_80]))
        adapter.rsa_dtls_peers()
        assert _rsa_dtls_server_handshake(cert._create_ssl_context([SRTP_AES128_CM_SHA1_80])).startswith("ECDHE-RSA-")
    finally:
        adapter.rsa_dtls_peers()


def test_the_daemon_lets_rsa_dtls_peers_in() -> None:
    """Protects the wiring: a media worker installs the ECDHE-RSA suites process-wide."""
    from aiortc.rtcdtlstransport import RTCCertificate

    from jasmin_sfu.media.settings import MediaSettings
    from jasmin_sfu.media.worker import Worker

    adapter.rsa_dtls_peers(False)
    assert RTCCertificate._create_ssl_context is adapter._original_create_ssl_context
    Worker(MediaSettings())
    assert RTCCertificate._create_ssl_context is adapter._create_ssl_context_rsa


async def test_the_nodes_peer_connections_share_one_certificate_and_one_dtls_context() -> None:
    """Protects the per-join saving (issue 16: memory per viewer, join cost): every peer
    connection of the node takes the node's certificate (no key generation per join) and its
    DTLS connections share one context that releases idle record buffers; a client's
    RTCPeerConnection in the same process keeps a certificate of its own; a day-old node
    certificate is replaced for new connections (with a new context), not for live ones."""
    from OpenSSL import SSL

    from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80

    adapter.rsa_dtls_peers()
    a, b, client = adapter.PeerConnection(), adapter.PeerConnection(), RTCPeerConnection()
    try:
        cert_a = a._RTCPeerConnection__certificates[0]  # type: ignore[attr-defined]
        assert cert_a is b._RTCPeerConnection__certificates[0]  # type: ignore[attr-defined]
        assert cert_a is adapter.node_certificate()
        assert client._RTCPeerConnection__certificates[0] is not cert_a  # type: ignore[attr-defined]
        ctx = cert_a._create_ssl_context([SRTP_AES128_CM_SHA1_80])
        assert cert_a._create_ssl_context([SRTP_AES128_CM_SHA1_80]) is ctx
        assert ctx.set_mode(0) & SSL.MODE_RELEASE_BUFFERS
        other = client._RTCPeerConnection__certificates[0]  # type: ignore[attr-defined]
        assert other._create_ssl_context([SRTP_AES128_CM_SHA1_80]) is not other._create_ssl_context(
            [SRTP_AES128_CM_SHA1_80]
        )

        adapter._node_certificate[1] -= adapter.NODE_CERTIFICATE_MAX_AGE_S + 1
        c = adapter.PeerConnection()
        try:
            cert_c = c._RTCPeerConnection__certificates[0]  # type: ignore[attr-defined]
            assert cert_c is not cert_a and cert_c is adapter.node_certificate()
            assert a._RTCPeerConnection__certificates[0] is cert_a  # type: ignore[attr-defined]
            assert cert_c._create_ssl_context([SRTP_AES128_CM_SHA1_80]) is not ctx
        finally:
            await c.close()
    finally:
        for pc in (a, b, client):
            await pc.close()


async def test_the_nodes_fingerprints_are_computed_once_and_right() -> None:
    """Protects the join-cost saving (issue 16) and the DTLS identity it must not break: every offer
    or answer of the node carries its certificate's fingerprints, computed once (the same objects
    each time, not three hashes per join), equal to what aiortc computes from the certificate."""
    from aiortc.rtcdtlstransport import X509_DIGEST_ALGORITHMS, certificate_digest

    cert = adapter.node_certificate()
    first, again = cert.getFingerprints(), cert.getFingerprints()
    assert first is not again and all(a is b for a, b in zip(first, again))
    assert [(f.algorithm, f.value) for f in first] == [
        (alg, certificate_digest(cert._cert, alg)) for alg in X509_DIGEST_ALGORITHMS
    ]
    pc = adapter.PeerConnection()
    try:
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        assert f"a=fingerprint:sha-256 {first[0].value}" in pc.localDescription.sdp
    finally:
        await pc.close()


async def test_video_receivers_build_their_bitrate_estimator_only_when_given_a_packet() -> None:
    """Protects the join-cost saving (issue 16): a viewer's video transceiver (which never receives
    RTP) no longer builds aiortc's 1000-bucket rate counter; a receiver that does get RTP (a packet
    no SFU tap took) builds the real estimator then and gets its answers unchanged."""
    from aiortc.rate import RemoteBitrateEstimator

    adapter.lazy_receiver_estimators()
    pc = adapter.PeerConnection()
    try:
        t = pc.addTransceiver("video", direction="sendonly")
        est = t.receiver._RTCRtpReceiver__remote_bitrate_estimator  # type: ignore[attr-defined]
        assert isinstance(est, adapter.LazyBitrateEstimator) and est.real is None
        real = RemoteBitrateEstimator()
        for i in range(40):
            kw = dict(abs_send_time=(i * 1311) & 0xFFFFFF, arrival_time_ms=1000 + 20 * i, payload_size=1200, ssrc=5)
            assert est.add(**kw) == real.add(**kw)
        assert isinstance(est.real, RemoteBitrateEstimator)
    finally:
        await pc.close()
        adapter.lazy_receiver_estimators()


async def test_a_quiet_sender_starts_no_rtcp_task_and_still_stops() -> None:
    """Protects quiet_sender_rtcp (issue 16): a sender the SFU feeds starts no aiortc RTCP
    task when aiortc starts it, and its stop (which waits for that loop's started and
    exited events) still returns; an unquieted sender does start one (the check sees it)."""
    from aiortc.rtcrtpparameters import RTCRtcpParameters, RTCRtpCodecParameters, RTCRtpSendParameters

    def rtcp_tasks(sender: RTCRtpSender) -> list[asyncio.Task[Any]]:
        return [
            t
            for t in asyncio.all_tasks()
            if getattr(t.get_coro(), "__qualname__", "") == "RTCRtpSender._run_rtcp"
            and t.get_coro().cr_frame.f_locals.get("self") is sender  # type: ignore[union-attr]
        ]

    pc = RTCPeerConnection()
    params = RTCRtpSendParameters(
        codecs=[RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)],
        rtcp=RTCRtcpParameters(cname="c"),
        muxId="0",
    )
    quiet, loud = (pc.addTransceiver(adapter.SilentTrack("audio"), direction="sendonly").sender for _ in range(2))
    adapter.quiet_sender_rtcp(quiet)
    for sender in (quiet, loud):
        await sender.send(params)
    await asyncio.sleep(0.01)
    assert rtcp_tasks(quiet) == [] and len(rtcp_tasks(loud)) == 1
    await asyncio.wait_for(quiet.stop(), 5)
    await asyncio.wait_for(loud.stop(), 5)
    await pc.close()


def test_self_check_names_a_moved_shared_port_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    """Protects the shared UDP port's stand-in protocol: an aioice upgrade that moves a name it
    relies on (here the transaction's response hook) stops the daemon at start, naming it."""
    monkeypatch.delattr(aioice.stun.Transaction, "response_received")
    with pytest.raises(adapter.AdapterError, match="response_received"):
        adapter.self_check()


async def test_a_taken_ufrag_gets_a_new_one_and_a_taken_port_fails_at_start() -> None:
    """Protects demultiplexing by ufrag: two connections on one shared socket never share a
    local ufrag (the second gets a fresh one before its description is written), and each
    connection's candidate names the shared port; a port already bound is an OSError when the
    worker opens it, not a join that fails later."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    shared = adapter.open_shared_ports(["127.0.0.1"], port)
    try:
        with pytest.raises(OSError):
            adapter.open_shared_ports(["127.0.0.1"], port)
        a = aioice.ice.Connection(ice_controlling=False, local_username="same")
        b = aioice.ice.Connection(ice_controlling=False, local_username="same")
        ours = shared.ports[0]
        await ours.open()
        ours.register(a)
        ours.register(b)
        assert a.local_username == "same" and b.local_username != "same"
        assert set(ours.by_ufrag) == {"same", b.local_username}
    finally:
        shared.close()


def test_the_shared_socket_takes_the_first_free_port_of_the_range_and_fails_when_none_is() -> None:
    """Protects the default shared socket's port (media.rtc_udp_port = 0): it is the first port of
    rtc_min_port..rtc_max_port free on every listen address, never one outside the range; a
    range whose ports are all taken is an OSError naming the range at start (no join fails
    later); 0/0 takes a port the kernel chooses."""
    import errno
    import socket

    lo, hi = free_udp_range(3)
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", lo))
    opened = []
    try:
        opened.append(adapter.open_shared_ports_in_range(["127.0.0.1"], (lo, hi)))
        opened.append(adapter.open_shared_ports_in_range(["127.0.0.1"], (lo, hi)))
        assert [o.port for o in opened] == [lo + 1, lo + 2]
        assert [s.sock.getsockname()[1] for o in opened for s in o.ports] == [lo + 1, lo + 2]
        with pytest.raises(OSError, match=f"no UDP port of {lo}..{hi}") as info:
            adapter.open_shared_ports_in_range(["127.0.0.1"], (lo, hi))
        assert info.value.errno == errno.EADDRINUSE
        kernel = adapter.open_shared_ports_in_range(["127.0.0.1", "::1"], (0, 0))
        opened.append(kernel)
        assert kernel.port > 0 and [s.port for s in kernel.ports] == [kernel.port, kernel.port]
    finally:
        holder.close()
        for o in opened:
            o.close()


def test_gathers_that_start_together_attach_the_shared_socket_once() -> None:
    """Protects two first offers at once (two publishers going live together, bench.longtail)
    on the daemon's loop (uvloop): the shared socket is attached to the loop once and every
    gather gets it, instead of the second failing with EEXIST (a second datagram endpoint on
    the same socket) and its publish being refused as ``unsupported_codec``."""
    import uvloop

    async def gather_together() -> None:
        (port,) = shared.ports
        await asyncio.gather(*(port.open() for _ in range(3)))
        assert port.transport is not None and not port.transport.is_closing()
        assert port.transport.get_extra_info("socket").fileno() == port.sock.fileno()
        shared.close()  # on its loop

    shared = adapter.open_shared_ports_in_range(["127.0.0.1"], (0, 0))
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(gather_together())
    finally:
        shared.close()


async def test_a_connection_keeps_only_its_newest_remote_addresses() -> None:
    """Protects the shared port's address table: a peer that passes checks from ever more
    ports (each learnt) keeps only the newest MAX_ADDRS_PER_CONNECTION; the older ones no
    longer route to it, and re-learning an address makes it the newest again."""
    shared = adapter.SharedUdpPort("127.0.0.1", 0, lambda reason: None)
    conn = aioice.ice.Connection(ice_controlling=False)
    protocol = shared.register(conn)
    cap = adapter.MAX_ADDRS_PER_CONNECTION
    for port in range(1, cap + 1):
        shared.learn(("127.0.0.1", port), protocol)
    shared.learn(("127.0.0.1", 1), protocol)  # in use again: the newest now
    shared.learn(("127.0.0.1", 100), protocol)
    assert len(protocol.addrs) == cap and len(shared.by_addr) == cap
    assert ("127.0.0.1", 2) not in shared.by_addr
    assert shared.by_addr[("127.0.0.1", 1)] is protocol and shared.by_addr[("127.0.0.1", 100)] is protocol
    shared.unregister(protocol)
    assert shared.by_addr == {} and shared.by_ufrag == {}


def test_self_check_names_a_moved_srtp_profile_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    """Protects the SRTP profile hooks (prefer_srtp_profiles, srtp_negotiation): an aiortc upgrade
    that stops building its DTLS context from ``_srtp_profiles`` (here: the profile constants move)
    stops the daemon at start, naming what moved."""
    import aiortc.rtcdtlstransport

    monkeypatch.delattr(aiortc.rtcdtlstransport, "SRTP_AEAD_AES_128_GCM")
    with pytest.raises(adapter.AdapterError, match="SRTP_AEAD_AES_128_GCM"):
        adapter.self_check()
