"""VP8 descriptor rewrite and the per-viewer munger: continuous PictureID/TL0PICIDX across switches."""

from __future__ import annotations

import dataclasses
import fractions

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame
from hypothesis import given, settings
from hypothesis import strategies as st

from jasmin_codecs import MalformedPacket
from jasmin_codecs.vp8 import (
    Vp8Descriptor,
    Vp8Munged,
    Vp8Munger,
    parse_vp8_descriptor,
    rewrite_vp8_descriptor,
    vp8_is_keyframe,
)

FAST = settings(max_examples=200, deadline=None)
VP8_DATA = b"\x9d\x01\x2a\xde\xad"  # stands for the VP8 payload after the descriptor


def encode(d: Vp8Descriptor) -> bytes:
    """Write a descriptor from its fields, independently of the code under test (RFC 7741 figure 1)."""
    b0 = (0x20 if d.non_reference else 0) | (0x10 if d.start_of_partition else 0) | d.partition_id
    x = 0
    rest = bytearray()
    if d.picture_id is not None:
        x |= 0x80
        if d.picture_id_bits == 15:
            rest += bytes((0x80 | d.picture_id >> 8, d.picture_id & 0xFF))
        else:
            rest.append(d.picture_id)
    if d.tl0_pic_idx is not None:
        x |= 0x40
        rest.append(d.tl0_pic_idx)
    if d.temporal_id is not None or d.key_idx is not None:
        t = 0
        if d.temporal_id is not None:
            x |= 0x20
            t |= d.temporal_id << 6 | (0x20 if d.layer_sync else 0)
        if d.key_idx is not None:
            x |= 0x10
            t |= d.key_idx
        rest.append(t)
    if x:
        return bytes((b0 | 0x80, x)) + bytes(rest)
    return bytes((b0,))


# --- byte-exact descriptor vectors -------------------------------------------------

# (name, payload, new picture id, new tl0picidx, expected payload)
VECTORS = [
    (
        "7-bit id, no L/T/K",
        b"\x90\x80\x11" + VP8_DATA,
        0x22,
        None,
        b"\x90\x80\x22" + VP8_DATA,
    ),
    (
        "7-bit id wraps: 200 is written as 200 mod 128",
        b"\x90\x80\x7f" + VP8_DATA,
        200,
        None,
        b"\x90\x80\x48" + VP8_DATA,
    ),
    (
        "15-bit id with L, T (TID 2, Y) and K (KEYIDX 5)",
        b"\x90\xf0\x81\x23\x45\xa5" + VP8_DATA,
        0x7FFF,
        0xFF,
        b"\x90\xf0\xff\xff\xff\xa5" + VP8_DATA,
    ),
    (
        "15-bit id wraps to 0 after 0x7fff, TL0PICIDX to 0 after 255",
        b"\x90\xe0\xff\xff\xff\x40" + VP8_DATA,
        0x8000,
        256,
        b"\x90\xe0\x80\x00\x00\x40" + VP8_DATA,
    ),
    (
        "15-bit id, L only, continuation packet of partition 1 (S=0, PID=1)",
        b"\x81\xc0\x80\x01\x07" + VP8_DATA,
        0x1234,
        8,
        b"\x81\xc0\x92\x34\x08" + VP8_DATA,
    ),
    (
        "T/K byte without PictureID: only TL0PICIDX rewritten",
        b"\x90\x70\x10\x9f" + VP8_DATA,
        None,
        0x11,
        b"\x90\x70\x11\x9f" + VP8_DATA,
    ),
]


@pytest.mark.parametrize(("name", "payload", "pid", "tl0", "expected"), VECTORS, ids=[v[0] for v in VECTORS])
def test_rewrite_vectors_are_byte_exact(
    name: str, payload: bytes, pid: int | None, tl0: int | None, expected: bytes
) -> None:
    """Rewriting changes exactly the PictureID/TL0PICIDX bytes, keeps the id's width and wraps both fields."""
    out = rewrite_vp8_descriptor(payload, pid, tl0)
    assert out == expected
    assert len(out) == len(payload)
    # The vector's bytes parse back as the fields we wrote.
    d = parse_vp8_descriptor(out)
    if pid is not None:
        assert d.picture_id == pid % (1 << d.picture_id_bits)
    if tl0 is not None:
        assert d.tl0_pic_idx == tl0 % 256


