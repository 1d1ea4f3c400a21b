"""RTP header parsing/building, cross-checked against aiortc's RtpPacket as an oracle."""

from __future__ import annotations

from typing import Any

import pytest
from aiortc.rtp import RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from jasmin_codecs import MalformedPacket
from jasmin_codecs.rtp import (
    RtpHeader,
    build_extensions,
    build_rtp,
    extension_section,
    is_rtcp,
    parse_extensions,
    parse_rtp,
    split_rtp,
)

# Enough examples to find framing bugs while keeping the suite at a few seconds;
# no deadline so a slow CI machine cannot turn a pass into a flake.
FAST = settings(max_examples=60, deadline=None)

# V=2 M=1 PT=96 seq=12345 ts=123456 ssrc=0xdeadbeef, payload 01 02 03.
SIMPLE = bytes.fromhex("80e030390001e240deadbeef010203")

# V=2 P=1 X=1 CC=2, M=0 PT=111, seq=65535, ts=0xffffffff, ssrc=1, CSRCs 2 and 3,
# one-byte extensions {1: aa, 2: bbcc} + 3 zero pad, payload 9998, 3 padding bytes.
FULL = bytes.fromhex("b26fffffffffffff000000010000000200000003bede000210aa21bbcc0000009998000003")


def rebuild(data: bytes) -> bytes:
    """Re-serialize a parsed packet with build_rtp."""
    h = parse_rtp(data)
    return build_rtp(
        marker=h.marker,
        payload_type=h.payload_type,
        sequence=h.sequence,
        timestamp=h.timestamp,
        ssrc=h.ssrc,
        payload=data[h.payload_offset : h.payload_end],
        csrcs=h.csrcs,
        ext_section=extension_section(h.ext_profile, h.ext_data),
        padding=h.padding,
    )


def test_parse_simple_vector() -> None:
    """Every field of a minimal packet is read from the right bits."""
    assert parse_rtp(SIMPLE) == RtpHeader(
        marker=True,
        payload_type=96,
        sequence=12345,
        timestamp=123456,
        ssrc=0xDEADBEEF,
        csrcs=(),
        ext_profile=None,
        ext_data=b"",
        payload_offset=12,
        payload_end=15,
        padding=0,
    )


def test_parse_full_vector_with_csrcs_extension_and_padding() -> None:
    """CSRCs, the extension block and padding are located exactly."""
    h = parse_rtp(FULL)
    assert h == RtpHeader(
        marker=False,
        payload_type=111,
        sequence=65535,
        timestamp=0xFFFFFFFF,
        ssrc=1,
        csrcs=(2, 3),
        ext_profile=0xBEDE,
        ext_data=bytes.fromhex("10aa21bbcc000000"),
        payload_offset=32,
        payload_end=34,
        padding=3,
    )
    assert FULL[h.payload_offset : h.payload_end] == b"\x99\x98"
    assert parse_extensions(0xBEDE, h.ext_data) == [(1, b"\xaa"), (2, b"\xbb\xcc")]


@pytest.mark.parametrize("data", [SIMPLE, FULL], ids=["simple", "full"])
def test_vectors_rebuild_byte_exact(data: bytes) -> None:
    """parse_rtp followed by build_rtp reproduces the packet byte for byte."""
    assert rebuild(data) == data


def test_extension_with_zero_words_round_trips() -> None:
    """An X bit with an empty extension body is kept (profile set, ext_data empty)."""
    data = bytes.fromhex("906000010000000200000003bede0000ff")
    h = parse_rtp(data)
    assert (h.ext_profile, h.ext_data, h.payload_offset) == (0xBEDE, b"", 16)
    assert rebuild(data) == data


