"""Privates billed by the second, end to end: credits run out, a top-up extends, a crash recovers.

Seconds are measured from the performer's send log (when each payload left it)
and the daemon's ``accepted_at``, never from sleeps. These tests run a private
for ~30 s of real time each and are marked slow.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from bench.peers import wait_for
from jasmin_sfu.config import BillingConfig
from jasmin_sfu.services.ledger import earnings_account, per_second_rate, wallet_account
from jasmin_signaling.client import RemoteError, SignalingClient
from tests.conftest import seed_credits, start_daemon_process
from tests.metering.conftest import SECRET, Receiver, start_receiver
from tests.support import after, performer, watch

pytestmark = pytest.mark.slow

# 30 credits (package p2999) at 60 credits/min = exactly 30 s of private.
PRICE = 6000  # hundredths of a credit per minute
RATE = per_second_rate(PRICE)


def member_video_times(member: Any, log: Any, since: float) -> list[float]:
    return sorted(t for _s, t in after(member, log, since))


async def start_private(url: str, show: str) -> tuple[Any, Any, float]:
    pub = await performer(url, show)
    await pub.client.request("show.settings", price_per_minute=PRICE)
    member = await watch(url, show, member_id="m1")
    assert await wait_for(lambda: member.frames.get("video", 0) >= 2, 30)
    await member.client.request("private.request")
    accepted = await pub.client.request("private.accept", member_id="m1")
    return pub, member, accepted["accepted_at"]


async def test_private_stops_when_credits_run_out(make_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Protects prepaid billing: with credits for 30 s the private ends after exactly 30
    billed seconds (media sent after the end never reaches the member), the member is
    warned on the last grant, charged exactly the 30 s, and the performer is credited."""
    d = await make_daemon(billing=BillingConfig(data_dir=str(tmp_path), grant_seconds=10, node_id="t1"))
    stack = d.daemon.billing
    ended_at = bus_instants(d, "private.ended")
    await stack.ledger.open_member("m1")
    await stack.cc.top_up("pay-1", "m1", "p2999")
    pub, member, t0 = await start_private(d.url, "show-run")

    ended = await pub.client.next_event("private.ended", timeout=60)
    assert ended["data"]["reason"] == "billing"
    warnings = []
    while not member.client.events.empty():
        ev = member.client.events.get_nowait()
        if ev["event"] == "private.credit_warning":
            warnings.append(ev["data"]["seconds_left"])
    assert warnings and min(warnings) <= 10 and max(warnings) <= 60

    # Keep the performer sending, then check the cut from send times: nothing sent after
    # the instant the daemon ended the private (and paused the member) reached the member.
    assert len(ended_at) == 1
    assert await wait_for(lambda: sum(1 for t in pub.log.sent.values() if t > ended_at[0]) >= 30, 20)
    assert member_video_times(member, pub.log, t0), "the member got no media during the private"
    assert member_video_times(member, pub.log, ended_at[0]) == []

    assert await wait_for(lambda: not stack.billing._tasks, 10)
    wallet = await stack.ledger.balance(wallet_account("m1"))
    assert wallet.debits_posted == 30 * RATE, wallet  # the 30 credits, to the second
    assert wallet.debits_pending == 0
    # The meter billed exactly the seconds paid for: none streamed unpaid past the credits.
    sink = Path(tmp_path, "billing-events.jsonl")
    closing = lambda: [e for e in map(json.loads, sink.read_text().splitlines()) if e["data"].get("closing")]  # noqa: E731
    assert await wait_for(lambda: sink.exists() and len(closing()) == 1, 10)
    assert (closing()[0]["data"]["billed_seconds"], closing()[0]["data"]["last_seq"]) == (30, 30)
    assert (await stack.ledger.balance(earnings_account(pub_id(pub)))).credits_posted > 0
    report = await stack.ledger.replay()
    assert report.ok
    await member.close()
    await pub.close()


def pub_id(pub: Any) -> str:
    return str(pub.client.welcome["session_id"])


def bus_instants(d: Any, name: str) -> list[float]:
    """Wall-clock instants at which the daemon published ``name``: the subscriber runs inside
    the step that carries the event out, so media sent later was processed after it."""
    out: list[float] = []
    d.daemon.bus.subscribe(lambda ev: out.append(time.time()) if ev.name == name else None)
    return out


