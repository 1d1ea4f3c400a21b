"""The paid private's flow (jasmin_sfu/shows/privates.py) through real signaling over loopback.

A real daemon with real billing (SQLite ledger, outbox, file sink) and real websocket
clients; no media peers: these tests are about who may start a private, what is
authorised, metered and released, not about packets (test_private_show.py and
test_billing.py cover those). "Nothing held" is read from the ledger itself: the
member's wallet has no pending debit once billing's tasks settled.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bench.peers import wait_for
from jasmin_sfu.config import BillingConfig
from jasmin_sfu.services.ledger import per_second_rate, wallet_account
from jasmin_signaling.client import RemoteError, SignalingClient

PRICE = 6000  # hundredths of a credit per minute: 1 credit a second; p2999 (30 credits) = 30 s
FAST_PRICE = 60000  # 10 credits a second: p2999 = 3 s of private
RATE = per_second_rate(PRICE)


async def start(make_daemon: Any, tmp_path: Path, node: str, **credits: int) -> Any:
    """A billing daemon; ``credits`` = member id -> number of p2999 packages (0: a wallet, empty)."""
    d = await make_daemon(billing=BillingConfig(data_dir=str(tmp_path), node_id=node))
    for member, packages in credits.items():
        await d.daemon.billing.ledger.open_member(member)
        for i in range(packages):
            await d.daemon.billing.cc.top_up(f"seed-{member}-{i}", member, "p2999")
    return d


async def join(d: Any, show: str, role: str = "viewer", **ids: str) -> SignalingClient:
    c = await SignalingClient.connect(d.url)
    await c.request("join", show_id=show, role=role, **ids)
    return c


async def live(d: Any, show: str, price: int = PRICE, **settings: Any) -> SignalingClient:
    pub = await join(d, show, role="performer")
    await pub.request("show.settings", price_per_minute=price, **settings)
    return pub


async def settled(d: Any, member: str) -> Any:
    """The member's wallet once billing's ledger work (charges, releases) is done."""
    stack = d.daemon.billing
    assert await wait_for(lambda: not stack.billing._tasks, 10)
    return await stack.ledger.balance(wallet_account(member))


async def nothing_held(d: Any, member: str) -> None:
    wallet = await settled(d, member)
    assert wallet.debits_pending == 0, f"a hold on {member}'s wallet was left behind: {wallet}"
    assert (await d.daemon.billing.ledger.replay()).ok


def state(d: Any, show: str) -> str:
    return str(d.daemon.shows.get(show).machine.state.value)


async def close_all(*clients: SignalingClient) -> None:
    for c in clients:
        await c.close()


async def test_a_second_request_of_the_same_member_is_already_requested(make_daemon: Any, tmp_path: Path) -> None:
    """Protects the double request: the member's second private.request answers
    already_requested, the performer hears of the request once, and one request is pending."""
    d = await start(make_daemon, tmp_path, "pf1", m1=1)
    pub = await live(d, "pf-double")
    m1 = await join(d, "pf-double", member_id="m1")
    await m1.request("private.request")
    with pytest.raises(RemoteError) as e:
        await m1.request("private.request")
    assert e.value.code == "already_requested"
    assert list(d.daemon.shows.get("pf-double").machine.requests) == ["m1"]
    await m1.request("private.withdraw")
    heard = []
    while not heard or heard[-1] != "private.withdrawn":
        heard.append((await pub.next_event())["event"])
    assert heard.count("private.requested") == 1, heard
    await close_all(m1, pub)


async def test_while_a_private_runs_others_are_private_busy_before_any_grant(make_daemon: Any, tmp_path: Path) -> None:
    """Protects "one private at a time", decided by the machine's rule before credit is asked:
    while m1's private runs, m2's request and an accept of m2 answer private_busy (not
    insufficient_credits, though m2's wallet is empty), and nothing is held on m2's wallet."""
    d = await start(make_daemon, tmp_path, "pf2", m1=1, m2=0)
    pub = await live(d, "pf-busy")
    m1 = await join(d, "pf-busy", member_id="m1")
    m2 = await join(d, "pf-busy", member_id="m2")
    await m1.request("private.request")
    await pub.request("private.accept", member_id="m1")
    for call in (m2.request("private.request"), pub.request("private.accept", member_id="m2")):
        with pytest.raises(RemoteError) as e:
            await call
        assert e.value.code == "private_busy"
    assert state(d, "pf-busy") == "private"
    await nothing_held(d, "m2")
    await m1.request("private.end")
    await close_all(m1, m2, pub)


async def test_accept_without_credit_changes_nothing_and_may_be_retried(make_daemon: Any, tmp_path: Path) -> None:
    """Protects "no grant, no private": an accept for a member without one second of credit
    answers insufficient_credits, the show stays free, the request stays pending and nothing
    is held; after a top-up the same request is accepted."""
    d = await start(make_daemon, tmp_path, "pf3", m1=0)
    pub = await live(d, "pf-broke")
    m1 = await join(d, "pf-broke", member_id="m1")
    await m1.request("private.request")
    with pytest.raises(RemoteError) as e:
        await pub.request("private.accept", member_id="m1")
    assert e.value.code == "insufficient_credits"
    assert state(d, "pf-broke") == "free"
    assert list(d.daemon.shows.get("pf-broke").machine.requests) == ["m1"]
    await nothing_held(d, "m1")
    await d.daemon.billing.cc.top_up("pay-1", "m1", "p2999")
    await pub.request("private.accept", member_id="m1")
    assert state(d, "pf-broke") == "private"
    await m1.request("private.end")
    await nothing_held(d, "m1")
    await close_all(m1, pub)


async def test_the_member_leaving_ends_the_private_and_bills_it_once(make_daemon: Any, tmp_path: Path) -> None:
    """Protects the member leaving mid-private (a closed tab): the private ends (disconnect),
    the meter stops on the private's own grant, the charge is whole seconds of that one
    meter, and nothing stays held."""
    d = await start(make_daemon, tmp_path, "pf4", m1=1)
    pub = await live(d, "pf-leave")
    m1 = await join(d, "pf-leave", member_id="m1")
    await m1.request("private.request")
    await pub.request("private.accept", member_id="m1")
    privates = d.daemon.shows.privates(d.daemon.shows.get("pf-leave"))
    assert privates.running is not None and list(d.daemon.billing.billing._active.values()) == [privates.running]
    await m1.close()
    ended = await pub.next_event("private.ended")
    assert ended["data"]["reason"] == "disconnect" and ended["data"]["member_id"] == "m1"
    assert privates.running is None and not d.daemon.billing.billing._active
    assert state(d, "pf-leave") == "member_chat"
    wallet = await settled(d, "m1")
    assert wallet.debits_pending == 0 and wallet.debits_posted % RATE == 0
    await nothing_held(d, "m1")
    await close_all(pub)


async def test_the_performer_leaving_ends_the_private_and_the_meter(make_daemon: Any, tmp_path: Path) -> None:
    """Protects the performer leaving mid-private: the member hears private.ended
    (performer_offline) and show.ended, the meter stops, and nothing stays held."""
    d = await start(make_daemon, tmp_path, "pf5", m1=1)
    pub = await live(d, "pf-gone")
    m1 = await join(d, "pf-gone", member_id="m1")
    await m1.request("private.request")
    await pub.request("private.accept", member_id="m1")
    await pub.close()
    ended = await m1.next_event("private.ended")
    assert ended["data"]["reason"] == "performer_offline"
    await m1.next_event("show.ended")
    assert not d.daemon.billing.billing._active
    await nothing_held(d, "m1")
    await close_all(m1)


async def test_auto_accept_authorises_then_starts_or_refuses_without_credit(make_daemon: Any, tmp_path: Path) -> None:
    """Protects auto-accept: a member with credit gets the private in the request's answer,
    metered on its grant; a member without one second of credit gets insufficient_credits
    and leaves no request behind (the machine never saw it) and no hold."""
    d = await start(make_daemon, tmp_path, "pf6", m1=1, m2=0)
    pub = await live(d, "pf-auto", auto_accept=True)
    m2 = await join(d, "pf-auto", member_id="m2")
    with pytest.raises(RemoteError) as e:
        await m2.request("private.request")
    assert e.value.code == "insufficient_credits"
    assert d.daemon.shows.get("pf-auto").machine.requests == {} and state(d, "pf-auto") == "free"
    await nothing_held(d, "m2")

    m1 = await join(d, "pf-auto", member_id="m1")
    answer = await m1.request("private.request")
    assert answer == {"state": "private", "private_member": True}
    started = await pub.next_event("private.started")
    assert started["data"]["member_id"] == "m1"
    privates = d.daemon.shows.privates(d.daemon.shows.get("pf-auto"))
    assert list(d.daemon.billing.billing._active.values()) == [privates.running]
    await m1.request("private.end")
    assert not d.daemon.billing.billing._active
    await nothing_held(d, "m1")
    await close_all(m1, m2, pub)


async def test_a_failure_between_authorize_and_apply_releases_the_grant(make_daemon: Any, tmp_path: Path) -> None:
    """Protects "no authorisation left held after a failed accept": the grant is open when
    the member withdraws (the accept's apply is then refused); the accept answers
    invalid_state, the show stays free, no meter runs, and the hold is released at once
    (not left to expire)."""
    d = await start(make_daemon, tmp_path, "pf7", m1=1)
    cc = d.daemon.billing.cc
    real = cc.authorize
    granted, proceed = asyncio.Event(), asyncio.Event()

    async def authorize_then_wait(*args: Any, **kw: Any) -> Any:
        grant = await real(*args, **kw)
        granted.set()  # the hold is on the wallet now
        await proceed.wait()
        return grant

    cc.authorize = authorize_then_wait
    pub = await live(d, "pf-race")
    m1 = await join(d, "pf-race", member_id="m1")
    await m1.request("private.request")
    accept = asyncio.ensure_future(pub.request("private.accept", member_id="m1"))
    await asyncio.wait_for(granted.wait(), 10)
    assert (await d.daemon.billing.ledger.balance(wallet_account("m1"))).debits_pending > 0
    await m1.request("private.withdraw")
    proceed.set()
    with pytest.raises(RemoteError) as e:
        await accept
    assert e.value.code == "invalid_state"
    assert state(d, "pf-race") == "free" and not d.daemon.billing.billing._active
    await nothing_held(d, "m1")
    await close_all(m1, pub)


async def test_credit_warns_runs_out_and_a_top_up_mid_private_extends_it(make_daemon: Any, tmp_path: Path) -> None:
    """Protects warn, top-up and the billing stop through the flow: with 3 s of credit the
    member and the performer (never a guest) are warned; a top-up during the private
    extends it to exactly 6 billed seconds, where it ends (reason billing, credit_exhausted
    first) and the member is charged exactly the 6 seconds, nothing held."""
    d = await start(make_daemon, tmp_path, "pf8", m1=1)
    pub = await live(d, "pf-topup", price=FAST_PRICE)
    guest = await join(d, "pf-topup")
    m1 = await join(d, "pf-topup", member_id="m1")
    await m1.request("private.request")
    await pub.request("private.accept", member_id="m1")
    warning = await m1.next_event("private.credit_warning")
    assert warning["data"]["member_id"] == "m1" and 0 < warning["data"]["seconds_left"] <= 3
    await pub.next_event("private.credit_warning")
    await d.daemon.billing.cc.top_up("pay-2", "m1", "p2999")  # 3 s more, during the private

    await m1.next_event("private.credit_exhausted", timeout=30)
    ended = await pub.next_event("private.ended", timeout=10)
    assert ended["data"]["reason"] == "billing"
    sink = Path(tmp_path, "billing-events.jsonl")

    def closing() -> list[dict[str, Any]]:
        return [e for e in map(json.loads, sink.read_text().splitlines()) if e["data"].get("closing")]

    assert await wait_for(lambda: sink.exists() and len(closing()) == 1, 10)
    assert closing()[0]["data"]["billed_seconds"] == 6, "the top-up did not extend the private (3 s without it)"
    wallet = await settled(d, "m1")
    assert (wallet.debits_posted, wallet.debits_pending) == (6 * per_second_rate(FAST_PRICE), 0)
    while not guest.events.empty():
        assert not guest.events.get_nowait()["event"].startswith("private.credit"), "a guest heard of the credit"
    await close_all(guest, m1, pub)
