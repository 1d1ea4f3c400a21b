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
