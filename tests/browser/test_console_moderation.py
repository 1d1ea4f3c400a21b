"""The demo page's performer console moderates its free chat, in real Chromium.

Issue 13's performer view has "chat and moderation": the performer's page shows Delete,
Mute, Kick and Ban on each line of someone else (never on its own, never on a viewer's
page); Delete takes the line off every page, Mute refuses the member's next line with a
message saying what to do.
"""

from __future__ import annotations

from typing import Any

import pytest

from jasmin_sfu.app import Daemon
from tests.support import alice_live_and_mia_watching, wait_line

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def mod_buttons(page: Any, text: str) -> list[str]:
    """The moderation buttons on the chat line holding ``text``."""
    return list(
        await page.eval_on_selector(
            f"#chat-log li:has-text({text!r})",
            "li => [...li.querySelectorAll('button.chat-mod')].map(b => b.dataset.action)",
        )
    )


async def test_the_performer_deletes_a_line_and_mutes_a_member_from_its_page(node: Daemon, browser: Any) -> None:
    """Protects chat moderation on the demo page: the performer's page offers the four actions on
    a member's line and none on its own; the member's page offers none; Delete removes the line
    from the member's page too; after Mute the member's next line is refused with `muted` and
    what to do. Goes red if the buttons, the verbs they send or the hints break."""
    logs: list[str] = []
    performer, viewer = await alice_live_and_mia_watching(node, browser, logs)

    await viewer.fill("#chat-text", "a line to delete")
    await viewer.click("#chat-send")
    await wait_line(performer, "a line to delete")
    await performer.fill("#chat-text", "welcome")
    await performer.click("#chat-send")
    await wait_line(performer, "welcome")
    assert await mod_buttons(performer, "a line to delete") == ["delete", "mute", "kick", "ban"], logs
    assert await mod_buttons(performer, "welcome") == []
    await wait_line(viewer, "welcome")
    assert await mod_buttons(viewer, "a line to delete") == []

    await performer.click("#chat-log li:has-text('a line to delete') button[data-action=delete]")
    await viewer.wait_for_selector("#chat-log li:has-text('a line to delete')", state="detached", timeout=15_000)
    await performer.wait_for_function("() => document.querySelector('#chat-status').textContent === 'Message deleted.'")
    assert await performer.query_selector("#chat-log li:has-text('a line to delete')") is None

    await viewer.fill("#chat-text", "a rude line")
    await viewer.click("#chat-send")
    await wait_line(performer, "a rude line")
    await performer.click("#chat-log li:has-text('a rude line') button[data-action=mute]")
    await performer.wait_for_function(
        "() => document.querySelector('#chat-status').textContent.startsWith('mia is muted for 5 minutes')"
    )
    await viewer.fill("#chat-text", "still here")
    await viewer.click("#chat-send")
    await viewer.wait_for_function("() => document.querySelector('#chat-status').textContent.startsWith('muted')")
    status = await viewer.text_content("#chat-status")
    assert status is not None and "wait until the mute ends" in status, (status, logs)
    assert await viewer.evaluate("window.jasminChat.lastError.code") == "muted"
