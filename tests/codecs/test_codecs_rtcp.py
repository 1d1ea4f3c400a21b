"""Compound RTCP parsing/serialization, cross-checked against aiortc's RTCP classes."""

from __future__ import annotations

import datetime

import pytest
from aiortc.clock import datetime_to_ntp
from aiortc.rtp import (
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    pack_remb_fci,
    unpack_remb_fci,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from jasmin_codecs import MalformedPacket
from jasmin_codecs.rtcp import (
    Bye,
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtcpPacket as OurRtcpPacket,
    Sdes,
    SenderReport,
    UnknownRtcp,
    nack_pairs,
    ntp_now,
    ntp_to_compact,
    ntp_to_time,
    parse_rtcp,
    serialize_rtcp,
)

# Enough examples to find framing bugs while keeping the suite at a few seconds;
# no deadline so a slow CI machine cannot turn a pass into a flake.
FAST = settings(max_examples=60, deadline=None)

h = bytes.fromhex

# (name, wire bytes, parsed packet): each must parse to the packet and serialize back exactly.
VECTORS: list[tuple[str, bytes, OurRtcpPacket]] = [
    (
        "sender report",
        h("80c8000612345678e54f6b37800000000001e2400000000a000003e8"),
        SenderReport(0x12345678, 0xE54F6B3780000000, 123456, 10, 1000),
    ),
    (
        "receiver report, negative cumulative loss",
        h("81c90007111111112222222240ffffff0001000500000010aabbccdd00001000"),
        ReceiverReport(0x11111111, (ReportBlock(0x22222222, 64, -1, 0x10005, 16, 0xAABBCCDD, 0x1000),)),
    ),
    (
        "sdes cname",
        h("81ca0003123456780104616263640000"),
        Sdes(((0x12345678, ((1, b"abcd"),)),)),
    ),
    (
        "sdes cname needing a whole null word",
        h("81ca0003123456780102616200000000"),
        Sdes(((0x12345678, ((1, b"ab"),)),)),
    ),
    (
        "sdes two chunks",
        h("82ca00050000000101016100000000020103626364000000"),
        Sdes(((1, ((1, b"a"),)), (2, ((1, b"bcd"),)))),
    ),
    ("bye", h("81cb000112345678"), Bye((0x12345678,))),
    ("bye with reason", h("81cb0003123456780462796521000000"), Bye((0x12345678,), b"bye!")),
    ("generic nack", h("81cd0003000000010000000200640005"), Nack(1, 2, (100, 101, 103))),
    ("nack across wrap", h("81cd00030000000100000002ffff0003"), Nack(1, 2, (65535, 0, 1))),
    ("pli", h("81ce00020000000100000002"), Pli(1, 2)),
    ("fir", h("84ce000400000001000000000000000205000000"), Fir(1, ((2, 5),))),
    (
        "remb",
        h("8fce0005000000010000000052454d42010bd09000000002"),
        Remb(1, 1_000_000, (2,)),
    ),
    ("xr kept verbatim", h("80cf00020000000101020304"), UnknownRtcp(207, 0, h("0000000101020304"))),
    ("app kept verbatim", h("82cc0003000000016e616d65deadbeef"), UnknownRtcp(204, 2, h("000000016e616d65deadbeef"))),
    (
        "transport-cc kept verbatim",
        h("8fcd00050000000100000002000100020000010020020000"),
        UnknownRtcp(205, 15, h("0000000100000002000100020000010020020000")),
    ),
    (
        "afb that is not remb kept verbatim",
        h("8fce0003000000010000000041424344"),
        UnknownRtcp(206, 15, h("000000010000000041424344")),
    ),
    ("padded app", h("a0cc0003000000016e616d6500000004"), UnknownRtcp(204, 0, h("000000016e616d65"), 4)),
    ("legacy fir type 192", h("80c0000100000001"), UnknownRtcp(192, 0, h("00000001"))),
]


@pytest.mark.parametrize(("name", "data", "packet"), VECTORS, ids=[v[0] for v in VECTORS])
def test_vector_parses(name: str, data: bytes, packet: OurRtcpPacket) -> None:
    """Each wire vector parses to exactly the expected packet."""
    assert parse_rtcp(data) == [packet]


@pytest.mark.parametrize(("name", "data", "packet"), VECTORS, ids=[v[0] for v in VECTORS])
def test_vector_serializes_byte_exact(name: str, data: bytes, packet: OurRtcpPacket) -> None:
    """Each packet serializes back to the identical bytes."""
    assert packet.to_bytes() == data


def test_compound_round_trip() -> None:
    """A compound datagram parses into its packets in order and re-serializes identically."""
    data = b"".join(v[1] for v in VECTORS)
    packets = parse_rtcp(data)
    assert packets == [v[2] for v in VECTORS]
    assert serialize_rtcp(packets) == data


def test_known_packet_padding_is_dropped() -> None:
    """A padded RR parses with the padding stripped; re-serializing gives the canonical form."""
    data = h("a0c900021111111100000004")
    assert parse_rtcp(data) == [ReceiverReport(0x11111111)]
    assert ReceiverReport(0x11111111).to_bytes() == h("80c9000111111111")


def test_sender_report_profile_extension_is_tolerated() -> None:
    """Bytes after the report blocks (RFC 3550 profile extensions) do not fail the parse."""
    data = h("80c8000712345678e54f6b37800000000001e2400000000a000003e8cafebabe")
    assert parse_rtcp(data) == [SenderReport(0x12345678, 0xE54F6B3780000000, 123456, 10, 1000)]


MALFORMED = [
    ("empty", b"", "too_short"),
    ("trailing bytes", h("81cb00011234567880cb"), "too_short"),
    ("version 1", h("41cb000112345678"), "bad_version"),
    ("version 0", h("01cb000112345678"), "bad_version"),
    ("rtp payload type", h("8060000112345678"), "unknown_type"),
    ("packet type 224", h("80e0000112345678"), "unknown_type"),
    ("length past end", h("81cb000212345678"), "bad_length"),
    ("second packet length past end", h("81cb00011234567881cb000512345678"), "bad_length"),
    ("sr too short for count", h("81c8000612345678e54f6b37800000000001e2400000000a000003e8"), "bad_length"),
    ("sr without sender info", h("80c8000112345678"), "bad_length"),
    ("rr too short for count", h("82c9000711111111" + "00" * 24), "bad_length"),
    ("rr empty", h("80c90000"), "bad_length"),
    ("bye too short for count", h("82cb000112345678"), "bad_length"),
    ("bye reason past end", h("81cb00021234567809626965"), "bad_length"),
    ("sdes missing ssrc", h("82ca00020000000100000000"), "bad_length"),
    ("sdes item past end", h("81ca00020000000101096162"), "bad_length"),
    ("nack too short", h("81cd000100000001"), "bad_length"),
    ("nack odd fci after padding", h("a1cd000400000001000000020064000500000002"), "bad_length"),
    ("pli too short", h("81ce000100000001"), "bad_length"),
    ("fir half entry", h("84ce0003000000010000000000000002"), "bad_length"),
    ("remb ssrcs past end", h("8fce0005000000010000000052454d42020bd09000000002"), "bad_length"),
    ("padding zero", h("a0cc0003000000016e616d6500000000"), "bad_padding"),
    ("padding longer than body", h("a0cc0003000000016e616d650000000d"), "bad_padding"),
    ("padding bit on empty body", h("a0cc0000"), "bad_padding"),
]


@pytest.mark.parametrize(("name", "data", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_rtcp_reports_reason(name: str, data: bytes, reason: str) -> None:
    """Each kind of broken RTCP raises MalformedPacket with its metric-label reason."""
    with pytest.raises(MalformedPacket) as info:
        parse_rtcp(data)
    assert info.value.reason == reason


@FAST
@given(st.binary(max_size=120))
def test_parse_rtcp_raises_only_malformed_packet(data: bytes) -> None:
    """Arbitrary bytes either parse (and then re-serialize into something parseable) or raise MalformedPacket."""
    try:
        packets = parse_rtcp(data)
    except MalformedPacket:
        return
    assert len(parse_rtcp(serialize_rtcp(packets))) == len(packets)


def framed(count: int, padded: bool, packet_type: int, body: bytes) -> bytes:
    return bytes((0x80 | (0x20 if padded else 0) | count, packet_type)) + (len(body) // 4).to_bytes(2, "big") + body


well_framed = st.lists(
    st.tuples(
        st.integers(0, 31),
        st.booleans(),
        st.sampled_from([200, 201, 202, 203, 204, 205, 206, 207]) | st.integers(192, 223),
        st.integers(0, 10).flatmap(lambda w: st.binary(min_size=4 * w, max_size=4 * w)),
    ),
    min_size=1,
    max_size=4,
)


@FAST
@given(well_framed)
def test_parse_rtcp_on_well_framed_random_bodies(chunks: list[tuple[int, bool, int, bytes]]) -> None:
    """Correctly framed datagrams with random bodies parse to one packet each or fail cleanly; reparse is stable."""
    data = b"".join(framed(*c) for c in chunks)
    try:
        packets = parse_rtcp(data)
    except MalformedPacket as exc:
        assert exc.reason in {"bad_length", "bad_padding"}
        return
    assert len(packets) == len(chunks)
    again = parse_rtcp(serialize_rtcp(packets))
    for first, second in zip(packets, again, strict=True):
        if isinstance(first, Nack) and isinstance(second, Nack):
            # Serialization canonicalizes the loss list (sorted, de-duplicated).
            assert set(first.lost) == set(second.lost)
            assert (first.sender_ssrc, first.media_ssrc) == (second.sender_ssrc, second.media_ssrc)
        else:
            assert first == second


# --- NACK -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "lost", "pairs"),
    [
        ("empty", [], []),
        ("single", [100], [(100, 0)]),
        ("bitmask", [100, 101, 103], [(100, 0b101)]),
        ("bit 15 is the last in a pair", [100, 116], [(100, 0x8000)]),
        ("17 apart needs a second pair", [100, 117], [(100, 0), (117, 0)]),
        ("unsorted and duplicated", [103, 100, 101, 100], [(100, 0b101)]),
        ("wraparound in one pair", [65534, 65535, 0, 1], [(65534, 0b111)]),
        ("wraparound unordered", [1, 0, 65535], [(65535, 0b11)]),
        ("wraparound across pairs", [65535, 0, 16], [(65535, 0b1), (16, 0)]),
        ("run of 40", list(range(10, 50)), [(10, 0xFFFF), (27, 0xFFFF), (44, 0b11111)]),
        (
            "run of 40 across wrap",
            [(65520 + i) & 0xFFFF for i in range(40)],
            [(65520, 0xFFFF), (1, 0xFFFF), (18, 0b11111)],
        ),
    ],
)
def test_nack_pairs_compression(name: str, lost: list[int], pairs: list[tuple[int, int]]) -> None:
    """Lost sequence numbers compress into the fewest PID/BLP pairs, in wraparound order."""
    assert nack_pairs(lost) == pairs


def test_nack_rejects_out_of_range_sequence() -> None:
    """Sequence numbers must be 16-bit."""
    with pytest.raises(ValueError):
        Nack(1, 2, (70000,)).to_bytes()


@FAST
@given(st.integers(0, 0xFFFF), st.sets(st.integers(0, 2000), max_size=60))
def test_nack_round_trip_near_any_base(base: int, offsets: set[int]) -> None:
    """Any loss set spanning less than half the space survives serialize+parse as the same set, in order."""
    lost = [(base + o) & 0xFFFF for o in sorted(offsets)]
    parsed = parse_rtcp(Nack(7, 9, tuple(lost)).to_bytes())
    assert parsed == [Nack(7, 9, tuple(lost))]


@FAST
@given(st.integers(0, 62535), st.sets(st.integers(0, 3000), min_size=1, max_size=40))
def test_nack_matches_aiortc_without_wrap(base: int, offsets: set[int]) -> None:
    """Away from the wrap our NACK bytes equal aiortc's, and aiortc parses ours to the same list."""
    lost = sorted(base + o for o in offsets)
    ours = Nack(0x1111, 0x2222, tuple(lost)).to_bytes()
    assert ours == bytes(RtcpRtpfbPacket(fmt=1, ssrc=0x1111, media_ssrc=0x2222, lost=lost))
    (oracle,) = RtcpPacket.parse(ours)
    assert isinstance(oracle, RtcpRtpfbPacket)
    assert oracle.lost == lost


# --- REMB -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bitrate", "exponent", "mantissa"),
    [
        (0, 0, 0),
        (1, 0, 1),
        (0x3FFFF, 0, 0x3FFFF),
        (0x40000, 1, 0x20000),
        (0x40001, 1, 0x20000),  # low bit truncated
        (1_000_000, 2, 250_000),
        (2_500_000_000, 14, 2_500_000_000 >> 14),
        (0x3FFFF << 63, 63, 0x3FFFF),
    ],
)
def test_remb_smallest_exponent(bitrate: int, exponent: int, mantissa: int) -> None:
    """REMB uses the smallest exponent whose 18-bit mantissa holds the bitrate."""
    data = Remb(1, bitrate, ()).to_bytes()
    assert data[17] >> 2 == exponent
    assert ((data[17] & 3) << 16) | (data[18] << 8) | data[19] == mantissa
    assert parse_rtcp(data) == [Remb(1, mantissa << exponent, ())]


@pytest.mark.parametrize("bitrate", [-1, (0x3FFFF << 63) + (1 << 63)])
def test_remb_rejects_unrepresentable_bitrate(bitrate: int) -> None:
    """Negative or beyond-2**81 bitrates raise ValueError instead of wrapping."""
    with pytest.raises(ValueError):
        Remb(1, bitrate, ()).to_bytes()


@FAST
@given(st.integers(0, 1 << 40), st.lists(st.integers(0, 0xFFFFFFFF), max_size=5))
def test_remb_matches_aiortc(bitrate: int, ssrcs: list[int]) -> None:
    """Our REMB equals aiortc's pack_remb_fci inside a PSFB packet, and unpack_remb_fci reads ours."""
    ours = Remb(0xABCD, bitrate, tuple(ssrcs)).to_bytes()
    oracle = bytes(RtcpPsfbPacket(fmt=15, ssrc=0xABCD, media_ssrc=0, fci=pack_remb_fci(bitrate, ssrcs)))
    assert ours == oracle
    parsed_bitrate, parsed_ssrcs = unpack_remb_fci(ours[12:])
    assert parse_rtcp(ours) == [Remb(0xABCD, parsed_bitrate, tuple(parsed_ssrcs))]
    assert parsed_bitrate <= bitrate


# --- aiortc oracle for reports, SDES, BYE, PLI ---------------------------------

u32 = st.integers(0, 0xFFFFFFFF)
blocks = st.builds(
    ReportBlock,
    ssrc=u32,
    fraction_lost=st.integers(0, 255),
    cumulative_lost=st.integers(-0x800000, 0x7FFFFF),
    highest_seq=u32,
    jitter=u32,
    lsr=u32,
    dlsr=u32,
)


def to_aiortc_block(b: ReportBlock) -> RtcpReceiverInfo:
    return RtcpReceiverInfo(
        ssrc=b.ssrc,
        fraction_lost=b.fraction_lost,
        packets_lost=b.cumulative_lost,
        highest_sequence=b.highest_seq,
        jitter=b.jitter,
        lsr=b.lsr,
        dlsr=b.dlsr,
    )


@FAST
@given(u32, st.integers(0, (1 << 64) - 1), u32, u32, u32, st.lists(blocks, max_size=4))
def test_sender_report_matches_aiortc(
    ssrc: int, ntp: int, rtp_ts: int, packets: int, octets: int, reports: list[ReportBlock]
) -> None:
    """SR bytes equal aiortc's RtcpSrPacket, and each side parses the other's output."""
    ours = SenderReport(ssrc, ntp, rtp_ts, packets, octets, tuple(reports))
    oracle = RtcpSrPacket(
        ssrc=ssrc,
        sender_info=RtcpSenderInfo(ntp_timestamp=ntp, rtp_timestamp=rtp_ts, packet_count=packets, octet_count=octets),
        reports=[to_aiortc_block(b) for b in reports],
    )
    assert ours.to_bytes() == bytes(oracle)
    assert parse_rtcp(bytes(oracle)) == [ours]
    assert RtcpPacket.parse(ours.to_bytes()) == [oracle]


@FAST
@given(u32, st.lists(blocks, max_size=4))
def test_receiver_report_matches_aiortc(ssrc: int, reports: list[ReportBlock]) -> None:
    """RR bytes equal aiortc's RtcpRrPacket, including signed cumulative loss."""
    ours = ReceiverReport(ssrc, tuple(reports))
    oracle = RtcpRrPacket(ssrc=ssrc, reports=[to_aiortc_block(b) for b in reports])
    assert ours.to_bytes() == bytes(oracle)
    assert parse_rtcp(bytes(oracle)) == [ours]


def test_cumulative_loss_is_clamped_to_24_bits() -> None:
    """Out-of-range loss counts saturate rather than wrapping into the wrong sign."""
    high = ReportBlock(1, 0, 10_000_000, 0, 0, 0, 0)
    low = ReportBlock(1, 0, -10_000_000, 0, 0, 0, 0)
    assert ReportBlock.from_bytes(high.to_bytes()).cumulative_lost == 0x7FFFFF
    assert ReportBlock.from_bytes(low.to_bytes()).cumulative_lost == -0x800000


@pytest.mark.parametrize("cname", [b"a", b"ab", b"abcd", b"{e0c6a6b4-1234}", b"x" * 200])
def test_sdes_cname_interoperates_with_aiortc(cname: bytes) -> None:
    """aiortc parses our CNAME, we parse aiortc's, and bytes match where aiortc's padding is canonical."""
    ours = Sdes(((0x5555, ((1, cname),)),))
    oracle = RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=0x5555, items=[(1, cname)])])
    assert parse_rtcp(bytes(oracle)) == [ours]
    (theirs,) = RtcpPacket.parse(ours.to_bytes())
    assert theirs == oracle
    if (2 + len(cname)) % 4 != 3:  # aiortc over-pads by one word in that case only
        assert ours.to_bytes() == bytes(oracle)


