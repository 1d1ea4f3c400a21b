"""A member's first visit, in real Chromium, through the demo page's own controls.

Sign up (with the 18+ box), buy credits through the test payment provider,
then watch a live performer with the new account: the REST API and the
signaling token path the way a person uses them, not the way a test calls them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from jasmin_sfu.app import Daemon
from jasmin_sfu.config import BillingConfig, PaymentsConfig
from jasmin_sfu.services.ledger import wallet_account
from tests.api.conftest import accounts_config
from tests.browser.test_accounts_page import browser  # noqa: F401  (fixture)
from tests.browser.test_demo_page import open_page, wait_state
from tests.conftest import test_config as node_config

pytestmark = [pytest.mark.slow, pytest.mark.browser]

TIMEOUT_MS = 30_000


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(node_config(
        billing=BillingConfig(data_dir=str(tmp_path / "billing"), node_id="journey"),
        accounts=accounts_config(str(tmp_path / "accounts")),
        payments=PaymentsConfig(provider="test"),
    ))
    await d.start()
    try:
        yield d
    finally:
        await d.stop()


async def test_sign_up_buy_credits_and_watch_as_the_new_member(node: Daemon, browser: Any) -> None:  # noqa: F811
    """Protects the demo page's account flow: the page signs up an 18+ member, shows the
    wallet, buys a package (the ledger holds exactly its credits), and the show join that
    follows is made with the new token (the server names the new member)."""
    accounts = node.accounts
    assert accounts is not None and node.billing is not None
    await accounts.create_admin("boss", "boss-password")
    boss = (await accounts.login("boss", "boss-password")).principal
    await accounts.create_performer(boss, "alice", "alice-password", display_name="Alice", price_per_minute=300)
    performer_token = (await accounts.login("alice", "alice-password")).token
    base = f"http://127.0.0.1:{node.port}"
    logs: list[str] = []

    performer = await open_page(browser, f"{base}/?role=performer&show=alice&token={performer_token}", logs)
    await performer.click("#go-live")
    await wait_state(performer, "live", logs)

    page = await open_page(browser, f"{base}/?role=viewer&show=alice", logs)
    await page.fill("#account-username", "newbie")
    await page.fill("#account-password", "newbie-password")
    await page.check("#account-adult")
    await page.click("#sign-up")
    await page.wait_for_selector("#wallet:not([hidden])", timeout=TIMEOUT_MS)
    assert await page.text_content("#whoami") == "newbie (member)"
    assert (await page.text_content("#wallet-credits")) == "0.00 credits"

    await page.select_option("#package", "p2999")
    await page.click("#buy")
    await page.wait_for_function("document.getElementById('wallet-credits').textContent === '30.00 credits'",
                                 timeout=TIMEOUT_MS)
    member_id = await page.evaluate("jasminAccount.principal.id")
    balance = await node.billing.ledger.balance(wallet_account(member_id))
    assert balance.credits_posted - balance.debits_posted == 30 * 6000

    await page.click("#watch")
    await wait_state(page, "live", logs)
    assert await page.evaluate("jasmin.memberId") == member_id
