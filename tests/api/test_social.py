"""The social rules over real HTTP and a real websocket, with docs/product.md's numbers, on the fake
accounts clock: the 14-day 15-credit TopMember fee, 24/96 favourites and the 30-day lapse, the
300 s vote threshold once per period, one mailing per 24 h with its unsubscribe link, messages
only from TopMembers after a private, My Rating's privacy, search, presets, RSS and favourite.online."""

from __future__ import annotations

import asyncio
import itertools
import xml.etree.ElementTree as ET
from typing import Any

from jasmin_signaling.client import SignalingClient

from jasmin_sfu.services.social import SocialService
from jasmin_sfu.shows.events import ShowEvent
from tests.api.conftest import Api

DAY = 86400
_keys = itertools.count(1)


def social(api: Api) -> SocialService:
    assert api.daemon.social is not None
    return api.daemon.social


def err(body: Any) -> str:
    assert isinstance(body, dict) and "error" in body, body
    return str(body["error"]["code"])


async def buy(api: Api, token: str, package: str = "p2999") -> None:
    status, body, _ = await api.call(
        "POST",
        "/api/v1/wallet/purchases",
        token=token,
        json={"package": package, "idempotency_key": f"key-{next(_keys):06d}"},
    )
    assert status == 201, body


async def credits(api: Api, token: str) -> str:
    return str((await api.call("GET", "/api/v1/wallet", token=token))[1]["credits"])


async def private(api: Api, member_id: str, performer: str, performer_id: str, seconds: float) -> None:
    """A private as the show publishes it on the bus: started, then ended ``seconds`` later."""
    t0 = 1_800_000_000.0 + next(_keys) * 10_000
    bus = api.daemon.bus
    bus.publish(ShowEvent("private.started", performer, t0, member_id=member_id, performer_ids=(performer_id,)))
    bus.publish(
        ShowEvent(
            "private.ended",
            performer,
            t0 + seconds,
            member_id=member_id,
            performer_ids=(performer_id,),
            reason="member_left",
        )
    )
    await social(api).drain()


async def top_member(api: Api, token: str) -> None:
    await buy(api, token)
    status, body, _ = await api.call("POST", "/api/v1/me/top-membership", token=token)
    assert status == 201 and body["active"], body


async def test_top_membership_costs_15_credits_every_14_days_charged_once_and_lapses(api: Api) -> None:
    """Protects the TopMember fee: 15 credits at once, 15 more at each 14-day renewal even when
    the renewal runs twice concurrently (one transfer id per period), and a lapse when the
    wallet cannot pay."""
    token, mid = await api.member("tess")
    await buy(api, token)  # 30 credits
    status, body, _ = await api.call("POST", "/api/v1/me/top-membership", token=token)
    assert status == 201 and body["status"] == "active" and body["fee_credits"] == 15 and body["period_days"] == 14
    assert await credits(api, token) == "15.00"
    status, again, _ = await api.call("POST", "/api/v1/me/top-membership", token=token)
    assert status == 200 and again["period"] == 0 and await credits(api, token) == "15.00"
    api.clock.advance(14 * DAY - 7200)
    assert await social(api).renew_due() == 0 and await credits(api, token) == "15.00"
    api.clock.advance(7200)
    await asyncio.gather(social(api).renew_due(), social(api).renew_due())
    await social(api).renew_due()
    assert await credits(api, token) == "0.00"
    status, body, _ = await api.call("GET", "/api/v1/me/top-membership", token=token)
    assert body["period"] == 1 and body["active"] and await social(api).is_top_member(mid)
    api.clock.advance(14 * DAY)
    await social(api).renew_due()
    status, body, _ = await api.call("GET", "/api/v1/me/top-membership", token=token)
    assert body["status"] == "lapsed" and not body["active"] and not await social(api).is_top_member(mid)
    assert await credits(api, token) == "0.00"


