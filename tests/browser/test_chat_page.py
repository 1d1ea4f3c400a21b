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
from tests.support import alice_live_and_mia_watching, wait_line

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def test_a_member_page_and_a_performer_page_chat(node: Daemon, browser: Any) -> None:
    """Protects the demo chat end to end: the panel appears on join, a member's line typed in
    the send box reaches the performer's page, the performer's reply shows in the performer
    colour on the member's page."""
    logs: list[str] = []
    performer, viewer = await alice_live_and_mia_watching(node, browser, logs)
    assert await viewer.is_visible("#chat-form"), logs

    await viewer.fill("#chat-text", "hello alice")
    await viewer.click("#chat-send")
    line = await wait_line(performer, "hello alice")
    assert line["who"] == "mia: " and line["kind"] == "member", logs
    await performer.fill("#chat-text", "hi mia")
    await performer.click("#chat-send")
    reply = await wait_line(viewer, "hi mia")
    assert reply["who"] == "alice: " and reply["kind"] == "performer"
    r, g, b = (int(PERFORMER_COLOR[i : i + 2], 16) for i in (1, 3, 5))
    assert reply["color"] == f"rgb({r}, {g}, {b})", (reply, logs)
    assert await viewer.evaluate("window.jasminChat.you.username") == "mia"
