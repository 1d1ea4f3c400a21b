"""VP8 descriptor parsing and VP8/H.264 keyframe detection, checked on real encoder output."""

from __future__ import annotations

import fractions
from dataclasses import dataclass

import av
import numpy as np
import pytest
from aiortc.codecs import get_encoder
from aiortc.codecs.h264 import H264PayloadDescriptor
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from hypothesis import given, settings
from hypothesis import strategies as st

from jasmin_codecs import MalformedPacket
from jasmin_codecs.h264 import h264_is_keyframe, h264_nal_types
from jasmin_codecs.keyframe import is_keyframe, keyframe_detector
from jasmin_codecs.vp8 import Vp8Descriptor, parse_vp8_descriptor, vp8_is_keyframe

# Enough examples to find framing bugs while keeping the suite at a few seconds;
# no deadline so a slow CI machine cannot turn a pass into a flake.
FAST = settings(max_examples=60, deadline=None)

# --- real encoder output -------------------------------------------------------


@dataclass
class EncodedFrame:
    """RTP payloads of one encoded frame and whether the encoder was made to produce a keyframe."""

    payloads: list[bytes]
    keyframe: bool


def encode_frames(mime: str) -> list[EncodedFrame]:
    """Encode 5 small frames with aiortc: frame 0 is a keyframe, frame 3 a forced one."""
    encoder = get_encoder(RTCRtpCodecParameters(mimeType=mime, clockRate=90000))
    rng = np.random.default_rng(1234)
    frames = []
    for i in range(5):
        # Noise keeps the frames large enough to need fragmentation across packets.
        image = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = i * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        forced = i == 3
        payloads, _ = encoder.encode(frame, force_keyframe=forced)
        frames.append(EncodedFrame(payloads, keyframe=i == 0 or forced))
    return frames


@pytest.fixture(scope="module")
def vp8_frames() -> list[EncodedFrame]:
    return encode_frames("video/VP8")


@pytest.fixture(scope="module")
def h264_frames() -> list[EncodedFrame]:
    return encode_frames("video/H264")


def test_vp8_real_keyframes_detected_on_first_packet_only(vp8_frames: list[EncodedFrame]) -> None:
    """Only the first packet of a real VP8 keyframe is a keyframe start; delta frames never are."""
    for n, frame in enumerate(vp8_frames):
        assert len(frame.payloads) > 1, "test frames should span several packets"
        flags = [vp8_is_keyframe(p) for p in frame.payloads]
        assert flags == [frame.keyframe] + [False] * (len(flags) - 1), f"frame {n}"
        assert is_keyframe("video/VP8", frame.payloads[0]) is frame.keyframe


def test_vp8_descriptor_of_real_packets_matches_aiortc(vp8_frames: list[EncodedFrame]) -> None:
    """Our descriptor parse of aiortc's packets agrees with aiortc's own parser."""
    picture_ids = []
    for frame in vp8_frames:
        for i, payload in enumerate(frame.payloads):
            d = parse_vp8_descriptor(payload)
            theirs, rest = VpxPayloadDescriptor.parse(payload)
            assert d.start_of_partition is (i == 0) is bool(theirs.partition_start)
            assert (d.partition_id, d.picture_id, d.picture_id_bits) == (0, theirs.picture_id, 15)
            assert payload[d.header_size :] == rest
        picture_ids.append(parse_vp8_descriptor(frame.payloads[0]).picture_id)
    # aiortc bumps the 15-bit PictureID once per frame.
    assert all(b == (a + 1) % 32768 for a, b in zip(picture_ids, picture_ids[1:]))


def test_vp8_keyframe_with_offset_inside_rtp_packet(vp8_frames: list[EncodedFrame]) -> None:
    """The offset argument lets callers test the payload in place inside a whole RTP packet."""
    packet = bytes(12) + vp8_frames[0].payloads[0]
    assert vp8_is_keyframe(packet, 12)
    assert vp8_is_keyframe(memoryview(packet), 12)
    assert parse_vp8_descriptor(packet, 12).header_size == 4
    assert is_keyframe("video/vp8", packet, 12)


def annexb_nal_types(data: bytes) -> list[int]:
    """NAL types in an Annex-B byte stream (4-byte start codes, as aiortc writes them)."""
    return [data[i + 4] & 0x1F for i in range(len(data) - 4) if data[i : i + 4] == b"\0\0\0\1"]


def test_h264_real_keyframes_detected(h264_frames: list[EncodedFrame]) -> None:
    """A real H.264 keyframe's packets carry SPS/IDR starts; no delta-frame packet does."""
    for n, frame in enumerate(h264_frames):
        flags = [h264_is_keyframe(p) for p in frame.payloads]
        if frame.keyframe:
            assert flags[0], f"frame {n}: first packet (SPS/PPS) should be a keyframe start"
            assert is_keyframe("video/H264", frame.payloads[0])
        else:
            assert not any(flags), f"frame {n}"