async def test_cancel_keeps_benefits_to_the_period_end_and_no_credits_no_membership(api: Api) -> None:
    """Protects cancel (benefits until paid_until, no further fee) and a refused first fee."""
    token, mid = await api.member("cara")
    status, body, _ = await api.call("POST", "/api/v1/me/top-membership", token=token)
    assert status == 402 and err(body) == "insufficient_credits"
    assert (await api.call("GET", "/api/v1/me/top-membership", token=token))[1]["status"] == "none"
    await top_member(api, token)
    status, body, _ = await api.call("DELETE", "/api/v1/me/top-membership", token=token)
    assert status == 200 and body["status"] == "cancelled" and body["active"] and not body["auto_renew"]
    api.clock.advance(14 * DAY - 1)
    assert await social(api).is_top_member(mid)
    api.clock.advance(1)
    await social(api).renew_due()
    assert not await social(api).is_top_member(mid) and await credits(api, token) == "15.00"


async def test_favourites_24_then_96_for_top_members(api: Api) -> None:
    """Protects docs/product.md's limits: a 25th favourite is refused (favourites_full), a TopMember
    may have 96 and a 97th is refused."""
    admin = await api.admin_token()
    boss = await api.accounts.authenticate(admin)
    for i in range(97):
        await api.accounts.create_performer(
            boss, f"perf{i:02d}", "password-perf", display_name=f"P{i}", price_per_minute=100
        )
    token, _ = await api.member("fanny")
    for i in range(24):
        status, body, _ = await api.call("PUT", f"/api/v1/me/favourites/perf{i:02d}", token=token)
        assert status == 201, body
    assert (await api.call("PUT", "/api/v1/me/favourites/perf00", token=token))[0] == 200
    status, body, _ = await api.call("PUT", "/api/v1/me/favourites/perf24", token=token)
    assert status == 409 and err(body) == "favourites_full" and "24" in body["error"]["message"]
    await top_member(api, token)
    for i in range(24, 96):
        assert (await api.call("PUT", f"/api/v1/me/favourites/perf{i:02d}", token=token))[0] == 201
    status, body, _ = await api.call("PUT", "/api/v1/me/favourites/perf96", token=token)
    assert status == 409 and err(body) == "favourites_full" and "96" in body["error"]["message"]
    status, body, _ = await api.call("GET", "/api/v1/me/favourites", token=token)
    assert status == 200 and body["count"] == 96 and body["limit"] == 96
    assert (await api.call("DELETE", "/api/v1/me/favourites/perf00", token=token))[0] == 204
    assert (await api.call("DELETE", "/api/v1/me/favourites/perf00", token=token))[0] == 404


async def test_favourites_lapse_after_30_days_without_purchase_and_come_back_with_one(api: Api) -> None:
    """Protects 'no purchase for over 30 days loses access to the favourites list until the next
    purchase': the list is refused (favourites_lapsed), kept, and back after a purchase."""
    admin = await api.admin_token()
    await api.performer(admin, "alice")
    token, _ = await api.member("lena")
    await buy(api, token)
    assert (await api.call("PUT", "/api/v1/me/favourites/alice", token=token))[0] == 201
    api.clock.advance(30 * DAY)
    token = (await api.accounts.login("lena", "password-lena")).token  # sessions last 30 days too
    assert (await api.call("GET", "/api/v1/me/favourites", token=token))[0] == 200
    api.clock.advance(1)
    for method, path in (
        ("GET", "/api/v1/me/favourites"),
        ("PUT", "/api/v1/me/favourites/alice"),
        ("DELETE", "/api/v1/me/favourites/alice"),
    ):
        status, body, _ = await api.call(method, path, token=token)
        assert status == 403 and err(body) == "favourites_lapsed", (method, body)
    await buy(api, token)
    status, body, _ = await api.call("GET", "/api/v1/me/favourites", token=token)
    assert status == 200 and [f["username"] for f in body["favourites"]] == ["alice"]


