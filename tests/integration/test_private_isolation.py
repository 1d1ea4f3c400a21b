"""A private's packets reach its member only: with real aiortc peers, viewers who join
during the private and just after it, NACKs aimed at the private's packets, a group
show, and two worker processes.

The performer is bench's synthetic publisher (real ICE, DTLS and SRTP through aiortc,
VP8- and Opus-shaped RTP) with every payload ending in a unique marker; its send log
records, per marker, the phase it was sent in, its SSRC and sequence number. A
packet is "the private's" when it was sent after ``private.accept`` answered (so the
SFU had already narrowed the audience) and before the publisher held its sending to
end the private; the hold lasts until the member has received the last of them, so
every one of them was processed by the SFU during the private, none in flight.

Each viewer keeps every SRTP datagram as it arrived, before the SRTP replay window
(a resend reusing a sequence number the viewer already had is still seen), and the
test decrypts them with the viewer's own keys. A viewer who is not the member then
NACKs, for each publisher track, the sequence numbers the private's packets have in
its current stream (the mapping is learned from a packet it received after the
private), plus one cached packet of its own stream as a control: the control is
resent (so the NACKs were processed), and none of the private's markers is ever
among what the viewer was sent.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
from typing import Any, Callable

import aiohttp
import pylibsrtp
import pytest
from pylibsrtp import Policy, Session

from bench.peers import Viewer, subscribe, wait_for
from bench.publisher import FLAG_KEYFRAME, MAGIC, TRAILER, TRAILER_LEN, SyntheticPublisher, Workload
from jasmin_codecs.rtcp import Nack
from jasmin_codecs.rtp import parse_rtp
from jasmin_signaling.client import SignalingClient
from tests.conftest import start_daemon_process

PRIVATE = "private"
CACHE = 1024  # media.packet_cache_size's default: the private's packets are still in it
WORKLOAD = Workload(video_bps=300_000, keyframe_every_s=1.0)


class MarkedPublisher(SyntheticPublisher):
    """The synthetic performer; each payload ends in a marker unique among all
    publishers of the process, logged with its phase."""

    markers = itertools.count(1)

    def __init__(self) -> None:
        super().__init__(WORKLOAD)
        self.phase = "before"
        self.holding = False
        self.log: dict[int, tuple[str, int, int]] = {}  # marker -> (phase, ssrc, seq)
        self.key_markers: set[int] = set()  # markers of keyframes' first packets
        self.client: SignalingClient | None = None

    def _send(self, prefix: bytes, flags: int) -> None:
        if self.holding:
            return
        marker = next(self.markers)
        self.log[marker] = (self.phase, int.from_bytes(prefix[8:12], "big"), int.from_bytes(prefix[2:4], "big"))
        if flags & FLAG_KEYFRAME:
            self.key_markers.add(marker)
        self.sink.send(prefix + TRAILER.pack(MAGIC, marker, flags))

    @classmethod
    async def join(cls, url: str, show: str, performer_id: str) -> "MarkedPublisher":
        pub = cls()
        client = await SignalingClient.connect(url)
        await client.request("join", show_id=show, role="performer", performer_id=performer_id)
        pub.client = client

        async def exchange(sdp: str) -> str:
            return str((await client.request("publish", sdp=sdp))["sdp"])

        await pub.start(exchange)
        return pub

    def sent_in(self, phase: str) -> dict[int, tuple[int, int]]:
        """marker -> (ssrc, seq) of what was sent in ``phase``."""
        return {m: (ssrc, seq) for m, (ph, ssrc, seq) in self.log.items() if ph == phase}

    async def close(self) -> None:
        await super().close()
        if self.client is not None:
            await self.client.close()


def rx_sessions(dtls: Any) -> Callable[[], Session]:
    """New receiving SRTP sessions with a viewer leg's keys, derived as aiortc does."""
    ssl = dtls._ssl
    name = ssl.get_selected_srtp_profile()
    prof = next(p for p in dtls._srtp_profiles if p.openssl_profile == name)
    view = ssl.export_keying_material(b"EXTRACTOR-dtls_srtp", 2 * (prof.key_length + prof.salt_length))
    key = prof.get_key_and_salt(view, 0 if dtls._role == "server" else 1)

    def make() -> Session:
        policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=prof.libsrtp_profile)
        policy.window_size = 1024
        return Session(policy)

    return make


