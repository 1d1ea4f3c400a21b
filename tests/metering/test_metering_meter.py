"""The pure per-second meter and the CloudEvents it produces."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jasmin_metering.config import EventConfig
from jasmin_metering.errors import EventFormatError, MeterStateError, SessionClosedError
from jasmin_metering.events import CloudEvent, EventFactory, event_id, rfc3339_us
from jasmin_metering.meter import US, GrantTag, Meter, SessionSpec, to_us

T0 = 1_780_000_000.0
SPEC = SessionSpec("private", "01JB7Z3Q9V8K4Y2M6T1N0R5XWE", "m1", "p1", "wallet:m1", 199)


def test_only_complete_seconds_are_billed() -> None:
    m = Meter()
    m.start(SPEC, T0 + 0.25)
    assert m.advance(T0 + 1.2) == []
    (r,) = m.advance(T0 + 1.25)
    assert (r.seq, r.amount, r.units) == (1, 199, 1)
    assert (r.interval_start_us, r.interval_end_us) == (round((T0 + 0.25) * US), round((T0 + 1.25) * US))
    recs = m.advance(T0 + 10.0)
    assert [x.seq for x in recs] == list(range(2, 10))
    tail, closed = m.stop(SPEC.session_id, T0 + 10.999, "member_left")
    # 10.749 s: the 10th second completed at +10.25, the started 11th is free
    assert [x.seq for x in tail] == [10]
    assert (closed.last_seq, closed.billed_seconds, closed.total_amount) == (10, 10, 10 * 199)
    assert closed.unbilled_us == 749_000


def test_pause_carries_the_partial_second_over() -> None:
    m = Meter()
    m.start(SPEC, T0)
    assert m.pause(SPEC.session_id, T0 + 0.6) == []
    assert m.advance(T0 + 100) == []  # paused time is never billed
    m.resume(SPEC.session_id, T0 + 100)
    (r,) = m.advance(T0 + 100.4)
    # the second started before the pause and completed after it
    assert (r.interval_start_us, r.interval_end_us) == (round(T0 * US), round((T0 + 100.4) * US))
    assert m.view(SPEC.session_id).paused is False
    m.resume(SPEC.session_id, T0 + 101)  # resuming a running session is a no-op


def test_ceiling_stops_billing_and_counts_overrun() -> None:
    m = Meter()
    tag = GrantTag("cc:s:0:hold", 0, True)
    m.start(SPEC, T0, ceiling_seconds=3, grant=tag)
    recs = m.advance(T0 + 5.5)
    assert [r.seq for r in recs] == [1, 2, 3] and recs[0].grant == tag
    assert m.view(SPEC.session_id).remaining_seconds == 0
    m.set_grant(SPEC.session_id, ceiling_seconds=33, grant=GrantTag("cc:s:1:hold", 1, False))
    recs = m.advance(T0 + 6.0)
    assert [r.seq for r in recs] == [4, 5, 6] and recs[-1].grant is not None
    _, closed = m.stop(SPEC.session_id, T0 + 6.0, "x")
    assert closed.over_grant_us == 0


def test_clock_going_backwards_is_clamped() -> None:
    m = Meter()
    m.start(SPEC, T0)
    assert len(m.advance(T0 + 3)) == 3
    assert m.advance(T0 + 1) == []
    assert len(m.advance(T0 + 4)) == 1


def test_failover_continues_the_sequence_and_stop_is_final() -> None:
    m = Meter()
    m.start(SPEC, T0, first_seq=43)
    (r,) = m.advance(T0 + 1)
    assert r.seq == 43
    m.stop(SPEC.session_id, T0 + 1, "performer_ended")
    with pytest.raises(SessionClosedError):
        m.start(SPEC, T0 + 2)
    with pytest.raises(SessionClosedError):
        m.pause(SPEC.session_id, T0 + 2)
    with pytest.raises(MeterStateError):
        m.advance_session("other", T0)
    m2 = Meter()
    m2.start(SPEC, T0)
    with pytest.raises(MeterStateError):
        m2.start(SPEC, T0)


def test_session_spec_validates() -> None:
    with pytest.raises(ValueError):
        SessionSpec("Private!", "s", "m", "p", "w", 1)
    with pytest.raises(ValueError):
        SessionSpec("private", "s:1", "m", "p", "w", 1)


events_strategy = st.lists(
    st.tuples(st.sampled_from(["tick", "pause", "resume"]), st.integers(0, 3_000_000)), max_size=40
)


@settings(max_examples=200, deadline=None)
@given(events_strategy)
def test_billed_seconds_equal_floor_of_unpaused_time(events: list[tuple[str, int]]) -> None:
    """Whatever the pattern of pauses: billed = floor(active time) exactly (never a second
    more, never one less), seqs contiguous from 1, the rest reported as unbilled."""
    m = Meter()
    t = 0
    m.start(SPEC, T0)
    active = 0
    running = True
    recs = []
    last_us = to_us(T0)
    for op, dt_us in events:
        t += dt_us
        now = T0 + t / US
        # The meter sees microseconds as to_us() rounds them from the float epoch seconds.
        if running:
            active += to_us(now) - last_us
        last_us = to_us(now)
        if op == "tick":
            recs += m.advance(now)
        elif op == "pause":
            recs += m.pause(SPEC.session_id, now)
            running = False
        else:
            m.resume(SPEC.session_id, now)
            running = True
    tail, closed = m.stop(SPEC.session_id, T0 + t / US, "end")
    recs += tail
    assert closed.billed_seconds == active // US
    assert closed.unbilled_us == active % US
    assert closed.billed_seconds == len(recs) and [r.seq for r in recs] == list(range(1, len(recs) + 1))
    assert all(r.interval_end_us > r.interval_start_us for r in recs)
    assert closed.total_amount == 199 * len(recs)


def test_usage_event_matches_the_recommended_shape() -> None:
    m = Meter()
    m.start(SPEC, T0)
    ef = EventFactory(EventConfig(dataschema_base="https://schemas.example.com/live"), lambda: T0 + 42.2144)
    recs = m.advance(T0 + 42)
    ev = ef.usage(recs[-1])
    d = ev.to_dict()
    assert d["specversion"] == "1.0"
    assert d["source"] == "urn:jasmin:live:session:01JB7Z3Q9V8K4Y2M6T1N0R5XWE"
    assert d["id"] == "01JB7Z3Q9V8K4Y2M6T1N0R5XWE:000000000042" == event_id(SPEC.session_id, 42)
    assert d["sequence"] == "000000000042"
    assert d["partitionkey"] == "wallet/wallet:m1" and d["subject"] == "member/m1"
    assert d["type"] == "com.jasmin.live.private.usage.v1"
    assert d["dataschema"] == "https://schemas.example.com/live/private-usage/v1.json"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", d["time"])
    assert d["recordedtime"] == rfc3339_us(round((T0 + 42.2144) * US))
    for name in d:  # CloudEvents: lower-case a-z0-9, <= 20 chars
        assert re.fullmatch(r"[a-z0-9]{1,20}", name), name
    data = d["data"]
    assert all(isinstance(data[k], int) for k in ("seq", "units", "rate_per_unit", "amount", "asset_scale"))
    assert (data["seq"], data["amount"], data["unit"]) == (42, 199, "second")
    assert CloudEvent.from_json(ev.to_json()) == ev
    assert len(ev.to_json()) < 64 * 1024


def test_closing_event_continues_the_sequence_with_totals() -> None:
    m = Meter()
    m.start(SPEC, T0)
    ef = EventFactory(EventConfig(), lambda: T0 + 100)
    recs = m.advance(T0 + 7.5)
    _, closed = m.stop(SPEC.session_id, T0 + 7.5, "credits_exhausted")
    ev = ef.closed(closed)
    assert ev.seq == 8 and ev.is_closing and ev.type == "com.jasmin.live.private.closed.v1"
    assert ev.data["last_seq"] == 7 and ev.data["billed_seconds"] == 7 == len(recs)
    assert ev.data["total_amount"] == 7 * 199 and ev.data["reason"] == "credits_exhausted"
    assert ev.data["unbilled_ms"] == 500


def test_content_hash_ignores_recordedtime_only() -> None:
    m = Meter()
    m.start(SPEC, T0)
    (r,) = m.advance(T0 + 1)
    a = EventFactory(EventConfig(), lambda: T0 + 1).usage(r)
    b = EventFactory(EventConfig(), lambda: T0 + 99).usage(r)  # re-recorded later
    assert a.recordedtime != b.recordedtime and a.content_hash() == b.content_hash()
    c = CloudEvent.from_dict({**a.to_dict(), "data": {**a.data, "amount": 200}})
    assert c.content_hash() != a.content_hash()


def test_malformed_events_are_refused() -> None:
    with pytest.raises(EventFormatError):
        CloudEvent.from_json(b"[1]")
    with pytest.raises(EventFormatError):
        CloudEvent.from_json(b"{")
    with pytest.raises(EventFormatError):
        CloudEvent.from_dict({"specversion": "1.0", "id": "x"})
    good = make_one().to_dict()
    with pytest.raises(EventFormatError):
        CloudEvent.from_dict({**good, "specversion": "0.3"})
    with pytest.raises(EventFormatError):
        CloudEvent.from_json(json.dumps({**good, "sequence": "4a"}))


def make_one() -> CloudEvent:
    m = Meter()
    m.start(SPEC, T0)
    (r,) = m.advance(T0 + 1)
    return EventFactory(EventConfig(), lambda: T0).usage(r)
