"""The first ten minutes of a new user: `make run`, then the printed URLs, in real Chromium.

The node is started exactly as `make run` starts it: the real command line
(`jasmin-sfu serve`) as a subprocess, in an empty working directory so it runs on its
embedded defaults (SQLite accounts and ledger under ./var), with no JASMIN_* variable
and no config file; only the port is a free one (`--port 0`). Everything else comes
from what it prints: the demo accounts and the three URLs.

The page is a console of the product's money: the performer sets its price and sees its
earnings, the member sees its private's cost, the server's credit warning with "Top up now",
and its wallet. Screenshots of the performer's, the member's and the guest's views (during
the private) are kept in ``$JASMIN_ARTIFACTS/first_click/`` (default ``tests/artifacts/first_click/``,
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
from tests.support import TIMEOUT_S
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
        [*serve_command(), "--port", "0"],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
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


async def wallet_units(page: Any) -> int:
    """The member's credits in ledger units, held ones included (what the ledger posted to it)."""
    await page.evaluate("jasminAccount.refreshWallet()")
    return int(await page.evaluate("jasminAccount.wallet.available_units + jasminAccount.wallet.held_units"))


# The price the performer sets: 60 credits a minute, one credit a second, so the demo member's
# 30 credits last 30 s. Its first grant is then its last one, and the server's credit warning
# (docs/signaling.md: at 60 s and 10 s left on the last grant) comes at once.
PRICE_CREDITS_PER_MINUTE = "60"
UNITS_PER_CREDIT = 6000


async def test_make_run_then_the_printed_urls_go_live_watch_and_run_a_paid_private(
    node: Node,
    browser: Any,
    tmp_path: Path,
) -> None:
    """Protects the first click of `make run`: with only what the node prints (demo accounts,
    performer/member/guest URLs), "Go live" before any login says to log in as the demo
    performer and its button does, the performer goes live and sets its price, a guest and the
    demo member watch, the member's private runs with Cam2Cam at that price, the server's credit
    warning shows with "Top up now", whose top-up lands in the wallet and keeps the private
    running past the time the first credits paid for, and after the performer ends it the
    performer's earnings show its share of exactly what the member paid. Goes red if seeding,
    the printed URLs, the page's demo login, the hidden Member id field, the price, the warning,
    the top-up or the earnings break."""
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
    # Its price (the demo performer's 1.20 credits a minute) and earnings (none yet) show.
    await until(performer, "document.querySelector('#price').value === '1.20' && jasminMoney.earnings !== null", logs)
    assert await performer.text_content("#earnings-total") == "0.00 credits"
    await performer.click("#go-live")
    await wait_state(performer, "live", logs)
    # Live, it sets a new price: kept in its profile, and the show takes it for the next private.
    await performer.fill("#price", PRICE_CREDITS_PER_MINUTE)
    await performer.click("#set-price")
    await until(
        performer, "document.querySelector('#price-status').textContent.includes('60.00 credits a minute')", logs
    )
    assert await performer.evaluate("jasminMoney.price") == 6000

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

    # A paid private at the new price: request, accept. 30 credits buy 30 s: the credit
    # warning comes at once, visibly, with what to do.
    assert await member.is_hidden("#member-money")
    await member.click("#request-private")
    member_id = await until(member, "jasmin.requested && jasmin.memberId", logs)
    await performer.click(f'.accept-private[data-member="{member_id}"]')
    await until(member, f"jasmin.privateMember === '{member_id}' && jasmin.showState === 'private'", logs)
    await until(guest, "jasmin.showState === 'private'", logs)
    await until(member, "jasminMoney.warning !== null && !document.querySelector('#credit-warning').hidden", logs)
    assert 0 < await member.evaluate("jasminMoney.warning.secondsLeft") <= 30
    warning = await member.text_content("#credit-warning")
    assert warning is not None and "Your credits run out in" in warning and "Top up now" in warning, warning
    await until(member, "document.querySelector('#private-meter').textContent.includes('60.00 credits a minute')", logs)
    await until(performer, "document.querySelector('#private-earnings').textContent.includes('your share')", logs)

    # "Top up now" during the private: the demo credits land in the wallet, the private goes on.
    before = await wallet_units(member)
    assert before == 30 * UNITS_PER_CREDIT, before  # the first grant holds it all: nothing posted yet
    await member.click("#warning-top-up")
    await until(
        member,
        "document.querySelector('#credit-warning').textContent.includes('Topped up: your private continues')",
        logs,
    )
    assert (await member.text_content("#account-status") or "").startswith("Added 10 demo credits"), logs
    after = await wallet_units(member)
    assert before < after <= before + 10 * UNITS_PER_CREDIT, (before, after)
    assert await member.evaluate("jasmin.showState") == "private"

    # Cam2Cam.
    await member.click("#cam2cam")
    cam = await poll(lambda: performer.evaluate("jasmin.memberCamStats()"), lambda s: s["video"]["framesDecoded"] > 0)
    assert cam["video"]["framesDecoded"] > 0, (cam, logs)
    await until(performer, "document.querySelector('#member-cam').videoWidth > 0", logs)
    await until(member, "document.querySelector('#own-cam').videoWidth > 0", logs)

    # Past the 30 s the first credits paid for, the private still runs (the top-up paid for 10 more).
    # The wait is up to 31 s of the private plus the usual margin: the steps above may all fit in
    # its first second (until()'s 30 s alone then ends a moment too early, as seen in CI).
    await member.wait_for_function("() => jasminMoney.elapsed() >= 31", timeout=(31 + TIMEOUT_S) * 1000)
    assert await member.evaluate(f"jasmin.showState === 'private' && jasmin.privateMember === '{member_id}'"), logs

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, page in (("performer", performer), ("member", member), ("guest", guest)):
        await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    # The performer ends it: the member is out of its private, billed for more than its first
    # 30 credits; the member's page sums it up.
    await performer.click("#end-private")
    await until(
        member, "jasmin.privateMember === null && jasmin.cam2cam === null && jasmin.showState !== 'private'", logs
    )
    await until(
        member,
        "document.querySelector('#private-meter').textContent.startsWith('Your private ended (performer_ended)')",
        logs,
    )
    await performer.click("#back-to-free")
    await until(guest, "jasmin.showState === 'free'", logs)
    for _ in range(50):  # credit control closes the session just after the private ends
        if await wallet_units(member) == await member.evaluate("jasminAccount.wallet.available_units"):
            break
        await asyncio.sleep(0.2)
    spent = 40 * UNITS_PER_CREDIT - await member.evaluate("jasminAccount.wallet.available_units")
    assert 30 * UNITS_PER_CREDIT < spent < 40 * UNITS_PER_CREDIT, spent

    # The performer's earnings: its share (performer_share_bp, 50 %) of exactly what the member paid.
    for _ in range(50):  # the page refreshes them after the end; the test does not wait on its timers
        await performer.evaluate("jasminMoney.refreshEarnings()")
        earned = await performer.evaluate("jasminMoney.earnings")
        if earned["units"] == spent * earned["performer_share_bp"] // 10_000:
            break
        await asyncio.sleep(0.2)
    assert earned["units"] == spent * earned["performer_share_bp"] // 10_000, (earned, spent)
    await until(
        performer, f"document.querySelector('#earnings-total').textContent === '{earned['credits']} credits'", logs
    )
    for name in ("performer", "member", "guest"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 0
