"""Privacy rights through the real daemon (accounts, billing, the test payment provider, a fake
clock): visibility enforced in the one member view, a data download that holds every row about the
member in every database of the node, "forget my data", login throttling, revoked websockets."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from jasmin_metering.events import CloudEvent, event_id, rfc3339_us
from jasmin_signaling.client import SignalingClient
from jasmin_sfu.services.ledger import wallet_account
from jasmin_sfu.store.chat_repo import MessageRow
from tests.api.conftest import Api

DAY = 86400


async def _buy(api: Api, token: str, key: str = "key-00001") -> None:
    status, body, _ = await api.call(
        "POST",
        "/api/v1/wallet/purchases",
        token=token,
        json={"package": "p2999", "idempotency_key": key, "card_last4": "4242", "card_expiry": "12/29"},
    )
    assert status == 201, body


async def _private(api: Api, member_id: str, performer_id: str, seconds: int = 10) -> None:
    """A paid private of ``seconds`` straight through credit control (no media needed for the money)."""
    b = api.daemon.billing
    assert b is not None
    await b.ledger.open_performer(performer_id)
    sid = f"api1-{uuid.uuid4().hex}"
    await b.cc.authorize(sid, wallet_account(member_id), 200, performer_id=performer_id)
    await b.cc.terminate(sid, 1, seconds)


async def _usage_event(api: Api, member_id: str, *, delivered: bool = True) -> None:
    """One usage event of the member in the billing outbox, as a billed second writes it.

    ``delivered``: wait until every sink acked it; the relay then prunes it from the
    outbox, so it lives on in the local sink (billing-events.jsonl)."""
    b = api.daemon.billing
    assert b is not None
    sid = f"api1-{uuid.uuid4().hex}"
    now = rfc3339_us(int(api.clock() * 1_000_000))
    b.outbox.append(
        [
            CloudEvent(
                id=event_id(sid, 1),
                source="urn:jasmin:session:" + sid,
                type="com.jasmin.usage.v1",
                time=now,
                sequence="000000000001",
                partitionkey="wallet/" + wallet_account(member_id),
                subject="member/" + member_id,
                recordedtime=now,
                data={"member_id": member_id, "units": 1},
            )
        ]
    )
    if delivered:
        await asyncio.wait_for(b.relay.wait_idle(), 10)


async def _profile(api: Api, token: str, **fields: Any) -> None:
    status, body, _ = await api.call("PATCH", "/api/v1/me/profile", token=token, json=fields)
    assert status == 200, body


async def _visibility(api: Api, token: str, **fields: str) -> None:
    status, body, _ = await api.call("PATCH", "/api/v1/me/privacy", token=token, json=fields)
    assert status == 200, body


# -- visibility ---------------------------------------------------------------------------------


async def test_nobody_visibility_shows_a_performer_the_username_only(api: Api) -> None:
    """Protects docs/product.md's 'nobody': with a full profile and a rank, a performer (even one the
    member had a private with) sees the username, the site, favourite and spending, never a profile
    field or the mask; signaling's private requests carry the opaque member id alone."""
    admin = await api.admin_token()
    ptok, pid = await api.performer(admin, "anna")
    mtok, mid = await api.member("mia")
    await _buy(api, mtok)
    await _private(api, mid, pid)
    await _profile(
        api,
        mtok,
        display_name="Mia M",
        gender="female",
        age_range="25-34",
        country="DE",
        languages=["de", "en"],
        about="hello",
    )
    status, body, _ = await api.call("GET", "/api/v1/me/privacy", token=mtok)
    assert body == {"profile_visibility": "nobody", "mask_visibility": "private"}  # private by default
    for path in ("/api/v1/members/mia", f"/api/v1/members/by-id/{mid}"):
        status, view, _ = await api.call("GET", path, token=ptok)
        assert status == 200, view
        assert set(view) == {"username", "site", "favourite", "spending"}
        assert view["username"] == "mia" and view["site"] == "jasmin"
        assert view["spending"]["privates"] == 1 and view["spending"]["private_seconds"] == 10
        flat = json.dumps(view)
        assert "Mia M" not in flat and "hello" not in flat and "DE" not in flat and mid not in flat
    # Another member or a guest sees nothing at all.
    otok, _ = await api.member("otto")
    assert (await api.call("GET", "/api/v1/members/mia", token=otok))[0] == 403
    # The member itself sees everything.
    status, own, _ = await api.call("GET", "/api/v1/members/mia", token=mtok)
    assert own["profile"]["display_name"] == "Mia M" and own["mask"] == {"rank": "bronze", "vip_points": 1}


