"""Real-browser fixtures: Chromium found (or the test skipped, or failed on CI).

Locally a missing Chromium or Playwright skips the browser tests with the
reason in the summary; with ``CI=true`` it fails them, so CI never goes green
without having run them.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, NoReturn

import pytest

CHROMIUM = "/usr/bin/chromium"
NO_CHROMIUM = "Chromium not installed: apt-get install chromium"
NO_PLAYWRIGHT = "playwright not installed: pip install -e '.[test]'"

_skipped: set[str] = set()


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    _skipped.add(reason)
    pytest.skip(reason)


NOT_ISOLATED = (
    "browser tests must run in a loopback-only network namespace, since Chromium gathers ICE "
    "candidates on every interface: run `make test-browser` (it wraps pytest in `unshare --net`)"
)


@pytest.fixture(autouse=True)
def loopback_only_network() -> None:
    """Chromium would otherwise offer (and be answered on) the machine's other addresses."""
    names = {name for _i, name in socket.if_nameindex()}
    if names != {"lo"}:
        _missing(NOT_ISOLATED + f" (interfaces here: {', '.join(sorted(names))})")


@pytest.fixture
def chromium_executable() -> str:
    if not Path(CHROMIUM).is_file():
        _missing(NO_CHROMIUM)
    return CHROMIUM


@pytest.fixture
def async_playwright() -> Any:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing(NO_PLAYWRIGHT)
    return async_playwright


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for reason in sorted(_skipped):
        terminalreporter.write_line(f"browser tests SKIPPED: {reason}", yellow=True, bold=True)