@pytest.mark.parametrize(
    ("second_byte", "expected"),
    [
        (200, True),  # SR
        (201, True),  # RR
        (205, True),  # RTPFB
        (206, True),  # PSFB
        (207, True),  # XR
        (210, True),  # beyond aiortc's 208 cut-off but still RTCP
        (192, True),
        (223, True),
        (191, False),
        (224, False),
        (96, False),  # RTP PT 96, no marker
        (96 | 0x80, False),  # RTP PT 96 with marker
        (111, False),
        (0, False),
        (35 | 0x80, False),
    ],
)
def test_is_rtcp_uses_rfc5761_range(second_byte: int, expected: bool) -> None:
    """RTCP is told from RTP by the packet type 192-223 (64-95 without the marker bit)."""
    assert is_rtcp(bytes([0x80, second_byte, 0, 1])) is expected


@pytest.mark.parametrize("data", [b"", b"\x80"], ids=["empty", "one_byte"])
def test_is_rtcp_false_on_short_input(data: bytes) -> None:
    """is_rtcp never raises on tiny datagrams."""
    assert is_rtcp(data) is False


MALFORMED = [
    ("empty", b"", "too_short"),
    ("eleven_bytes", SIMPLE[:11], "too_short"),
    ("version_0", bytes([0x00]) + SIMPLE[1:], "bad_version"),
    ("version_1", bytes([0x40]) + SIMPLE[1:], "bad_version"),
    ("version_3", bytes([0xC0]) + SIMPLE[1:], "bad_version"),
    ("csrc_count_past_end", bytes([0x82]) + SIMPLE[1:12] + b"\0\0\0\1", "bad_csrc"),
    ("extension_header_truncated", bytes([0x90]) + SIMPLE[1:12] + b"\xbe\xde", "bad_extension"),
    (
        "extension_body_truncated",
        bytes([0x90]) + SIMPLE[1:12] + bytes.fromhex("bede0002") + b"\x10\xaa\0\0",
        "bad_extension",
    ),
    ("padding_zero", bytes([0xA0]) + SIMPLE[1:12] + b"\x01\x02\x00", "bad_padding"),
    ("padding_too_long", bytes([0xA0]) + SIMPLE[1:12] + b"\x01\x02\x04", "bad_padding"),
    ("padding_no_payload", bytes([0xA0]) + SIMPLE[1:12], "bad_padding"),
    (
        "padding_eats_extension",
        bytes([0xB0]) + SIMPLE[1:12] + bytes.fromhex("bede0001") + b"\x10\xaa\x00\x06",
        "bad_padding",
    ),
]


@pytest.mark.parametrize(("name", "data", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_rtp_reports_reason(name: str, data: bytes, reason: str) -> None:
    """Each kind of broken packet raises MalformedPacket with its metric-label reason."""
    with pytest.raises(MalformedPacket) as info:
        parse_rtp(data)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("name", "data", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_rtp_also_rejected_by_aiortc(name: str, data: bytes, reason: str) -> None:
    """Our malformed table agrees with aiortc: it rejects the same inputs."""
    with pytest.raises(ValueError):
        RtpPacket.parse(data)


def test_padding_exactly_filling_payload_is_valid() -> None:
    """Padding may consume every byte after the header (a padding-only probe packet)."""
    data = bytes([0xA0]) + SIMPLE[1:12] + bytes(3) + b"\x04"
    h = parse_rtp(data)
    assert (h.padding, h.payload_offset, h.payload_end) == (4, 12, 12)
    assert rebuild(data) == data


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"csrcs": tuple(range(16))}, "CSRC"),
        ({"payload_type": 128}, "payload type"),
        ({"padding": 256}, "padding"),
        ({"ext_section": b"\xbe\xde\x00\x01"}, "ext_section"),
        ({"ext_section": b"\xbe\xde\x00\x00\x10"}, "ext_section"),
    ],
)
def test_build_rtp_rejects_out_of_range_fields(kwargs: dict[str, Any], match: str) -> None:
    """build_rtp refuses values that would produce a corrupt packet."""
    args: dict[str, Any] = dict(marker=False, payload_type=96, sequence=1, timestamp=2, ssrc=3, payload=b"x")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        build_rtp(**args)


# --- property tests and the aiortc oracle ------------------------------------

