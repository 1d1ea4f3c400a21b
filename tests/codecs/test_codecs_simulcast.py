"""a=simulcast / a=rid validation of a publisher's m-section, and the RID header-extension readers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jasmin_codecs import MalformedPacket, MalformedSdp
from jasmin_codecs.rtp import build_extensions, build_rtp, extension_section, parse_rtp
from jasmin_codecs.simulcast import (
    MAX_RID_LENGTH,
    RidDescription,
    SimulcastSection,
    is_valid_rid,
    parse_simulcast,
    read_repaired_rid,
    read_rid,
)

SDP_DIR = Path(__file__).parent / "sdp"

# The m=video section of a Firefox simulcast offer, written the way Firefox serializes it (no
# Firefox on this machine to capture one): attributes in Firefox's order (extmap, fmtp, ice, mid,
# msid, rid, rtcp-fb, rtcp-mux, rtpmap, setup, simulcast, ssrc), a=simulcast after the a=rid lines,
# and a=ssrc lines for every layer and its RTX, which Chromium no longer writes for simulcast.
FIREFOX_VIDEO = """\
m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125 126 127 97 98 123 122 119
c=IN IP4 0.0.0.0
a=sendonly
a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:4 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:5 urn:ietf:params:rtp-hdrext:toffset
a=extmap:6/recvonly http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
a=extmap:7 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
a=fmtp:126 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1
a=fmtp:97 profile-level-id=42e01f;level-asymmetry-allowed=1
a=fmtp:120 max-fs=12288;max-fr=60
a=fmtp:124 apt=120
a=fmtp:121 max-fs=12288;max-fr=60
a=fmtp:125 apt=121
a=fmtp:127 apt=126
a=fmtp:98 apt=97
a=fmtp:119 apt=122
a=ice-pwd:6a0c8dfc05d0cbc2f4d6ab9b2bd7bf12
a=ice-ufrag:8e3a9a7d
a=mid:1
a=msid:{5a1c3e4e-3f5a-4b59-9d2c-0f0b7c7d8e11} {2f0f3a6c-9b2e-4d8c-8f3e-6b1d0c5a4e22}
a=rid:h send
a=rid:m send
a=rid:l send
a=rtcp-fb:120 nack
a=rtcp-fb:120 nack pli
a=rtcp-fb:120 ccm fir
a=rtcp-fb:120 goog-remb
a=rtcp-fb:120 transport-cc
a=rtcp-fb:126 nack
a=rtcp-fb:126 nack pli
a=rtcp-fb:126 ccm fir
a=rtcp-fb:126 goog-remb
a=rtcp-fb:126 transport-cc
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:120 VP8/90000
a=rtpmap:124 rtx/90000
a=rtpmap:121 VP9/90000
a=rtpmap:125 rtx/90000
a=rtpmap:126 H264/90000
a=rtpmap:127 rtx/90000
a=rtpmap:97 H264/90000
a=rtpmap:98 rtx/90000
a=rtpmap:123 ulpfec/90000
a=rtpmap:122 red/90000
a=rtpmap:119 rtx/90000
a=setup:actpass
a=simulcast:send h;m;l
a=ssrc:2390348474 cname:{a3c5b7d9-1e2f-4a6b-8c0d-9e8f7a6b5c4d}
a=ssrc:3519863720 cname:{a3c5b7d9-1e2f-4a6b-8c0d-9e8f7a6b5c4d}
a=ssrc:1166254340 cname:{a3c5b7d9-1e2f-4a6b-8c0d-9e8f7a6b5c4d}
a=ssrc:629810742 cname:{a3c5b7d9-1e2f-4a6b-8c0d-9e8f7a6b5c4d}
a=ssrc:2808520129 cname:{a3c5b7d9-1e2f-4a6b-8c0d-9e8f7a6b5c4d}
a=ssrc:4261587542 cname:{a3c5b7d9-1e2f-4a6b-8c0d-9e8f7a6b5c4d}
a=ssrc-group:FID 2390348474 629810742
a=ssrc-group:FID 3519863720 2808520129
a=ssrc-group:FID 1166254340 4261587542
"""

# A short section the bad cases below are variations of.
BASE = """\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102
a=mid:0
a=rtpmap:96 VP8/90000
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:102 H264/90000
"""


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_real_chromium_offer_is_three_send_layers_in_offer_order() -> None:
    """A real Chromium 156 simulcast offer (captured headless, sendEncodings h/m/l, no a=ssrc) is accepted.

    The layers come back in the a=simulcast order, none paused, with no restrictions.
    """
    text = (SDP_DIR / "chromium_156_simulcast_video.sdp").read_text()
    assert "a=ssrc:" not in text
    sc = parse_simulcast(text.splitlines(keepends=True))  # CRLF line ends as on the wire
    assert sc is not None
    assert sc.rids == ("h", "m", "l")
    assert [layer.paused for layer in sc.layers] == [False, False, False]
    assert all(layer.alternatives[0].rid == RidDescription(layer.rid, "send") for layer in sc.layers)


def test_firefox_ordering_is_accepted() -> None:
    """Firefox writes a=rid before a=rtcp-fb/a=rtpmap and a=simulcast after a=setup, with a=ssrc lines: same result."""
    sc = parse_simulcast(lines(FIREFOX_VIDEO))
    assert sc is not None
    assert sc.rids == ("h", "m", "l")


def test_a_section_without_simulcast_is_not_simulcast() -> None:
    """No a=simulcast gives None (a single stream), even with an a=rid line (RFC 8851 allows rid alone)."""
    assert parse_simulcast(lines(BASE)) is None
    assert parse_simulcast(lines(BASE + "a=rid:h send max-width=640\n")) is None


def test_paused_alternatives_and_restrictions_are_parsed() -> None:
    """'~' marks a paused RID, ',' an alternative; pt= and max-* restrictions are read as numbers."""
    sc = parse_simulcast(
        lines(
            BASE
            + "a=rid:f send pt=96,102;max-width=1280;max-height=720;max-fps=29.97;max-br=2500000\n"
            + "a=rid:h send pt=96;max-width=640;depend=f;x-unknown=1\n"
            + "a=rid:q send max-fs=300\n"
            + "a=simulcast:send f,h;~q\n"
        )
    )
    assert sc == SimulcastSection(sc.layers) and sc is not None
    assert [layer.rid for layer in sc.layers] == ["f", "q"]
    assert [layer.paused for layer in sc.layers] == [False, True]
    f, h = (a.rid for a in sc.layers[0].alternatives)
    assert f == RidDescription("f", "send", (96, 102), 1280, 720, 29.97, None, 2500000)
    assert h == RidDescription("h", "send", (96,), 640)
    assert sc.layers[1].alternatives[0].rid.max_fs == 300
    assert sc.rids == ("f", "h", "q")


# (name, extra lines appended to BASE, words the error message must contain)
BAD = [
    (
        "more than 3 layers",
        "a=rid:a send\na=rid:b send\na=rid:c send\na=rid:d send\na=simulcast:send a;b;c;d",
        "4 rids",
    ),
    (
        "more than 3 rids as alternatives",
        "a=rid:a send\na=rid:b send\na=rid:c send\na=rid:d send\na=simulcast:send a,b;c,d",
        "4 rids",
    ),
    ("duplicate rid in a=simulcast", "a=rid:a send\na=rid:b send\na=simulcast:send a;b;a", "'a' named twice"),
    ("duplicate a=rid line", "a=rid:a send\na=rid:a send max-width=320\na=simulcast:send a", "a=rid:a given twice"),
    ("rid too long", "a=rid:abcdefghijklmnopq send\na=simulcast:send abcdefghijklmnopq", "not 1-16"),
    ("rid with a dot", "a=rid:h.1 send\na=simulcast:send h.1", "'h.1'"),
    ("empty rid in a=simulcast", "a=rid:h send\na=simulcast:send h;;l", "''"),
    ("rid with recv direction", "a=rid:h send\na=rid:m recv\na=simulcast:send h;m", "'m' is a=rid recv"),
    ("rid without a=rid line", "a=rid:h send\na=simulcast:send h;m", "'m' has no a=rid"),
    ("unknown pt restriction", "a=rid:h send pt=99\na=simulcast:send h", "pt '99' is not a payload type"),
    ("pt not first", "a=rid:h send max-width=640;pt=96\na=simulcast:send h", "pt= must come first"),
    ("bad direction", "a=rid:h sendrecv\na=simulcast:send h", "'sendrecv'"),
    ("a=rid without direction", "a=rid:h\na=simulcast:send h", "expected 'a=rid"),
    ("non-numeric max-width", "a=rid:h send max-width=wide\na=simulcast:send h", "max-width 'wide'"),
    ("zero max-br", "a=rid:h send max-br=0\na=simulcast:send h", "max-br '0'"),
    ("restriction twice", "a=rid:h send max-width=1;max-width=2\na=simulcast:send h", "max-width given twice"),
    ("recv simulcast", "a=rid:h recv\na=simulcast:recv h", "recv is not supported"),
    ("send and recv simulcast", "a=rid:h send\na=rid:r recv\na=simulcast:send h recv r", "recv is not supported"),
    (
        "long garbage is cut in the message",
        "a=rid:" + "x" * 5000 + " send\na=simulcast:send h",
        "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'",
    ),
    ("no direction word", "a=rid:h send\na=simulcast:h;m", "expected 'a=simulcast:send"),
    ("legacy rid= form", "a=rid:h send\na=simulcast: send rid=h", "expected 'a=simulcast:send"),
    ("two a=simulcast lines", "a=rid:h send\na=simulcast:send h\na=simulcast:send h", "more than once"),
]


@pytest.mark.parametrize(("name", "extra", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_simulcast_sections_are_refused_with_a_message_naming_the_problem(
    name: str, extra: str, words: str
) -> None:
    """Each malformed or over-limit simulcast section raises MalformedSdp (-> bad_sdp) whose message names the problem."""
    with pytest.raises(MalformedSdp) as info:
        parse_simulcast(lines(BASE + extra + "\n"))
    assert words in str(info.value)


def test_a_fourth_chromium_layer_is_refused() -> None:
    """The real Chromium offer with a fourth a=rid/a=simulcast entry is over the 3-layer limit."""
    text = (SDP_DIR / "chromium_156_simulcast_video.sdp").read_text()
    text = text.replace("a=simulcast:send h;m;l", "a=rid:x send\r\na=simulcast:send h;m;l;x")
    with pytest.raises(MalformedSdp, match="at most 3 layers"):
        parse_simulcast(text.splitlines())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_is_valid_rid_is_the_rfc_8851_grammar_with_the_length_limit(rid: str) -> None:
    """A rid-id is 1-16 ASCII letters, digits, '-' or '_' (no Unicode digits or letters slip through)."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
    assert is_valid_rid(rid) == (1 <= len(rid) <= MAX_RID_LENGTH and set(rid) <= allowed)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(codec="ascii", exclude_characters="\r\n"), max_size=40), max_size=8))
