"""VP8 temporal layers (issue 12): the descriptor's TID/Y/KEYIDX bytes, the one descriptor
skip shared by the keyframe check and the keyframe size reader, and the per-viewer frame
filter that drops temporal layers with continuous picture ids."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jasmin_codecs.vp8 import (
    parse_vp8_descriptor,
    vp8_data_offset,
    vp8_is_keyframe,
    vp8_keyframe_size,
    vp8_temporal_id,
)
from jasmin_codecs.vp8_temporal import Vp8TemporalFilter

FAST = settings(max_examples=300, deadline=None)

# (name, payload, (TID, Y, KEYIDX) as parsed, where the VP8 data starts)
TID_VECTORS = [
    ("no X byte", b"\x10\x9d", (None, False, None), 1),
    ("X without T/K", b"\x90\x00\x9d", (None, False, None), 2),
    ("T only: TID 2, Y", b"\x90\x20\xa0\x9d", (2, True, None), 3),
    ("T only: TID 1, no Y; the KEYIDX bits are not read", b"\x90\x20\x5f\x9d", (1, False, None), 3),
    ("K only: KEYIDX 31; TID bits not read", b"\x90\x10\xff\x9d", (None, False, 31), 3),
    ("T and K: TID 3, Y, KEYIDX 5", b"\x90\x30\xe5\x9d", (3, True, 5), 3),
    ("7-bit id, L, T: TID 0", b"\x90\xe0\x11\x07\x00\x9d", (0, False, None), 5),
    ("15-bit id, L, T+K: TID 2, no Y, KEYIDX 1", b"\x90\xf0\x81\x23\x45\x81\x9d", (2, False, 1), 6),
]


@pytest.mark.parametrize("name,payload,fields,data_at", TID_VECTORS, ids=[v[0] for v in TID_VECTORS])
def test_tid_layer_sync_and_keyidx_are_read_from_their_bits(
    name: str, payload: bytes, fields: tuple[int | None, bool, int | None], data_at: int
) -> None:
    """Protects the TID/Y/KEYIDX byte of RFC 7741 4.2: TID is its top 2 bits and Y the next
    one only with the T bit, KEYIDX its low 5 bits only with the K bit; the byte is there
    when either bit is set; the fast TID reader and the data offset agree with the parser."""
    d = parse_vp8_descriptor(payload)
    assert (d.temporal_id, d.layer_sync, d.key_idx) == fields
    assert d.header_size == data_at
    assert vp8_data_offset(payload) == data_at
    assert vp8_temporal_id(payload) == (fields[0] or 0)
    prefixed = b"\xee\xee" + payload
    assert vp8_data_offset(prefixed, 2) == data_at + 2
    assert vp8_temporal_id(prefixed, 2) == (fields[0] or 0)


@pytest.mark.parametrize("name,payload,fields,data_at", TID_VECTORS, ids=[v[0] for v in TID_VECTORS])
def test_truncated_descriptors_give_no_offset_and_no_tid(
    name: str, payload: bytes, fields: tuple[int | None, bool, int | None], data_at: int
) -> None:
    """Protects the hot path from short input: a descriptor cut anywhere before its VP8
    data gives -1 (no offset, no TID, no keyframe), never an IndexError."""
    for cut in range(data_at):
        short = payload[:cut]
        assert vp8_data_offset(short) == -1
        assert not vp8_is_keyframe(short)
        assert vp8_keyframe_size(short) is None
        if fields[0] is not None:
            assert vp8_temporal_id(short) == -1


def test_keyframe_size_reads_the_header_after_any_descriptor() -> None:
    """Protects the moved vp8_keyframe_size (one descriptor skip with vp8_is_keyframe):
    width and height (14 bits, scaling bits masked) after the start code, at an offset,
    after a descriptor with every optional field; None without the start code."""
    header = b"\x10\x02\x00\x9d\x01\x2a" + struct.pack("<HH", 0xC000 | 1280, 0x4000 | 720)
    for desc in (b"\x10", b"\x90\x00", b"\x90\xf0\x81\x23\x45\x81"):
        payload = b"\xaa\xbb" + desc + header
        assert vp8_keyframe_size(payload, 2) == (1280, 720)
        assert vp8_is_keyframe(payload, 2)
    assert vp8_keyframe_size(b"\x10\x02\x00\x9d\x01\x2b\x00\x05\x00\x05") is None
    assert vp8_keyframe_size(b"\x10\x02\x00\x9d\x01\x2a\x00\x05\x00") is None  # one byte short


# -- the frame filter ---------------------------------------------------------------

L1T3 = (0, 2, 1, 2)  # libwebrtc's three-layer pattern, frame by frame


def run(f: Vp8TemporalFilter, tids: list[int], syncs: list[bool] | None = None, start: int = 0) -> list[int | None]:
    """Feed one packet per frame (frame key = index); the filter's answers."""
    out = []
    for i, tid in enumerate(tids):
        out.append(f.admit(start + i, tid, bool(syncs and syncs[i]), False, True))
    return out