one_byte_elements = st.lists(st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16)), max_size=6)
any_elements = st.lists(st.tuples(st.integers(1, 255), st.binary(min_size=0, max_size=40)), max_size=6)

packet_fields = st.fixed_dictionaries(
    {
        "marker": st.booleans(),
        "payload_type": st.integers(0, 127),
        "sequence": st.integers(0, 0xFFFF),
        "timestamp": st.integers(0, 0xFFFFFFFF),
        "ssrc": st.integers(0, 0xFFFFFFFF),
        "payload": st.binary(max_size=64),
        "csrcs": st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
        "padding": st.integers(0, 255),
    }
)


@FAST
@given(packet_fields, st.one_of(one_byte_elements, any_elements))
def test_build_then_parse_round_trips(fields: dict[str, Any], elements: list[tuple[int, bytes]]) -> None:
    """Whatever build_rtp writes, parse_rtp reads back, and rebuilding is byte-exact."""
    profile, body = build_extensions(elements)
    section = extension_section(profile, body) if elements else b""
    data = build_rtp(ext_section=section, **fields)
    h = parse_rtp(data)
    assert h.marker == fields["marker"]
    assert h.payload_type == fields["payload_type"]
    assert h.sequence == fields["sequence"]
    assert h.timestamp == fields["timestamp"]
    assert h.ssrc == fields["ssrc"]
    assert h.csrcs == fields["csrcs"]
    assert h.padding == fields["padding"]
    assert data[h.payload_offset : h.payload_end] == fields["payload"]
    if elements:
        assert h.ext_profile == profile
        assert parse_extensions(profile, h.ext_data) == elements
    else:
        assert h.ext_profile is None
    assert rebuild(data) == data


@FAST
@given(packet_fields, st.one_of(one_byte_elements, any_elements))
def test_aiortc_parses_what_we_build(fields: dict[str, Any], elements: list[tuple[int, bytes]]) -> None:
    """aiortc's RtpPacket.parse (the oracle) reads our packets identically."""
    profile, body = build_extensions(elements)
    data = build_rtp(ext_section=extension_section(profile, body) if elements else b"", **fields)
    p = RtpPacket.parse(data)
    assert p.marker == int(fields["marker"])
    assert p.payload_type == fields["payload_type"]
    assert p.sequence_number == fields["sequence"]
    assert p.timestamp == fields["timestamp"]
    assert p.ssrc == fields["ssrc"]
    assert p.csrc == list(fields["csrcs"])
    assert p.padding_size == fields["padding"]
    assert p.payload == fields["payload"]


@FAST
@given(packet_fields.map(lambda f: {**f, "padding": 0}))
def test_we_build_what_aiortc_serializes(fields: dict[str, Any]) -> None:
    """Without padding (aiortc pads with random bytes) our output equals aiortc's byte for byte."""
    p = RtpPacket(
        payload_type=fields["payload_type"],
        marker=int(fields["marker"]),
        sequence_number=fields["sequence"],
        timestamp=fields["timestamp"],
        ssrc=fields["ssrc"],
        payload=fields["payload"],
    )
    p.csrc = list(fields["csrcs"])
    oracle = p.serialize()
    assert build_rtp(**fields) == oracle
    h = parse_rtp(oracle)
    assert (h.sequence, h.timestamp, h.ssrc, h.csrcs) == (
        fields["sequence"],
        fields["timestamp"],
        fields["ssrc"],
        fields["csrcs"],
    )


@FAST
@given(st.binary(max_size=80))
def test_parse_rtp_raises_only_malformed_packet(data: bytes) -> None:
    """On arbitrary bytes parse_rtp either succeeds consistently or raises MalformedPacket."""
    try:
        h = parse_rtp(data)
    except MalformedPacket as exc:
        assert exc.reason in {"too_short", "bad_version", "bad_csrc", "bad_extension", "bad_padding"}
        return
    assert 12 <= h.payload_offset <= h.payload_end <= len(data)
    assert h.payload_end + h.padding == len(data)