async def test_top_up_during_the_last_grant_extends_the_private_without_a_gap(make_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Protects refill-during-private (the CGRateS final-grant gap): a top-up at second 20
    re-authorises the session; the private goes past 30 s with no break: it never ends or
    runs out in between, and the member is charged every second it ran."""
    d = await make_daemon(billing=BillingConfig(data_dir=str(tmp_path), grant_seconds=10, node_id="t2"))
    stack = d.daemon.billing
    seen: list[Any] = []
    d.daemon.bus.subscribe(seen.append)
    await stack.ledger.open_member("m1")
    await stack.cc.top_up("pay-1", "m1", "p2999")
    pub, member, t0 = await start_private(d.url, "show-topup")
    # Second 20: inside the last grant (grants of 10 s on 30 s of credit).
    assert await wait_for(lambda: (member_video_times(member, pub.log, t0) or [t0])[-1] >= t0 + 20, 40)
    await stack.cc.top_up("pay-2", "m1", "p2999")
    assert await wait_for(lambda: (member_video_times(member, pub.log, t0) or [t0])[-1] > t0 + 36, 45)
    assert d.daemon.shows.get("show-topup").machine.state.value == "private"
    # No break: the private neither ended nor ran out between the accept and now (the
    # billing stop is the only thing that pauses a private's member).
    assert not any(ev.name == "private.ended" for ev in seen)
    assert [ev.state for ev in seen if ev.name == "show.state_changed"][-1:] == ["private"]
    await member.client.request("private.end")
    ended = await pub.client.next_event("private.ended", timeout=10)
    assert ended["data"]["reason"] != "billing"
    assert await wait_for(lambda: not stack.billing._tasks, 10)
    wallet = await stack.ledger.balance(wallet_account("m1"))
    # Charged whole seconds, at least the 36 s streamed, never more than the private lasted.
    assert wallet.debits_posted % RATE == 0 and wallet.debits_pending == 0
    assert 36 <= wallet.debits_posted // RATE <= ended["data"]["at"] - t0
    await member.close()
    await pub.close()


async def test_no_credits_no_private(make_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Protects against streaming unpaid seconds: an empty wallet cannot start a private."""
    d = await make_daemon(billing=BillingConfig(data_dir=str(tmp_path), node_id="t3"))
    pub = await performer(d.url, "show-broke")
    m1 = await SignalingClient.connect(d.url)
    await m1.request("join", show_id="show-broke", role="viewer", member_id="m1")
    await m1.request("private.request")
    with pytest.raises(RemoteError) as e:
        await pub.client.request("private.accept", member_id="m1")
    assert e.value.code == "insufficient_credits"
    assert d.daemon.shows.get("show-broke").machine.state.value == "free"
    await m1.close()
    await pub.close()


async def test_sigkill_mid_private_restart_charges_exactly_what_streamed(tmp_path: Path) -> None:
    """Protects crash safety: after SIGKILL mid-private and a restart, the outbox re-sends
    what no sink acknowledged, each sink holds each second once, the member is charged
    exactly the seconds the outbox recorded before the crash (at least the 6 seen, never
    more than had passed), and the dead process's hold is released."""
    data = str(tmp_path / "jasmin-billing-crash")
    await seed_credits(data, "m1", "p2999")
    env = {
        "JASMIN_BILLING_DATA_DIR": data,
        "JASMIN_BILLING_SINKS": "file,sqlite",
        "JASMIN_BILLING_NODE_ID": "crash",
        "JASMIN_BILLING_GRANT_SECONDS": "10",
    }
    dp = await start_daemon_process(env=env)
    pub, member, t0 = await start_private(dp.url, "show-crash")

    def outbox_last_seq() -> int:
        """The highest usage seq the node wrote to its outbox (the seconds it billed)."""
        db = sqlite3.connect(f"file:{os.path.join(data, 'billing-outbox.sqlite3')}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT coalesce(max(last_seq), 0) FROM outbox_sources").fetchone()[0])
        except sqlite3.OperationalError:  # not created yet
            return 0
        finally:
            db.close()

    assert await wait_for(lambda: outbox_last_seq() >= 6, 30)
    dp.proc.send_signal(signal.SIGKILL)
    dp.proc.wait(10)
    killed_after = time.time() - t0  # no second can have been billed that had not passed
    # Read before the restart: recovery appends the closing event, which takes the next seq.
    recorded = outbox_last_seq()
    await member.close()
    await pub.close()

    dp2 = await start_daemon_process(env=env)
    try:

        def sink_rows() -> tuple[list[int], list[int]]:
            lines = (
                Path(data, "billing-events.jsonl").read_text().splitlines()
                if Path(data, "billing-events.jsonl").exists()
                else []
            )
            file_seqs = [json.loads(x)["data"]["seq"] for x in lines if json.loads(x)["type"].endswith(".usage.v1")]
            db = sqlite3.connect(os.path.join(data, "billing-events.sqlite3"))
            try:
                rows = db.execute("SELECT body FROM billing_events").fetchall()
            except sqlite3.OperationalError:
                rows = []
            finally:
                db.close()
            sql_seqs = [json.loads(r[0])["data"]["seq"] for r in rows if json.loads(r[0])["type"].endswith(".usage.v1")]
            return file_seqs, sql_seqs

        caught_up = (list(range(1, recorded + 1)),) * 2  # both sinks hold every recorded second
        assert await wait_for(lambda: tuple(sorted(x) for x in sink_rows()) == caught_up, 20), sink_rows()
    finally:
        dp2.proc.send_signal(signal.SIGTERM)
        dp2.proc.wait(20)
    file_seqs, sql_seqs = sink_rows()
    for seqs in (file_seqs, sql_seqs):
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), "each second exactly once, contiguous"
    billed = len(file_seqs)
    assert billed == recorded and 6 <= billed <= killed_after, (billed, killed_after)

    from jasmin_sfu.services.ledger import Ledger
    from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore

    store = await SqliteLedgerStore.open(os.path.join(data, "ledger.sqlite3"))
    try:
        import time as _t

        ledger = Ledger(store, _t.time)
        wallet = await ledger.balance(wallet_account("m1"))
        assert wallet.debits_pending == 0, "the dead process's hold was released"
        assert wallet.debits_posted == billed * RATE
        assert (await ledger.replay()).ok
    finally:
        await store.close()


