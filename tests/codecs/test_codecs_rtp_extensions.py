"""RFC 8285 header extensions: parsing, building and per-viewer rewriting."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtpPacket, pack_header_extensions, unpack_header_extensions
from hypothesis import given, settings
from hypothesis import strategies as st

from jasmin_codecs import MalformedPacket
from jasmin_codecs.rtp import (
    ExtensionRewriter,
    build_extensions,
    build_rtp,
    extension_section,
    parse_extensions,
    parse_rtp,
)

# Enough examples to find framing bugs while keeping the suite at a few seconds;
# no deadline so a slow CI machine cannot turn a pass into a flake.
FAST = settings(max_examples=60, deadline=None)


@pytest.mark.parametrize(
    ("name", "profile", "body", "expected"),
    [
        ("one-byte basic", 0xBEDE, bytes.fromhex("10aa21bbcc000000"), [(1, b"\xaa"), (2, b"\xbb\xcc")]),
        ("one-byte padding between", 0xBEDE, bytes.fromhex("10aa000021bbcc00"), [(1, b"\xaa"), (2, b"\xbb\xcc")]),
        ("one-byte 16-byte value", 0xBEDE, bytes([0xEF]) + bytes(range(16)) + bytes(3), [(14, bytes(range(16)))]),
        ("one-byte id 15 stops", 0xBEDE, bytes.fromhex("10aaf321bbcc0000"), [(1, b"\xaa")]),
        ("one-byte id 0 with length stops", 0xBEDE, bytes.fromhex("10aa0521bbcc0000"), [(1, b"\xaa")]),
        ("one-byte all padding", 0xBEDE, bytes(4), []),
        ("two-byte basic", 0x1000, bytes.fromhex("0101aa1f02bbcc00"), [(1, b"\xaa"), (31, b"\xbb\xcc")]),
        ("two-byte zero length", 0x1000, bytes.fromhex("05000601dd000000"), [(5, b""), (6, b"\xdd")]),
        ("two-byte appbits", 0x100F, bytes.fromhex("ff01ee00"), [(255, b"\xee")]),
        ("unknown profile", 0x0001, bytes.fromhex("10aa0000"), []),
        ("empty body", 0xBEDE, b"", []),
    ],
)
def test_parse_extensions_table(name: str, profile: int, body: bytes, expected: list[tuple[int, bytes]]) -> None:
    """Both RFC 8285 forms decode, skipping padding and honouring the id-15 stop."""
    assert parse_extensions(profile, body) == expected


@pytest.mark.parametrize(
    ("profile", "body"),
    [
        (0xBEDE, bytes.fromhex("13aabb")),  # length 4, only 2 value bytes
        (0xBEDE, bytes.fromhex("10aa2f")),  # second element has no value at all
        (0x1000, bytes.fromhex("0105aabb")),  # two-byte value truncated
        (0x1000, bytes.fromhex("0101aa07")),  # id byte without its length byte
    ],
)
def test_parse_extensions_rejects_elements_past_the_end(profile: int, body: bytes) -> None:
    """An element running past the block raises MalformedPacket('bad_extension')."""
    with pytest.raises(MalformedPacket) as info:
        parse_extensions(profile, body)
    assert info.value.reason == "bad_extension"


@pytest.mark.parametrize(
    ("elements", "expected"),
    [
        ([], (0, b"")),
        ([(1, b"\xaa")], (0xBEDE, bytes.fromhex("10aa0000"))),
        ([(1, b"\xaa"), (2, b"\xbb\xcc")], (0xBEDE, bytes.fromhex("10aa21bbcc000000"))),
        ([(14, b"abcd")], (0xBEDE, bytes.fromhex("e361626364000000"))),
        ([(15, b"\xaa")], (0x1000, bytes.fromhex("0f01aa00"))),  # id 15 forces two-byte
        ([(1, b"")], (0x1000, bytes.fromhex("01000000"))),  # empty value forces two-byte
        ([(1, bytes(17))], (0x1000, bytes.fromhex("0111") + bytes(17) + bytes(1))),  # 17 bytes
    ],
)
def test_build_extensions_picks_form_and_pads(elements: list[tuple[int, bytes]], expected: tuple[int, bytes]) -> None:
    """One-byte form when everything fits, two-byte otherwise; body padded to 4 bytes."""
    assert build_extensions(elements) == expected


@pytest.mark.parametrize("elements", [[(256, b"x")], [(0, b"x")], [(20, bytes(256))]])
def test_build_extensions_rejects_unencodable(elements: list[tuple[int, bytes]]) -> None:
    """Ids outside 1..255 or values over 255 bytes fit no form and raise ValueError."""
    with pytest.raises(ValueError):
        build_extensions(elements)


elements_strategy = st.lists(st.tuples(st.integers(1, 255), st.binary(min_size=0, max_size=20)), max_size=8) | st.lists(
    st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16)), max_size=8
)


@FAST
@given(elements_strategy)
def test_build_extensions_matches_aiortc(elements: list[tuple[int, bytes]]) -> None:
    """Our encoder is byte-identical to aiortc's pack_header_extensions, and both decoders agree."""
    ours = build_extensions(elements)
    assert ours == pack_header_extensions(elements)
    profile, body = ours
    if elements:
        assert parse_extensions(profile, body) == elements
        assert unpack_header_extensions(profile, body) == elements


