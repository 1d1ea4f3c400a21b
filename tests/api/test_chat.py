"""Free-chat rooms over signaling, with real tokens: messages, limits, moderation, tips, privacy.

A real daemon (accounts, billing, the test payment provider) on a FakeClock: the
chat's clock is the accounts' clock, so rate limits, mutes and bans move only
when a test advances it.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from jasmin_signaling.client import RemoteError, SignalingClient
from jasmin_sfu.services.ledger import UNITS_PER_CREDIT, earnings_account, wallet_account
from tests.api.conftest import Api


@pytest.fixture
async def clients() -> AsyncIterator[list[SignalingClient]]:
    opened: list[SignalingClient] = []
    yield opened
    for c in opened:
        await c.close()


class Room:
    """A show "anna" with its performer connected; helpers to bring people in."""

    def __init__(self, api: Api, clients: list[SignalingClient]) -> None:
        self.api = api
        self.clients = clients
        self.admin = ""
        self.perf: SignalingClient | None = None
        self.perf_id = ""
        self.joined: dict[int, dict[str, Any]] = {}

    async def open(self) -> "Room":
        self.admin = await self.api.admin_token()
        token, self.perf_id = await self.api.performer(self.admin, "anna")
        self.perf = await self.connect()
        self.joined[id(self.perf)] = await self.perf.request("join", show_id="anna", role="performer", token=token)
        return self

    async def connect(self) -> SignalingClient:
        c = await SignalingClient.connect(self.api.ws)
        self.clients.append(c)
        return c

    async def join(self, token: str) -> tuple[SignalingClient, dict[str, Any]]:
        c = await self.connect()
        joined = await c.request("join", show_id="anna", role="viewer", token=token)
        self.joined[id(c)] = joined
        return c, joined

    async def member(self, name: str) -> tuple[SignalingClient, str, str]:
        token, member_id = await self.api.member(name)
        c, _ = await self.join(token)
        return c, member_id, token

    async def guest(self) -> tuple[SignalingClient, dict[str, Any]]:
        _, body, _ = await self.api.call("POST", "/api/v1/guest-sessions", json={"adult_confirmed": True})
        return await self.join(body["token"])


async def refused(c: SignalingClient, code: str, method: str, **data: Any) -> RemoteError:
    with pytest.raises(RemoteError) as e:
        await c.request(method, **data)
    assert e.value.code == code, e.value
    return e.value


async def raw_error(c: SignalingClient, method: str, **data: Any) -> dict[str, Any]:
    """The whole error object of a refused request (extra fields included)."""
    import asyncio

    fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    req_id = f"raw-{id(fut)}"
    c._pending[req_id] = fut
    await c.send_raw({"type": "request", "id": req_id, "method": method, "data": data})
    resp = await asyncio.wait_for(fut, 10)
    assert resp["ok"] is False, resp
    return dict(resp["error"])


async def messages_of(c: SignalingClient, n: int) -> list[dict[str, Any]]:
    return [(await c.next_event("chat.message"))["data"]["message"] for _ in range(n)]


async def test_a_message_carries_an_id_author_and_colour_and_reaches_the_room(
    api: Api, clients: list[SignalingClient]
) -> None:
    """Protects the basic room: a member's line reaches the performer and a guest with a
    sortable server id, the author's username and kind; the performer's line carries the
    performer colour; a guest reads and is named guest-xxxx."""
    room = await Room(api, clients).open()
    assert room.perf is not None
    mia, mia_id, _ = await room.member("mia")
    guest, gjoined = await room.guest()
    assert gjoined["chat"]["you"]["kind"] == "guest" and gjoined["chat"]["you"]["username"].startswith("guest-")
    sent = (await mia.request("chat.send", text="  hello anna  "))["message"]
    assert sent["text"] == "hello anna" and sent["author"] == {
        "id": mia_id,
        "username": "mia",
        "kind": "member",
        "top_member": False,
        "color": None,
    }
    for c in (room.perf, guest):
        got = (await c.next_event("chat.message"))["data"]["message"]
        assert got == sent
    reply = (await room.perf.request("chat.send", text="hi mia", emoticons=[":kiss:"]))["message"]
    assert reply["author"]["color"] == "#e0357a" and reply["emoticons"] == [":kiss:"]
    assert reply["id"] > sent["id"]
    assert (await guest.next_event("chat.message"))["data"]["message"]["id"] == reply["id"]


async def test_history_for_a_late_joiner(api: Api, clients: list[SignalingClient]) -> None:
    """Protects late joiners: the join answer carries the last messages, oldest first, and
    chat.history pages further back with `before`."""
    room = await Room(api, clients).open()
    mia, _, _ = await room.member("mia")
    ids = []
    for i in range(7):
        ids.append((await mia.request("chat.send", text=f"line {i}"))["message"]["id"])
        api.clock.advance(2.1)  # 5 per 10 s: stay under the member limit
    late, joined = await room.join((await api.member("late"))[0])
    hist = joined["chat"]["history"]
    assert [m["id"] for m in hist] == ids and [m["text"] for m in hist] == [f"line {i}" for i in range(7)]
    older = (await late.request("chat.history", before=ids[4], limit=2))["messages"]
    assert [m["id"] for m in older] == ids[2:4]


async def test_the_documented_rate_limits_members_5_per_10s_guests_1_per_10s(
    api: Api, clients: list[SignalingClient]
) -> None:
    """Protects the room from floods: a member writes 5 messages in 10 s and the 6th is
    rate_limited with a retry_after; a guest may write 1 per 10 s; time passing (injected)
    lets both write again."""
    room = await Room(api, clients).open()
    mia, _, _ = await room.member("mia")
    for i in range(5):
        await mia.request("chat.send", text=f"m{i}")
        api.clock.advance(1)
    err = await raw_error(mia, "chat.send", text="one too many")
    assert err["code"] == "rate_limited" and err["retry_after"] == pytest.approx(5.0)
    api.clock.advance(5.01)
    await mia.request("chat.send", text="again")
    guest, _ = await room.guest()
    await guest.request("chat.send", text="hi from a guest")
    api.clock.advance(9)
    err = await raw_error(guest, "chat.send", text="second")
    assert err["code"] == "rate_limited" and err["retry_after"] == pytest.approx(1.0)
    await refused(guest, "bad_request", "chat.send", text="x" * 201)  # guests: 200 characters
    api.clock.advance(1.01)
    await guest.request("chat.send", text="second")


async def test_slow_mode_on_top_of_the_rate_limit(api: Api, clients: list[SignalingClient]) -> None:
    """Protects slow mode: with 30 s set, a member's second message within 30 s is refused
    with the wait, the performer is exempt, and 0 turns it off."""
    room = await Room(api, clients).open()
    assert room.perf is not None
    mia, _, _ = await room.member("mia")
    await refused(room.perf, "bad_request", "chat.slow", seconds=2)
    await room.perf.request("chat.slow", seconds=30)
    ev = await mia.next_event("chat.moderation")
    assert ev["data"] == {"room": "anna", "action": "slow", "slow_s": 30}
    await mia.request("chat.send", text="one")
    api.clock.advance(10)
    err = await raw_error(mia, "chat.send", text="two")
    assert err["code"] == "rate_limited" and err["retry_after"] == pytest.approx(20.0) and "slow" in err["message"]
    await room.perf.request("chat.send", text="performers are exempt")
    await room.perf.request("chat.send", text="twice")
    api.clock.advance(20)
    await mia.request("chat.send", text="two")
    await room.perf.request("chat.slow", seconds=0)
    await mia.request("chat.send", text="three")


async def test_malformed_chat_input_gets_error_codes(api: Api, clients: list[SignalingClient]) -> None:
    """Protects the server from bad input: wrong types, unknown fields, control characters,
    empty or too-long text, unknown emoticons, colours and emoticons by non-TopMembers, chat
    before joining: each a clear code, never a crash, and the connection keeps working."""
    room = await Room(api, clients).open()
    mia, _, _ = await room.member("mia")
    lone = await room.connect()
    await refused(lone, "not_joined", "chat.send", text="hi")
    await refused(mia, "bad_request", "chat.send")
    await refused(mia, "bad_request", "chat.send", text=5)
    await refused(mia, "bad_request", "chat.send", text="hi", colour="#fff")
    await refused(mia, "bad_request", "chat.send", text="bell\x07")
    await refused(mia, "bad_request", "chat.send", text="two\nlines")
    await refused(mia, "bad_request", "chat.send", text="   ")
    await refused(mia, "bad_request", "chat.send", text="x" * 501)
    await refused(mia, "bad_request", "chat.send", text="x" * 3000)
    await refused(mia, "forbidden", "chat.send", text="hi", emoticons=[":heart:"])
    await refused(mia, "forbidden", "chat.send", text="hi", color="#d4a017")
    assert room.perf is not None
    await refused(room.perf, "bad_request", "chat.send", text="hi", emoticons=[":nope:"])
    await refused(room.perf, "bad_request", "chat.send", text="hi", emoticons=[":fire:"] * 6)
    await refused(mia, "bad_request", "chat.history", limit=0)
    await refused(mia, "bad_request", "chat.history", before="not an id!")
    await refused(mia, "bad_request", "chat.tip", credits="5", tip_id="t1")
    await refused(mia, "bad_request", "chat.tip", credits=0, tip_id="t1")
    await refused(mia, "bad_request", "chat.report", message_id="m", reason="")
    await refused(mia, "unknown_message", "chat.report", message_id="0000000000000001-00000000", reason="spam")
    await refused(room.perf, "unknown_message", "chat.delete", message_id="0000000000000001-00000000")
    await refused(room.perf, "bad_request", "chat.mute", user="x", seconds=0)
    await refused(room.perf, "bad_request", "chat.mute", user="x", seconds=14 * 86400 + 1)
    await refused(room.perf, "bad_request", "chat.ban", user="x", seconds=-1)
    await refused(room.perf, "bad_request", "chat.kick", user="bad id!")
    await mia.request("chat.send", text="still fine")  # the connection keeps working


async def test_a_banned_user_is_refused_and_cannot_rejoin(api: Api, clients: list[SignalingClient]) -> None:
    """Protects rooms from harassers: a ban removes the member's connection from the show,
    refuses its messages and its rejoin with `banned`; a timed ban ends by itself (injected
    clock) and unban lifts a permanent one."""
    room = await Room(api, clients).open()
    assert room.perf is not None
    mia, mia_id, token = await room.member("mia")
    bob, _, _ = await room.member("bob")
    await room.perf.request("chat.ban", user=mia_id, reason="harassment")
    removed = await mia.next_event("chat.removed")
    assert removed["data"]["action"] == "ban" and removed["data"]["until"] is None
    ev = await bob.next_event("chat.moderation")
    assert ev["data"]["action"] == "ban" and ev["data"]["target"] == mia_id
    await refused(mia, "not_joined", "chat.send", text="let me back")
    show = api.daemon.shows.get("anna")
    assert show is not None and mia_id not in {p.member_id for p in show.participants.values()}
    again = await room.connect()
    err = await refused(again, "banned", "join", show_id="anna", role="viewer", token=token)
    assert "banned" in err.message
    await room.perf.request("chat.unban", user=mia_id)
    back = await room.connect()
    await back.request("join", show_id="anna", role="viewer", token=token)
    await back.request("chat.send", text="sorry")
    await room.perf.request("chat.ban", user=mia_id, seconds=600)
    await back.next_event("chat.removed")
    await refused(await room.connect(), "banned", "join", show_id="anna", role="viewer", token=token)
    api.clock.advance(600)
    last = await room.connect()
    await last.request("join", show_id="anna", role="viewer", token=token)
    await last.request("chat.send", text="the ban ran out")


async def test_a_timed_out_user_writes_again_once_the_timeout_passed(api: Api, clients: list[SignalingClient]) -> None:
    """Protects the timeout rule with an injected clock: muted for 60 s, the member's messages
    are refused with `muted` and `until`, it stays in the show and reads, and at 60 s it writes
    again; unmute ends a timeout early."""
    room = await Room(api, clients).open()
    assert room.perf is not None
    mia, mia_id, _ = await room.member("mia")
    muted = await room.perf.request("chat.mute", user=mia_id, seconds=60)
    assert muted["until"] == pytest.approx(api.clock() + 60)
    err = await raw_error(mia, "chat.send", text="hello?")
    assert err["code"] == "muted" and err["until"] == pytest.approx(api.clock() + 60)
    await room.perf.request("chat.send", text="still reading?")
    assert (await mia.next_event("chat.message"))["data"]["message"]["text"] == "still reading?"
    api.clock.advance(59.9)
    await refused(mia, "muted", "chat.send", text="now?")
    api.clock.advance(0.1)
    await mia.request("chat.send", text="I can write again")
    await room.perf.request("chat.mute", user=mia_id, seconds=600)
    await refused(mia, "muted", "chat.send", text="again?")
    await room.perf.request("chat.unmute", user=mia_id)
    await mia.request("chat.send", text="unmuted early")


async def test_kick_removes_the_connection_and_the_user_may_rejoin(api: Api, clients: list[SignalingClient]) -> None:
    """Protects kick: the kicked member's connection leaves the show (it is told), it is not
    banned, so a new join succeeds."""
    room = await Room(api, clients).open()
    assert room.perf is not None
    mia, mia_id, token = await room.member("mia")
    await room.perf.request("chat.kick", user=mia_id, reason="calm down")
    assert (await mia.next_event("chat.removed"))["data"]["action"] == "kick"
    await refused(mia, "not_joined", "chat.send", text="hey")
    again, _ = await room.join(token)
    await again.request("chat.send", text="back")


async def test_moderation_by_a_non_moderator_is_forbidden_support_may_moderate(
    api: Api, clients: list[SignalingClient]
) -> None:
    """Protects moderation rights: members and guests get `forbidden` for every moderation
    verb; an admin (support) in the room may moderate; nobody may sanction the performer."""
    room = await Room(api, clients).open()
    assert room.perf is not None
    mia, mia_id, _ = await room.member("mia")
    bob, bob_id, _ = await room.member("bob")
    guest, _ = await room.guest()
    msg = (await bob.request("chat.send", text="spam"))["message"]
    for c in (mia, guest):
        await refused(c, "forbidden", "chat.mute", user=bob_id, seconds=10)
        await refused(c, "forbidden", "chat.unmute", user=bob_id)
        await refused(c, "forbidden", "chat.ban", user=bob_id)
        await refused(c, "forbidden", "chat.unban", user=bob_id)
        await refused(c, "forbidden", "chat.kick", user=bob_id)
        await refused(c, "forbidden", "chat.delete", message_id=msg["id"])
        await refused(c, "forbidden", "chat.slow", seconds=30)
        await refused(c, "forbidden", "chat.clear")
    support, _ = await room.join(room.admin)
    await support.request("chat.mute", user=bob_id, seconds=30)
    await refused(bob, "muted", "chat.send", text="more spam")
    await refused(support, "forbidden", "chat.ban", user=room.perf_id)
    await refused(room.perf, "forbidden", "chat.mute", user=room.perf_id, seconds=5)
    await mia.request("chat.send", text="untouched")
    status, log, _ = await api.call("GET", "/api/v1/moderation/log?room=anna", token=room.admin)
    assert status == 200 and [e["action"] for e in log["entries"]] == ["mute"]  # the refusals logged nothing


async def test_every_moderation_action_is_logged_and_readable_by_support_only(
    api: Api, clients: list[SignalingClient]
) -> None:
    """Protects accountability: mute, unmute, ban, unban, kick, delete, slow and clear each
    write one log row (actor, action, target, reason, params, ts), newest first, readable at
    GET /api/v1/moderation/log by admins only; delete and clear reach the room and history;
    a report is stored for support."""
    room = await Room(api, clients).open()
    assert room.perf is not None
    mia, mia_id, token = await room.member("mia")
    bob, bob_id, _ = await room.member("bob")
    bad = (await bob.request("chat.send", text="prohibited stuff"))["message"]
    assert (await mia.request("chat.report", message_id=bad["id"], reason="prohibited content"))["filed"] is True
    assert (await mia.request("chat.report", message_id=bad["id"], reason="again"))["filed"] is False
    p = room.perf
    await p.request("chat.mute", user=mia_id, seconds=30, reason="r1")
    await p.request("chat.unmute", user=mia_id)
    await p.request("chat.delete", message_id=bad["id"], reason="prohibited")
    assert (await mia.next_event("chat.deleted"))["data"] == {"room": "anna", "message_id": bad["id"]}
    await p.request("chat.slow", seconds=10)
    await p.request("chat.slow", seconds=0)
    await p.request("chat.ban", user=bob_id, seconds=60)
    await p.request("chat.unban", user=bob_id)
    await p.request("chat.kick", user=mia_id)
    await mia.next_event("chat.removed")
    mia2, _ = await room.join(token)
    await mia2.request("chat.send", text="before the clear")
    await p.request("chat.clear", reason="fresh start")
    assert (await mia2.next_event("chat.cleared"))["data"] == {"room": "anna"}
    late, joined = await room.join((await api.member("late"))[0])
    assert joined["chat"]["history"] == []
    status, body, _ = await api.call("GET", "/api/v1/moderation/log?room=anna", token=room.admin)
    assert status == 200
    entries = body["entries"]
    assert [e["action"] for e in entries] == [
        "clear",
        "kick",
        "unban",
        "ban",
        "slow",
        "slow",
        "delete",
        "unmute",
        "mute",
    ]
    assert all(e["actor"]["id"] == room.perf_id and e["room"] == "anna" for e in entries)
    assert entries[3]["target"] == bob_id and entries[3]["params"] == {"seconds": 60}
    assert entries[6]["params"] == {"message_id": bad["id"]} and entries[6]["reason"] == "prohibited"
    assert entries[8]["reason"] == "r1" and entries[8]["target"] == mia_id and entries[8]["ts"] == api.clock()
    status, body, _ = await api.call("GET", "/api/v1/moderation/reports?room=anna", token=room.admin)
    assert status == 200 and [(r["message_id"], r["text"], r["reason"]) for r in body["reports"]] == [
        (bad["id"], "prohibited stuff", "prohibited content")
    ]
    member_token = (await api.member("nosy"))[0]
    for path in ("/api/v1/moderation/log?room=anna", "/api/v1/moderation/reports"):
        assert (await api.call("GET", path, token=member_token))[0] == 403
        assert (await api.call("GET", path))[0] == 401


async def buy(api: Api, token: str, key: str) -> None:
    status, body, _ = await api.call(
        "POST", "/api/v1/wallet/purchases", token=token, json={"package": "p2999", "idempotency_key": "purchase-" + key}
    )
    assert status == 201, body


async def test_tips_move_credits_and_king_of_the_room_changes_hands(api: Api, clients: list[SignalingClient]) -> None:
    """Protects surprises: a tip takes the credits from the member's wallet and gives the
    performer its share (50 %), the room sees the tip, King of the Room is the top spender
    of the show session with the credits spent, and it changes hands when outspent."""
    room = await Room(api, clients).open()
    assert room.perf is not None and api.daemon.billing is not None
    ledger = api.daemon.billing.ledger
    mia, mia_id, mia_token = await room.member("mia")
    bob, bob_id, bob_token = await room.member("bob")
    await buy(api, mia_token, "mia-1")
    await buy(api, bob_token, "bob-1")
    before = (await ledger.balance(wallet_account(mia_id))).available
    out = await mia.request("chat.tip", credits=5, tip_id="t-1")
    assert out["king"] == {"id": mia_id, "username": "mia", "credits": 5} and out["replayed"] is False
    assert (await ledger.balance(wallet_account(mia_id))).available == before - 5 * UNITS_PER_CREDIT
    assert (await ledger.balance(earnings_account(room.perf_id))).credits_posted == 5 * UNITS_PER_CREDIT // 2
    tip_ev = await bob.next_event("chat.tip")
    assert tip_ev["data"]["tip"]["credits"] == 5 and tip_ev["data"]["tip"]["from"]["username"] == "mia"
    assert (await bob.next_event("chat.king"))["data"]["king"] == {"id": mia_id, "username": "mia", "credits": 5}
    await bob.request("chat.tip", credits=3, tip_id="b-1")
    out = await bob.request("chat.tip", credits=3, tip_id="b-2")
    assert out["king"] == {"id": bob_id, "username": "bob", "credits": 6}
    kings = [(await mia.next_event("chat.king"))["data"]["king"] for _ in range(2)]
    # Bob's 3 credits did not outspend mia's 5: the King changed once, at 6.
    assert kings == [{"id": mia_id, "username": "mia", "credits": 5}, {"id": bob_id, "username": "bob", "credits": 6}]
    late, joined = await room.join((await api.member("late"))[0])
    assert joined["chat"]["king"] == {"id": bob_id, "username": "bob", "credits": 6}
    assert (await ledger.balance(earnings_account(room.perf_id))).credits_posted == 11 * UNITS_PER_CREDIT // 2


async def test_a_tip_without_enough_credits_is_refused_and_charges_nothing(
    api: Api, clients: list[SignalingClient]
) -> None:
    """Protects wallets: a tip above the balance is `insufficient_credits`, the wallet and the
    performer's earnings are unchanged, nobody becomes King; guests and performers cannot tip."""
    room = await Room(api, clients).open()
    assert room.perf is not None and api.daemon.billing is not None
    ledger = api.daemon.billing.ledger
    mia, mia_id, mia_token = await room.member("mia")
    await buy(api, mia_token, "mia-1")  # 30 credits
    before = (await ledger.balance(wallet_account(mia_id))).available
    err = await refused(mia, "insufficient_credits", "chat.tip", credits=31, tip_id="big")
    assert "nothing was charged" in err.message
    assert (await ledger.balance(wallet_account(mia_id))).available == before
    await ledger.open_performer(room.perf_id)
    assert (await ledger.balance(earnings_account(room.perf_id))).credits_posted == 0
    poor, _, _ = await room.member("poor")
    await refused(poor, "insufficient_credits", "chat.tip", credits=1, tip_id="p")
    guest, _ = await room.guest()
    await refused(guest, "forbidden", "chat.tip", credits=1, tip_id="g")
    await refused(room.perf, "forbidden", "chat.tip", credits=1, tip_id="x")
    # A performer's token watching this room chats as a member but may not tip from its earnings.
    other_perf, _ = await api.performer(room.admin, "zara")
    visitor, _ = await room.join(other_perf)
    await refused(visitor, "forbidden", "chat.tip", credits=1, tip_id="v")
    late, joined = await room.join((await api.member("late"))[0])
    assert joined["chat"]["king"] is None