class SlowReceiver(Receiver):
    """A webhook billing system that takes a second to answer each batch."""

    async def handle(self, request: Any) -> Any:
        await asyncio.sleep(1.0)
        return await super().handle(request)


async def test_sigterm_mid_private_delivers_the_closing_event_before_exit(tmp_path: Path) -> None:
    """Protects the graceful stop (issue 11 #21): SIGTERM during a private ends it, and by the
    time the process has exited every sink holds the closing event after every usage second,
    even a webhook that takes a second per batch: nothing is left in the outbox for a restart."""
    import time as _time

    data = str(tmp_path / "jasmin-billing-term")
    await seed_credits(data, "m1", "p2999")
    rcv = SlowReceiver(_time.time)  # type: ignore[arg-type]
    runner, port = await start_receiver(rcv)
    env = {
        "JASMIN_BILLING_DATA_DIR": data,
        "JASMIN_BILLING_SINKS": "file,webhook",
        "JASMIN_BILLING_NODE_ID": "term",
        "JASMIN_BILLING_GRANT_SECONDS": "10",
        "JASMIN_BILLING_WEBHOOK_URL": f"http://127.0.0.1:{port}/billing",
        "JASMIN_BILLING_WEBHOOK_SECRET": SECRET,
    }
    try:
        dp = await start_daemon_process(env=env)
        try:
            pub, member, t0 = await start_private(dp.url, "show-term")
            assert await wait_for(lambda: (member_video_times(member, pub.log, t0) or [t0])[-1] > t0 + 3.5, 20)
        finally:
            dp.proc.send_signal(signal.SIGTERM)
            rc = await asyncio.get_running_loop().run_in_executor(None, dp.proc.wait, 30)
        assert rc == 0
        await member.close()
        await pub.close()
    finally:
        await runner.cleanup()
    events = [json.loads(x) for x in Path(data, "billing-events.jsonl").read_text().splitlines()]
    closing = [e for e in events if e["data"].get("closing")]
    usage = sorted(e["data"]["seq"] for e in events if not e["data"].get("closing"))
    assert len(closing) == 1, f"{len(closing)} closing events in the file sink at exit"
    # The drain closes the member's websocket first (disconnect); billing's own stop says node_shutdown.
    assert closing[0]["data"]["reason"] in ("disconnect", "node_shutdown")
    assert usage == list(range(1, len(usage) + 1)) and len(usage) >= 3
    assert closing[0]["data"]["last_seq"] == len(usage)
    assert set(rcv.stored) == {(e["source"], e["id"]) for e in events}, "the webhook lacks events at exit"
    from jasmin_metering.config import OutboxConfig
    from jasmin_metering.outbox import Outbox

    outbox = Outbox(OutboxConfig(path=os.path.join(data, "billing-outbox.sqlite3")))
    try:
        assert {s: outbox.cursor(s) for s in ("file", "webhook")} == dict.fromkeys(
            ("file", "webhook"), outbox.max_pos()
        )
    finally:
        outbox.close()