def test_arbitrary_attribute_values_raise_only_malformed_sdp(values: list[str]) -> None:
    """Garbage after a=rid:/a=simulcast: gives MalformedSdp with a short message or a result, never another exception."""
    extra = [f"a=rid:{v}" for v in values[:-1]] + ([f"a=simulcast:{values[-1]}"] if values else [])
    try:
        parse_simulcast(lines(BASE) + extra)
    except MalformedSdp as exc:
        assert len(str(exc)) < 200  # the offer is quoted in pieces of at most 40 characters


# --- RID header extensions ---------------------------------------------------------


def packet(elements: list[tuple[int, bytes]]) -> bytes:
    profile, body = build_extensions(elements)
    return build_rtp(
        marker=False,
        payload_type=96,
        sequence=1,
        timestamp=2,
        ssrc=3,
        payload=b"\x10\x00",
        ext_section=extension_section(profile, body) if elements else b"",
    )


def test_rid_and_repaired_rid_are_read_from_one_and_two_byte_blocks() -> None:
    """The RID and repaired RID are found by their negotiated ids among other extensions, in both RFC 8285 forms."""
    for mid_value in (b"0", b"x" * 20):  # a 20-byte value forces the two-byte form
        h = parse_rtp(packet([(9, mid_value), (10, b"h"), (11, b"m-_2")]))
        assert read_rid(h.ext_profile, h.ext_data, 10) == "h"
        assert read_repaired_rid(h.ext_profile, h.ext_data, 11) == "m-_2"
        assert read_rid(h.ext_profile, h.ext_data, 12) is None
    h = parse_rtp(packet([]))
    assert h.ext_profile is None
    assert read_rid(h.ext_profile, h.ext_data, 10) is None


def test_a_rid_value_that_is_not_a_rid_id_is_a_malformed_packet() -> None:
    """A RID extension holding bytes outside the rid-id grammar is MalformedPacket('bad_rid'): dropped and counted."""
    for value in (b"h\x00", b"\xff", b"a b", b"x" * 17):
        h = parse_rtp(packet([(10, value)]))
        with pytest.raises(MalformedPacket) as info:
            read_rid(h.ext_profile, h.ext_data, 10)
        assert info.value.reason == "bad_rid"
