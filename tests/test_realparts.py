"""The real-part switch itself (tests/realparts.py): when a missing part skips and when it fails."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.realparts import missing, require_fastpath, under_ci


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "1", "yes", "Yes", "on", "ON", " true "])
def test_usual_truthy_spellings_of_ci_turn_a_missing_part_into_a_failure(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Protects CI's guarantee: with CI=1 or CI=True (not only "true") a missing real part
    fails the run instead of skipping it, so CI can never go green without running it."""
    monkeypatch.setenv("CI", value)
    assert under_ci()
    with pytest.raises(pytest.fail.Exception, match="Chromium not installed"):
        missing("Chromium not installed")


@pytest.mark.parametrize("value", [None, "", "false", "0", "no", "off", "False"])
def test_without_ci_a_missing_part_skips_by_name(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    """Protects local runs: outside CI a missing part is a skip that names the part."""
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert not under_ci()
    with pytest.raises(pytest.skip.Exception, match="Chromium not installed"):
        missing("Chromium not installed")


def test_require_fastpath_names_the_missing_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    """Protects the C fast-path tests: without the extension they skip (or fail under CI)
    saying so, rather than dying on an AttributeError of None."""
    from jasmin_sfu.media import fastpath

    monkeypatch.setattr(fastpath, "fastpath_ext", None)
    monkeypatch.setattr(fastpath, "unavailable_reason", "not built")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="C fast path unavailable"):
        require_fastpath()
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="C fast path unavailable"):
        require_fastpath()


# Runs tests/media/test_fastpath.py in a fresh interpreter where importing the extension fails.
_HIDE_EXTENSION = (
    "import sys, pytest; sys.modules['jasmin_sfu.media._fastpath'] = None; "
    "sys.exit(pytest.main(['-q', '-rsfE', '-p', 'no:cacheprovider', '--durations=0', 'tests/media/test_fastpath.py']))"
)


@pytest.mark.parametrize("ci", ["", "1"], ids=["local", "ci"])
def test_fastpath_module_without_the_extension(ci: str) -> None:
    """Protects the same end to end: every test of tests/media/test_fastpath.py is skipped
    (locally) or failed (CI=1) with the named reason, and none reaches an AttributeError."""
    env = {**os.environ, "CI": ci}
    run = subprocess.run(
        [sys.executable, "-c", _HIDE_EXTENSION], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    out = run.stdout + run.stderr
    assert "AttributeError" not in out, out
    assert "C fast path unavailable" in out, out
    if ci:
        # pytest.fail in the autouse fixture: each test is an error at setup, none passes.
        assert run.returncode == 1 and " error" in out and " passed" not in out, out
    else:
        assert run.returncode == 0 and " skipped" in out and " passed" not in out, out
