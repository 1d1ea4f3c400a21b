"""A private show through the demo page in real Chromium: request, accept, Cam2Cam, back to free.

Three pages on one in-process daemon: the performer, a guest and a member
(``?member=m1``). Exclusivity is checked twice: in the guest's own
``getStats()`` (its counters stop, within a small allowance for packets in
flight at the accept) and in the server's media core (every guest consumer
is blocked, its forwarded-packet count frozen). No step waits for a fixed
time: "later" means "after the member decoded many more frames".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import TIMEOUT_S, poll, wait_state

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# Packets the server forwarded before the accept may still be arriving, and
# frames already received may still be decoded, when the guest is first sampled.
IN_FLIGHT_PACKETS = 5
IN_FLIGHT_FRAMES = 5
# "Later": the member decodes this many more video frames (and audio packets) meanwhile.
LATER_FRAMES = 30
LATER_AUDIO_PACKETS = 50


async def open_page(browser: Any, url: str, name: str, logs: list[str]) -> Any:
    page = await browser.new_page()
    page.on("console", lambda msg: logs.append(f"[{name} {msg.type}] {msg.text}"))
    page.on("pageerror", lambda exc: logs.append(f"[{name} pageerror] {exc}"))
    await page.goto(url)
    return page


async def until(page: Any, js: str, logs: list[str]) -> Any:
    """Wait until the expression ``js`` is truthy in ``page``; fails with the page's state."""
    try:
        handle = await page.wait_for_function(f"() => {js}", timeout=TIMEOUT_S * 1000)
        return await handle.json_value()
    except Exception:  # playwright's TimeoutError: report what the page shows instead
        info = await page.evaluate(
            "({state: jasmin.state, show: jasmin.showState, error: jasmin.lastError,"
            " status: document.querySelector('#status').textContent,"
            " notice: document.querySelector('#notice').textContent})"
        )
        raise AssertionError(f"timed out waiting for {js}: {info}\n" + "\n".join(logs[-40:])) from None


async def show_stats(page: Any) -> Any:
    return await page.evaluate("jasmin.showStats()")


def counters(s: Any) -> tuple[int, int, int]:
    return (s["video"]["framesDecoded"], s["video"]["packets"], s["audio"]["packets"])


