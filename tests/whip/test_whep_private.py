"""A WHEP viewer in a private: exclusivity counted in packets, as tests/shows/test_private_show.py
counts it for websocket viewers (send log on the performer, payload digests at the viewer)."""

from __future__ import annotations

from bench.peers import PatternTrack, SendLog, ToneTrack, publish, subscribe, wait_for
from bench.whip_peers import HttpPeer, whep_play


def sent_after(peer: HttpPeer, log: SendLog, t: float) -> int:
    """How many packets ``peer`` received that the performer sent after ``t``."""
    assert peer.counter is not None
    n = 0
    for _ssrc, digest, _arrived in peer.counter.payloads:
        sent = log.sent_at(digest)
        assert sent is not None, "the WHEP viewer received a payload the performer never sent"
        n += sent > t
    return n


async def test_whep_viewer_is_blocked_from_accepted_at_and_resumes_after(daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects the privacy rule for WHEP: a token-less WHEP guest (this node trusts legacy
    joins) receives zero packets sent after ``accepted_at`` while the member keeps getting
    media; after the return to free it decodes again on the same connection, no renegotiation."""
    pub = await publish(daemon.url, "show-w", tracks=[PatternTrack(), ToneTrack(noise=True)])
    log = SendLog().attach(pub.pc)
    whep = await whep_play(daemon.http, "show-w")
    member = await subscribe(daemon.url, "show-w", count=True, pass_through=True, member_id="m1")
    assert member.counter is not None
    member.counter.keep_payloads = True
    assert await wait_for(lambda: whep.frames.get("video", 0) >= 3 and whep.frames.get("audio", 0) >= 3, 30)

    await member.client.request("private.request")
    accepted = await pub.client.request("private.accept", member_id="m1")
    t_accept = accepted["accepted_at"]
    member_after = lambda: sum(1 for _s, d, _t in member.counter.payloads if (log.sent_at(d) or 0) > t_accept)  # type: ignore[union-attr]  # noqa: E731
    assert await wait_for(lambda: member_after() >= 60, 20)
    assert sum(1 for t in log.sent.values() if t > t_accept) >= 60  # the performer kept sending
    assert sent_after(whep, log, t_accept) == 0, "a WHEP viewer received media sent after the accept"
    assert whep.pc.connectionState == "connected"

    frames = whep.frames.get("video", 0)
    await member.client.request("private.end")
    back = await pub.client.request("show.free")
    assert await wait_for(lambda: whep.frames.get("video", 0) >= frames + 5, 20)
    assert sent_after(whep, log, back["at"]) > 0
    assert len(whep.pc.getTransceivers()) == 2
    await whep.delete()
    await whep.close()
    await member.close()
    await pub.close()