async def test_votes_need_300_seconds_and_count_once_per_month(api: Api) -> None:
    """Protects the vote rules: a TopMember after a 299 s private is refused, after 300 s may
    vote, a second vote in the award period is refused, the next period allows one; a member
    without TopMembership is refused."""
    admin = await api.admin_token()
    _, pid = await api.performer(admin, "alice")
    token, mid = await api.member("vera")
    path = "/api/v1/performers/alice/votes"
    await private(api, mid, "alice", pid, 300)
    status, body, _ = await api.call("POST", path, token=token)
    assert status == 403 and err(body) == "top_membership_required"
    other, oid = await api.member("olga")
    await top_member(api, other)
    await private(api, oid, "alice", pid, 299.9)
    status, body, _ = await api.call("POST", path, token=other)
    assert status == 403 and err(body) == "vote_not_eligible"
    await private(api, oid, "alice", pid, 300)
    status, body, _ = await api.call("POST", path, token=other)
    assert status == 201 and body["period"] == "2026-05", body  # FakeClock starts 2026-05-28 UTC
    status, body, _ = await api.call("POST", path, token=other)
    assert status == 409 and err(body) == "already_voted"
    api.clock.advance(5 * DAY)  # June; the membership runs to 2026-06-11
    status, body, _ = await api.call("POST", path, token=other)
    assert status == 201 and body["period"] == "2026-06"
    assert await social(api).store.vote_counts("2026-05") == {pid: 1}