@FAST
@given(st.integers(0, 0xFFFF), st.binary(max_size=40))
def test_parse_extensions_agrees_with_aiortc_on_garbage(profile: int, body: bytes) -> None:
    """On arbitrary blocks we accept what aiortc accepts, except where RFC 8285 says stop (id 15)."""
    try:
        ours: list[tuple[int, bytes]] | None = parse_extensions(profile, body)
    except MalformedPacket:
        ours = None
    try:
        theirs: list[tuple[int, bytes]] | None = unpack_header_extensions(profile, body)
    except ValueError:
        theirs = None
    # aiortc neither honours the id-15 / id-0 stop nor knows the 0x1001-0x100F appbits.
    stops = profile == 0xBEDE and any(b >> 4 in (0, 15) and b for b in body)
    if profile == 0x1000 or (profile == 0xBEDE and not stops):
        assert ours == theirs
    if ours is not None and theirs is not None and profile == 0xBEDE:
        assert theirs[: len(ours)] == ours


# --- ExtensionRewriter ------------------------------------------------------


def section(elements: list[tuple[int, bytes]]) -> tuple[int, bytes]:
    return build_extensions(elements)


def decode(section_bytes: bytes) -> list[tuple[int, bytes]]:
    """Parse a complete extension section (header + body)."""
    profile = int.from_bytes(section_bytes[0:2], "big")
    words = int.from_bytes(section_bytes[2:4], "big")
    assert len(section_bytes) == 4 + 4 * words
    return parse_extensions(profile, section_bytes[4:])


INCOMING = [(1, b"m0"), (3, b"\x01\x02\x03"), (5, b"\x10\x20")]


@pytest.mark.parametrize(
    ("name", "id_map", "replace", "expected"),
    [
        ("renumber", {1: 2, 3: 4, 5: 6}, None, [(2, b"m0"), (4, b"\x01\x02\x03"), (6, b"\x10\x20")]),
        ("drop unmapped", {3: 3}, None, [(3, b"\x01\x02\x03")]),
        ("replace mid value", {1: 9, 3: 3}, {9: b"video1"}, [(9, b"video1"), (3, b"\x01\x02\x03")]),
        ("append missing replacement", {3: 3}, {9: b"v"}, [(3, b"\x01\x02\x03"), (9, b"v")]),
        ("renumber above 14 switches form", {3: 20}, None, [(20, b"\x01\x02\x03")]),
        ("swap ids", {1: 3, 3: 1}, None, [(3, b"m0"), (1, b"\x01\x02\x03")]),
    ],
)
def test_rewriter_table(
    name: str, id_map: dict[int, int], replace: dict[int, bytes] | None, expected: list[tuple[int, bytes]]
) -> None:
    """ExtensionRewriter renumbers, drops, replaces and appends per the viewer's negotiated ids."""
    profile, body = section(INCOMING)
    out = ExtensionRewriter(id_map, replace).rewrite(profile, body)
    assert decode(out) == expected
    if any(i > 14 for i, _ in expected):
        assert out[:2] == b"\x10\x00"
    else:
        assert out[:2] == b"\xbe\xde"