def test_rewrite_at_an_offset_leaves_the_bytes_before_it() -> None:
    """The descriptor may start inside a buffer (after the RTP header); bytes before it are untouched."""
    head = b"\x80\x60\x00\x01"
    out = rewrite_vp8_descriptor(head + b"\x90\x80\x11" + VP8_DATA, 0x33, None, offset=len(head))
    assert out == head + b"\x90\x80\x33" + VP8_DATA


def test_rewrite_refuses_fields_the_descriptor_lacks_and_truncation() -> None:
    """Asking for a PictureID or TL0PICIDX the descriptor has no room for is a ValueError, not a corrupt packet."""
    assert rewrite_vp8_descriptor(b"\x10" + VP8_DATA, None, None) == b"\x10" + VP8_DATA
    with pytest.raises(ValueError, match="no PictureID"):
        rewrite_vp8_descriptor(b"\x10" + VP8_DATA, 5, None)
    with pytest.raises(ValueError, match="no TL0PICIDX"):
        rewrite_vp8_descriptor(b"\x90\x80\x11" + VP8_DATA, 5, 1)
    with pytest.raises(MalformedPacket) as info:
        rewrite_vp8_descriptor(b"\x90\x80", 5, None)
    assert info.value.reason == "bad_vp8"


descriptors = st.builds(
    lambda s, n, pid_bits, pid, tl0, tid, y, key, part: Vp8Descriptor(
        start_of_partition=s,
        partition_id=part,
        non_reference=n,
        picture_id=None if pid_bits == 0 else pid % (1 << pid_bits),
        picture_id_bits=pid_bits,
        tl0_pic_idx=tl0,
        temporal_id=tid,
        layer_sync=tid is not None and y,
        key_idx=key,
        header_size=0,
    ),
    st.booleans(),
    st.booleans(),
    st.sampled_from([0, 7, 15]),
    st.integers(0, 0x7FFF),
    st.none() | st.integers(0, 255),
    st.none() | st.integers(0, 3),
    st.booleans(),
    st.none() | st.integers(0, 31),
    st.integers(0, 7),
)


@FAST
@given(descriptors, st.integers(0, 0xFFFFF), st.integers(0, 0xFFF), st.binary(max_size=8))
def test_parse_of_rewrite_is_the_descriptor_with_new_ids(d: Vp8Descriptor, pid: int, tl0: int, data: bytes) -> None:
    """parse(rewrite(x)) == x with the new ids (masked to the descriptor's widths); the VP8 data is untouched."""
    raw = encode(d)
    assert parse_vp8_descriptor(raw + data) == dataclasses.replace(d, header_size=len(raw))
    new_pid = None if d.picture_id is None else pid
    new_tl0 = None if d.tl0_pic_idx is None else tl0
    out = rewrite_vp8_descriptor(raw + data, new_pid, new_tl0)
    expected = dataclasses.replace(
        d,
        header_size=len(raw),
        picture_id=None if new_pid is None else new_pid % (1 << d.picture_id_bits),
        tl0_pic_idx=None if new_tl0 is None else new_tl0 % 256,
    )
    assert parse_vp8_descriptor(out) == expected
    assert out[len(raw) :] == data


# --- the munger: table-driven cases ---------------------------------------------


def desc(
    pid: int | None, tl0: int | None = None, tid: int | None = None, y: bool = False, bits: int = 15, begin: bool = True
) -> Vp8Descriptor:
    return Vp8Descriptor(
        start_of_partition=begin,
        partition_id=0,
        non_reference=False,
        picture_id=pid,
        picture_id_bits=bits if pid is not None else 0,
        tl0_pic_idx=tl0,
        temporal_id=tid,
        layer_sync=y,
        key_idx=None,
        header_size=0,
    )


def ids(r: Vp8Munged | None) -> tuple[int | None, int | None] | None:
    return None if r is None else (r.picture_id, r.tl0_pic_idx)


