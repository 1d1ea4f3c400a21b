"""The REMB the node sends the performer (docs/media.md, "REMB toward the performer").

Issue 12: the rule was the lowest viewer estimate, so one weak viewer pulled
every viewer's picture down (measured with Chromium: one extra viewer took the
performer from 555 to 431 kbit/s, ten joins pinned it at the 150 kbit/s floor
and 480x360). The performer is now asked for what its best-served viewer can
take; a weak viewer is handled on its own leg (audio first).
"""

from __future__ import annotations

from jasmin_codecs.rtcp import Remb, parse_rtcp
from jasmin_sfu.media.consumer import Consumer
from jasmin_sfu.media.producer import Producer
from tests.support import VP8_KEY, Clock, make_consumer, make_producer, pkt

LO, HI = 150_000, 3_000_000


def asked(p: Producer) -> int:
    remb = p.remb(LO, HI)
    assert remb is not None and remb.ssrcs == (p.ssrc,)
    return remb.bitrate


def viewers(n: int) -> tuple[Producer, list[Consumer], Clock]:
    clock = Clock()
    p, stats = make_producer(clock=clock)
    cs = [make_consumer(p, stats, cid=f"c{i}", ssrc=0x100 + i, clock=clock)[0] for i in range(n)]
    return p, cs, clock


def congest(c: Consumer, clock: Clock) -> None:
    """Three link checks with 80 % loss reported: audio first pauses the video."""
    for i in range(1, 4):
        clock.t += 1.0
        c.on_receiver_report(204, 0, 0, 80 * i, 100 * i)
        c.check_link(clock.t)
    assert c.congested and c.paused


def test_a_weak_viewer_does_not_pull_the_performer_down() -> None:
    """Protects every viewer's picture from the weakest one: the REMB is the highest
    estimate of the viewers, whatever a weak one (or ten) reports."""
    p, (a, b, c), _ = viewers(3)
    a.remb, b.remb = 800_000, 2_000_000
    assert asked(p) == 2_000_000
    c.remb = 200_000
    assert asked(p) == 2_000_000
    b.remb = 900_000  # the best viewer's estimate falls: so does the ask
    assert asked(p) == 900_000


def test_the_ask_is_bounded_by_config_and_absurd_estimates_are_not_trusted() -> None:
    """Protects the bounds: no estimate yet asks remb_max_bps; an estimate below the
    floor asks remb_min_bps, a huge one remb_max_bps; 0 is no estimate."""
    p, (a, b), _ = viewers(2)
    assert asked(p) == HI
    a.remb = 10
    assert asked(p) == LO
    b.remb = 1 << 40
    assert asked(p) == HI
    b.remb = 0
    assert asked(p) == LO


def test_viewers_that_paused_the_video_do_not_count() -> None:
    """Protects the ask from viewers that get no video: a viewer's own pause
    removes its estimate (a paused Chromium's estimate says nothing of the video),
    its resume brings it back."""
    p, (a, b), _ = viewers(2)
    a.remb, b.remb = 600_000, 2_500_000
    b.pause()
    assert asked(p) == 600_000
    b.resume()
    assert asked(p) == 2_500_000
    a.pause()
    b.pause()
    assert asked(p) == HI  # nobody watches: the performer's own link decides


def test_in_a_private_only_the_member_counts() -> None:
    """Protects the private's picture: the viewers blocked by the audience do not
    count, so the performer is asked exactly what the member's link takes, even
    when the blocked free-chat viewers report more; the show's end restores them."""
    p, (member, free1, free2), _ = viewers(3)
    member.audience_key, free1.audience_key, free2.audience_key = "m", "f1", "f2"
    member.remb, free1.remb, free2.remb = 400_000, 2_800_000, 2_000_000
    assert asked(p) == 2_800_000
    p.set_audience(frozenset({"m"}))
    assert free1.blocked and free2.blocked and not member.blocked
    assert asked(p) == 400_000
    p.set_audience(None)
    assert asked(p) == 2_800_000


def test_viewers_paused_by_audio_first_ask_the_floor_only_when_no_other_counts() -> None:
    """Protects the weak viewer's way back and the others' picture: a viewer whose
    video audio first paused does not count while a healthy one does; when every
    counting viewer is paused so (a private's member on a weak link) the performer
    is asked remb_min_bps, so the video's next try has a chance to fit."""
    p, (weak, good), clock = viewers(2)
    weak.remb, good.remb = 3_000_000, 1_200_000  # Chromium's estimate rises while it gets no video
    congest(weak, clock)
    assert asked(p) == 1_200_000
    good.pause()
    assert asked(p) == LO
    good.resume()
    assert asked(p) == 1_200_000


def test_the_receiver_report_to_the_performer_carries_the_ask() -> None:
    """Protects the wire: each receiver report to the performer carries the REMB of the rule."""
    p, (a, b), _ = viewers(2)
    p.on_rtp(pkt(1, 0, VP8_KEY), 0)
    a.remb, b.remb = 700_000, 1_900_000
    out = p.receiver_report(1.0, LO, HI)
    assert out is not None
    rembs = [x for x in parse_rtcp(out) if isinstance(x, Remb)]
    assert [(r.bitrate, r.ssrcs) for r in rembs] == [(1_900_000, (p.ssrc,))]


def test_a_viewer_whose_selector_paused_its_video_does_not_count() -> None:
    """Protects the ask from a viewer below the lowest layer: its layer selector's
    pause (set_target_layer(None)) removes its estimate as audio first's pause does,
    and when it is the only one watching the performer is asked the floor; its
    video back (a target layer again) brings its estimate back."""
    p, (a, b), _ = viewers(2)
    a.remb, b.remb = 600_000, 2_500_000
    b.set_target_layer(None)
    assert b.layer_paused and asked(p) == 600_000
    a.set_target_layer(None)
    assert asked(p) == LO
    b.set_target_layer(0)
    assert asked(p) == 2_500_000


def test_a_simulcast_performer_is_asked_the_ceiling_whatever_its_viewers_estimate() -> None:
    """Protects the climb back of a lone simulcast viewer (issue 12): the ask to a
    simulcast performer is remb_max_bps, for every layer's SSRC, whatever its viewers'
    estimates or pauses. Following the best viewer's estimate, one viewer that dropped to
    the lowest layer made the performer's encoder stop the top layer, and its selector
    (which probes only toward active layers) had nothing left to climb to."""
    from tests.media.test_simulcast_switching import make, viewer

    p, stats, _ = make()
    a, _ = viewer(p, stats)
    b, _ = viewer(p, stats, cid="c2")
    a.remb, b.remb = 200_000, 300_000
    remb = p.remb(LO, HI)
    assert remb is not None and remb.bitrate == HI
    assert sorted(remb.ssrcs) == sorted(layer.ssrc for layer in p.all_layers)
    a.set_target_layer(None)
    b.set_target_layer(None)
    remb = p.remb(LO, HI)
    assert remb is not None and remb.bitrate == HI