def test_rewriter_returns_empty_when_everything_is_dropped() -> None:
    """No surviving element means no extension section at all (so no X bit)."""
    profile, body = section(INCOMING)
    assert ExtensionRewriter({7: 7}).rewrite(profile, body) == b""
    assert ExtensionRewriter({}).rewrite(profile, body) == b""
    assert ExtensionRewriter({1: 1}).rewrite(None, b"") == b""
    assert ExtensionRewriter({1: 1}).rewrite(0xBEDE, bytes(4)) == b""


def test_rewriter_adds_replacement_to_packets_without_extensions() -> None:
    """The viewer's MID is written even when the incoming packet carried no extension."""
    assert decode(ExtensionRewriter({1: 1}, {4: b"0"}).rewrite(None, b"")) == [(4, b"0")]


def test_rewriter_identity_returns_original_section_bytes() -> None:
    """Identity mapping with no replacement hands back the incoming section unchanged."""
    # Deliberately non-canonical: padding between elements and an odd appbits profile.
    body = bytes.fromhex("0102aabb0000030311223300")
    rewriter = ExtensionRewriter({1: 1, 3: 3, 7: 7})
    assert rewriter.rewrite(0x1003, body) == extension_section(0x1003, body)
    one = bytes.fromhex("10aa000021bbcc00")
    assert ExtensionRewriter({1: 1, 2: 2}).rewrite(0xBEDE, one) == extension_section(0xBEDE, one)


def test_rewriter_identity_still_drops_unmapped_ids() -> None:
    """The fast path only applies when every present id maps to itself."""
    profile, body = section(INCOMING)
    assert decode(ExtensionRewriter({1: 1, 3: 3}).rewrite(profile, body)) == [(1, b"m0"), (3, b"\x01\x02\x03")]


def test_rewriter_with_replacement_never_takes_identity_shortcut() -> None:
    """A replacement value wins even when the ids are all identity-mapped."""
    profile, body = section(INCOMING)
    out = ExtensionRewriter({1: 1, 3: 3, 5: 5}, {1: b"new"}).rewrite(profile, body)
    assert decode(out) == [(1, b"new"), (3, b"\x01\x02\x03"), (5, b"\x10\x20")]


def test_rewriter_propagates_malformed_extension() -> None:
    """A broken incoming block raises MalformedPacket('bad_extension') for the caller to count."""
    with pytest.raises(MalformedPacket) as info:
        ExtensionRewriter({1: 1}).rewrite(0xBEDE, bytes.fromhex("13aabb00"))
    assert info.value.reason == "bad_extension"


@pytest.mark.parametrize(
    ("id_map", "replace"),
    [({1: 2, 3: 2}, None), ({0: 1}, None), ({1: 256}, None), ({1: 1}, {0: b"x"}), ({1: 1}, {2: bytes(256)})],
)
def test_rewriter_rejects_bad_maps(id_map: dict[int, int], replace: dict[int, bytes] | None) -> None:
    """Ambiguous (two ids onto one) or out-of-range maps are refused up front."""
    with pytest.raises(ValueError):
        ExtensionRewriter(id_map, replace)