async def test_private_show_in_the_demo_page(daemon: Any, browser: Any, tmp_path: Path) -> None:
    """Protects the private flow as a user lives it, in the browser: a member's request,
    the performer's accept, exclusivity (the guest's media stops; the member's does not),
    Cam2Cam reaching the performer only, and the guest resuming on its same peer
    connection when the performer returns to free chat."""
    logs: list[str] = []
    base = daemon.http
    performer = await open_page(browser, f"{base}/?role=performer&show=s1", "performer", logs)
    await performer.click("#go-live")
    await wait_state(performer, "live", logs)
    guest = await open_page(browser, f"{base}/?role=viewer&show=s1", "guest", logs)
    member = await open_page(browser, f"{base}/?role=viewer&show=s1&member=m1", "member", logs)
    assert await member.input_value("#member-id") == "m1"
    for viewer in (guest, member):
        await viewer.click("#watch")
        await wait_state(viewer, "live", logs)

    # Who sees which controls: guests none; members theirs; the performer its own.
    assert await guest.is_hidden("#show-actions") and await guest.is_hidden("#request-private")
    for sel in ("#request-private", "#end-private", "#sneak-peek", "#cam2cam"):
        assert await member.is_visible(sel), sel
    assert await member.is_enabled("#request-private")
    for sel in ("#end-private", "#sneak-peek", "#cam2cam"):
        assert await member.is_disabled(sel), sel
    for sel in ("#end-private", "#back-to-free", "#auto-accept"):
        assert await performer.is_visible(sel), sel
    assert await performer.is_hidden("#request-private") and await performer.is_hidden("#cam2cam")
    assert await until(guest, "jasmin.showState === 'free' && jasmin.showState", logs) == "free"

    # Free chat: both viewers decode.
    for viewer in (guest, member):
        s = await poll(lambda v=viewer: show_stats(v), lambda s: s["video"]["framesDecoded"] > 0)
        assert s["video"]["framesDecoded"] > 0, (s, logs)
        s2 = await poll(
            lambda v=viewer: show_stats(v), lambda x, s=s: x["video"]["framesDecoded"] > s["video"]["framesDecoded"]
        )
        assert s2["video"]["framesDecoded"] > s["video"]["framesDecoded"], (s, s2, logs)
    guest_pcs = await guest.evaluate("window.guestPc = jasmin.pc; [jasmin.pcs.length, jasmin.pcsCreated]")
    assert guest_pcs == [1, 1]
    guest_session = await guest.evaluate("jasmin.sessionId")
    performer_session = await performer.evaluate("jasmin.sessionId")
    router = daemon.daemon.shows.get("s1").router

    def guest_consumers() -> list[Any]:
        return [c for c in router.consumers.values() if c.audience_key == guest_session]

    assert len(guest_consumers()) == 2 and not any(c.blocked for c in guest_consumers())

    # The member asks; the performer sees the request and accepts it.
    await member.click("#request-private")
    await performer.click('.accept-private[data-member="m1"]')
    accepted = await until(performer, "jasmin.lastAccept", logs)
    assert accepted["member_id"] == "m1"

    # At once every guest consumer is blocked in the media core.
    assert len(guest_consumers()) == 2 and all(c.blocked and c.paused for c in guest_consumers())
    await until(guest, "jasmin.showState === 'private'", logs)
    status = await guest.text_content("#status")
    assert status is not None and "private" in status and "m1" not in status, status
    await until(guest, "document.querySelector('#remote-video').paused", logs)
    assert await guest.is_visible("#held-note")
    await until(member, "jasmin.privateMember === 'm1' && jasmin.showState === 'private'", logs)
    await until(performer, "jasmin.privateMember === 'm1' && jasmin.showState === 'private'", logs)
    assert await performer.locator(".accept-private").count() == 0

    # Sample a moment after the accept, then later: after the member decoded many more frames.
    guest_a, member_a = await show_stats(guest), await show_stats(member)
    server_a = sum(c.packets for c in guest_consumers())
    member_b = await poll(
        lambda: show_stats(member),
        lambda s: (
            s["video"]["framesDecoded"] >= member_a["video"]["framesDecoded"] + LATER_FRAMES
            and s["audio"]["packets"] >= member_a["audio"]["packets"] + LATER_AUDIO_PACKETS
        ),
    )
    assert member_b["video"]["framesDecoded"] >= member_a["video"]["framesDecoded"] + LATER_FRAMES, (
        member_a,
        member_b,
        logs,
    )
    assert member_b["audio"]["packets"] >= member_a["audio"]["packets"] + LATER_AUDIO_PACKETS, (member_a, member_b)
    guest_b = await show_stats(guest)
    grew = [b - a for a, b in zip(counters(guest_a), counters(guest_b))]
    assert grew[0] <= IN_FLIGHT_FRAMES and grew[1] <= IN_FLIGHT_PACKETS and grew[2] <= IN_FLIGHT_PACKETS, (
        guest_a,
        guest_b,
    )
    # The server forwarded the guest nothing in between, and it still blocks it; everything
    # the guest page received was forwarded before the block (retransmissions aside).
    assert sum(c.packets for c in guest_consumers()) == server_a
    received = guest_b["video"]["packets"] + guest_b["audio"]["packets"]
    assert received <= server_a + router.stats.nack_packets_served, (guest_b, server_a)
    assert all(c.blocked for c in guest_consumers())
    assert await guest.evaluate("jasmin.pc.connectionState") == "connected"

    # Cam2Cam: the member sends its camera; the performer decodes it in #member-cam.
    assert await member.is_enabled("#cam2cam")
    await member.click("#cam2cam")
    cam_ids = await until(
        member,
        "jasmin.cam2cam && jasmin.cam2cam.producers.length === 2 && jasmin.cam2cam.producers.map(p => p.producer_id)",
        logs,
    )
    first = await poll(lambda: performer.evaluate("jasmin.memberCamStats()"), lambda s: s["video"]["framesDecoded"] > 0)
    assert first["video"]["framesDecoded"] > 0, (first, logs)
    later = await poll(
        lambda: performer.evaluate("jasmin.memberCamStats()"),
        lambda s: s["video"]["framesDecoded"] > first["video"]["framesDecoded"] and s["audio"]["packets"] > 0,
    )
    assert later["video"]["framesDecoded"] > first["video"]["framesDecoded"] and later["audio"]["packets"] > 0, (
        later,
        logs,
    )
    assert later["pcs"] >= 1 and await performer.is_visible("#member-cam")
    await until(performer, "document.querySelector('#member-cam').videoWidth > 0", logs)
    # Only the performer consumes it; the guest has no stream for it and never heard of it.
    for pid in cam_ids:
        consumers = list(router.producers[pid].consumers.values())
        assert [c.audience_key for c in consumers] == [performer_session], pid
    assert await guest.evaluate("[jasmin.pcs.length, jasmin.pcsCreated, jasmin.producers.size]") == [1, 1, 2]
    guest_events = json.dumps(await guest.evaluate("jasmin.signaling.seen"))
    assert '"m1"' not in guest_events and not any(pid in guest_events for pid in cam_ids), guest_events

    await until(member, "document.querySelector('#own-cam').videoWidth > 0", logs)
    for name, page in (("performer", performer), ("guest", guest), ("member", member)):
        await page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)

    # The member ends the private: its Cam2Cam closes; the show goes to member chat.
    await member.click("#end-private")
    await until(performer, "jasmin.showState === 'member_chat' && jasmin.memberCam.producers.size === 0", logs)
    await until(
        member, "jasmin.showState === 'member_chat' && jasmin.cam2cam === null && jasmin.privateMember === null", logs
    )
    assert all(pid not in router.producers for pid in cam_ids)
    assert await guest.evaluate("jasmin.showState") == "private"  # member chat looks like a private to guests
    assert await member.is_enabled("#sneak-peek") and await member.is_disabled("#cam2cam")

    # A sneak peek from member chat: the member decodes again; the guest stays blocked.
    peek_from = await show_stats(member)
    await member.click("#sneak-peek")
    await until(member, "jasmin.peekUntil !== null && !document.querySelector('#remote-video').paused", logs)
    peeked = await poll(
        lambda: show_stats(member), lambda s: s["video"]["framesDecoded"] > peek_from["video"]["framesDecoded"] + 5
    )
    assert peeked["video"]["framesDecoded"] > peek_from["video"]["framesDecoded"] + 5, (peek_from, peeked, logs)
    assert all(c.blocked for c in guest_consumers()) and sum(c.packets for c in guest_consumers()) == server_a

    # Back to free chat: the guest decodes again, on the same peer connection.
    before = await show_stats(guest)
    await performer.click("#back-to-free")
    await until(guest, "jasmin.showState === 'free'", logs)
    again = await poll(
        lambda: show_stats(guest), lambda s: s["video"]["framesDecoded"] > before["video"]["framesDecoded"] + 5
    )
    assert again["video"]["framesDecoded"] > before["video"]["framesDecoded"] + 5, (before, again, logs)
    assert again["audio"]["packets"] > before["audio"]["packets"], (before, again)
    assert await guest.evaluate(
        "[jasmin.pcs.length, jasmin.pcsCreated, jasmin.pc === window.guestPc, jasmin.pc.connectionState]"
    ) == [1, 1, True, "connected"]
    await until(guest, "!document.querySelector('#remote-video').paused", logs)
    assert await guest.is_hidden("#held-note")
    await until(member, "jasmin.peekUntil === null && jasmin.showState === 'free'", logs)  # the peek ended with it
    assert not any(c.blocked for c in guest_consumers())
    assert not [line for line in logs if "pageerror" in line], logs