async def test_a_retried_tip_charges_once(api: Api, clients: list[SignalingClient]) -> None:
    """Protects against double charges: the same tip_id sent again (here on a new connection,
    as after a reconnect) charges once, counts once for King, is announced once and answers
    `replayed`; the same tip_id with another amount is `idempotency_conflict`."""
    room = await Room(api, clients).open()
    assert room.perf is not None and api.daemon.billing is not None
    ledger = api.daemon.billing.ledger
    mia, mia_id, mia_token = await room.member("mia")
    await buy(api, mia_token, "mia-1")
    before = (await ledger.balance(wallet_account(mia_id))).available
    first = await mia.request("chat.tip", credits=4, tip_id="tip-42")
    mia2, _ = await room.join(mia_token)
    second = await mia2.request("chat.tip", credits=4, tip_id="tip-42")
    assert (first["replayed"], second["replayed"]) == (False, True)
    assert second["king"] == {"id": mia_id, "username": "mia", "credits": 4}
    assert (await ledger.balance(wallet_account(mia_id))).available == before - 4 * UNITS_PER_CREDIT
    await refused(mia2, "idempotency_conflict", "chat.tip", credits=5, tip_id="tip-42")
    assert (await ledger.balance(wallet_account(mia_id))).available == before - 4 * UNITS_PER_CREDIT
    await room.perf.request("chat.send", text="marker")
    seen = []
    while True:
        ev = await room.perf.next_event()
        if ev["event"] == "chat.message" and ev["data"]["message"]["text"] == "marker":
            break
        seen.append(ev["event"])
    assert seen.count("chat.tip") == 1