def rewrite_model(
    elements: list[tuple[int, bytes]], id_map: dict[int, int], replace: dict[int, bytes]
) -> list[tuple[int, bytes]]:
    """Naive reference: map ids, drop unmapped, replace (once per id), append missing replacements."""
    out: list[tuple[int, bytes]] = []
    used: set[int] = set()
    for in_id, value in elements:
        if in_id not in id_map:
            continue
        out_id = id_map[in_id]
        if out_id in replace:
            if out_id not in used:
                used.add(out_id)
                out.append((out_id, replace[out_id]))
        else:
            out.append((out_id, value))
    out.extend((o, v) for o, v in replace.items() if o not in used)
    return out


@FAST
@given(
    st.lists(st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16)), max_size=6),
    st.permutations(list(range(1, 31))),
    st.integers(0, 14),
    st.dictionaries(st.integers(1, 20), st.binary(min_size=0, max_size=18), max_size=2),
    st.booleans(),
)
def test_rewriter_matches_reference_model(
    elements: list[tuple[int, bytes]],
    targets: list[int],
    n_mapped: int,
    replace: dict[int, bytes],
    two_byte_input: bool,
) -> None:
    """For random maps, replacements and either input form, output equals a naive decode-map-encode model.

    This also pins the one-pass one-byte fast path to the general path: both
    forms of the same incoming elements must give the same elements out.
    """
    id_map = {in_id: targets[in_id] for in_id in range(1, n_mapped + 1)}
    if two_byte_input and elements:
        profile = 0x1000
        body = b"".join(bytes((i, len(v))) + v for i, v in elements)
        body += bytes(-len(body) & 3)
    else:
        profile, body = build_extensions(elements)
    out = ExtensionRewriter(id_map, replace).rewrite(profile if elements else None, body)
    expected = rewrite_model(elements, id_map, replace)
    assert (decode(out) if out else []) == expected
    if expected and not (not replace and all(id_map.get(i) == i for i, _ in elements)):
        one_byte = all(i <= 14 and 1 <= len(v) <= 16 for i, v in expected)
        assert out[:2] == (b"\xbe\xde" if one_byte else b"\x10\x00")


@FAST
@given(st.lists(st.tuples(st.integers(1, 14), st.binary(min_size=1, max_size=16)), min_size=1, max_size=6))
def test_rewriter_identity_is_byte_exact_for_any_block(elements: list[tuple[int, bytes]]) -> None:
    """An identity rewriter returns any incoming block unchanged, in either form."""
    rewriter = ExtensionRewriter({i: i for i in range(1, 15)})
    profile, body = build_extensions(elements)
    assert rewriter.rewrite(profile, body) == extension_section(profile, body)
    two = b"".join(bytes((i, len(v))) + v for i, v in elements)
    two += bytes(-len(two) & 3)
    assert rewriter.rewrite(0x1000, two) == extension_section(0x1000, two)


def test_rewritten_packet_is_readable_by_aiortc() -> None:
    """A packet rebuilt with a rewritten section parses in aiortc with our extension values."""
    incoming = build_rtp(
        marker=True,
        payload_type=96,
        sequence=7,
        timestamp=9,
        ssrc=11,
        payload=b"payload",
        ext_section=extension_section(*section(INCOMING)),
    )
    h = parse_rtp(incoming)
    ext = ExtensionRewriter({1: 4, 3: 2}, {4: b"viewer-mid"}).rewrite(h.ext_profile, h.ext_data)
    out = build_rtp(
        marker=h.marker,
        payload_type=h.payload_type,
        sequence=h.sequence,
        timestamp=h.timestamp,
        ssrc=h.ssrc,
        payload=incoming[h.payload_offset : h.payload_end],
        ext_section=ext,
    )
    oracle = RtpPacket.parse(out)
    assert oracle.payload == b"payload"
    h2 = parse_rtp(out)
    assert h2.ext_profile is not None
    assert unpack_header_extensions(h2.ext_profile, h2.ext_data) == [(4, b"viewer-mid"), (2, b"\x01\x02\x03")]
