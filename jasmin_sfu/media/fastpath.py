"""The C fan-out (``_fastpath.c``), loaded from its own module.

:data:`fastpath_ext` is the compiled extension, or None when it cannot be
used; :data:`unavailable_reason` then says why (not built, or a stale build
that lacks a name this code calls), and the worker logs it at start. With
None every copy goes through the Python path, which forwards the same bytes.

The extension's send targets need private pointers (libsrtp's
``srtp_protect``, a pylibsrtp Session's ``srtp_t``, the aioice pair's
socket); those are resolved in ``aiortc_adapter.py``, the one module that
touches private names. This module touches none.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

__all__ = ["REQUIRED_LANE_FIELDS", "REQUIRED_NAMES", "fastpath_ext", "load", "unavailable_reason"]

EXTENSION = "jasmin_sfu.media._fastpath"
#: What producer.py, consumer.py and aiortc_adapter.py call (see _fastpath.pyi).
REQUIRED_NAMES = ("Target", "Lane", "fanout", "rewrite", "send", "MAX_PACKET", "MAX_PROFILES")
#: Lane fields consumer.py sets (vp8, pid_off, tl0_off: VP8 simulcast ids, issue 12); a build
#: without them would raise on the hot path, so it is refused as stale.
REQUIRED_LANE_FIELDS = ("ssrc", "payload_type", "seq_off", "ts_off", "profile", "target", "vp8", "pid_off", "tl0_off")


def load(name: str = EXTENSION) -> tuple[ModuleType | None, str | None]:
    """Import the extension: ``(module, None)``, or ``(None, reason)`` when it cannot be used."""
    try:
        ext = importlib.import_module(name)
    except ImportError as exc:
        return None, f"not built ({exc}); run: pip install -e . (or python setup.py build_ext --inplace)"
    missing = [n for n in REQUIRED_NAMES if not hasattr(ext, n)]
    lane = getattr(ext, "Lane", None)
    if lane is not None:
        missing += [f"Lane.{f}" for f in REQUIRED_LANE_FIELDS if not hasattr(lane, f)]
    if missing:
        return None, f"stale build of {name}: missing {', '.join(missing)}; rebuild it"
    return ext, None


_loaded, unavailable_reason = load()
if TYPE_CHECKING:  # typed by _fastpath.pyi; None at run time when unavailable_reason says why
    from . import _fastpath as fastpath_ext
else:
    fastpath_ext = _loaded