async def test_visibility_levels_follow_the_private_history(api: Api) -> None:
    """Protects 'only performers they had a private with' and 'all performers', for the profile and
    for the mask separately: a performer without a private sees less than one with."""
    admin = await api.admin_token()
    with_tok, with_id = await api.performer(admin, "bea")
    without_tok, _ = await api.performer(admin, "cleo")
    mtok, mid = await api.member("max")
    await _buy(api, mtok)
    await _private(api, mid, with_id, seconds=30)
    await _profile(api, mtok, display_name="Max")
    await _visibility(api, mtok, profile_visibility="performers_with_private", mask_visibility="public")
    v_with = (await api.call("GET", "/api/v1/members/max", token=with_tok))[1]
    v_without = (await api.call("GET", "/api/v1/members/max", token=without_tok))[1]
    assert v_with["profile"]["display_name"] == "Max" and "profile" not in v_without
    assert v_with["mask"]["rank"] == "bronze" and v_without["mask"]["rank"] == "bronze"  # public
    assert v_with["spending"]["private_credits"] == "1.00" and v_without["spending"]["privates"] == 0
    await _visibility(api, mtok, profile_visibility="all_performers", mask_visibility="performers_with_private")
    v_without = (await api.call("GET", "/api/v1/members/max", token=without_tok))[1]
    assert v_without["profile"]["display_name"] == "Max" and "mask" not in v_without
    status, body, _ = await api.call("PATCH", "/api/v1/me/privacy", token=mtok, json={"profile_visibility": "all"})
    assert status == 400 and body["error"]["code"] == "bad_request"
    status, body, _ = await api.call("PATCH", "/api/v1/me/profile", token=mtok, json={"country": "Germany"})
    assert status == 400
    await _profile(api, mtok, display_name="")  # "" clears
    own = (await api.call("GET", "/api/v1/me/profile", token=mtok))[1]
    assert own["display_name"] is None and own["mask"]["vip_points"] == 1


# -- data download --------------------------------------------------------------------------------


