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
        "id": mia_id, "username": "mia", "kind": "member", "top_member": False, "color": None}
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
