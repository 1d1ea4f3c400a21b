"""Wraparound arithmetic for RTP sequence numbers and timestamps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jasmin_codecs.seq import SeqUnwrapper, seq_add, seq_diff, seq_newer, seq_unwrap, ts_add, ts_diff, ts_newer

# Enough examples to find framing bugs while keeping the suite at a few seconds;
# no deadline so a slow CI machine cannot turn a pass into a flake.
FAST = settings(max_examples=60, deadline=None)

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


@pytest.mark.parametrize(
    ("a", "n", "expected"),
    [
        (0, 1, 1),
        (65535, 1, 0),
        (65535, 2, 1),
        (0, -1, 65535),
        (100, 65536, 100),
        (40000, 40000, 14464),
    ],
)
def test_seq_add_wraps_modulo_2_16(a: int, n: int, expected: int) -> None:
    """seq_add stays in 0..65535 in both directions."""
    assert seq_add(a, n) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (5, 3, 2),
        (3, 5, -2),
        (0, 65535, 1),
        (65535, 0, -1),
        (1, 65534, 3),
        (32767, 0, 32767),
        (32768, 0, -32768),
        (0, 32768, -32768),
        (0, 32769, 32767),
        (7, 7, 0),
    ],
)
def test_seq_diff_is_shortest_signed_distance(a: int, b: int, expected: int) -> None:
    """seq_diff picks the short way round the circle, including across the wrap."""
    assert seq_diff(a, b) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (1, 0, True),
        (0, 1, False),
        (0, 65535, True),
        (65535, 0, False),
        (10, 65530, True),
        (65530, 10, False),
        (5, 5, False),
        (32767, 0, True),
        (32768, 0, True),  # exact half: the larger number wins the tie
        (0, 32768, False),
        (40000, 7232, True),
        (7232, 40000, False),
    ],
)
def test_seq_newer_handles_wraparound(a: int, b: int, expected: bool) -> None:
    """seq_newer orders across the 65535 -> 0 wrap and breaks the half-range tie."""
    assert seq_newer(a, b) is expected


@FAST
@given(u16, u16)
def test_seq_newer_is_antisymmetric(a: int, b: int) -> None:
    """For distinct numbers exactly one is newer; a number is never newer than itself."""
    if a == b:
        assert not seq_newer(a, b)
    else:
        assert seq_newer(a, b) != seq_newer(b, a)


@FAST
@given(u16, st.integers(-32768, 32767))
def test_seq_diff_inverts_seq_add(a: int, n: int) -> None:
    """seq_diff(seq_add(a, n), a) == n for every n in the signed 16-bit range."""
    assert seq_diff(seq_add(a, n), a) == n


@pytest.mark.parametrize(
    ("a", "n", "expected"),
    [(0xFFFFFFFF, 1, 0), (0, -1, 0xFFFFFFFF), (0xFFFFFF00, 0x200, 0x100), (5, 3000, 3005)],
)
def test_ts_add_wraps_modulo_2_32(a: int, n: int, expected: int) -> None:
    """ts_add is 32-bit modular addition."""
    assert ts_add(a, n) == expected


def test_ts_diff_and_newer_cross_the_32_bit_wrap() -> None:
    """Timestamps just after the wrap are newer than those just before it."""
    assert ts_diff(10, 0xFFFFFFF0) == 26
    assert ts_diff(0xFFFFFFF0, 10) == -26
    assert ts_newer(10, 0xFFFFFFF0)
    assert not ts_newer(0xFFFFFFF0, 10)
    assert ts_newer(0x80000000, 0) and not ts_newer(0, 0x80000000)


@pytest.mark.parametrize(
    ("name", "seqs", "expected"),
    [
        ("in order", [1, 2, 3], [1, 2, 3]),
        ("forward wrap", [65534, 65535, 0, 1], [65534, 65535, 65536, 65537]),
        ("reorder across wrap", [65534, 0, 65535, 1], [65534, 65536, 65535, 65537]),
        ("late packet after wrap", [65535, 0, 1, 65533], [65535, 65536, 65537, 65533]),
        ("before first across wrap", [0, 65535, 1], [0, -1, 1]),
        ("two wraps", [0, 30000, 60000, 24464, 54464, 18928], [0, 30000, 60000, 90000, 120000, 150000]),
        ("duplicate", [10, 10, 11], [10, 10, 11]),
        ("gap then loss", [100, 20000, 40000, 60000, 500], [100, 20000, 40000, 60000, 66036]),
    ],
)
def test_unwrapper_table(name: str, seqs: list[int], expected: list[int]) -> None:
    """SeqUnwrapper extends 16-bit numbers through wraps, reordering and duplicates."""
    u = SeqUnwrapper()
    assert [u.unwrap(s) for s in seqs] == expected, name


def test_unwrapper_stray_old_packet_does_not_move_reference() -> None:
    """A single very late packet is placed behind, and later packets keep their cycle count."""
    u = SeqUnwrapper()
    for s in range(65000, 65536):
        u.unwrap(s)
    assert u.unwrap(0) == 65536
    assert u.unwrap(40000) == 40000  # 25536 behind the highest (65536): old, not a new cycle
    assert u.unwrap(1) == 65537
    assert u.highest == 65537


def test_unwrapper_highest_is_none_before_first_packet() -> None:
    """highest reports None until a number has been unwrapped."""
    assert SeqUnwrapper().highest is None


@FAST
@given(st.integers(0, 0xFFFF), st.lists(st.integers(1, 3000), max_size=200))
def test_unwrapper_recovers_any_forward_walk(start: int, steps: list[int]) -> None:
    """Any stream moving forward by less than half the space per packet unwraps exactly."""
    u = SeqUnwrapper()
    ext = start
    assert u.unwrap(start) == start
    for step in steps:
        ext += step
        assert u.unwrap(ext & 0xFFFF) == ext


@pytest.mark.parametrize(
    ("highest", "seq", "expected"),
    [
        (100, 101, 101),  # next
        (100, 99, 99),  # one late
        (65535, 0, 65536),  # the wrap, forward
        (65536, 65535, 65535),  # one late across the wrap
        (3 * 65536 + 10, 5, 3 * 65536 + 5),  # later cycles keep their count
        (100, 100 + 32767, 100 + 32767),  # the farthest forward
        (100, (100 + 32768) & 0xFFFF, 100 - 32768),  # half the space away counts as old
    ],
)
def test_seq_unwrap_table(highest: int, seq: int, expected: int) -> None:
    """The hot path's stateless unwrap places a 16-bit number at the shortest distance from the highest."""
    assert seq_unwrap(highest, seq) == expected


@FAST
@given(st.integers(0, 0xFFFF), st.lists(st.integers(-200, 3000), max_size=200))
def test_seq_unwrap_as_the_producer_uses_it_matches_the_unwrapper(start: int, steps: list[int]) -> None:
    """Producer.on_rtp's pattern (seq_unwrap against its own highest, first packet as is) gives
    SeqUnwrapper's extended numbers and highest on any walk with reordering and wraps."""
    u = SeqUnwrapper()
    true = start
    highest = start
    assert u.unwrap(start) == start
    for step in steps:
        true += step
        ext = seq_unwrap(highest, true & 0xFFFF)
        assert ext == u.unwrap(true & 0xFFFF)
        highest = max(highest, ext)
        assert highest == u.highest
