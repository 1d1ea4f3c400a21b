"""A member's first visit, in real Chromium, through the demo page's own controls.

One browser session of a new member: sign up (with the 18+ box), buy credits through
the test payment provider, find a live performer with the search panel's filters,
open its free chat from the search result and say hello; the performer's page shows
the line under the member's name. The REST API, the signaling token path and the chat
room the way a person uses them, not the way a test calls them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from jasmin_sfu.app import Daemon
from jasmin_sfu.config import BillingConfig, PaymentsConfig
from jasmin_sfu.services.ledger import wallet_account
from tests.api.conftest import accounts_config
from tests.support import open_page, wait_line, wait_state
from tests.conftest import test_config as node_config

pytestmark = [pytest.mark.slow, pytest.mark.browser]

TIMEOUT_MS = 30_000


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(
        node_config(
            billing=BillingConfig(data_dir=str(tmp_path / "billing"), node_id="journey"),
            accounts=accounts_config(str(tmp_path / "accounts")),
            payments=PaymentsConfig(provider="test"),
        )
    )
    await d.start()
    try:
        yield d
    finally:
        await d.stop()


async def results(page: Any) -> list[str]:
    """The usernames the search panel lists, in its order."""
    return list(await page.eval_on_selector_all("#search-results li", "lis => lis.map(li => li.dataset.username)"))


async def search(page: Any, expected: str) -> list[str]:
    """Submit the search form; the listed usernames once the status says ``expected``."""
    await page.evaluate("document.getElementById('search-status').textContent = ''")
    await page.click("#search-go")
    await page.wait_for_function(
        "s => document.getElementById('search-status').textContent === s", arg=expected, timeout=TIMEOUT_MS
    )
    return await results(page)


async def test_sign_up_buy_credits_find_a_performer_by_search_and_chat_in_free_chat(
    node: Daemon,
    browser: Any,  # noqa: F811
) -> None:
    """Protects the demo page's member journey end to end: the page signs up an 18+ member and
    shows the wallet; a package bought there lands in the ledger; the advanced-search filters
    (build and age, the "petite, 18-22" of docs/product.md) list the live performer that matches and
    not the live one that does not; the result's Free chat button joins that show with the new
    token (the server names the new member); and a line typed in the chat box reaches the
    performer's page under the member's username and is stored in that performer's room."""
    accounts, social, chat = node.accounts, node.social, node.chat
    assert accounts is not None and node.billing is not None and social is not None and chat is not None
    await accounts.create_admin("boss", "boss-password")
    boss = (await accounts.login("boss", "boss-password")).principal
    await accounts.create_performer(boss, "alice", "alice-password", display_name="Alice", price_per_minute=300)
    await accounts.create_performer(boss, "bella", "bella-password", display_name="Bella", price_per_minute=300)
    await social.update_attributes(boss, "alice", {"build": "petite", "age": 21, "hair_colour": "red"})
    await social.update_attributes(boss, "bella", {"build": "petite", "age": 34, "hair_colour": "red"})
    base = f"http://127.0.0.1:{node.port}"
    logs: list[str] = []

    performers: dict[str, Any] = {}
    for name in ("alice", "bella"):  # both live: only the filters tell them apart
        token = (await accounts.login(name, f"{name}-password")).token
        performers[name] = await open_page(browser, f"{base}/?role=performer&show={name}&token={token}", logs)
        await performers[name].click("#go-live")
        await wait_state(performers[name], "live", logs)

    # No show in the URL: the member gets to the performer through search.
    page = await open_page(browser, f"{base}/?role=viewer", logs)
    await page.fill("#account-username", "newbie")
    await page.fill("#account-password", "newbie-password")
    await page.check("#account-adult")
    await page.click("#sign-up")
    await page.wait_for_selector("#wallet:not([hidden])", timeout=TIMEOUT_MS)
    assert await page.text_content("#whoami") == "newbie (member)"
    assert (await page.text_content("#wallet-credits")) == "0.00 credits"
    member_id = await page.evaluate("jasminAccount.principal.id")
    assert (await accounts.authenticate(await page.evaluate("jasmin.token"))).id == member_id

    await page.select_option("#package", "p2999")
    await page.click("#buy")
    await page.wait_for_function(
        "document.getElementById('wallet-credits').textContent === '30.00 credits'", timeout=TIMEOUT_MS
    )
    balance = await node.billing.ledger.balance(wallet_account(member_id))
    assert balance.credits_posted - balance.debits_posted == 30 * 6000

    await page.check("#search-online")
    assert sorted(await search(page, "2 found")) == ["alice", "bella"], logs  # both findable
    await page.select_option("#search-build", "petite")
    await page.fill("#search-age_min", "18")
    await page.fill("#search-age_max", "22")
    assert await search(page, "1 found") == ["alice"], logs
    assert "online" in (await page.text_content("#search-results li[data-username=alice]") or "")

    await page.click("#search-results li[data-username=alice] .search-free-chat")
    await wait_state(page, "live", logs)
    assert await page.input_value("#show-id") == "alice"
    assert await page.evaluate("jasmin.memberId") == member_id
    assert await page.evaluate("window.jasminChat.room") == "alice"
    assert await page.evaluate("window.jasminChat.you.username") == "newbie"
    assert await page.is_visible("#chat-form"), logs

    await page.fill("#chat-text", "hello alice, found you by search")
    await page.click("#chat-send")
    line = await wait_line(performers["alice"], "hello alice, found you by search")
    assert line["who"] == "newbie: " and line["kind"] == "member", logs
    await wait_line(page, "hello alice, found you by search")

    stored = (await chat.export(member_id))["chat_messages"]
    assert [(m["room"], m["author_username"], m["text"]) for m in stored] == [
        ("alice", "newbie", "hello alice, found you by search")
    ]
