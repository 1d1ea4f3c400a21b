"""The first ten minutes of a new user: `make run`, then the printed URLs, in real Chromium.

The node is started exactly as `make run` starts it: the real command line
(`jasmin-sfu serve`) as a subprocess, in an empty working directory so it runs on its
embedded defaults (SQLite accounts and ledger under ./var), with no JASMIN_* variable
and no config file; only the port is a free one (`--port 0`). Everything else comes
from what it prints: the demo accounts and the three URLs.

Screenshots of the performer's, the member's and the guest's views (during the private)
are kept in ``$JASMIN_ARTIFACTS/first_click/`` (default ``tests/artifacts/first_click/``,
git-ignored).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from tests.browser.test_private_page import open_page, show_stats, until
from tests.conftest import drain_in_thread
from tests.browser.test_demo_page import poll, wait_state

pytestmark = [pytest.mark.slow, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("JASMIN_ARTIFACTS") or REPO / "tests" / "artifacts") / "first_click"


class Node:
    def __init__(self, proc: subprocess.Popen[str], lines: list[str]) -> None:
        self.proc = proc
        self.lines = lines

    def printed(self, pattern: str) -> re.Match[str]:
        text = "".join(self.lines)
        m = re.search(pattern, text, re.M)
        assert m is not None, (pattern, text)
        return m


def serve_command() -> list[str]:
    """`make run` runs .venv/bin/jasmin-sfu serve: the console script beside this interpreter."""
    script = Path(sys.executable).parent / "jasmin-sfu"
    return [str(script), "serve"] if script.is_file() else [sys.executable, "-m", "jasmin_sfu", "serve"]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    cwd = tmp_path / "fresh"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JASMIN_")}
    proc = subprocess.Popen(
        [*serve_command(), "--port", "0"], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    loop = asyncio.get_running_loop()
    while not any("guest view" in x for x in lines):
        line = await loop.run_in_executor(None, proc.stdout.readline)
        if not line:
            proc.stdout.close()
            proc.wait()
            raise AssertionError("jasmin-sfu serve exited before printing the demo URLs:\n" + "".join(lines))
        lines.append(line)
    drain_in_thread(proc.stdout, lines)
    try:
        yield Node(proc, lines)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()


async def credits(page: Any) -> float:
    return float(await page.evaluate("jasminAccount.wallet.credits"))


async def test_make_run_then_the_printed_urls_go_live_watch_and_run_a_paid_private(
    node: Node, browser: Any, tmp_path: Path,
) -> None:
    """Protects the first click of `make run`: with only what the node prints (demo accounts,
    performer/member/guest URLs), "Go live" before any login says to log in as the demo
    performer and its button does, the performer goes live, a guest and the demo member watch,
    the member's private runs with Cam2Cam, a demo top-up lands in its wallet while the
    private keeps running and is billed, and the performer ends it. Goes red if seeding,
    the printed URLs, the page's demo login, the hidden Member id field or the top-up break."""
    logs: list[str] = []
    perf_user, perf_pw = node.printed(r"^\s+performer\s+(\w+) / (\S+)").groups()
    member_user, member_pw = node.printed(r"^\s+member\s+(\w+) / (\S+)").groups()
    assert node.printed(r"^\s+member\s+\w+ / \S+\s+([\d.]+) credits").group(1) == "30.00"
    perf_url = node.printed(r"performer view\s+(\S+)").group(1)
    member_url = node.printed(r"member view\s+(\S+)").group(1)
    guest_url = node.printed(r"guest view\s+(\S+)").group(1)
    show = perf_user  # a performer's show is its username

    # Without logging in, "Go live" says what to do; the demo button logs the performer in.
    base = perf_url.split("?")[0]
    first = await open_page(browser, base + "?role=performer", "first", logs)
    await until(first, "!document.querySelector('#demo-logins').hidden", logs)
    await first.click("#go-live")
    await wait_state(first, "error", logs)
    status = await first.text_content("#status")
    assert status is not None and "unauthorized" in status and '"Log in as demo performer"' in status, status
    await first.click("#demo-performer")
    await until(first, f"jasminAccount.principal && jasminAccount.principal.username === '{perf_user}'", logs)
    assert await first.input_value("#show-id") == show
    await first.close()

    # The performer: its URL logs it in; one click on "Go live".
    performer = await open_page(browser, perf_url, "performer", logs)
    await until(performer, f"jasminAccount.principal && jasminAccount.principal.username === '{perf_user}'", logs)
    assert await performer.input_value("#show-id") == show
    await performer.click("#go-live")
    await wait_state(performer, "live", logs)

    # The guest: "Watch", then the 18+ question.
    guest = await open_page(browser, guest_url, "guest", logs)
    guest.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await until(guest, "!document.querySelector('#demo-logins').hidden", logs)
    assert await guest.is_hidden("#member-id"), "the node trusts no client ids: no Member id field"
    await guest.click("#watch")
    await wait_state(guest, "live", logs)

    # The member: its URL logs it in with 30 credits; "Watch".
    member = await open_page(browser, member_url, "member", logs)
    await until(member, f"jasminAccount.wallet && jasminAccount.principal.username === '{member_user}'", logs)
    assert await credits(member) == 30.0
    assert await member.is_visible("#demo-top-up")
    await member.click("#watch")
    await wait_state(member, "live", logs)
    for viewer in (guest, member):
        s = await poll(lambda v=viewer: show_stats(v), lambda s: s["video"]["framesDecoded"] > 0)
        assert s["video"]["framesDecoded"] > 0, (s, logs)

    # A paid private: request, accept, Cam2Cam.
    await member.click("#request-private")
    member_id = await until(member, "jasmin.requested && jasmin.memberId", logs)
    await performer.click(f'.accept-private[data-member="{member_id}"]')
    await until(member, f"jasmin.privateMember === '{member_id}' && jasmin.showState === 'private'", logs)
    await until(guest, "jasmin.showState === 'private'", logs)
    await member.click("#cam2cam")
    cam = await poll(lambda: performer.evaluate("jasmin.memberCamStats()"), lambda s: s["video"]["framesDecoded"] > 0)
    assert cam["video"]["framesDecoded"] > 0, (cam, logs)
    await until(performer, "document.querySelector('#member-cam').videoWidth > 0", logs)
    await until(member, "document.querySelector('#own-cam').videoWidth > 0", logs)

    # A top-up during the private: the wallet grows, the private keeps running.
    await member.evaluate("jasminAccount.refreshWallet()")
    before = await credits(member)
    await member.click("#demo-top-up")
    await until(member, "document.querySelector('#account-status').textContent.startsWith('Added 10 demo credits')", logs)
    after = await credits(member)
    assert before < after <= before + 10, (before, after)
    assert await member.evaluate("jasmin.showState") == "private"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, page in (("performer", performer), ("member", member), ("guest", guest)):
        await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    # The performer ends it: the member is out of its private, and it was billed.
    await performer.click("#end-private")
    await until(member, "jasmin.privateMember === null && jasmin.cam2cam === null && jasmin.showState !== 'private'", logs)
    await performer.click("#back-to-free")
    await until(guest, "jasmin.showState === 'free'", logs)
    await member.evaluate("jasminAccount.refreshWallet()")
    spent = 40.0 - await credits(member)
    assert 0 < spent < 40.0, spent
    for name in ("performer", "member", "guest"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 0