# --- split_rtp: the hot path's splitter is the same parser ----------------------


@pytest.mark.parametrize(("name", "data", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_split_rtp_drops_malformed_with_the_same_reason(name: str, data: bytes, reason: str) -> None:
    """The hot path's splitter refuses each broken packet with parse_rtp's metric-label reason."""
    with pytest.raises(MalformedPacket) as info:
        split_rtp(data)
    assert info.value.reason == reason


def test_split_rtp_vector_offsets() -> None:
    """Every field and offset of the full vector (CSRCs, extension, padding) is where the spec puts it."""
    b0, b1, seq, ts, ssrc, csrc_end, ext_profile, payload_offset, padding = split_rtp(FULL)
    assert (b0, b1, seq, ts, ssrc) == (0xB2, 0x6F, 0xFFFF, 0xFFFFFFFF, 1)
    assert FULL[12:csrc_end] == bytes.fromhex("0000000200000003")
    assert ext_profile == 0xBEDE
    assert FULL[csrc_end + 4 : payload_offset] == bytes.fromhex("10aa21bbcc000000")
    assert FULL[payload_offset : len(FULL) - padding] == bytes.fromhex("9998")


def split_or_reason(data: bytes) -> object:
    try:
        return split_rtp(data)
    except MalformedPacket as exc:
        return exc.reason


def parse_or_reason(data: bytes) -> object:
    try:
        return parse_rtp(data)
    except MalformedPacket as exc:
        return exc.reason


def mutations(data: bytes) -> list[bytes]:
    """Truncations and first-byte flips of a valid packet: the malformed neighbours."""
    out = [data[:k] for k in range(0, len(data), max(1, len(data) // 8))]
    out += [bytes([data[0] ^ bit]) + data[1:] for bit in (0x10, 0x20, 0x0F, 0x40, 0x80)]
    out += [data[:-1] + bytes([v]) for v in (0, 255)]
    return out


@FAST
@given(packet_fields, st.one_of(one_byte_elements, any_elements))
def test_split_rtp_agrees_with_parse_rtp_on_valid_and_malformed(
    fields: dict[str, Any], elements: list[tuple[int, bytes]]
) -> None:
    """split_rtp and parse_rtp take the same split/drop decision on a packet and its malformed neighbours,
    and on valid ones every split field equals the parsed field."""
    profile, body = build_extensions(elements)
    data = build_rtp(ext_section=extension_section(profile, body) if elements else b"", **fields)
    for case in [data, *mutations(data)]:
        split, parsed = split_or_reason(case), parse_or_reason(case)
        if isinstance(parsed, str):
            assert split == parsed
            continue
        assert isinstance(split, tuple) and isinstance(parsed, RtpHeader)
        b0, b1, seq, ts, ssrc, csrc_end, ext_profile, payload_offset, padding = split
        assert (bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc) == (
            parsed.marker,
            parsed.payload_type,
            parsed.sequence,
            parsed.timestamp,
            parsed.ssrc,
        )
        assert csrc_end == 12 + 4 * len(parsed.csrcs)
        assert (ext_profile, payload_offset, padding) == (parsed.ext_profile, parsed.payload_offset, parsed.padding)
        if ext_profile is not None:
            assert case[csrc_end + 4 : payload_offset] == parsed.ext_data


@FAST
@given(st.binary(max_size=80))
def test_split_rtp_on_arbitrary_bytes_raises_only_malformed_packet(data: bytes) -> None:
    """On arbitrary bytes split_rtp either returns offsets inside the packet or raises MalformedPacket."""
    try:
        _, _, _, _, _, csrc_end, ext_profile, payload_offset, padding = split_rtp(data)
    except MalformedPacket as exc:
        assert exc.reason in {"too_short", "bad_version", "bad_csrc", "bad_extension", "bad_padding"}
        return
    assert 12 <= csrc_end <= payload_offset <= len(data) - padding
    if ext_profile is None:
        assert csrc_end == payload_offset
