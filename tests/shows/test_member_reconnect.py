"""A member's second connection during their own private (a reloaded page), with aiortc peers
over loopback: the new connection gets the private's media, nobody else does, and the private
is billed once.

Exclusivity is proven from send times as in test_private_show.py: the performer logs when it
sent every payload, viewers log what they received, and ``accepted_at`` is the instant the
daemon paused everyone else.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.peers import wait_for
from jasmin_sfu.config import BillingConfig
from jasmin_sfu.services.ledger import per_second_rate, wallet_account
from tests.support import after, performer, watch

PRICE = 6000  # hundredths of a credit per minute: 1 credit a second
RATE = per_second_rate(PRICE)


async def test_members_reloaded_page_gets_the_private_and_is_billed_once(make_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Protects a member reloading the page during their own private: the new connection
    receives the private's video and audio; the old one, still open, keeps receiving
    (the product lets one member hold several connections, and the private ends only
    when the last one leaves); free viewers, also ones joining during the private, get
    nothing sent after the accept; when the old page closes the private runs on; and the
    member is charged exactly the seconds of one meter, not two."""
    d = await make_daemon(billing=BillingConfig(data_dir=str(tmp_path), node_id="rl1"))
    stack = d.daemon.billing
    await stack.ledger.open_member("m1")
    await stack.cc.top_up("pay-1", "m1", "p2999")
    url, show = d.url, "show-reload"
    pub = await performer(url, show)
    await pub.client.request("show.settings", price_per_minute=PRICE)
    old = await watch(url, show, member_id="m1")
    free = await watch(url, show)
    assert await wait_for(lambda: old.frames.get("video", 0) >= 2 and free.frames.get("video", 0) >= 2, 30)
    await old.client.request("private.request")
    t0 = (await pub.client.request("private.accept", member_id="m1"))["accepted_at"]

    # The reloaded page: a second websocket and peer connection of the same member.
    new = await watch(url, show, member_id="m1")
    late_free = await watch(url, show)
    joined = time.time()
    ssrcs = lambda v, t: {s for s, _ in after(v, pub.log, t)}  # noqa: E731
    assert await wait_for(lambda: len(ssrcs(new, t0)) == 2 and len(after(new, pub.log, t0)) >= 60, 20), (
        "the member's second connection got no video and audio of its private"
    )
    assert await wait_for(lambda: len(ssrcs(old, joined)) == 2 and len(after(old, pub.log, joined)) >= 60, 20)
    assert len(stack.billing._active) == 1 and len(stack.billing.meter._sessions) == 1

    # The old page goes away: the private runs on for the new one.
    await old.close()
    closed = time.time()
    assert await wait_for(lambda: len(ssrcs(new, closed)) == 2 and len(after(new, pub.log, closed)) >= 60, 20)
    assert d.daemon.shows.get(show).machine.state.value == "private"
    assert sum(1 for t in pub.log.sent.values() if t > t0) >= 120  # the checks below are not vacuous
    for v in (free, late_free):
        assert after(v, pub.log, t0) == [], "a free viewer received media sent after the accept"

    # At least two whole seconds of private reached the new connection: a charge to check.
    assert await wait_for(lambda: any(t > t0 + 2 for _s, t in after(new, pub.log, t0)), 20)
    await new.client.request("private.end")
    ended = await pub.client.next_event("private.ended", timeout=10)
    assert ended["data"]["member_id"] == "m1"
    assert await wait_for(lambda: not stack.billing._tasks, 10)
    sink = Path(tmp_path, "billing-events.jsonl")
    closing = lambda: [e for e in map(json.loads, sink.read_text().splitlines()) if e["data"].get("closing")]  # noqa: E731
    assert await wait_for(lambda: sink.exists() and len(closing()) == 1, 10)
    billed = closing()[0]["data"]["billed_seconds"]
    assert billed >= 2 and billed == int(ended["data"]["at"] - t0)  # one meter, from the accept to the end
    wallet = await stack.ledger.balance(wallet_account("m1"))
    assert wallet.debits_posted == billed * RATE and wallet.debits_pending == 0, wallet
    assert (await stack.ledger.replay()).ok
    for v in (new, free, late_free):
        await v.close()
    await pub.close()
