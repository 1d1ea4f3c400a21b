"""A stand-in for PyAV, so the daemon never loads FFmpeg (issue 16: memory).

aiortc imports PyAV (``av``) at import time for its codecs and media tracks:
``import aiortc`` maps FFmpeg's libraries and costs ~25 MB of RSS in every
worker (measured: 24.5 MB of a 95 MB base, ``docs/media.md``, "Memory").
The node forwards RTP and never decodes or encodes (``/metrics``:
``jasmin_aiortc_codecs_created``, always 0), so the names aiortc takes from
``av`` are only ever type annotations and ``isinstance`` checks on paths the
node does not run.

:func:`install` puts an import hook first on ``sys.meta_path`` that answers
``av`` and every ``av.*`` module with a placeholder module: any name taken
from it is a placeholder class (``...Error`` names an exception class), and
making or using one raises :class:`AvNotLoaded`, which says why. So a path
that would decode fails loudly instead of decoding on the forwarding loop.

Only the daemon's ``serve`` command installs it (jasmin_sfu/cli.py), before
anything imports aiortc; tests and tools that run aiortc peers in their own
process (which encode: PatternTrack, ToneTrack) keep the real PyAV.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any, Sequence

MESSAGE = (
    "jasmin-sfu does not decode or encode media: PyAV (av) is not loaded in the daemon "
    "(jasmin_sfu/media/av_placeholder.py); an aiortc path that needs it was reached"
)


class AvNotLoaded(RuntimeError):
    """A placeholder of PyAV was made or used."""

    def __init__(self, what: str = "") -> None:
        super().__init__(f"{MESSAGE}: {what}" if what else MESSAGE)


class _PlaceholderType(type):
    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise AvNotLoaded(f"{cls.__module__}.{cls.__name__}.{name}")


class Placeholder(metaclass=_PlaceholderType):
    """What ``from av import VideoFrame`` gives: a class nothing can make."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AvNotLoaded(f"{type(self).__module__}.{type(self).__name__}()")


class PlaceholderModule(types.ModuleType):
    """``av`` or one of its submodules: every public name a placeholder class."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        cls: type
        if name.endswith("Error"):
            cls = type(name, (AvNotLoaded,), {"__module__": self.__name__})
        else:
            cls = _PlaceholderType(name, (Placeholder,), {"__module__": self.__name__})
        setattr(self, name, cls)
        return cls


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "av" or fullname.startswith("av."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return PlaceholderModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []


FINDER = _Finder()


def install() -> bool:
    """Answer ``import av`` with placeholders from now on in this process. False (and
    nothing done) when PyAV or aiortc is imported already: then it is too late."""
    if FINDER in sys.meta_path:
        return True
    if "av" in sys.modules or "aiortc" in sys.modules:
        return False
    sys.meta_path.insert(0, FINDER)
    return True


def installed() -> bool:
    """PyAV in this process is the placeholder (for the start log and tests)."""
    return isinstance(sys.modules.get("av"), PlaceholderModule)