class Watcher:
    """A counting aiortc viewer and the packets it was sent: (ssrc, out seq, publisher, marker)."""

    def __init__(self, name: str, viewer: Viewer, pubs: list[MarkedPublisher]) -> None:
        self.name = name
        self.viewer = viewer
        self.pubs = pubs
        self.dtls = viewer.pc.getTransceivers()[0].receiver.transport
        self._make: Callable[[], Session] | None = None
        self._main: Session | None = None
        self._done = 0
        self.got: list[tuple[int, int, MarkedPublisher, int]] = []

    @classmethod
    async def join(cls, name: str, url: str, show: str, pubs: list[MarkedPublisher], **join: Any) -> "Watcher":
        v = await subscribe(url, show, decode=False, count=True, keep_wire=True, **join)
        return cls(name, v, pubs)

    def update(self) -> list[tuple[int, int, MarkedPublisher, int]]:
        """Decrypt what arrived since the last call (a repeat or a packet outside the
        replay window with a fresh session) and return everything so far."""
        assert self.viewer.counter is not None
        wire = self.viewer.counter.wire
        if self._done == len(wire):
            return self.got
        if self._make is None:
            self._make = rx_sessions(self.dtls)
            self._main = self._make()
        assert self._main is not None
        for data in wire[self._done :]:
            try:
                plain = self._main.unprotect(data)
            except pylibsrtp.Error:
                plain = self._make().unprotect(data)
            h = parse_rtp(plain)
            magic, marker, _flags = TRAILER.unpack_from(plain, h.payload_end - TRAILER_LEN)
            assert magic == MAGIC, f"{self.name} got a packet without a marker"
            owner = next(p for p in self.pubs if marker in p.log)
            self.got.append((h.ssrc, h.sequence, owner, marker))
        self._done = len(wire)
        return self.got

    def count(self, phase: str, ssrc: int | None = None) -> int:
        return sum(
            1 for _s, _q, p, m in self.update() if p.log[m][0] == phase and (ssrc is None or p.log[m][1] == ssrc)
        )

    def private_markers(self) -> list[tuple[MarkedPublisher, int]]:
        return [(p, m) for _s, _q, p, m in self.update() if p.log[m][0] == PRIVATE]

    async def close(self) -> None:
        await self.viewer.close()


def newest_seq(pub: MarkedPublisher, ssrc: int) -> int:
    return next(seq for _ph, s, seq in reversed(list(pub.log.values())) if s == ssrc)


async def nack(w: Watcher, media_ssrc: int, out_seqs: list[int]) -> None:
    """The viewer NACKs ``out_seqs`` on one of its tracks, 16 to an RTCP packet."""
    for i in range(0, len(out_seqs), 16):
        await w.dtls._send_rtp(
            Nack(sender_ssrc=0x5EED, media_ssrc=media_ssrc, lost=tuple(out_seqs[i : i + 16])).to_bytes()
        )


async def nack_the_private(w: Watcher, pubs: list[MarkedPublisher]) -> tuple[int, int]:
    """NACK, on every publisher track, the out seqs the private's packets have in ``w``'s
    current stream; then one cached packet of its own stream (the control).
    Returns the control (out ssrc, out seq)."""
    got = w.update()
    control: tuple[int, int] | None = None
    for pub in pubs:
        for ssrc in (pub.video_ssrc, pub.audio_ssrc):
            mine = [(s, q, m) for s, q, p, m in got if p is pub and p.log[m][1] == ssrc and p.log[m][0] == "free_again"]
            assert mine, f"{w.name} got nothing of {ssrc:#x} after the private"
            out_ssrc, out_seq, marker = mine[-1]
            offset = (out_seq - pub.log[marker][2]) & 0xFFFF
            private = [seq for ph, s, seq in pub.log.values() if ph == PRIVATE and s == ssrc]  # in send order
            assert private, f"the performer sent nothing on {ssrc:#x} during the private"
            # Still in the producer's cache: a leak would be served, not missed.
            assert (newest_seq(pub, ssrc) - private[0]) & 0xFFFF < CACHE - 200
            await nack(w, out_ssrc, [(seq + offset) & 0xFFFF for seq in private])
            if ssrc == pub.video_ssrc and control is None and len(mine) > 30:
                control = (out_ssrc, mine[-30][1])  # sent a while ago: no throttle can call it too recent
    assert control is not None, f"{w.name} got too little video after the private"
    await nack(w, control[0], [control[1]])
    return control


def resent(w: Watcher, control: tuple[int, int]) -> bool:
    return sum(1 for s, q, _p, _m in w.update() if (s, q) == control) >= 2