def _norm(v: Any) -> Any:
    """A stored value as the download shows it: JSON documents (outbox BLOBs, sink TEXT) parsed."""
    if isinstance(v, (bytes, memoryview)):
        raw = bytes(v)
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")
    if isinstance(v, str) and v.startswith("{"):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def _rows_mentioning(data_dir: Path, needle: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(file, table, row) of every row of every SQLite table, and every line of every JSON-lines
    file (table = the file's name), in the node's data dir holding ``needle``."""
    out = []
    for j in sorted(data_dir.glob("*.jsonl")):
        for line in j.read_bytes().splitlines():
            if needle.encode() in line:
                out.append((j.name, j.name, json.loads(line)))
    for f in sorted(data_dir.glob("*.sqlite3")):
        db = sqlite3.connect(f)
        try:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for t in tables:
                cur = db.execute(f'SELECT * FROM "{t}"')
                names = [d[0] for d in cur.description]
                for r in cur.fetchall():
                    if any(
                        needle in (bytes(v).decode(errors="replace") if isinstance(v, (bytes, memoryview)) else str(v))
                        for v in r
                        if v is not None
                    ):
                        out.append((f.name, t, {n: _norm(v) for n, v in zip(names, r)}))
        finally:
            db.close()
    return out


def _same(stored: Any, exported: Any) -> bool:
    # A list the store keeps as text (chat's emoticons) is exported as a list: not a mismatch.
    return stored == _norm(exported) or (isinstance(exported, list) and isinstance(stored, str))


def _covered(row: dict[str, Any], exported: list[dict[str, Any]]) -> bool:
    return any(all(k in row and _same(row[k], v) for k, v in e.items()) and e for e in exported)


async def test_the_download_holds_every_row_of_every_database_about_the_member(api: Api, tmp_path: Path) -> None:
    """Protects 'the data download contains every row held about the member' against drift: every
    row of every table in every SQLite file of the node that mentions the member id (accounts, ledger,
    the billing outbox, and whatever tables chat, social or a later feature add), and every line of
    the local billing log, must be in the download, in a table of the same name, so a new table
    that is not exported fails here. Usage events are held in two places: the outbox until every
    sink acked them (then the relay prunes them), the local sink's billing-events.jsonl after."""
    admin = await api.admin_token()
    ptok, pid = await api.performer(admin, "dana")
    mtok, mid = await api.member("dora")
    await api.accounts.login("dora", "password-dora")  # a second session
    await _buy(api, mtok)
    await _private(api, mid, pid)
    await _profile(api, mtok, display_name="Dora", about="about me")
    await _usage_event(api, mid)  # delivered: pruned from the outbox, kept in billing-events.jsonl
    b = api.daemon.billing
    assert b is not None
    await b.relay.stop()  # the sinks are "down": the next event stays in the outbox
    await _usage_event(api, mid, delivered=False)
    status, body, _ = await api.call("PUT", "/api/v1/me/favourites/dana", token=mtok)
    assert status in (200, 201), body
    social = api.daemon.social
    assert social is not None
    await social.record_private(mid, pid, 60, show_id="dana")
    chat = api.daemon.chat
    assert chat is not None
    await chat.store.add_message(
        MessageRow(
            chat.new_id(),
            "dana",
            mid,
            "dora",
            "member",
            False,
            None,
            "hello dana",
            (),
            None,
            int(api.clock() * 1_000_000),
        )
    )
    # The performer's line in dora's private names dora only in private_to.
    await chat.store.add_message(
        MessageRow(
            chat.new_id(),
            "dana",
            pid,
            "dana",
            "performer",
            False,
            None,
            "just for you",
            (),
            mid,
            int(api.clock() * 1_000_000),
        )
    )
    status, feed, _ = await api.call("POST", "/api/v1/me/feed/token", token=mtok)
    assert status in (200, 201), feed
    status, data, resp = await api.call("GET", "/api/v1/me/data", token=mtok)
    assert status == 200 and data["member_id"] == mid and data["format"] == "jasmin-data-download/1"
    assert resp.headers["Content-Disposition"].startswith("attachment")
    by_table: dict[str, list[dict[str, Any]]] = {}
    for tables in data["sources"].values():
        for table, rows in tables.items():
            by_table.setdefault(table, []).extend(rows)
    held = _rows_mentioning(tmp_path, mid)
    files = {f for f, _, _ in held}
    assert {"accounts.sqlite3", "ledger.sqlite3", "billing-outbox.sqlite3", "billing-events.jsonl"} <= files
    usage = data["sources"]["billing_usage"]
    assert len(usage["outbox_events"]) == 1 and len(usage["billing-events.jsonl"]) == 1
    assert {"social.sqlite3", "chat.sqlite3"} <= files
    # The social source names its tables without the "soc_" prefix of the database, some in words.
    social_names = {
        "soc_feeds": "feed",
        "soc_mail_subscriptions": "mailing_subscriptions",
        "soc_top_members": "top_membership",
        "soc_presets": "search_presets",
        "soc_performer_attrs": "performer_attributes",
    }
    missing = [
        (f, t, r)
        for f, t, r in held
        if not _covered(r, by_table.get(t, []) + by_table.get(social_names.get(t, t.removeprefix("soc_")), []))
    ]
    assert not missing, f"rows about the member missing from the download: {missing[:5]}"
    assert "just for you" in [m["text"] for m in data["sources"]["chat"]["chat_messages"]]
    flat = json.dumps(data)
    assert "$argon2" not in flat  # no password hash, no token hash
    assert "token_hash" not in flat and "token" not in data["sources"]["social"]["feed"][0]
    assert hashlib.sha256(feed["token"].encode()).hexdigest() not in flat  # the feed's token hash
    # Performers and guests have no member download.
    assert (await api.call("GET", "/api/v1/me/data", token=ptok))[0] == 403


# -- forget my data -----------------------------------------------------------------------------------


async def test_erasure_erases_personal_fields_keeps_money_and_blacklists_the_name(api: Api, tmp_path: Path) -> None:
    """Protects "forget my data": after it the profile, username, password and card digits are gone,
    the ledger and payment rows remain (balances replay the same), login fails, the name cannot be
    registered until the blacklist lapses, and a second run changes nothing."""
    admin = await api.admin_token()
    ptok, pid = await api.performer(admin, "erin")
    mtok, mid = await api.member("eve")
    await _buy(api, mtok)
    await _private(api, mid, pid)
    await _profile(api, mtok, display_name="Eve E", about="secret about")
    b = api.daemon.billing
    assert b is not None
    wallet_before = await b.ledger.balance(wallet_account(mid))
    ledger_before = _rows_mentioning(tmp_path, mid)
    status, body, _ = await api.call("POST", "/api/v1/me/erasure", token=mtok, json={"password": "wrong-password"})
    assert status == 401
    status, body, _ = await api.call("POST", "/api/v1/me/erasure", token=mtok, json={"password": "password-eve"})
    assert status == 200 and body["status"] == "completed", body
    assert (await api.call("GET", "/api/v1/me", token=mtok))[0] == 401  # every token revoked
    assert (await api.call("POST", "/api/v1/sessions", json={"username": "eve", "password": "password-eve"}))[0] == 401
    assert (await api.call("GET", "/api/v1/members/by-id/" + mid, token=ptok))[0] == 404
    status, body, _ = await api.call("POST", "/api/v1/accounts", json={"username": "EVE", "password": "another-pw1"})
    assert status == 409 and body["error"]["code"] == "username_unavailable"
    # What is left: money rows, unchanged; no personal field anywhere in the accounts database.
    assert await b.ledger.balance(wallet_account(mid)) == wallet_before
    report = await b.ledger.replay()
    assert report.ok, report.mismatches
    after = _rows_mentioning(tmp_path, mid)
    kept_ledger = [r for f, t, r in ledger_before if f == "ledger.sqlite3"]
    assert kept_ledger == [r for f, t, r in after if f == "ledger.sqlite3"]
    acc = sqlite3.connect(tmp_path / "accounts.sqlite3")
    try:
        dump = "\n".join(acc.iterdump())
        pay = acc.execute(
            "SELECT amount_cents, card_last4, card_expiry FROM acc_payments WHERE user_id = ?", (mid,)
        ).fetchall()
        user = acc.execute("SELECT username, password_hash, closed_at FROM acc_users WHERE id = ?", (mid,)).fetchone()
    finally:
        acc.close()
    assert pay == [(2999, None, None)]
    assert user[0] == "[erased]" and user[1] == "!" and user[2] is not None
    # The card's digits and expiry as stored values ('4242' inside a microsecond timestamp or a
    # hash is chance, not a card: the bare substring failed the test about once in fifty runs).
    assert "Eve E" not in dump and "secret about" not in dump
    assert "'4242'" not in dump and "'12/29'" not in dump
    assert "eve" not in dump.replace("erasure", "")  # not even in the blacklist: a keyed hash there
    # Idempotent: again, nothing more to do.
    again = await api.daemon.privacy.service.erase(mid, "member_request")  # type: ignore[union-attr]
    assert again.completed and sum(again.rows.values()) == 0
    # The blacklist lapses after privacy.username_blacklist_days (180).
    api.clock.advance(181 * DAY)
    status, body, _ = await api.call("POST", "/api/v1/accounts", json={"username": "eve", "password": "another-pw1"})
    assert status == 201 and body["principal"]["id"] != mid


async def test_an_interrupted_erasure_is_resumed(api: Api) -> None:
    """Protects crash safety: when a source fails mid-erasure the request is recorded and the account
    already closed (202); the next retention run (or a restart) finishes it."""
    mtok, mid = await api.member("finn")
    await _profile(api, mtok, display_name="Finn")
    privacy = api.daemon.privacy
    assert privacy is not None

    class Failing:
        name = "failing"
        fail = True

        async def export(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
            return {}

        async def erase(self, user_id: str, pseudonym: str) -> int:
            if self.fail:
                raise RuntimeError("disk on fire")
            return 0

        async def purge(self, policy: Any) -> int:
            return 0

    failing = Failing()
    api.daemon.personal_data.register(failing)
    status, body, _ = await api.call("POST", "/api/v1/me/erasure", token=mtok, json={"password": "password-finn"})
    assert status == 202 and body["status"] == "pending"
    assert (await api.call("POST", "/api/v1/sessions", json={"username": "finn", "password": "password-finn"}))[
        0
    ] == 401
    assert [e.user_id for e in await api.accounts.store.open_erasures()] == [mid]
    failing.fail = False
    report = await privacy.retention.run()
    assert report.resumed == 1 and await api.accounts.store.open_erasures() == []
    assert await api.accounts.store.member_profile(mid) is None


# -- login throttling -----------------------------------------------------------------------------------


async def test_failed_logins_are_throttled_per_username_with_retry_after(api: Api) -> None:
    """Protects against password guessing: the 11th attempt within 15 minutes after 10 failures is
    429 rate_limited with Retry-After, even with the right password; 15 minutes later it works."""
    await api.member("gina")
    for _ in range(10):
        status, _b, _ = await api.call("POST", "/api/v1/sessions", json={"username": "gina", "password": "nope-nope"})
        assert status == 401
    status, body, resp = await api.call(
        "POST", "/api/v1/sessions", json={"username": "gina", "password": "password-gina"}
    )
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert int(resp.headers["Retry-After"]) == 900
    api.clock.advance(899)
    assert (await api.call("POST", "/api/v1/sessions", json={"username": "gina", "password": "password-gina"}))[
        0
    ] == 429
    api.clock.advance(2)
    assert (await api.call("POST", "/api/v1/sessions", json={"username": "gina", "password": "password-gina"}))[
        0
    ] == 201


async def test_failed_logins_are_throttled_per_client_address(api: Api) -> None:
    """Protects issue 11.18 through REST: after 50 failed logins over many names from one address,
    spraying more unknown names from it is 429 with Retry-After, while a member behind the same
    address (a shared NAT) logs in with its right password."""
    await api.member("hugo")
    for i in range(50):
        await api.call("POST", "/api/v1/sessions", json={"username": f"nobody{i}", "password": "nope-nope"})
    status, body, resp = await api.call(
        "POST", "/api/v1/sessions", json={"username": "nobody99", "password": "nope-nope"}
    )
    assert status == 429 and body["error"]["code"] == "rate_limited" and int(resp.headers["Retry-After"]) == 900
    status, body, _ = await api.call("POST", "/api/v1/sessions", json={"username": "hugo", "password": "password-hugo"})
    assert status == 201, body
    api.clock.advance(901)
    status, _b, _ = await api.call("POST", "/api/v1/sessions", json={"username": "nobody99", "password": "nope-nope"})
    assert status == 401


# -- websockets end with their token --------------------------------------------------------------------


async def _joined_ws(api: Api, token: str, show: str, role: str = "viewer") -> aiohttp.ClientWebSocketResponse:
    """A raw websocket that said hello (protocol jasmin/1) and joined ``show`` with ``token``.

    Raw rather than ``SignalingClient`` so the test reads the close frame and its code itself."""
    ws = await api.session.ws_connect(api.ws)
    await ws.send_json({"type": "hello", "protocol": "jasmin/1", "client": "test-privacy"})
    welcome = await ws.receive_json(timeout=5)
    assert welcome.get("type") == "welcome", welcome
    await ws.send_json(
        {"type": "request", "id": 1, "method": "join", "data": {"show_id": show, "role": role, "token": token}}
    )
    while True:
        msg = await ws.receive_json(timeout=5)
        if msg.get("type") == "response" and msg.get("id") == 1:
            assert msg.get("ok") is True, msg
            return ws


async def _closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Read until the server closes the socket; the close code (events before it are skipped)."""
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type == aiohttp.WSMsgType.CLOSE:
            # The code as the server sent it (ws.close_code may say 1006 when the
            # client's closing handshake races the server's disconnect).
            return int(msg.data)
        if msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return ws.close_code


async def test_logout_and_erasure_end_the_running_websocket(api: Api) -> None:
    """Protects revocation: a websocket joined with a token is closed with 4401 (REVOKED_CLOSE_CODE)
    when that token is revoked, while the same member's websocket on another token and other accounts'
    websockets stay; erasing the account closes every websocket of it."""
    from jasmin_sfu.services.retention import REVOKED_CLOSE_CODE

    assert REVOKED_CLOSE_CODE == 4401  # documented in docs/privacy.md and docs/signaling.md
    admin = await api.admin_token()
    ptok, _ = await api.performer(admin, "ivy")
    perf = await _joined_ws(api, ptok, "ivy", role="performer")
    mtok, _mid = await api.member("jack")
    other = (await api.accounts.login("jack", "password-jack")).token
    ws = await _joined_ws(api, mtok, "ivy")
    ws_other = await _joined_ws(api, other, "ivy")
    assert (await api.call("DELETE", "/api/v1/sessions/current", token=mtok))[0] == 204
    assert await _closed_with(ws) == 4401
    # The other token of the same member and the performer are untouched: they still answer.
    for sock in (ws_other, perf):
        await sock.send_json({"type": "request", "id": 2, "method": "chat.history", "data": {}})
        while True:
            msg = await sock.receive_json(timeout=5)
            if msg.get("type") == "response" and msg.get("id") == 2:
                break
        assert not sock.closed
    third = (await api.accounts.login("jack", "password-jack")).token
    ws3 = await _joined_ws(api, third, "ivy")
    status, body, _ = await api.call("POST", "/api/v1/me/erasure", token=third, json={"password": "password-jack"})
    assert status == 200, body
    assert await _closed_with(ws_other) == 4401
    assert await _closed_with(ws3) == 4401
    assert not perf.closed
    await perf.close()


# -- what signaling shows a performer ----------------------------------------------------------------


def _drain(c: SignalingClient) -> list[dict[str, Any]]:
    out = []
    while not c.events.empty():
        out.append(c.events.get_nowait())
    return out


async def _until(c: SignalingClient, name: str, seen: list[Any]) -> dict[str, Any]:
    """The next event called ``name``; every event before it is kept in ``seen`` (not dropped)."""
    while True:
        ev = await asyncio.wait_for(c.events.get(), 5)
        seen.append(ev)
        if ev.get("event") == name:
            return ev


async def test_signaling_shows_a_performer_only_the_member_id_and_chat_name(api: Api) -> None:
    """Protects 'nobody' visibility on the live path: through a whole show (the member joins,
    chats, tips, requests a private, the performer accepts, the private ends) every frame the
    performer's websocket receives names the member by its opaque id, and in chat by its username,
    never with a profile field or the mask; resolving the id gives the username-only view. With
    'all_performers' the frames stay the same: signaling never carries the profile, the REST view
    applies the setting."""
    admin = await api.admin_token()
    ptok, _pid = await api.performer(admin, "kira")
    mtok, mid = await api.member("lena")
    await _buy(api, mtok)
    await _profile(
        api,
        mtok,
        display_name="Lena L",
        gender="female",
        age_range="25-34",
        country="FR",
        languages=["fr"],
        about="secret about lena",
    )
    secrets = ("Lena L", "secret about lena", "FR", "25-34", "female", "bronze", "vip_points", "profile", "mask")
    perf = await SignalingClient.connect(api.ws)
    member = await SignalingClient.connect(api.ws)
    seen: list[Any] = []
    try:
        seen.append(await perf.request("join", show_id="kira", role="performer", token=ptok))
        await member.request("join", show_id="kira", role="viewer", token=mtok)
        await member.request("chat.send", text="hello kira")
        await member.request("chat.tip", credits=1, tip_id="tip-lena-1")
        await member.request("private.request")
        requested = await _until(perf, "private.requested", seen)
        assert requested["data"]["member_id"] == mid
        seen.append(await perf.request("private.accept", member_id=mid))
        await member.request("private.end")
        await _until(perf, "private.ended", seen)
        seen.append(await perf.request("chat.history"))
        seen += _drain(perf)
        names = {e.get("event") for e in seen if isinstance(e, dict)}
        assert {"private.requested", "chat.message", "chat.tip"} <= names, names
        flat = json.dumps(seen)
        assert mid in flat and "lena" in flat  # the member is there: by id, and by name in chat
        for s in secrets:
            assert s not in flat, (s, flat)
        status, view, _ = await api.call("GET", f"/api/v1/members/by-id/{mid}", token=ptok)
        assert status == 200 and set(view) == {"username", "site", "favourite", "spending"}
        assert view["username"] == "lena"
        # Visible to all performers: the REST view shows the profile, signaling still does not.
        await _visibility(api, mtok, profile_visibility="all_performers", mask_visibility="public")
        await member.request("chat.send", text="again")
        later: list[Any] = []
        await _until(perf, "chat.message", later)
        flat = json.dumps(later + _drain(perf) + [await perf.request("chat.history")])
        assert "Lena L" not in flat and "bronze" not in flat
        status, view, _ = await api.call("GET", f"/api/v1/members/by-id/{mid}", token=ptok)
        assert view["profile"]["display_name"] == "Lena L" and view["mask"]["rank"] == "bronze"
    finally:
        await member.close()
        await perf.close()


async def test_a_notifications_only_websocket_ends_with_its_token(api: Api) -> None:
    """Protects revocation for connections that never joined: a websocket registered with
    ``notifications.subscribe {token}`` is closed with 4401 when that token is revoked, so a
    logged-out member stops receiving favourite.online events."""
    mtok, _mid = await api.member("kira")
    ws = await api.session.ws_connect(api.ws)
    await ws.send_json({"type": "hello", "protocol": "jasmin/1", "client": "test-privacy"})
    assert (await ws.receive_json(timeout=5)).get("type") == "welcome"
    await ws.send_json({"type": "request", "id": 1, "method": "notifications.subscribe", "data": {"token": mtok}})
    while True:
        msg = await ws.receive_json(timeout=5)
        if msg.get("type") == "response" and msg.get("id") == 1:
            assert msg.get("ok") is True, msg
            break
    assert (await api.call("DELETE", "/api/v1/sessions/current", token=mtok))[0] == 204
    assert await _closed_with(ws) == 4401


# -- a private over signaling, and "forget my data" in the middle of it ---------------------------------


async def _in_private(api: Api, performer: str, member: str) -> tuple[SignalingClient, SignalingClient, str, str, str]:
    """The performer joined its show, the member (with credits, the performer a favourite) joined,
    requested a private and the performer accepted it. Returns (performer client, member client,
    performer id, member token, member id)."""
    admin = await api.admin_token()
    ptok, pid = await api.performer(admin, performer)
    mtok, mid = await api.member(member)
    await _buy(api, mtok)
    status, body, _ = await api.call("PUT", f"/api/v1/me/favourites/{performer}", token=mtok)
    assert status in (200, 201), body
    perf = await SignalingClient.connect(api.ws)
    mem = await SignalingClient.connect(api.ws)
    await perf.request("join", show_id=performer, role="performer", token=ptok)
    await mem.request("join", show_id=performer, role="viewer", token=mtok)
    await mem.request("private.request")
    seen: list[Any] = []
    await _until(perf, "private.requested", seen)
    await perf.request("private.accept", member_id=mid)
    return perf, mem, pid, mtok, mid


def _billing_log(tmp_path: Path, mid: str) -> list[dict[str, Any]]:
    path = tmp_path / "billing-events.jsonl"
    if not path.exists():
        return []
    return [
        e
        for e in (json.loads(line) for line in path.read_bytes().splitlines())
        if e.get("data", {}).get("member_id") == mid
    ]


async def _poll(cond: Any, timeout: float = 15.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return bool(cond())


async def test_the_download_holds_the_performers_lines_in_the_members_private(api: Api) -> None:
    """Protects issue 11.1 end to end: the performer's chat line sent in the member's private
    (stored with private_to = the member's id) is in the member's data download."""
    perf, mem, pid, mtok, mid = await _in_private(api, "nina", "olga")
    try:
        await perf.request("chat.send", text="only for olga")
        status, data, _ = await api.call("GET", "/api/v1/me/data", token=mtok)
        assert status == 200
        lines = data["sources"]["chat"]["chat_messages"]
        assert [(m["author_id"], m["text"], m["private_to"]) for m in lines] == [(pid, "only for olga", mid)]
    finally:
        await mem.close()
        await perf.close()


async def test_erasure_during_a_private_ends_it_first_and_no_row_appears_after(api: Api, tmp_path: Path) -> None:
    """Protects issue 11.2: "forget my data" while the member's private runs ends the private first
    (the performer is told private.ended, billing closes it exactly as when the member leaves: one
    closing event whose seconds times the rate is the ledger's charge, under the pseudonymous id),
    and only then erases. Once the erasure answered, no row naming the member appears in any
    personal-data database of the node (social, chat, accounts) - before the fix the record of
    the private was written into soc_privates after the erase step."""
    perf, mem, pid, mtok, mid = await _in_private(api, "pia", "carl")
    try:
        # Let billing meter a few seconds (usage events reach the local billing log).
        assert await _poll(lambda: sum(1 for e in _billing_log(tmp_path, mid) if "usage" in e["type"]) >= 2)
        status, body, _ = await api.call("POST", "/api/v1/me/erasure", token=mtok, json={"password": "password-carl"})
        assert status == 200 and body["status"] == "completed", body
        # Ended before the answer: the member left the show, its private is over.
        show = api.daemon.shows.get("pia")
        assert show is not None and show.machine.private_member is None
        assert not [s for s in api.daemon.sessions if getattr(s.handler, "member_id", None) == mid]
        kept = ("ledger.sqlite3", "billing-outbox.sqlite3", "billing-events.jsonl")  # financial records
        at_answer = [(f, t, r) for f, t, r in _rows_mentioning(tmp_path, mid) if f not in kept]
        assert not [r for f, t, r in at_answer if f == "social.sqlite3"], at_answer
        # The private had ended before the answer: the performer hears it, billing closes it.
        ended = await _until(perf, "private.ended", [])
        assert ended["data"]["member_id"] == mid
        assert await _poll(lambda: any("closed" in e["type"] for e in _billing_log(tmp_path, mid)))
        social = api.daemon.social
        assert social is not None
        await social.drain()  # every late writer of the social store has run
        b = api.daemon.billing
        assert b is not None
        await asyncio.wait_for(b.relay.wait_idle(), 10)
        after = [(f, t, r) for f, t, r in _rows_mentioning(tmp_path, mid) if f not in kept]
        assert after == at_answer, f"rows naming the erased member appeared after the erasure: {after}"
        # The money: exact, kept under the member id (the pseudonym).
        [closed] = [e for e in _billing_log(tmp_path, mid) if "closed" in e["type"]]
        billed = closed["data"]["billed_seconds"]
        assert billed >= 2

        def charged() -> list[tuple[Any, ...]]:
            db = sqlite3.connect(tmp_path / "ledger.sqlite3")
            try:
                return db.execute(
                    "SELECT used_seconds, charged, rate, status FROM cc_sessions WHERE wallet_id = ?",
                    (wallet_account(mid),),
                ).fetchall()
            finally:
                db.close()

        assert await _poll(lambda: [r[0] for r in charged()] == [billed])
        [(used, amount, rate, _status)] = charged()
        assert amount == used * rate == closed["data"]["total_amount"]
        assert (await b.ledger.replay()).ok
    finally:
        await mem.close()
        await perf.close()
