"""The suite's own rules: warnings are errors, and child-process pipes are closed."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from tests.conftest import drain_in_thread


def test_a_warning_from_our_code_is_an_error() -> None:
    """Protects `filterwarnings = error` (setup.cfg): a DeprecationWarning or RuntimeWarning
    raised in a test is an exception there, so it fails the test instead of scrolling by."""
    with pytest.raises(DeprecationWarning):
        warnings.warn("old spelling", DeprecationWarning, stacklevel=1)
    with pytest.raises(RuntimeWarning):
        warnings.warn("something odd", RuntimeWarning, stacklevel=1)


def test_drain_in_thread_keeps_every_line_and_closes_the_pipe() -> None:
    """Protects the fix of the suite's ResourceWarnings: the output pipe of a daemon started by
    tests/conftest.py is read to its end (no line lost) and then closed, not left for the garbage
    collector to find in a later test."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "print('\\n'.join(map(str, range(5000))))"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    lines: list[str] = []
    thread = drain_in_thread(proc.stdout, lines)
    assert proc.wait(60) == 0
    thread.join(60)
    assert not thread.is_alive()
    assert proc.stdout.closed
    assert lines == [f"{i}\n" for i in range(5000)]
