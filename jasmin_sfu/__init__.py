"""jasmin-sfu: the real-time media node of a live-cam site."""

__version__ = "0.1.0"
