"""The demo page on a node that trusts no client ids, in real Chromium: tokens decide who is who.

A performer page with its performer token goes live; a member page with its token
is a member (the server says so in the join answer); a page without a token is
refused, and a viewer that confirms 18+ in the dialog watches as a guest.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jasmin_sfu.app import Daemon
from tests.support import open_page, seed_alice_and_mia, wait_state

pytestmark = [pytest.mark.slow, pytest.mark.browser]


async def test_the_demo_page_joins_with_tokens_and_guests_confirm_18_plus(node: Daemon, browser: Any) -> None:
    """Protects the page on a production-like node: identity from `?token=`, and the guest
    path through the 18+ confirmation; a token-less performer is refused."""
    performer_token, member = await seed_alice_and_mia(node)
    base = f"http://127.0.0.1:{node.port}"
    logs: list[str] = []

    nobody = await open_page(browser, f"{base}/?role=performer&show=alice", logs)
    await nobody.click("#go-live")
    await wait_state(nobody, "error", logs)
    assert (await nobody.evaluate("jasmin.lastError.code")) == "unauthorized"
    await nobody.close()

    performer = await open_page(browser, f"{base}/?role=performer&show=alice&token={performer_token}", logs)
    await performer.click("#go-live")
    await wait_state(performer, "live", logs)

    viewer = await open_page(browser, f"{base}/?role=viewer&show=alice&token={member.token}", logs)
    await viewer.click("#watch")
    await wait_state(viewer, "live", logs)
    assert await viewer.evaluate("jasmin.memberId") == member.principal.id

    guest = await open_page(browser, f"{base}/?role=viewer&show=alice", logs)
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        asyncio.ensure_future(dialog.accept())

    guest.on("dialog", on_dialog)
    await guest.click("#watch")
    await wait_state(guest, "live", logs)
    assert dialogs and "18" in dialogs[0]
    assert await guest.evaluate("jasmin.memberId") is None
    assert (await guest.evaluate("jasmin.token")).startswith("jas_")