def test_h264_real_keyframe_structure(h264_frames: list[EncodedFrame]) -> None:
    """aiortc sends SPS+PPS in a STAP-A, then the IDR slice in FU-As: exactly the start fragments are keyframes."""
    payloads = h264_frames[0].payloads
    assert payloads[0][0] & 0x1F == 24
    assert h264_nal_types(payloads[0])[:2] == [7, 8]
    idr_starts = [p for p in payloads[1:] if p[0] & 0x1F == 28 and p[1] & 0x80]
    assert idr_starts and all(h264_is_keyframe(p) for p in idr_starts)
    middles = [p for p in payloads[1:] if p[0] & 0x1F == 28 and not p[1] & 0x80]
    assert middles and not any(h264_is_keyframe(p) for p in middles)


def test_h264_nal_types_match_aiortc_depacketizer(h264_frames: list[EncodedFrame]) -> None:
    """h264_nal_types agrees with the NAL units aiortc's depacketizer reconstructs."""
    for frame in h264_frames:
        for payload in frame.payloads:
            descriptor, annexb = H264PayloadDescriptor.parse(payload)
            if descriptor.first_fragment:
                assert h264_nal_types(payload) == annexb_nal_types(annexb)


# --- VP8 descriptor vectors --------------------------------------------------------


def vp8(
    *,
    s: bool = True,
    pid: int = 0,
    n: bool = False,
    picture_id: int | None = None,
    bits: int = 0,
    tl0: int | None = None,
    tid: int | None = None,
    y: bool = False,
    key_idx: int | None = None,
    size: int = 1,
) -> Vp8Descriptor:
    return Vp8Descriptor(s, pid, n, picture_id, bits, tl0, tid, y, key_idx, size)


@pytest.mark.parametrize(
    ("name", "data", "expected", "keyframe"),
    [
        ("minimal keyframe", "1000", vp8(), True),
        ("minimal delta frame", "1001", vp8(), False),
        ("continuation packet", "0000", vp8(s=False), False),
        ("partition 3", "1300", vp8(pid=3), False),
        ("non-reference", "3001", vp8(n=True), False),
        ("7-bit picture id", "90800500", vp8(picture_id=5, bits=7, size=3), True),
        ("15-bit picture id", "9080853900", vp8(picture_id=0x0539, bits=15, size=4), True),
        (
            "picture id, tl0, tid",
            "90e08539078000",
            vp8(picture_id=0x539, bits=15, tl0=7, tid=2, size=6),
            True,
        ),
        (
            "all extensions, layer sync",
            "90f07fffa301",
            vp8(picture_id=127, bits=7, tl0=255, tid=2, y=True, key_idx=3, size=5),
            False,
        ),
        ("keyidx only", "90100500", vp8(key_idx=5, size=3), True),
        ("x bit with no extensions", "900000", vp8(size=2), True),
    ],
)
def test_vp8_descriptor_table(name: str, data: str, expected: Vp8Descriptor, keyframe: bool) -> None:
    """Every RFC 7741 descriptor field is read from the right bits, and keyframes found behind it."""
    payload = bytes.fromhex(data)
    assert parse_vp8_descriptor(payload) == expected
    assert vp8_is_keyframe(payload) is keyframe


@pytest.mark.parametrize("data", ["", "90", "9080", "908085", "9040", "9020", "9010", "90e0853907"])
def test_vp8_truncated_descriptor(data: str) -> None:
    """Truncated descriptors raise MalformedPacket('bad_vp8') but vp8_is_keyframe just says False."""
    payload = bytes.fromhex(data)
    with pytest.raises(MalformedPacket) as info:
        parse_vp8_descriptor(payload)
    assert info.value.reason == "bad_vp8"
    assert vp8_is_keyframe(payload) is False


def test_vp8_descriptor_without_payload_is_not_a_keyframe() -> None:
    """A descriptor with no VP8 payload byte after it parses, but is no keyframe."""
    assert parse_vp8_descriptor(bytes.fromhex("90808539")).header_size == 4
    assert vp8_is_keyframe(bytes.fromhex("90808539")) is False


@FAST
@given(
    st.booleans(),
    st.integers(0, 7),
    st.none() | st.integers(0, 0x7FFF),
    st.none() | st.integers(0, 255),
    st.none() | st.tuples(st.integers(0, 3), st.integers(0, 1)),
    st.none() | st.integers(0, 31),
    st.binary(min_size=1, max_size=4),
)
def test_vp8_descriptor_matches_aiortc(
    start: bool,
    pid: int,
    picture_id: int | None,
    tl0: int | None,
    tid: tuple[int, int] | None,
    key_idx: int | None,
    body: bytes,
) -> None:
    """Descriptors written by aiortc's VpxPayloadDescriptor parse to the same fields."""
    raw = bytes(VpxPayloadDescriptor(int(start), pid, picture_id, tl0, tid, key_idx)) + body
    d = parse_vp8_descriptor(raw)
    assert (d.start_of_partition, d.partition_id, d.picture_id, d.tl0_pic_idx, d.key_idx) == (
        start,
        pid,
        picture_id,
        tl0,
        key_idx,
    )
    assert d.picture_id_bits == (15 if picture_id is not None else 0)
    assert (d.temporal_id, d.layer_sync) == ((tid[0], bool(tid[1])) if tid else (None, False))
    assert raw[d.header_size :] == body
    assert vp8_is_keyframe(raw) is (start and pid == 0 and not body[0] & 1)