def test_switch_from_layer_0_to_2_waits_for_a_keyframe_and_continues_the_ids() -> None:
    """A switch 0 -> 2 happens on layer 2's keyframe; the new layer continues at last PictureID + 1, TL0PICIDX + 1.

    Layer 0 keeps flowing until then, layer 2's earlier frames and layer 0's later ones are dropped.
    """
    m = Vp8Munger(target_layer=0)
    assert m.munge(0, desc(99, 9), keyframe=False) is None  # no keyframe yet: nothing to decode from
    assert ids(m.munge(0, desc(100, 10), keyframe=True)) == (100, 10)  # the first stream keeps its ids
    assert ids(m.munge(0, desc(101, 11), keyframe=False)) == (101, 11)
    m.set_target(2)
    assert m.munge(2, desc(5000, 200), keyframe=False) is None  # not a switch point
    assert ids(m.munge(0, desc(102, 12), keyframe=False)) == (102, 12)  # still on layer 0
    switched = m.munge(2, desc(5001, 201), keyframe=True)
    assert switched == Vp8Munged(103, 13, True)
    assert m.layer == 2
    assert m.munge(0, desc(103, 13), keyframe=False) is None  # the old layer is dropped now
    assert ids(m.munge(2, desc(5002, 202), keyframe=False)) == (104, 14)
    # a second packet of the same frame carries the same ids
    assert ids(m.munge(2, desc(5002, 202, begin=False), keyframe=False)) == (104, 14)


def test_temporal_drop_keeps_ids_continuous() -> None:
    """With target TID 1, the TID 2 frames of an L1T3 stream are dropped whole and the ids stay continuous."""
    m = Vp8Munger(target_layer=0, target_tid=1)
    pattern = [0, 2, 1, 2, 0, 2, 1, 2, 0]
    out = []
    tl0 = 50
    for n, tid in enumerate(pattern):
        if tid == 0 and n:
            tl0 += 1
        pid = 1000 + n
        first = m.munge(0, desc(pid, tl0, tid), keyframe=n == 0)
        second = m.munge(0, desc(pid, tl0, tid, begin=False), keyframe=False)
        assert ids(first) == ids(second)  # a frame is forwarded or dropped whole
        if first is not None:
            out.append((tid, first.picture_id, first.tl0_pic_idx))
    assert out == [(0, 1000, 50), (1, 1001, 50), (0, 1002, 51), (1, 1003, 51), (0, 1004, 52)]


def test_temporal_up_switch_waits_for_layer_sync() -> None:
    """Raising the TID forwards a higher layer only from a frame with Y set, one layer at a time; lowering is at once."""
    m = Vp8Munger(target_layer=0, target_tid=0)
    assert ids(m.munge(0, desc(10, 1, 0), keyframe=True)) == (10, 1)
    m.set_target(0, tid=2)
    assert m.munge(0, desc(11, 1, 2), keyframe=False) is None  # TID 2 without Y: refs a TID 1 frame we never sent
    assert m.munge(0, desc(12, 1, 2, y=True), keyframe=False) is None  # Y, but TID 1 is not synced yet
    assert ids(m.munge(0, desc(13, 1, 1, y=True), keyframe=False)) == (11, 1)  # sync to TID 1
    assert m.temporal_id == 1
    assert ids(m.munge(0, desc(14, 1, 2, y=True), keyframe=False)) == (12, 1)  # now TID 2
    assert ids(m.munge(0, desc(15, 2, 0), keyframe=False)) == (13, 2)
    m.set_target(0, tid=0)
    assert m.temporal_id == 0
    assert m.munge(0, desc(16, 2, 1), keyframe=False) is None
    assert ids(m.munge(0, desc(17, 3, 0), keyframe=False)) == (14, 3)


def test_a_keyframe_makes_every_target_temporal_layer_decodable() -> None:
    """After a keyframe all layers up to the target are forwarded without waiting for Y."""
    m = Vp8Munger(target_layer=0, target_tid=0)
    m.munge(0, desc(1, 0, 0), keyframe=True)
    m.set_target(0, tid=2)
    assert m.munge(0, desc(2, 0, 2), keyframe=False) is None
    assert ids(m.munge(0, desc(3, 1, 0), keyframe=True)) == (2, 1)
    assert ids(m.munge(0, desc(4, 1, 2), keyframe=False)) == (3, 1)


