"""Light viewers (real ICE/DTLS/SRTP, no decoding) and the shared receive path that times every sampled packet.

Part of the load tool (``python -m bench.load``; bench/README.md).
"""

from __future__ import annotations

import asyncio
import random
import select
import socket
import struct
import time
from array import array
from typing import Any

from aiortc import RTCSessionDescription

from bench.peers import new_pc
from bench.publisher import FLAG_KEYFRAME, MAGIC, TRAILER_LEN
from jasmin_codecs.rtcp import ReceiverReport, Remb, ReportBlock

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_TIMESPEC = struct.Struct("@qq")


class Recorder:
    """Shared by all viewers of one target: latency samples and counters."""

    def __init__(self) -> None:
        self.recording = False
        self.latency_ns = array("q")
        self.no_trailer = 0
        self.srtp_errors = 0


class LightViewer:
    """Real ICE/DTLS/SRTP through aiortc; RTP read without decoding."""

    def __init__(self, idx: int, rec: Recorder, poller: "RawPoller") -> None:
        self.idx = idx
        self.rec = rec
        self.poller = poller
        self.ctx: dict[str, Any] = {}
        self.t_join_ns = 0
        self.t_offer_ns = 0
        self.t_dtls_ns = 0
        self.first_key_ns = 0
        self.first_packet_ns = 0
        self.streams: dict[bytes, list[int]] = {}  # ssrc -> [received, extended highest seq, first seq]
        self.rtcp_prev: dict[bytes, tuple[int, int]] = {}  # ssrc -> (expected, received) at the last RR
        self.rtcp_ssrc = random.getrandbits(32) or 1
        self.fd = -1
        self.port = 0
        self.raw = False
        self.pc: Any = None

    @property
    def ttff_ms(self) -> float | None:
        if not self.first_key_ns or not self.t_join_ns:
            return None
        return (self.first_key_ns - self.t_join_ns) / 1e6

    async def answer(self, offer_sdp: str) -> str:
        """Apply the SFU's offer, tap RTP, return our answer (all candidates in it)."""
        self.t_offer_ns = time.time_ns()
        self.pc = pc = new_pc()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        dtls = next(t.receiver.transport for t in pc.getTransceivers() if t.receiver.transport is not None)
        self._dtls = dtls

        async def handle_rtp(data: bytes, arrival_time_ms: int) -> None:  # before the raw takeover
            self.on_rtp(data, time.time_ns())

        dtls._handle_rtp_data = handle_rtp  # type: ignore[method-assign]
        dtls.on("statechange", self._on_dtls_state)
        return str(pc.localDescription.sdp)

    def phases(self) -> dict[str, float] | None:
        """Where a probe's TTFF went: ms from the join request to each milestone."""
        if not (self.t_join_ns and self.first_key_ns):
            return None

        def ms(t: int) -> float:
            return round((t - self.t_join_ns) / 1e6, 1) if t else -1.0

        return {
            "offer": ms(self.t_offer_ns),
            "dtls_connected": ms(self.t_dtls_ns),
            "first_packet": ms(self.first_packet_ns),
            "first_keyframe": ms(self.first_key_ns),
        }

    def _on_dtls_state(self) -> None:
        if self._dtls.state == "connected" and not self.t_dtls_ns:
            self.t_dtls_ns = time.time_ns()
        if self._dtls.state == "connected" and not self.raw:
            try:
                self.poller.take_over(self)
            except Exception as exc:  # keep aiortc's path; counted
                self.ctx["raw_error"] = repr(exc)

    def on_rtp(self, plain: bytes, rx_ns: int) -> None:
        """One plain RTP packet (aiortc's path, before the raw takeover)."""
        self.on_parts(plain[8:12], (plain[2] << 8) | plain[3], plain[-TRAILER_LEN:], rx_ns)

    def on_parts(self, ssrc: bytes, seq: int, trailer: bytes, rx_ns: int) -> None:
        """Sequence accounting, latency sample, keyframe start."""
        st = self.streams.get(ssrc)
        if st is None:
            self.streams[ssrc] = [1, seq, seq]
            if not self.first_packet_ns:
                self.first_packet_ns = rx_ns
        else:
            st[0] += 1
            d = (seq - st[1]) & 0xFFFF
            if d < 0x8000:
                st[1] += d
        if trailer[:4] != MAGIC:
            self.rec.no_trailer += 1
            return
        if self.rec.recording:
            self.rec.latency_ns.append(rx_ns - int.from_bytes(trailer[4:12], "big", signed=True))
        if trailer[12] & FLAG_KEYFRAME and not self.first_key_ns:
            self.first_key_ns = rx_ns

    def receiver_report(self, remb_bps: int) -> bytes:
        """A compound RR (one block per received SSRC: fraction and cumulative
        loss, extended highest sequence; jitter, LSR and DLSR 0) + REMB, like a
        real receiver's once-a-second RTCP."""
        blocks = []
        for ssrc, (received, highest, first) in self.streams.items():
            expected = highest - first + 1
            e0, r0 = self.rtcp_prev.get(ssrc, (0, 0))
            self.rtcp_prev[ssrc] = (expected, received)
            de, dr = expected - e0, received - r0
            fraction = min(255, max(0, (256 * (de - dr)) // de)) if de > 0 else 0
            blocks.append(
                ReportBlock(int.from_bytes(ssrc, "big"), fraction, expected - received, highest & 0xFFFFFFFF, 0, 0, 0)
            )
        rr = ReceiverReport(self.rtcp_ssrc, tuple(blocks[:31])).to_bytes()
        media = tuple(b.ssrc for b in blocks)
        return rr + (Remb(self.rtcp_ssrc, remb_bps, media).to_bytes() if media else b"")

    def snapshot(self) -> dict[bytes, tuple[int, int]]:
        return {k: (v[0], v[1]) for k, v in self.streams.items()}

    async def close(self) -> None:
        self.poller.release(self)
        if self.pc is not None:
            try:
                await asyncio.wait_for(self.pc.close(), 10)
            except Exception:
                pass


SIOCGSTAMPNS = 0x8907  # receive time of the last datagram read from the socket (struct timespec)


class RawPoller:
    """One epoll over every viewer socket, drained in one asyncio callback.

    Per packet, asyncio would wake one callback per ready socket, and
    pylibsrtp copies every packet twice; with hundreds of viewers at ~235
    packets/s each that overhead would make this tool the bottleneck long
    before the SFU. Here:

    * one read per ready socket per poll round (``recv_into`` straight into
      the viewer's libsrtp buffer; no EAGAIN exceptions, no address tuples);
    * sequence numbers and SSRCs come from the RTP header, which SRTP leaves
      in clear, for *every* packet (loss);
    * a packet is unprotected in place by libsrtp, and its kernel receive
      time read (ioctl SIOCGSTAMPNS), only when it is sampled for latency
      (sequence number divisible by ``sample_every``) or while the viewer has
      not seen its first keyframe yet (TTFF).
    """

    INTERVAL_S = 0.002  # drain every 2 ms: the kernel timestamps, so waiting costs no accuracy
    BUDGET_S = 0.001  # at most this long per drain before yielding to the event loop

    def __init__(
        self, rec: Recorder, sample_every: int = 4, rtcp_every_s: float = 0.0, remb_bps: int = 5_000_000
    ) -> None:
        """``rtcp_every_s`` > 0: every viewer taken over sends a compound RR +
        REMB (SRTCP, from its own socket to the SFU) that often, as real
        receivers do about once a second (:meth:`LightViewer.receiver_report`);
        0: none (aiortc's receiver sends none either once its RTP is taken away)."""
        from pylibsrtp._binding import ffi, lib

        self.rec = rec
        self.sample_every = max(1, sample_every)
        self._unprotect = lib.srtp_unprotect
        self._len_p = ffi.new("int *")
        self.ep = select.epoll()
        self.by_fd: dict[int, tuple[Any, ...]] = {}
        self.wakeups = 0
        self.packets = 0
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | asyncio.Handle = self._loop.call_later(self.INTERVAL_S, self._tick)
        self.rtcp_every_s = rtcp_every_s
        self.remb_bps = remb_bps
        self.rtcp_sent = 0
        self.rtcp_errors = 0
        self._rtcp_timer: asyncio.TimerHandle | None = (
            self._loop.call_later(rtcp_every_s, self._rtcp_tick) if rtcp_every_s > 0 else None
        )

    def _rtcp_tick(self) -> None:
        """Every viewer's RR + REMB, SRTCP-protected with its own keys, sent from its own socket."""
        self._rtcp_timer = self._loop.call_later(self.rtcp_every_s, self._rtcp_tick)
        for entry in list(self.by_fd.values()):
            v = entry[6]
            if not v.streams:
                continue
            try:
                sock, tx, addr = v.ctx["rtcp_path"]
                sock.sendto(tx.protect_rtcp(v.receiver_report(self.remb_bps)), addr)
                self.rtcp_sent += 1
            except Exception:  # a closing viewer, a full socket buffer: counted, never fatal
                self.rtcp_errors += 1

    def _tick(self) -> None:
        """Drain on a timer, not on readiness: one wake-up per few ms however
        many sockets are ready (readiness would wake this process for nearly
        every datagram and cost ~20 us of event-loop overhead each). A drain
        stops after BUDGET_S and resumes on the next loop iteration, so the
        publisher's pacing timers are never held up by more than that."""
        more = True
        try:
            more = self._poll()
        finally:
            if more:
                self._timer = self._loop.call_soon(self._tick)
            else:
                self._timer = self._loop.call_later(self.INTERVAL_S, self._tick)

    def take_over(self, v: LightViewer) -> None:
        import fcntl

        dtls = v._dtls
        pair = dtls.transport._connection._nominated.get(1)
        session = dtls._rx_srtp
        if pair is None or session is None:
            return
        transport = pair.protocol.transport
        sock: socket.socket = transport._sock  # type: ignore[attr-defined]
        fd = sock.fileno()
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 20)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        try:  # the first SIOCGSTAMPNS turns receive timestamps on for this socket
            fcntl.ioctl(fd, SIOCGSTAMPNS, bytes(16))
        except OSError:
            pass
        self._loop._remove_reader(fd)  # type: ignore[attr-defined]  # aiortc no longer reads this socket
        mv = memoryview(session._buffer)
        self.by_fd[fd] = (sock.recv_into, mv, session._srtp[0], session._cdata, pair.protocol, pair.remote_addr, v)
        self.ep.register(fd, select.EPOLLIN)
        v.ctx["rtcp_path"] = (sock, dtls._tx_srtp, pair.remote_addr)
        v.fd = fd
        v.port = sock.getsockname()[1]
        v.raw = True

    def release(self, v: LightViewer) -> None:
        if v.fd >= 0 and self.by_fd.pop(v.fd, None) is not None:
            try:
                self.ep.unregister(v.fd)
            except OSError:
                pass
        v.fd = -1

    def _poll(self) -> bool:
        """Read what is ready; True when it stopped on its time budget with more to read."""
        import fcntl

        self.wakeups += 1
        by_fd = self.by_fd
        ep_poll = self.ep.poll
        ioctl = fcntl.ioctl
        unpack_ts = _TIMESPEC.unpack
        unprotect = self._unprotect
        len_p = self._len_p
        rec = self.rec
        recording = rec.recording
        lat_append = rec.latency_ns.append
        k = self.sample_every
        zero16 = bytes(16)
        n = 0
        clock = time.perf_counter
        deadline = clock() + self.BUDGET_S
        more = False
        while True:
            if clock() > deadline:
                more = True
                break
            events = ep_poll(0, 256)
            if not events:
                break
            for fd, _mask in events:
                entry = by_fd.get(fd)
                if entry is None:
                    continue
                recv_into, mv, srtp, cdata, proto, addr, v = entry
                try:
                    size = recv_into(mv)
                except OSError:
                    continue
                if size < 12:
                    continue
                if not 127 < mv[0] < 192 or 191 < mv[1] < 224:  # STUN, DTLS, RTCP: to aiortc as before
                    try:
                        proto.datagram_received(mv[:size].tobytes(), addr)
                    except Exception:
                        pass
                    continue
                n += 1
                seq = (mv[2] << 8) | mv[3]
                ssrc = mv[8:12].tobytes()
                st = v.streams.get(ssrc)
                if st is None:
                    v.streams[ssrc] = [1, seq, seq]
                else:
                    st[0] += 1
                    d = (seq - st[1]) & 0xFFFF
                    if d < 0x8000:
                        st[1] += d
                first = not v.first_key_ns
                if not (first or (recording and seq % k == 0)):
                    continue
                sec, nsec = unpack_ts(ioctl(fd, SIOCGSTAMPNS, zero16))
                rx_ns = sec * 1_000_000_000 + nsec
                len_p[0] = size
                if unprotect(srtp, cdata, len_p):
                    rec.srtp_errors += 1
                    continue
                size = len_p[0]
                if mv[size - TRAILER_LEN : size - TRAILER_LEN + 4] != MAGIC:
                    rec.no_trailer += 1
                    continue
                if recording and seq % k == 0:
                    lat_append(rx_ns - int.from_bytes(mv[size - 12 : size - 4], "big", signed=True))
                if first:
                    if not v.first_packet_ns:
                        v.first_packet_ns = rx_ns
                    if mv[size - 4] & FLAG_KEYFRAME:
                        v.first_key_ns = rx_ns
        self.packets += n
        return more

    def close(self) -> None:
        self._timer.cancel()
        if self._rtcp_timer is not None:
            self._rtcp_timer.cancel()
        self.ep.close()