def test_capped_at_t0_only_tid0_frames_pass_with_consecutive_ids() -> None:
    """Protects the drop: an L1T3 stream through a filter at T0 keeps every fourth frame,
    and each kept frame's picture id less its drop count is the previous kept one's + 1."""
    f = Vp8TemporalFilter(0)
    tids = [L1T3[i % 4] for i in range(40)]
    got = run(f, tids)
    kept = [(i, k) for i, k in enumerate(got) if k is not None]
    assert [tids[i] for i, _ in kept] == [0] * 10
    out_ids = [1000 + i - k for i, k in kept]
    assert out_ids == list(range(out_ids[0], out_ids[0] + 10))
    assert f.dropped == 30


def test_up_switch_waits_for_a_layer_sync_frame_one_layer_at_a_time() -> None:
    """Protects decodability: raised from T0 to T2, the filter takes T1 only from a T1 frame
    with the Y bit, and T2 only from a T2 frame with Y after that; a Y frame two layers up
    is not taken (its layer below is missing); a keyframe takes the target at once."""
    f = Vp8TemporalFilter(0)
    run(f, [0, 2, 1, 2])
    f.set_target(2)
    assert f.temporal_id == 0
    got = run(f, [0, 2, 1, 2], [False, True, False, False], start=4)  # T2 Y: two layers up, refused
    assert [g is not None for g in got] == [True, False, False, False]
    got = run(f, [0, 2, 1, 2], [False, False, True, False], start=8)  # T1 Y: taken
    assert [g is not None for g in got] == [True, False, True, False]
    assert f.temporal_id == 1
    got = run(f, [0, 2, 1, 2], [False, True, False, False], start=12)  # T2 Y: taken
    assert [g is not None for g in got] == [True, True, True, True]
    assert f.temporal_id == 2
    g = Vp8TemporalFilter(0)
    run(g, [0, 2, 1, 2])
    g.set_target(2)
    assert g.admit(4, 0, False, True, True) is not None  # keyframe
    assert g.temporal_id == 2


def test_down_switch_applies_at_the_next_frame_not_inside_one() -> None:
    """Protects frame integrity: lowered to T0 while a T2 frame is half forwarded, the rest
    of that frame still goes out; the next T2 frame is dropped whole."""
    f = Vp8TemporalFilter(2)
    assert f.admit(1, 2, False, False, True) == 0  # first packet of a T2 frame
    f.set_target(0)
    assert f.admit(1, 2, False, False, True) == 0  # its second packet
    assert f.admit(2, 0, False, False, True) == 0
    assert f.admit(3, 2, False, False, True) is None
    assert f.admit(3, 2, False, False, True) is None


def test_late_packets_follow_their_frames_decision_and_unknown_old_frames_are_dropped() -> None:
    """Protects reordering: a late packet of a kept frame gets that frame's shift, of a
    dropped frame is dropped, of a frame never seen (older than the newest) is dropped;
    NACKs see the same (frame_shift)."""
    f = Vp8TemporalFilter(0)
    run(f, [0, 2, 1, 2, 0])
    assert f.admit(0, 0, False, False, False) == 0
    assert f.admit(4, 0, False, False, False) == 3
    assert f.admit(1, 2, False, False, False) is None
    assert f.admit(99, 0, False, False, False) is None
    assert (f.frame_shift(0), f.frame_shift(4), f.frame_shift(1), f.frame_shift(99)) == (0, 3, None, None)


def test_reset_forgets_frames_and_settled_means_nothing_to_filter() -> None:
    """Protects the restart on a keyframe (switch, resume): the drop count restarts, old
    frames are forgotten; a filter asked for every layer and forwarding them is settled."""
    f = Vp8TemporalFilter(0)
    run(f, [0, 2, 1, 2])
    f.set_target(3)
    assert not f.settled
    f.reset()
    assert f.dropped == 0 and f.frame_shift(0) is None and f.settled
    with pytest.raises(ValueError):
        f.set_target(4)


@FAST
@given(
    tids=st.lists(st.integers(0, 3), min_size=1, max_size=120),
    syncs=st.lists(st.booleans(), min_size=120, max_size=120),
    targets=st.lists(st.tuples(st.integers(0, 119), st.integers(0, 3)), max_size=8),
    keys=st.sets(st.integers(0, 119), max_size=4),
    packets=st.integers(1, 3),
)
def test_any_stream_and_target_changes_give_consecutive_ids_and_never_a_frame_above_the_layer(
    tids: list[int], syncs: list[bool], targets: list[tuple[int, int]], keys: set[int], packets: int
) -> None:
    """Protects the rewrite under any TID pattern and any target changes: kept frames' ids
    (input id less the drop count) are consecutive, every packet of a frame gets the same
    answer, no kept frame is above the target in force when it began (except the one
    frame a down-switch lets finish), and an up-switch happens only on a Y frame of the
    next layer or a keyframe."""
    f = Vp8TemporalFilter(3)
    changes = dict(targets)
    out_ids = [-1]  # the frame before the stream, always "kept"
    f.admit(-1, 0, False, True, True)
    for i, tid in enumerate(tids):
        if i in changes:
            f.set_target(changes[i])
        key = i in keys
        before = f.temporal_id
        answers = {f.admit(i, 0 if key else tid, syncs[i], key and p == 0, True) for p in range(packets)}
        assert len(answers) == 1
        (k,) = answers
        if f.temporal_id > before:
            assert key or (tid == before + 1 and syncs[i])
        if k is not None:
            assert (0 if key else tid) <= f.temporal_id <= f.target
            out_ids.append(i - k)
    assert out_ids == list(range(out_ids[0], out_ids[0] + len(out_ids)))
