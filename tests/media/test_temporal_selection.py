"""The temporal-layer choice (issue 12): the selector offers a spatial layer's lower temporal
layers at their measured rates, and a viewer whose budget is below the layer's full rate
gets a lower temporal layer of it, which the real consumer then forwards."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from jasmin_sfu.media.adaptation import ViewerAdaptation
from jasmin_sfu.media.adaptation_policy import AdaptationPolicy
from jasmin_sfu.media.layer_selector import LayerSelector, candidates
from tests.media.test_temporal_layers import L1T3Publisher, received
from tests.support import make_consumer, make_producer

POL = AdaptationPolicy()


def test_measured_temporal_rates_replace_the_policys_shares() -> None:
    """Protects the use of the producer's per-TID measurements: a layer whose T0 and T0+T1
    rates were measured is offered at those rates; one without measurements at the
    policy's shares; the whole layer at its own rate."""
    got = candidates([(0, 300_000), (1, 1_000_000)], 3, policy=POL, temporal_bps={1: (250_000, 500_000)})
    assert [(c.spatial, c.temporal, c.need_bps) for c in got] == [
        (0, 0, 120_000),
        (0, 1, 180_000),
        (0, None, 300_000),
        (1, 0, 250_000),
        (1, 1, 500_000),
        (1, None, 1_000_000),
    ]


@settings(max_examples=100, deadline=None)
@given(
    rates=st.lists(st.integers(1, 3_000_000), min_size=1, max_size=3),
    parts=st.lists(st.tuples(st.floats(0.0, 1.2), st.floats(0.0, 1.2)), min_size=3, max_size=3),
    measured=st.lists(st.booleans(), min_size=3, max_size=3),
    max_temporal=st.one_of(st.none(), st.integers(0, 3)),
    budget=st.integers(0, 4_000_000),
)
def test_temporal_candidates_stay_within_their_layer_and_the_choice_fits(
    rates: list[int],
    parts: list[tuple[float, float]],
    measured: list[bool],
    max_temporal: int | None,
    budget: int,
) -> None:
    """Protects the temporal choice under any measurements (even noisy ones above the whole
    rate): within a spatial layer the offers never exceed the whole layer's rate, none is
    above the viewer's temporal cap, and the selector's first choice fits the budget or is
    the lowest offer (a first choice is never a pause: that needs evidence over time)."""
    spatial = list(enumerate(rates))
    tb = {}
    for (s, rate), (a, b), m in zip(spatial, parts, measured):
        if m:
            lo, hi = sorted((int(rate * a), int(rate * b)))
            tb[s] = (lo, hi)
    layers = candidates(spatial, 3, max_temporal=max_temporal, policy=POL, temporal_bps=tb)
    for c in layers:
        assert c.need_bps <= max(1, rates[c.spatial])
        # None is every temporal layer: offered within a cap at or above the top one (2).
        assert max_temporal is None or (max_temporal >= 2 if c.temporal is None else c.temporal <= max_temporal)
    ch = LayerSelector(POL).select(0.0, layers, budget + POL.audio_reserve_bps)
    if ch.target is not None:
        # A budget alone never pauses the video (docs/media.md, "Probing and pausing": a pause
        # needs loss on the lowest layer or a budget far under it for a while): the lowest offer, the
        # first (candidates are ordered by spatial layer, then temporal).
        assert ch.target.need_bps <= budget or ch.target == layers[0]
    else:
        assert all(c.need_bps > budget for c in layers)


def test_a_viewer_below_a_layers_full_rate_gets_its_lower_temporal_layer() -> None:
    """Protects the whole chain on real parts: an L1T3 producer measures its per-TID rates,
    the adaptation offers them, a viewer whose estimate fits the T0+T1 rate but not the whole
    layer is given temporal layer 1, and the consumer then forwards no T2 frame; the
    consumer.layer report says temporal 1."""
    p, stats = make_producer()
    pub = L1T3Publisher(p)
    c, sink = make_consumer(p, stats)
    c.follow_default = False
    a = ViewerAdaptation(c, p, stats, POL)
    c.start()
    p.tick(0.0)
    pub.frame(key=True)
    for _ in range(29):
        pub.frame()
    p.tick(1.0)
    (info,) = p.layers
    t0, t01 = info.temporal_bps
    assert 0 < t0 < t01 < info.bitrate_bps
    c.remb = (t01 + info.bitrate_bps) // 2 + POL.audio_reserve_bps
    choice = a.tick(1.0)
    assert choice is not None and choice.target is not None
    assert (choice.target.spatial, choice.target.temporal) == (0, 1)
    start = len(sink.sent)
    for _ in range(12):
        pub.frame()
    assert {g[4] for g in received(sink.sent[start:])} == {0, 1}
    assert c.current_layer is not None and c.current_layer.temporal == 1
