"""Pure, synchronous RTP/RTCP packet knowledge for jasmin-sfu.

Everything here works on ``bytes`` and returns plain values: no I/O, no
asyncio, no sockets, and nothing from the rest of jasmin, so it can be tested
and benchmarked in isolation and reused by any layer.
"""

from .errors import MalformedPacket, MalformedSdp
from .h264 import h264_is_keyframe, h264_nal_types
from .keyframe import KeyframeDetector, is_keyframe, keyframe_detector
from .rtcp import (
    Bye,
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    RtcpPacket,
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
from .rtp import (
    ExtensionRewriter,
    RtpHeader,
    RtpSplit,
    build_extensions,
    build_rtp,
    extension_section,
    is_rtcp,
    parse_extensions,
    parse_rtp,
    split_rtp,
)
from .seq import SeqUnwrapper, seq_add, seq_diff, seq_newer, seq_unwrap, ts_add, ts_diff, ts_newer
from .simulcast import (
    REPAIRED_RID_URI,
    RID_URI,
    RidDescription,
    SimulcastLayer,
    SimulcastSection,
    parse_simulcast,
    read_repaired_rid,
    read_rid,
)
from .vp8 import (
    Vp8Descriptor,
    Vp8Munged,
    Vp8Munger,
    parse_vp8_descriptor,
    rewrite_vp8_descriptor,
    vp8_data_offset,
    vp8_is_keyframe,
    vp8_keyframe_size,
    vp8_temporal_id,
)
from .vp8_temporal import Vp8TemporalFilter

__all__ = [
    "MalformedPacket",
    "MalformedSdp",
    # seq
    "SeqUnwrapper",
    "seq_add",
    "seq_diff",
    "seq_newer",
    "seq_unwrap",
    "ts_add",
    "ts_diff",
    "ts_newer",
    # rtp
    "ExtensionRewriter",
    "RtpHeader",
    "build_extensions",
    "build_rtp",
    "extension_section",
    "is_rtcp",
    "parse_extensions",
    "parse_rtp",
    "RtpSplit",
    "split_rtp",
    # rtcp
    "Bye",
    "Fir",
    "Nack",
    "Pli",
    "ReceiverReport",
    "Remb",
    "ReportBlock",
    "RtcpPacket",
    "Sdes",
    "SenderReport",
    "UnknownRtcp",
    "nack_pairs",
    "ntp_now",
    "ntp_to_compact",
    "ntp_to_time",
    "parse_rtcp",
    "serialize_rtcp",
    # keyframes
    "KeyframeDetector",
    "Vp8Descriptor",
    "h264_is_keyframe",
    "h264_nal_types",
    "is_keyframe",
    "keyframe_detector",
    "parse_vp8_descriptor",
    "vp8_is_keyframe",
    # VP8 layer switching
    "Vp8Munged",
    "Vp8Munger",
    "Vp8TemporalFilter",
    "rewrite_vp8_descriptor",
    "vp8_data_offset",
    "vp8_keyframe_size",
    "vp8_temporal_id",
    # simulcast
    "REPAIRED_RID_URI",
    "RID_URI",
    "RidDescription",
    "SimulcastLayer",
    "SimulcastSection",
    "parse_simulcast",
    "read_repaired_rid",
    "read_rid",
]