async def test_nothing_of_a_private_reaches_anyone_else(api: Api, clients: list[SignalingClient]) -> None:
    """Protects docs/product.md's privacy rule: while the show is private, what the performer and
    the private's member write (and the member's tips) reaches only the two of them - not
    another member, not a guest, not a late joiner's history, not King of the Room - while
    the others' free chat still works."""
    room = await Room(api, clients).open()
    assert room.perf is not None
    mia, mia_id, mia_token = await room.member("mia")
    bob, bob_id, _ = await room.member("bob")
    guest, _ = await room.guest()
    await buy(api, mia_token, "mia-1")
    await mia.request("private.request")
    await room.perf.request("private.accept", member_id=mia_id)
    p_line = (await room.perf.request("chat.send", text="secret from anna"))["message"]
    m_line = (await mia.request("chat.send", text="secret from mia"))["message"]
    assert p_line.get("private") and m_line.get("private")
    assert (await mia.next_event("chat.message"))["data"]["message"]["text"] == "secret from anna"
    assert (await room.perf.next_event("chat.message"))["data"]["message"]["text"] == "secret from anna"
    assert (await room.perf.next_event("chat.message"))["data"]["message"]["text"] == "secret from mia"
    tip = await mia.request("chat.tip", credits=2, tip_id="private-tip")
    assert tip["tip"]["private"] is True and tip["king"] is None
    assert (await room.perf.next_event("chat.tip"))["data"]["tip"]["credits"] == 2
    public = (await bob.request("chat.send", text="anyone here?"))["message"]
    late_token = (await api.member("late"))[0]
    late, joined = await room.join(late_token)
    assert [m["text"] for m in joined["chat"]["history"]] == ["anyone here?"] and joined["chat"]["king"] is None
    for c in (bob, guest):
        seen = []
        while True:
            ev = await c.next_event()
            seen.append(ev)
            if ev["event"] == "chat.message" and ev["data"]["message"]["id"] == public["id"]:
                break
        text = repr(seen)
        assert "secret" not in text and "private-tip" not in text and mia_id not in text, seen
        assert not [e for e in seen if e["event"] in ("chat.tip", "chat.king")]
        hist = (await c.request("chat.history"))["messages"]
        assert [m["text"] for m in hist] == ["anyone here?"]
    perf_hist = (await room.perf.request("chat.history"))["messages"]
    assert [m["text"] for m in perf_hist] == ["secret from anna", "secret from mia", "anyone here?"]
    mia_hist = (await mia.request("chat.history"))["messages"]
    assert [m["text"] for m in mia_hist] == ["secret from anna", "secret from mia", "anyone here?"]
    assert bob_id != mia_id


