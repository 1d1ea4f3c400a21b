"""jasmin-sfu: the real-time media node of a live-cam site."""

from importlib.metadata import PackageNotFoundError, version

# The one version number lives in setup.cfg (``[metadata] version``); the installed
# package's metadata carries it here, to ``jasmin-sfu --version``, /healthz, the
# jasmin_build_info gauge and the OpenAPI document's info.version.
try:
    __version__ = version("jasmin-sfu")
except PackageNotFoundError:  # a source tree that was never installed (pip install -e .)
    __version__ = "0+unknown"
