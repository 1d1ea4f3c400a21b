"""Real-browser fixtures: Chromium found (or the test skipped, or failed on CI).

Locally a missing Chromium or Playwright skips the browser tests with the
reason in the summary; with ``CI`` set (tests/realparts.py: true, 1, yes or on)
it fails them, so CI never goes green without having run them.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Any, AsyncIterator, NoReturn

import pytest

from bench import netns
from jasmin_sfu.app import Daemon
from tests.api.conftest import accounts_config
from tests.conftest import test_config as node_config
from tests.realparts import missing, under_ci

CHROMIUM = "/usr/bin/chromium"
NO_CHROMIUM = "Chromium not installed: apt-get install chromium"
NO_PLAYWRIGHT = "playwright not installed: pip install -e '.[test]'"

# Exactly these switches (Playwright adds --headless itself with headless=True).
CHROMIUM_ARGS = [
    "--allow-loopback-in-peer-connection",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

_skipped: set[str] = set()


def _missing(reason: str) -> NoReturn:
    if not under_ci():
        _skipped.add(reason)
    missing(reason)


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


@pytest.fixture
async def browser(chromium_executable: str, async_playwright: Any, tmp_path: Path) -> AsyncIterator[Any]:
    """A headless Chromium (fake camera and microphone) with its own fresh profile."""
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium_executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield context
        finally:
            await context.close()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Daemon]:
    """A daemon with accounts (SQLite in tmp_path); a module may override it."""
    d = Daemon(node_config(accounts=accounts_config(str(tmp_path / "accounts"))))
    await d.start()
    try:
        yield d
    finally:
        await d.stop()


@pytest.fixture
async def netlab(chromium_executable: str, async_playwright: Any, tmp_path: Path) -> AsyncIterator[Any]:
    """Namespaces, veth pairs, a bridge and Chromiums inside them for one test
    (tests/browser/netlab.py); all gone after it, the browsers first."""
    from tests.browser.netlab import NetLab

    reason = netns.available()
    if reason is not None:
        _missing(f"shaped-link tests {reason}")
    with contextlib.ExitStack() as stack:
        async with contextlib.AsyncExitStack() as astack:
            yield NetLab(
                chromium=chromium_executable,
                chromium_args=CHROMIUM_ARGS,
                playwright=async_playwright,
                tmp_path=tmp_path,
                stack=stack,
                astack=astack,
                missing=_missing,
            )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for reason in sorted(_skipped):
        terminalreporter.write_line(f"browser tests SKIPPED: {reason}", yellow=True, bold=True)