async def test_top_members_pick_a_colour_and_use_emoticons(api: Api, clients: list[SignalingClient]) -> None:
    """Protects the TopMember benefits (docs/product.md): with the injected TopMember check saying
    yes, a member's lines carry top_member and the gold colour or one picked from the palette,
    and emoticons pass; a colour outside the palette is refused; others stay plain."""
    assert api.daemon.chat is not None
    room = await Room(api, clients).open()
    top, top_id, _ = await room.member("topper")
    plain, _, _ = await room.member("plain")

    async def is_top(user_id: str) -> bool:
        return user_id == top_id

    api.daemon.chat.is_top_member = is_top
    m = (await top.request("chat.send", text="shiny", emoticons=[":crown:", ":heart:"]))["message"]
    assert m["author"]["top_member"] is True and m["author"]["color"] == "#d4a017"
    assert m["emoticons"] == [":crown:", ":heart:"]
    m = (await top.request("chat.send", text="teal", color="#16a085"))["message"]
    assert m["author"]["color"] == "#16a085"
    await refused(top, "bad_request", "chat.send", text="x", color="#000000")
    await refused(plain, "forbidden", "chat.send", text="x", emoticons=[":crown:"])
    assert (await plain.request("chat.send", text="plain"))["message"]["author"]["color"] is None
    _, joined = await room.join((await api.member("another"))[0])
    assert joined["chat"]["palette"] == [] and joined["chat"]["emoticons"] == []


