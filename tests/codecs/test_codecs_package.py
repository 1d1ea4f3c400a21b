"""Package-level guarantees of jasmin_codecs: its exported names and its purity."""

from __future__ import annotations

import subprocess
import sys

import jasmin_codecs


def test_public_names_are_exported() -> None:
    """The names other packages code against are importable from the package root."""
    for name in [
        "MalformedPacket",
        "seq_add",
        "seq_diff",
        "seq_newer",
        "ts_add",
        "SeqUnwrapper",
        "is_rtcp",
        "RtpHeader",
        "parse_rtp",
        "parse_extensions",
        "build_extensions",
        "ExtensionRewriter",
        "build_rtp",
        "ReportBlock",
        "SenderReport",
        "ReceiverReport",
        "Sdes",
        "Bye",
        "Nack",
        "Pli",
        "Fir",
        "Remb",
        "UnknownRtcp",
        "RtcpPacket",
        "parse_rtcp",
        "serialize_rtcp",
        "ntp_to_compact",
        "ntp_now",
        "Vp8Descriptor",
        "parse_vp8_descriptor",
        "vp8_is_keyframe",
        "rewrite_vp8_descriptor",
        "Vp8Munger",
        "MalformedSdp",
        "parse_simulcast",
        "read_rid",
        "read_repaired_rid",
        "h264_is_keyframe",
        "h264_nal_types",
        "is_keyframe",
    ]:
        assert name in jasmin_codecs.__all__, name
        assert hasattr(jasmin_codecs, name), name
    assert all(hasattr(jasmin_codecs, name) for name in jasmin_codecs.__all__)


def test_malformed_packet_carries_reason_and_is_a_value_error() -> None:
    """MalformedPacket keeps the metric slug separate from the log detail and is catchable as ValueError."""
    assert issubclass(jasmin_codecs.MalformedPacket, ValueError)
    exc = jasmin_codecs.MalformedPacket("too_short", "3 bytes")
    assert (exc.reason, exc.detail) == ("too_short", "3 bytes")
    assert str(exc) == "too_short: 3 bytes"
    assert str(jasmin_codecs.MalformedPacket("bad_version")) == "bad_version"


def test_import_pulls_in_no_io_or_project_modules() -> None:
    """Importing jasmin_codecs loads no asyncio, sockets, media libraries or other jasmin packages."""
    code = (
        "import sys, jasmin_codecs\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'asyncio', 'socket', 'aiortc', 'av', 'numpy', 'jasmin_sfu', 'jasmin_signaling', 'jasmin_metering'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
