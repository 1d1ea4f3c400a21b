"""The demo page's free-chat panel in real Chromium: a member page and a performer page chat.

Tokens decide who is who (a node that trusts no client ids). The member types into the
send box; the performer's page shows the line with the member's name; the performer's
reply shows on the member's page in the performer colour.
"""

from __future__ import annotations

from typing import Any

import pytest

from jasmin_sfu.app import Daemon
from jasmin_sfu.services.chat import PERFORMER_COLOR
from tests.support import open_page, wait_line, wait_state

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def test_a_member_page_and_a_performer_page_chat(node: Daemon, browser: Any) -> None:
    """Protects the demo chat end to end: the panel appears on join, a member's line typed in
    the send box reaches the performer's page, the performer's reply shows in the performer
    colour on the member's page."""
    accounts = node.accounts
    assert accounts is not None
    await accounts.create_admin("boss", "boss-password")
    boss = (await accounts.login("boss", "boss-password")).principal
    await accounts.create_performer(boss, "alice", "alice-password", display_name="Alice", price_per_minute=300)
    performer_token = (await accounts.login("alice", "alice-password")).token
    member = await accounts.register("mia", "mia-password", adult_confirmed=True)
    base = f"http://127.0.0.1:{node.port}"
    logs: list[str] = []

    performer = await open_page(browser, f"{base}/?role=performer&show=alice&token={performer_token}", logs)
    await performer.click("#go-live")
    await wait_state(performer, "live", logs)
    viewer = await open_page(browser, f"{base}/?role=viewer&show=alice&token={member.token}", logs)
    await viewer.click("#watch")
    await wait_state(viewer, "live", logs)
    assert await viewer.is_visible("#chat-form"), logs

    await viewer.fill("#chat-text", "hello alice")
    await viewer.click("#chat-send")
    line = await wait_line(performer, "hello alice")
    assert line["who"] == "mia: " and line["kind"] == "member", logs
    await performer.fill("#chat-text", "hi mia")
    await performer.click("#chat-send")
    reply = await wait_line(viewer, "hi mia")
    assert reply["who"] == "alice: " and reply["kind"] == "performer"
    r, g, b = (int(PERFORMER_COLOR[i:i + 2], 16) for i in (1, 3, 5))
    assert reply["color"] == f"rgb({r}, {g}, {b})", (reply, logs)
    assert await viewer.evaluate("window.jasminChat.you.username") == "mia"
