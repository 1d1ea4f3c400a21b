"""Errors of the media core. Mapped to signaling error codes only at the edge."""


class MediaError(Exception):
    """Base class of media-core errors."""


class InvalidStateError(MediaError):
    """An object was used after it was closed."""


class AdapterError(MediaError):
    """An aiortc private hook this project relies on has moved."""


class SdpError(MediaError):
    """An SDP could not be parsed or offers nothing we can forward."""


class UnsupportedCodecError(SdpError):
    """No codec in common with what the router forwards."""


class NotFoundError(MediaError):
    """No producer, consumer or transport with that id."""


class NoMediaPortError(MediaError):
    """ICE gathered no host candidate: every UDP port of media.rtc_min_port..rtc_max_port is taken.

    The node is full for media, not the client wrong: mapped to ``overloaded`` (reason
    ``media_ports``) on the websocket and 503 on WHIP/WHEP.
    """