async def test_chat_is_a_personal_data_source_and_retention_follows_purchases(
    api: Api, clients: list[SignalingClient]
) -> None:
    """Protects the privacy seam: the daemon registers "chat"; the export holds the member's
    lines; retention deletes a member's log 120 days after its last purchase and keeps it for a
    recent buyer, and guests' lines after 15 days; erasure blanks the member's lines."""
    from jasmin_sfu.services.personal_data import RetentionPolicy

    chat = api.daemon.chat
    assert chat is not None and chat in api.daemon.personal_data.sources
    room = await Room(api, clients).open()
    old, old_id, _ = await room.member("old")
    new, new_id, _ = await room.member("new")
    guest, _ = await room.guest()
    await old.request("chat.send", text="old buyer")
    await new.request("chat.send", text="recent buyer")
    await guest.request("chat.send", text="a guest")
    assert [r["text"] for r in (await chat.export(old_id))["chat_messages"]] == ["old buyer"]
    day = 86400 * 1_000_000
    now = int(api.clock() * 1_000_000) + day
    policy = RetentionPolicy(
        now_us=now,
        usage_before_us=now - 120 * day,
        guest_before_us=now - 15 * day,
        identity_before_us=now - 5 * day,
        inactive_before_us=now - 365 * day,
        last_purchase_us={old_id: now - 121 * day, new_id: now - 10 * day},
    )
    assert await chat.purge(policy) == 1  # only the old buyer's line: the guest's is 1 day old
    later = RetentionPolicy(**{**policy.__dict__, "guest_before_us": now + 1})
    assert await chat.purge(later) == 1  # now the guest's line
    hist = (await new.request("chat.history"))["messages"]
    assert [m["text"] for m in hist] == ["recent buyer"]
    assert await chat.erase(new_id, "erased-x") > 0
    hist = (await new.request("chat.history"))["messages"]
    assert [(m["author"]["id"], m["text"]) for m in hist] == [("erased-x", "")]