def test_ids_wrap_around_across_a_switch() -> None:
    """15-bit PictureID wraps 0x7fff -> 0 and 8-bit TL0PICIDX 255 -> 0, on the output as on the input."""
    m = Vp8Munger(target_layer=0)
    assert ids(m.munge(0, desc(0x7FFE, 254), keyframe=True)) == (0x7FFE, 254)
    m.set_target(1)
    assert ids(m.munge(1, desc(3, 77), keyframe=True)) == (0x7FFF, 255)
    assert ids(m.munge(1, desc(4, 78), keyframe=False)) == (0, 0)
    m.set_target(0)
    assert ids(m.munge(0, desc(0x7FFF, 255), keyframe=True)) == (1, 1)
    # the incoming 15-bit id wraps as well
    assert ids(m.munge(0, desc(0, 0), keyframe=False)) == (2, 2)


def test_seven_bit_input_wrap_counts_as_one_frame() -> None:
    """A 7-bit PictureID going 127 -> 0 is the next frame (+1), not a jump back."""
    m = Vp8Munger(target_layer=0)
    m.munge(0, desc(500, None), keyframe=True)
    m.set_target(1)
    assert ids(m.munge(1, desc(126, None, bits=7), keyframe=True)) == (501, None)
    assert ids(m.munge(1, desc(127, None, bits=7), keyframe=False)) == (502, None)
    assert ids(m.munge(1, desc(0, None, bits=7), keyframe=False)) == (503, None)


def test_pause_and_resume_restart_on_a_keyframe_with_continuous_ids() -> None:
    """target None drops everything; the next target resumes at a keyframe with the next ids."""
    m = Vp8Munger(target_layer=0)
    m.munge(0, desc(40, 4), keyframe=True)
    m.set_target(None)
    assert m.layer is None
    assert m.munge(0, desc(41, 5), keyframe=False) is None
    assert m.munge(0, desc(42, 6), keyframe=True) is None
    m.set_target(0)
    assert m.munge(0, desc(43, 7), keyframe=False) is None
    assert ids(m.munge(0, desc(44, 8), keyframe=True)) == (41, 5)


def test_lost_frames_stay_a_gap_and_stale_frames_are_dropped() -> None:
    """Frames lost before the node remain a gap in the ids (the decoder must learn it); unknown old frames are dropped."""
    m = Vp8Munger(target_layer=0)
    m.munge(0, desc(10, 1), keyframe=True)
    assert ids(m.munge(0, desc(13, 1), keyframe=False)) == (13, 1)
    assert ids(m.munge(0, desc(10, 1, begin=False), keyframe=False)) == (10, 1)  # remembered frame
    assert m.munge(0, desc(12, 1), keyframe=False) is None  # older than the newest, never seen
    # an encoder restart (ids jump back) re-anchors on its keyframe
    assert ids(m.munge(0, desc(3, 90), keyframe=True)) == (14, 2)
    assert ids(m.munge(0, desc(4, 90), keyframe=False)) == (15, 2)


def test_set_target_refuses_an_impossible_tid() -> None:
    """TID is 2 bits: a target outside 0..3 is a programming error, not silently clamped."""
    with pytest.raises(ValueError):
        Vp8Munger(target_tid=4)
    with pytest.raises(ValueError):
        Vp8Munger().set_target(0, tid=-1)


# --- the munger under random switches and drops -----------------------------------

L1T3 = [0, 2, 1, 2]