@FAST
@given(st.binary(max_size=12), st.integers(-2, 14))
def test_vp8_never_raises_unexpectedly(data: bytes, offset: int) -> None:
    """vp8_is_keyframe never raises; parse_vp8_descriptor raises only MalformedPacket, as aiortc fails."""
    vp8_is_keyframe(data, offset)
    try:
        parse_vp8_descriptor(data)
    except MalformedPacket:
        with pytest.raises(ValueError):
            VpxPayloadDescriptor.parse(data)


# --- H.264 vectors -------------------------------------------------------------


def stap_a(*nalus: bytes) -> bytes:
    return b"\x78" + b"".join(len(n).to_bytes(2, "big") + n for n in nalus)


SPS = bytes.fromhex("6742c01e8c8d40")
PPS = bytes.fromhex("68ce3c80")
SEI = bytes.fromhex("0605ff")
IDR = bytes.fromhex("658884")
SLICE = bytes.fromhex("419a00")


@pytest.mark.parametrize(
    ("name", "payload", "keyframe", "types"),
    [
        ("single IDR", IDR, True, [5]),
        ("single SPS", SPS, True, [7]),
        ("single PPS", PPS, False, [8]),
        ("single non-IDR slice", SLICE, False, [1]),
        ("single SEI", SEI, False, [6]),
        ("STAP-A SPS+PPS", stap_a(SPS, PPS), True, [7, 8]),
        ("STAP-A SEI+IDR", stap_a(SEI, IDR), True, [6, 5]),
        ("STAP-A SEI+slice", stap_a(SEI, SLICE), False, [6, 1]),
        ("STAP-A size past end", b"\x78\x00\x09" + SEI + b"\x00\x03" + IDR, False, []),
        ("STAP-A zero size", b"\x78\x00\x00" + b"\x00\x03" + IDR, False, []),
        ("STAP-A header only", b"\x78", False, []),
        ("STAP-A truncated second size", stap_a(SEI) + b"\x00", False, [6]),
        ("FU-A IDR start", bytes.fromhex("7c85aabb"), True, [5]),
        ("FU-A IDR middle", bytes.fromhex("7c05aabb"), False, [5]),
        ("FU-A IDR end", bytes.fromhex("7c45aabb"), False, [5]),
        ("FU-A slice start", bytes.fromhex("5c81aabb"), False, [1]),
        ("FU-A SPS start", bytes.fromhex("7c87aa"), True, [7]),
        ("FU-A header only", b"\x7c", False, []),
        ("STAP-B not handled", bytes.fromhex("7900010003658884"), False, [25]),
        ("FU-B not handled", bytes.fromhex("7d850001aa"), False, [29]),
        ("empty", b"", False, []),
    ],
)
def test_h264_table(name: str, payload: bytes, keyframe: bool, types: list[int]) -> None:
    """SPS/IDR are found in single NALUs, STAP-A aggregates and FU-A start fragments only."""
    assert h264_is_keyframe(payload) is keyframe
    assert h264_nal_types(payload) == types


def test_h264_offset() -> None:
    """The offset argument skips the RTP header in a whole packet."""
    packet = bytes(12) + stap_a(SEI, IDR)
    assert h264_is_keyframe(packet, 12)
    assert h264_nal_types(packet, 12) == [6, 5]
    assert not h264_is_keyframe(packet, 40)


@FAST
@given(st.binary(max_size=40), st.integers(-2, 42))
def test_h264_never_raises(data: bytes, offset: int) -> None:
    """Garbage input of any length gives a bool / list, never an exception."""
    assert isinstance(h264_is_keyframe(data, offset), bool)
    assert isinstance(h264_nal_types(data, offset), list)


# --- dispatch -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mime", "payload", "expected"),
    [
        ("video/VP8", bytes.fromhex("1000"), True),
        ("VIDEO/vp8", bytes.fromhex("1000"), True),
        ("video/VP8", bytes.fromhex("1001"), False),
        ("video/H264", IDR, True),
        ("video/h264", SLICE, False),
        ("video/VP9", bytes.fromhex("1000"), False),
        ("audio/opus", IDR, False),
        ("audio/PCMU", bytes.fromhex("1000"), False),
        ("video/VP8", b"", False),
    ],
)
def test_is_keyframe_dispatch(mime: str, payload: bytes, expected: bool) -> None:
    """is_keyframe picks the codec by MIME type case-insensitively; unknown codecs and audio are never keyframes."""
    assert is_keyframe(mime, payload) is expected


def test_keyframe_detector_resolves_once() -> None:
    """keyframe_detector returns the codec's function for hot paths, None when there is none."""
    assert keyframe_detector("video/vp8") is vp8_is_keyframe
    assert keyframe_detector("Video/H264") is h264_is_keyframe
    assert keyframe_detector("audio/opus") is None