async def test_mailing_list_one_per_24h_and_the_unsubscribe_link_works_without_login(api: Api) -> None:
    """Protects the mailing list: subscribe only after a private, one mailing per 24 h (the second
    is rate_limited with when it is allowed again), every copy has an unsubscribe link that works
    without a token."""
    admin = await api.admin_token()
    ptoken, pid = await api.performer(admin, "alice")
    token, mid = await api.member("mona")
    status, body, _ = await api.call("PUT", "/api/v1/performers/alice/mailing-list", token=token)
    assert status == 403 and err(body) == "private_required"
    await private(api, mid, "alice", pid, 12)
    status, body, _ = await api.call("PUT", "/api/v1/performers/alice/mailing-list", token=token)
    assert status == 201, body
    assert (await api.call("PUT", "/api/v1/performers/alice/mailing-list", token=token))[0] == 200
    mail = {"subject": "Tonight", "body": "Live at 9 <b>&</b> more"}
    status, first, _ = await api.call("POST", "/api/v1/me/mailings", token=ptoken, json=mail)
    assert status == 201 and first["recipients"] == 1
    api.clock.advance(DAY - 1)
    status, body, r = await api.call("POST", "/api/v1/me/mailings", token=ptoken, json=mail)
    assert status == 429 and err(body) == "rate_limited"
    assert body["error"]["retry_at"] == first["sent_at"] + DAY and r.headers["Retry-After"] == "1"
    assert (await api.call("POST", "/api/v1/me/mailings", token=token, json=mail))[0] == 403
    api.clock.advance(1)
    assert (await api.call("POST", "/api/v1/me/mailings", token=ptoken, json=mail))[0] == 201
    status, inbox, _ = await api.call("GET", "/api/v1/me/inbox", token=token)
    assert status == 200 and len(inbox["messages"]) == 2
    assert all(
        m["performer"] == "alice" and "/api/v1/mailing-list/unsubscribe/jasu_" in m["unsubscribe_url"]
        for m in inbox["messages"]
    )
    url = inbox["messages"][0]["unsubscribe_url"]
    # RFC 8058: every copy carries the one-click headers a mail client acts on.
    assert inbox["messages"][0]["headers"] == {
        "List-Unsubscribe": f"<{url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    # A plain GET (a mail scanner following links) only shows a confirmation page: nothing changes.
    for _ in range(2):
        async with api.session.get(url) as resp:  # no Authorization header
            page = await resp.text()
            assert resp.status == 200 and resp.content_type == "text/html", page
            assert 'method="post"' in page and "alice" in page and 'name="List-Unsubscribe" value="One-Click"' in page
    assert (await api.call("PUT", "/api/v1/performers/alice/mailing-list", token=token))[0] == 200  # still on it
    # The one-click POST (what the mail client and the page's button send) unsubscribes, once.
    async with api.session.post(url, data={"List-Unsubscribe": "One-Click"}) as resp:
        assert resp.status == 200 and (await resp.json()) == {"unsubscribed": True, "performer": "alice"}
    async with api.session.post(url, data={"List-Unsubscribe": "One-Click"}) as resp:
        assert resp.status == 404
    async with api.session.get(url) as resp:
        assert resp.status == 404
    api.clock.advance(DAY)
    status, body, _ = await api.call("POST", "/api/v1/me/mailings", token=ptoken, json=mail)
    assert status == 201 and body["recipients"] == 0


async def test_messages_only_from_top_members_to_performers_they_had_a_private_with(api: Api) -> None:
    """Protects the message center: a member is refused, a TopMember without a private is refused,
    a TopMember after a private reaches the performer's inbox and nobody else's."""
    admin = await api.admin_token()
    ptoken, pid = await api.performer(admin, "alice")
    btoken, _ = await api.performer(admin, "bella")
    token, mid = await api.member("tina")
    path = "/api/v1/performers/alice/messages"
    await private(api, mid, "alice", pid, 30)
    status, body, _ = await api.call("POST", path, token=token, json={"body": "hi"})
    assert status == 403 and err(body) == "top_membership_required"
    await top_member(api, token)
    status, body, _ = await api.call("POST", "/api/v1/performers/bella/messages", token=token, json={"body": "hi"})
    assert status == 403 and err(body) == "private_required"
    status, body, _ = await api.call("POST", path, token=token, json={"body": "Thank you!"})
    assert status == 201 and body["member"] == "tina" and body["performer"] == "alice"
    status, inbox, _ = await api.call("GET", "/api/v1/me/messages", token=ptoken)
    assert [m["body"] for m in inbox["messages"]] == ["Thank you!"]
    assert (await api.call("GET", "/api/v1/me/messages", token=btoken))[1]["messages"] == []
    assert (await api.call("GET", "/api/v1/me/messages", token=token))[1]["messages"][0]["performer"] == "alice"


async def test_my_rating_is_seen_by_its_member_only(api: Api) -> None:
    """Protects My Rating's privacy: another member and the performer never see it; it filters
    only its own member's searches."""
    admin = await api.admin_token()
    ptoken, _ = await api.performer(admin, "alice")
    a, _ = await api.member("anne")
    b, _ = await api.member("bert")
    assert (await api.call("PUT", "/api/v1/performers/alice/rating", token=a, json={"stars": 4}))[1]["stars"] == 4
    assert (await api.call("PUT", "/api/v1/performers/alice/rating", token=a, json={"stars": 6}))[0] == 400
    assert (await api.call("GET", "/api/v1/performers/alice/rating", token=a))[1]["stars"] == 4
    assert (await api.call("GET", "/api/v1/performers/alice/rating", token=b))[1]["stars"] is None
    status, body, _ = await api.call("GET", "/api/v1/performers/alice/rating", token=ptoken)
    assert status == 403
    hits = (await api.call("GET", "/api/v1/search/performers?min_rating=4", token=a))[1]["results"]
    assert [(h["username"], h["my_rating"]) for h in hits] == [("alice", 4)]
    assert (await api.call("GET", "/api/v1/search/performers?min_rating=5", token=a))[1]["total"] == 0
    assert (await api.call("GET", "/api/v1/search/performers?min_rating=1", token=b))[1]["total"] == 0
    for t in (b, ptoken):
        found = (await api.call("GET", "/api/v1/search/performers", token=t))[1]["results"]
        assert [h["my_rating"] for h in found] == [None]
    profile = (await api.call("GET", "/api/v1/performers/alice", token=ptoken))[1]
    assert "4" not in repr({k: v for k, v in profile.items() if k != "id"})


async def join_performer(api: Api, token: str, show: str) -> SignalingClient:
    c = await SignalingClient.connect(api.ws)
    await c.request("join", show_id=show, role="performer", token=token)
    return c


async def test_search_filters_sorting_paging_and_presets(api: Api) -> None:
    """Protects advanced search: attribute filters (set by the performer, validated against the
    enums), price, category, language, online (a real live show), sorting, paging with
    next_offset, and presets that are saved, applied and deleted."""
    admin = await api.admin_token()
    data = [
        ("amy", 100, ["girl"], {"build": "petite", "age": 19, "languages": ["en"], "hair_colour": "blonde"}),
        ("bea", 300, ["girl"], {"build": "petite", "age": 25, "languages": ["de", "en"]}),
        ("cat", 200, ["mature_woman"], {"build": "curvy", "age": 45, "languages": ["fr"]}),
        ("dan", 150, ["boy"], {"build": "athletic", "age": 21, "camera_quality": "hd"}),
    ]
    tokens = {}
    for name, price, cats, attrs in data:
        tokens[name], _ = await api.performer(admin, name, price, categories=cats)
        status, body, _ = await api.call(
            "PATCH", f"/api/v1/performers/{name}/attributes", token=tokens[name], json=attrs
        )
        assert status == 200 and body["build"] == attrs["build"], body
    status, body, _ = await api.call(
        "PATCH", "/api/v1/performers/amy/attributes", token=tokens["bea"], json={"age": 20}
    )
    assert status == 403
    status, body, _ = await api.call(
        "PATCH", "/api/v1/performers/amy/attributes", token=tokens["amy"], json={"build": "tall"}
    )
    assert status == 400 and "build" in body["error"]["message"]
    token, _ = await api.member("sam")

    async def names(query: str) -> list[str]:
        status, body, _ = await api.call("GET", "/api/v1/search/performers" + query, token=token)
        assert status == 200, body
        return [r["username"] for r in body["results"]]

    assert await names("?build=petite&age_min=18&age_max=22") == ["amy"]
    assert await names("?build=petite&build=curvy&sort=name") == ["amy", "bea", "cat"]
    assert await names("?language=de") == ["bea"]
    assert await names("?price_min=150&price_max=200&sort=price_asc") == ["dan", "cat"]
    assert await names("?category=girl&sort=price_desc") == ["bea", "amy"]
    assert await names("?camera_quality=hd") == ["dan"]
    assert await names("?q=BE") == ["bea"]
    live = await join_performer(api, tokens["cat"], "cat")
    try:
        assert await names("?online=true") == ["cat"]
        assert await names("") == ["cat", "amy", "bea", "dan"]  # online first, then by name
    finally:
        await live.close()
    status, page, _ = await api.call("GET", "/api/v1/search/performers?sort=name&limit=3", token=token)
    assert [r["username"] for r in page["results"]] == ["amy", "bea", "cat"] and page["next_offset"] == 3
    assert page["total"] == 4 and await names("?sort=name&limit=3&offset=3") == ["dan"]
    for bad in ("?build=tall", "?limit=0", "?nope=1", "?sort=random"):
        status, body, _ = await api.call("GET", "/api/v1/search/performers" + bad, token=token)
        assert status == 400 and err(body) == "bad_request", bad
    # A minimum above its maximum is schema-valid (issue 11.16): an empty range, no performer.
    for empty in ("?age_min=30&age_max=20", "?price_min=200&price_max=150"):
        assert await names(empty) == [], empty
    status, preset, _ = await api.call(
        "POST",
        "/api/v1/me/search-presets",
        token=token,
        json={"name": "petite, 18-22", "query": {"build": ["petite"], "age_min": 18, "age_max": 22}},
    )
    assert status == 201, preset
    assert (
        await api.call("POST", "/api/v1/me/search-presets", token=token, json={"name": "petite, 18-22", "query": {}})
    )[1]["error"]["code"] == "preset_exists"
    listed = (await api.call("GET", "/api/v1/me/search-presets", token=token))[1]["presets"]
    assert [p["name"] for p in listed] == ["petite, 18-22"]
    assert await names(f"?preset={preset['id']}") == ["amy"]
    assert await names(f"?preset={preset['id']}&age_max=30") == ["amy", "bea"]
    assert (await api.call("DELETE", f"/api/v1/me/search-presets/{preset['id']}", token=token))[0] == 204
    status, body, _ = await api.call("GET", f"/api/v1/search/performers?preset={preset['id']}", token=token)
    assert status == 404


async def test_favourite_online_event_over_a_real_websocket(api: Api) -> None:
    """Protects online notifications: a member's websocket subscribed with its token (no show
    joined) gets favourite.online when a favourite performer's show goes live."""
    admin = await api.admin_token()
    ptoken, _ = await api.performer(admin, "alice")
    token, mid = await api.member("nina")
    assert (await api.call("PUT", "/api/v1/me/favourites/alice", token=token))[0] == 201
    fan = await SignalingClient.connect(api.ws)
    try:
        got = await fan.request("notifications.subscribe", token=token)
        assert got["member_id"] == mid
        live = await join_performer(api, ptoken, "alice")
        try:
            ev = await fan.next_event("favourite.online", timeout=10)
            assert ev["data"]["performer"] == "alice" and ev["data"]["show_id"] == "alice"
        finally:
            await live.close()
    finally:
        await fan.close()


async def test_rss_feed_is_valid_xml_with_the_chosen_items(api: Api) -> None:
    """Protects the customisable RSS feed: valid RSS 2.0 at a private URL with no bearer, holding
    performers of a chosen category coming online and system messages, not the others; rotating
    the token kills the old URL."""
    admin = await api.admin_token()
    gtoken, _ = await api.performer(admin, "gina", categories=["girl"])
    btoken, _ = await api.performer(admin, "bob", categories=["boy"])
    token, _ = await api.member("rita")
    status, body, _ = await api.call("PATCH", "/api/v1/me/feed", token=token, json={"categories": ["girl"]})
    assert status == 200 and body["categories"] == ["girl"]
    status, tok, _ = await api.call("POST", "/api/v1/me/feed/token", token=token)
    assert status == 201
    assert (
        await api.call(
            "POST", "/api/v1/system-messages", token=admin, json={"title": "New <features> & more", "body": "Hello"}
        )
    )[0] == 201
    for t, name in ((gtoken, "gina"), (btoken, "bob")):
        c = await join_performer(api, t, name)
        await social(api).drain()
        await c.close()
    async with api.session.get(api.http + tok["path"]) as r:
        assert r.status == 200 and r.content_type == "application/rss+xml"
        root = ET.fromstring(await r.read())
    assert root.tag == "rss" and root.get("version") == "2.0"
    titles = [i.findtext("title") for i in root.iter("item")]
    assert "Gina is online" in titles and "New <features> & more" in titles and "Bob is online" not in titles
    assert all(i.findtext("pubDate") and i.findtext("guid") for i in root.iter("item"))
    status, tok2, _ = await api.call("POST", "/api/v1/me/feed/token", token=token)
    async with api.session.get(api.http + tok["path"]) as r:
        assert r.status == 404
    async with api.session.get(api.http + tok2["path"]) as r:
        assert r.status == 200


async def test_personal_data_export_and_erase(api: Api) -> None:
    """Protects the 'social' PersonalDataSource: the download holds the member's rows; erasure
    deletes them and keeps votes under the pseudonym."""
    admin = await api.admin_token()
    _, pid = await api.performer(admin, "alice")
    token, mid = await api.member("erin")
    await top_member(api, token)
    await api.call("PUT", "/api/v1/me/favourites/alice", token=token)
    await api.call("PUT", "/api/v1/performers/alice/rating", token=token, json={"stars": 5})
    await private(api, mid, "alice", pid, 400)
    assert (await api.call("POST", "/api/v1/performers/alice/votes", token=token))[0] == 201
    src = {s.name: s for s in api.daemon.personal_data.sources}["social"]
    rows = await src.export(mid)
    assert len(rows["favourites"]) == 1 and rows["ratings"][0]["stars"] == 5 and len(rows["votes"]) == 1
    assert rows["top_membership"][0]["status"] == "active" and rows["privates"][0]["seconds"] == 400
    assert await src.erase(mid, "pseudo_1") > 0
    after = await src.export(mid)
    assert all(v == [] for v in after.values()), after
    assert (await src.export("pseudo_1"))["votes"][0]["performer_id"] == pid
    assert await src.erase(mid, "pseudo_1") == 0


async def test_a_real_private_over_signaling_is_recorded_for_the_mailing_list(api: Api) -> None:
    """Protects the wiring from the show machine: a private requested, accepted (billed) and ended
    over real websockets is recorded, so the member may then join the performer's mailing list."""
    admin = await api.admin_token()
    ptoken, pid = await api.performer(admin, "alice")
    token, mid = await api.member("rosa")
    await buy(api, token)
    performer = await join_performer(api, ptoken, "alice")
    member = await SignalingClient.connect(api.ws)
    try:
        await member.request("join", show_id="alice", role="viewer", token=token)
        assert (await api.call("PUT", "/api/v1/performers/alice/mailing-list", token=token))[0] == 403
        await member.request("private.request")
        await performer.request("private.accept", member_id=mid)
        await member.request("private.end")
        await social(api).drain()
        count, _longest = await social(api).store.private_stats(mid, pid)
        assert count == 1
        assert (await api.call("PUT", "/api/v1/performers/alice/mailing-list", token=token))[0] == 201
    finally:
        await member.close()
        await performer.close()