@settings(max_examples=300, deadline=None)
@given(
    starts=st.lists(st.integers(0, 0x7FFF), min_size=3, max_size=3),
    tl0_starts=st.lists(st.integers(0, 255), min_size=3, max_size=3),
    bits=st.sampled_from([7, 15]),
    steps=st.lists(
        st.tuples(
            st.none() | st.tuples(st.none() | st.integers(0, 2), st.integers(0, 3)),  # set_target, maybe
            st.lists(st.booleans(), min_size=3, max_size=3),  # keyframe per layer
            st.lists(st.integers(1, 3), min_size=3, max_size=3),  # packets per frame per layer
            st.permutations([0, 1, 2]),  # order the layers' frames arrive in
        ),
        min_size=1,
        max_size=120,
    ),
)
def test_forwarded_frames_get_consecutive_ids_under_random_switches_and_drops(
    starts: list[int],
    tl0_starts: list[int],
    bits: int,
    steps: list[tuple[tuple[int | None, int] | None, list[bool], list[int], list[int]]],
) -> None:
    """Whatever the switches and temporal drops, each forwarded frame's PictureID is the previous one + 1.

    Also: a frame goes out whole or not at all; TL0PICIDX goes up by exactly 1 per forwarded TID 0
    frame and never otherwise; no frame above the viewer's target TID goes out; after a switch the
    old layer sends nothing.
    """
    m = Vp8Munger(target_layer=0)
    pid_mod = 1 << bits
    last_pid: int | None = None
    last_tl0: int | None = None
    tl0s = list(tl0_starts)
    for n, (target, keys, npackets, order) in enumerate(steps):
        if target is not None:
            m.set_target(target[0], tid=target[1])
        for layer in order:
            pid = (starts[layer] + n) % pid_mod
            phase = n % 4
            tid = L1T3[phase]
            key = keys[layer] or n == 0
            if key:
                tid = 0
            if tid == 0 and n:
                tl0s[layer] = (tl0s[layer] + 1) % 256  # each TID 0 frame advances its layer's TL0PICIDX
            tl0 = tl0s[layer]
            results = []
            for k in range(npackets[layer]):
                d = desc(pid, tl0, tid, y=tid != 0 and phase in (1, 2), bits=bits, begin=k == 0)
                results.append(m.munge(layer, d, keyframe=key and k == 0))
            forwarded = [r for r in results if r is not None]
            if not forwarded:
                continue
            assert len(forwarded) == len(results), "a frame is forwarded whole"
            assert layer == m.layer
            assert tid <= m.target_tid
            assert len({ids(r) for r in forwarded}) == 1
            r = forwarded[0]
            assert r.picture_id is not None and r.tl0_pic_idx is not None
            if last_pid is not None:
                assert r.picture_id == (last_pid + 1) & 0x7FFF
                assert last_tl0 is not None
                assert r.tl0_pic_idx == ((last_tl0 + 1) & 0xFF if tid == 0 else last_tl0)
            last_pid, last_tl0 = r.picture_id, r.tl0_pic_idx


# --- real encoder output ------------------------------------------------------------


def test_a_switch_between_real_vp8_encodings_decodes_with_continuous_ids() -> None:
    """Two real libvpx encodings (64x48 and 128x96) as layers: the munged stream decodes frame after frame.

    The switch waits for the larger layer's forced keyframe, the rewritten payloads stay valid VP8
    (aiortc's libvpx decoder decodes every forwarded frame, the size changing at the switch), and the
    15-bit PictureIDs run on across the switch and through their wrap at 0x7fff.
    """
    sizes = [(48, 64), (96, 128)]
    encoders = [Vp8Encoder(), Vp8Encoder()]
    encoders[0].picture_id = 0x7FFD
    encoders[1].picture_id = 1000
    rng = np.random.default_rng(7)
    m = Vp8Munger(target_layer=0)
    decoder = Vp8Decoder()
    out_ids: list[int] = []
    widths: list[int] = []
    switches: list[tuple[int, int, bool]] = []  # (frame, layer, on a keyframe)
    for n in range(6):
        if n == 2:
            m.set_target(1)
        forwarded: list[bytes] = []
        # The larger layer's frame of each instant first: once it switched, the smaller one's is dropped.
        for layer in (1, 0):
            h, w = sizes[layer]
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), format="rgb24")
            frame.pts = n * 3000
            frame.time_base = fractions.Fraction(1, 90000)
            payloads, _ = encoders[layer].encode(frame, force_keyframe=layer == 1 and n == 3)
            for p in payloads:
                d = parse_vp8_descriptor(p)
                r = m.munge(layer, d, vp8_is_keyframe(p))
                if r is not None:
                    if r.switched:
                        switches.append((n, layer, vp8_is_keyframe(p)))
                    forwarded.append(rewrite_vp8_descriptor(p, r.picture_id, r.tl0_pic_idx, desc=d))
        assert forwarded
        pids = {parse_vp8_descriptor(p).picture_id for p in forwarded}
        assert len(pids) == 1
        out_ids.append(pids.pop() or 0)
        decoded = decoder.decode(JitterFrame(b"".join(vp8_depayload(p) for p in forwarded), n * 3000))
        assert len(decoded) == 1
        widths.append(decoded[0].width)  # type: ignore[attr-defined]
    assert switches == [(0, 0, True), (3, 1, True)]
    assert widths == [64, 64, 64, 128, 128, 128]
    assert out_ids == [0x7FFD, 0x7FFE, 0x7FFF, 0, 1, 2]
