"""H.264 RTP payload (RFC 6184) inspection: keyframe detection and NAL unit types."""

from __future__ import annotations

__all__ = ["h264_is_keyframe", "h264_nal_types"]

_NAL_IDR = 5
_NAL_SPS = 7
_STAP_A = 24
_FU_A = 28


def h264_is_keyframe(payload: bytes | bytearray | memoryview, offset: int = 0) -> bool:
    """Return True when this RTP payload carries an SPS or the start of an IDR slice.

    Looks at single NAL unit packets (types 1-23), every NAL unit aggregated
    in a STAP-A (24), and the first fragment (S bit) of an FU-A (28).  An SPS
    counts because encoders send it (in its own packet or a STAP-A) right
    before each IDR, so it is the earliest packet from which a decoder can
    start.  Never raises: short or garbage input gives False.
    """
    n = len(payload)
    if offset < 0 or offset >= n:
        return False
    nal_type = payload[offset] & 0x1F
    if nal_type == _NAL_IDR or nal_type == _NAL_SPS:
        return True
    if nal_type == _STAP_A:
        pos = offset + 1
        while pos + 2 < n:
            size = (payload[pos] << 8) | payload[pos + 1]
            pos += 2
            if size == 0 or pos + size > n:
                # Broken aggregation: trust nothing after this point.
                return False
            inner = payload[pos] & 0x1F
            if inner == _NAL_IDR or inner == _NAL_SPS:
                return True
            pos += size
        return False
    if nal_type == _FU_A:
        if offset + 1 >= n:
            return False
        fu = payload[offset + 1]
        return bool(fu & 0x80) and ((fu & 0x1F) == _NAL_IDR or (fu & 0x1F) == _NAL_SPS)
    return False


def h264_nal_types(payload: bytes | bytearray | memoryview, offset: int = 0) -> list[int]:
    """List the NAL unit types in this RTP payload, for tests and debugging.

    A single NAL unit gives its own type; a STAP-A gives the types it
    aggregates (stopping at the first malformed size); an FU-A gives the type
    of the fragmented NAL unit (whether or not this is its first fragment).
    Other packetization types (STAP-B, MTAP, FU-B) are reported as themselves.
    Empty input gives [].
    """
    n = len(payload)
    if offset < 0 or offset >= n:
        return []
    nal_type = payload[offset] & 0x1F
    if nal_type == _STAP_A:
        types: list[int] = []
        pos = offset + 1
        while pos + 2 < n:
            size = (payload[pos] << 8) | payload[pos + 1]
            pos += 2
            if size == 0 or pos + size > n:
                break
            types.append(payload[pos] & 0x1F)
            pos += size
        return types
    if nal_type == _FU_A:
        if offset + 1 >= n:
            return []
        return [payload[offset + 1] & 0x1F]
    return [nal_type]