def test_bye_interoperates_with_aiortc() -> None:
    """BYE without reason equals aiortc's; aiortc parses our BYE with a reason."""
    assert Bye((1, 2)).to_bytes() == bytes(RtcpByePacket(sources=[1, 2]))
    assert RtcpPacket.parse(Bye((1, 2), b"shutting down").to_bytes()) == [RtcpByePacket(sources=[1, 2])]


def test_pli_matches_aiortc() -> None:
    """PLI equals aiortc's PSFB FMT 1 with no FCI."""
    assert Pli(0xA, 0xB).to_bytes() == bytes(RtcpPsfbPacket(fmt=1, ssrc=0xA, media_ssrc=0xB))


def test_fir_parsed_by_aiortc_as_psfb_fmt4() -> None:
    """aiortc sees our FIR as PSFB FMT 4 with media SSRC 0 and 8-byte FCI entries."""
    (theirs,) = RtcpPacket.parse(Fir(1, ((2, 7), (3, 255))).to_bytes())
    assert theirs == RtcpPsfbPacket(fmt=4, ssrc=1, media_ssrc=0, fci=h("000000020700000000000003ff000000"))


@pytest.mark.parametrize(
    "packet",
    [
        ReceiverReport(1, tuple(ReportBlock(i, 0, 0, 0, 0, 0, 0) for i in range(32))),
        Sdes(((1, ((0, b"x"),)),)),
        Bye((1,), b"x" * 256),
        Remb(1, 1, tuple(range(256))),
        UnknownRtcp(204, 0, b"abc"),
        UnknownRtcp(204, 32, b"abcd"),
    ],
    ids=["33 reports", "sdes item type 0", "long bye reason", "256 remb ssrcs", "unaligned body", "fmt too big"],
)
def test_serialize_rejects_unencodable_packets(packet: OurRtcpPacket) -> None:
    """Values that do not fit the wire format raise ValueError rather than corrupting the datagram."""
    with pytest.raises(ValueError):
        packet.to_bytes()


# --- NTP ----------------------------------------------------------------------


def test_ntp_now_known_values() -> None:
    """UNIX epoch maps to NTP second 2208988800; half a second is fraction 0x80000000."""
    assert ntp_now(0.0) == 2208988800 << 32
    assert ntp_now(1.5) == (2208988801 << 32) | 0x80000000


def test_ntp_to_compact_takes_middle_32_bits() -> None:
    """LSR/DLSR use the middle 32 bits of the NTP time."""
    assert ntp_to_compact(0x0123456789ABCDEF) == 0x456789AB
    assert ntp_to_compact(ntp_now(1.5)) == ((2208988801 & 0xFFFF) << 16) | 0x8000


@pytest.mark.parametrize("t", [1_700_000_000.123456, 1_234_567_890.5, 2_000_000_000.999999])
def test_ntp_now_matches_aiortc_clock(t: float) -> None:
    """ntp_now agrees with aiortc's datetime_to_ntp to within a few microseconds."""
    theirs = datetime_to_ntp(datetime.datetime.fromtimestamp(t, datetime.UTC))
    assert abs(ntp_now(t) - theirs) < (1 << 32) // 100_000
    assert abs(ntp_to_time(ntp_now(t)) - t) < 1e-6