async def private_show(url: str, show: str, performers: tuple[str, ...]) -> None:
    """The whole scenario against one running node (one process or a supervisor)."""
    pubs = [await MarkedPublisher.join(url, show, performer_id=pid) for pid in performers]
    watchers: list[Watcher] = []

    async def watch(name: str, **join: Any) -> Watcher:
        w = await Watcher.join(name, url, show, pubs, **join)
        watchers.append(w)
        return w

    def all_tracks(w: Watcher, phase: str, n: int) -> bool:
        return all(w.count(phase, ssrc) >= n for p in pubs for ssrc in (p.video_ssrc, p.audio_ssrc))

    try:
        free = await watch("free viewer")
        member = await watch("member", member_id="m1")
        # More than a replayed keyframe (at most 6 packets here): both are anchored on the live stream.
        assert await wait_for(lambda: all(all_tracks(w, "before", 15) for w in (free, member)), 30)

        assert member.viewer.client is not None and pubs[0].client is not None
        await member.viewer.client.request("private.request")
        await pubs[0].client.request("private.accept", member_id="m1")
        for p in pubs:
            p.phase = PRIVATE
        during = await watch("joined during the private")

        def whole_keyframe() -> bool:
            """The member got a keyframe of the private and 8 video packets after its
            first (a keyframe is at most 6 here): the SFU's keyframe cache holds it."""
            got = member.private_markers()
            return any(
                sum(1 for q, n in got if q is p and n > m and q.log[n][1] == p.video_ssrc) >= 8
                for p, m in got
                if m in p.key_markers
            )

        assert await wait_for(lambda: all_tracks(member, PRIVATE, 40) and whole_keyframe(), 30), (
            "the member gets the private, keyframes included"
        )

        # End it with nothing of the private still in flight: hold, and wait until the
        # member has the last packet of the private on every track.
        for p in pubs:
            p.holding = True
        last = {
            (p, ssrc): max((m for m, (ph, s, _q) in p.log.items() if ph == PRIVATE and s == ssrc))
            for p in pubs
            for ssrc in (p.video_ssrc, p.audio_ssrc)
        }
        assert await wait_for(
            lambda: {(p, p.log[m][1]) for p, m in member.private_markers() if m == last[(p, p.log[m][1])]} == set(last),
            20,
        )
        await member.viewer.client.request("private.end")
        just_after = await watch("joined just after the private")  # in member chat
        await pubs[0].client.request("show.free")
        # Still holding: the last keyframe the SFU got is the private's, so a cache
        # not cleared for the new audience would replay it now.
        for p in pubs:
            p.phase = "free_again"
            p.holding = False
        after_free = await watch("joined after the show went free")
        others = [free, during, just_after, after_free]
        assert await wait_for(lambda: all(all_tracks(w, "free_again", 40) for w in others), 30)

        controls = {w.name: await nack_the_private(w, pubs) for w in others}
        # The control comes after the NACKs for the private on the same socket: once it
        # is back, the node has processed (and answered, if it did) all of them.
        controls_back = await wait_for(lambda: all(resent(w, controls[w.name]) for w in others), 20)
        leaked = {w.name: len(w.private_markers()) for w in others}
        assert not any(leaked.values()), f"packets of the private sent to non-members: {leaked}"
        assert controls_back, "a cached packet NACKed once was not resent"
        sent_private = sum(len(p.sent_in(PRIVATE)) for p in pubs)
        assert len({m for _p, m in member.private_markers()}) >= 0.95 * sent_private
    finally:
        for w in watchers:
            await w.close()
        for p in pubs:
            await p.close()


# Resends up to 10 s after the original (the most media.nack_max_delay_ms allows): the
# age rule alone would refuse the private's packets a second after they were sent, and
# the audience rule under test must be what refuses them.
NACK_MAX_DELAY_MS = 10_000


async def test_a_private_reaches_its_member_only(make_daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects exclusivity at the packet level: a free viewer, one who joins during the
    private, one who joins just after it ends and one who joins once the show is free
    again are sent none of the private's packets, even when they NACK exactly the
    sequence numbers those packets have in their streams; the member gets them all, and
    a cached packet of a viewer's own stream is still resent on its first NACK."""
    d = await make_daemon(nack_max_delay_ms=NACK_MAX_DELAY_MS)
    await private_show(d.url, "show-iso", ("anna",))


async def test_a_private_in_a_group_show_reaches_its_member_only(make_daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects exclusivity in a group show: one performer accepts the private, and
    neither performer's packets of it reach anyone but the member, NACKs included."""
    d = await make_daemon(nack_max_delay_ms=NACK_MAX_DELAY_MS)
    await private_show(d.url, "show-iso-group", ("anna", "bea"))


@pytest.mark.slow
async def test_a_private_reaches_its_member_only_with_two_workers() -> None:
    """Protects exclusivity behind the supervisor (server.workers = 2): signaling for the
    private goes through the supervisor to the show's worker, viewers' websockets start
    on either worker, and still no private packet reaches anyone but the member."""
    dp = await start_daemon_process(
        env={
            "JASMIN_SERVER_WORKERS": "2",
            "JASMIN_BILLING_ENABLED": "false",
            "JASMIN_MEDIA_LISTEN_IPS": "127.0.0.1",
            "JASMIN_MEDIA_RTC_MIN_PORT": "0",
            "JASMIN_MEDIA_RTC_MAX_PORT": "0",
            "JASMIN_MEDIA_NACK_MAX_DELAY_MS": str(NACK_MAX_DELAY_MS),
        }
    )
    try:
        async with aiohttp.ClientSession() as s, s.get(dp.http + "/readyz") as r:
            assert r.status == 200 and len((await r.json())["workers"]) == 2
        await private_show(dp.url, "show-iso-workers", ("anna",))
    finally:
        dp.proc.send_signal(signal.SIGTERM)
        try:
            dp.proc.wait(30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            dp.proc.kill()