async def test_twin_private_requests_with_auto_accept_answer_already_requested(make_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Protects the answer to a second concurrent private.request of one member (issue 11 #23):
    with auto-accept the first request's grant holds the whole wallet, and the twin was told
    insufficient_credits; it is already_requested (or private_busy once the private runs),
    one private starts, and one grant is held."""
    d = await make_daemon(billing=BillingConfig(data_dir=str(tmp_path), node_id="t4"))
    stack = d.daemon.billing
    await stack.ledger.open_member("m1")
    await stack.cc.top_up("pay-1", "m1", "p2999")  # 30 credits = 30 s at PRICE: one grant holds all
    pub = await performer(d.url, "show-twin")
    await pub.client.request("show.settings", price_per_minute=PRICE, auto_accept=True)
    twins = [await SignalingClient.connect(d.url) for _ in range(2)]
    for c in twins:
        await c.request("join", show_id="show-twin", role="viewer", member_id="m1")
    answers = await asyncio.gather(*[c.request("private.request") for c in twins], return_exceptions=True)
    ok = [a for a in answers if not isinstance(a, BaseException)]
    refused = [a for a in answers if isinstance(a, RemoteError)]
    assert len(ok) == 1 and ok[0]["private_member"] is True, answers
    assert len(refused) == 1 and refused[0].code in ("already_requested", "private_busy"), answers
    assert d.daemon.shows.get("show-twin").machine.private_member == "m1"
    await member_end(twins, pub)
    assert await wait_for(lambda: not stack.billing._tasks, 10)
    wallet = await stack.ledger.balance(wallet_account("m1"))
    assert wallet.debits_pending == 0 and (await stack.ledger.replay()).ok


async def member_end(clients: list[Any], pub: Any) -> None:
    """End the private from the member's side, wait for billing, close everything."""
    await clients[0].request("private.end")
    await pub.client.next_event("private.ended", timeout=10)
    for c in clients:
        await c.close()
    await pub.close()


async def test_sigkill_mid_private_restart_writes_the_closing_event(tmp_path: Path) -> None:
    """Protects the issue 11 #19 scenario end to end: kill -9 the daemon during a private,
    restart it on the same data; the file sink then holds usage 1..N and exactly one closing
    event (reason crash, last_seq N, N x rate), and the member was charged N x rate."""
    data = str(tmp_path / "jasmin-billing-crash19")
    await seed_credits(data, "m1", "p2999")
    env = {
        "JASMIN_BILLING_DATA_DIR": data,
        "JASMIN_BILLING_SINKS": "file",
        "JASMIN_BILLING_NODE_ID": "crash19",
        "JASMIN_BILLING_GRANT_SECONDS": "10",
    }
    dp = await start_daemon_process(env=env)
    try:
        pub, member, t0 = await start_private(dp.url, "show-crash19")
        assert await wait_for(lambda: (member_video_times(member, pub.log, t0) or [t0])[-1] > t0 + 3.5, 20)
    finally:
        dp.proc.send_signal(signal.SIGKILL)
        await asyncio.get_running_loop().run_in_executor(None, dp.proc.wait, 10)
    await member.close()
    await pub.close()
    path = Path(data, "billing-events.jsonl")

    def closing() -> list[dict[str, Any]]:
        lines = path.read_text().splitlines() if path.exists() else []
        return [e for e in map(json.loads, lines) if e["data"].get("closing")]

    dp2 = await start_daemon_process(env=env)
    try:
        assert await wait_for(lambda: bool(closing()), 20), "no closing event after the restart"
    finally:
        dp2.proc.send_signal(signal.SIGTERM)
        await asyncio.get_running_loop().run_in_executor(None, dp2.proc.wait, 20)
    events = [json.loads(x) for x in path.read_text().splitlines()]
    usage = sorted(e["data"]["seq"] for e in events if not e["data"].get("closing"))
    (c,) = closing()
    n = len(usage)
    assert usage == list(range(1, n + 1)) and n >= 3
    assert c["data"]["reason"] == "crash" and c["type"] == "com.jasmin.live.private.closed.v1"
    assert (c["data"]["last_seq"], c["data"]["billed_seconds"], c["data"]["total_amount"]) == (n, n, n * RATE)

    from jasmin_sfu.services.ledger import Ledger
    from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore

    store = await SqliteLedgerStore.open(os.path.join(data, "ledger.sqlite3"))
    try:
        import time as _t

        wallet = await Ledger(store, _t.time).balance(wallet_account("m1"))
        assert (wallet.debits_posted, wallet.debits_pending) == (n * RATE, 0)
    finally:
        await store.close()
