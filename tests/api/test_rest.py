"""The REST API over real HTTP on 127.0.0.1: sign-up, login, token expiry and revocation, the
18+ gate, idempotent purchases, the wallet, performer profiles, and the error shape."""

from __future__ import annotations

import re
from pathlib import Path

from jasmin_sfu.api.openapi import openapi_document
from tests.api.conftest import Api


def is_error(body: object, code: str) -> bool:
    return (
        isinstance(body, dict)
        and set(body) == {"error"}
        and body["error"]["code"] == code
        and isinstance(body["error"]["message"], str)
    )


async def test_register_me_login_logout_revokes_only_that_token(api: Api) -> None:
    """Protects the session lifecycle: a token from sign-up and one from login both speak for
    the member; logout kills exactly the token it was sent with."""
    t1, mid = await api.member("mia")
    status, body, _ = await api.call("POST", "/api/v1/sessions", json={"username": "MIA", "password": "password-mia"})
    assert status == 201 and body["token_type"] == "Bearer" and body["principal"]["id"] == mid
    t2 = body["token"]
    status, me, _ = await api.call("GET", "/api/v1/me", token=t1)
    assert status == 200 and (me["kind"], me["username"], me["adult_confirmed"]) == ("member", "mia", True)
    status, body, _ = await api.call("DELETE", "/api/v1/sessions/current", token=t1)
    assert status == 204
    status, body, r = await api.call("GET", "/api/v1/me", token=t1)
    assert status == 401 and is_error(body, "unauthorized") and "revoked" in body["error"]["message"]
    assert "invalid_token" in r.headers["WWW-Authenticate"]
    assert (await api.call("GET", "/api/v1/me", token=t2))[0] == 200
    status, body, _ = await api.call("POST", "/api/v1/sessions", json={"username": "mia", "password": "nope-nope"})
    assert status == 401 and is_error(body, "invalid_credentials")
    status, body, _ = await api.call("POST", "/api/v1/accounts", json={"username": "Mia", "password": "password-x"})
    assert status == 409 and is_error(body, "username_unavailable")


async def test_tokens_expire_on_the_accounts_clock(api: Api) -> None:
    """Protects token lifetimes end to end: after session_ttl_s the token is refused (fake clock)."""
    token, _ = await api.member("nora")
    api.clock.advance(api.daemon.cfg.accounts.session_ttl_s - 1)
    assert (await api.call("GET", "/api/v1/me", token=token))[0] == 200
    api.clock.advance(1)
    status, body, _ = await api.call("GET", "/api/v1/me", token=token)
    assert status == 401 and "expired" in body["error"]["message"]


async def test_the_18_plus_gate_guest_token_and_member_account(api: Api) -> None:
    """Protects docs/product.md's 'an 18+ confirmation is required before any content': a profile is
    content; a guest confirms on its token, a member on its account."""
    admin = await api.admin_token()
    await api.performer(admin, "anna")
    status, g, _ = await api.call("POST", "/api/v1/guest-sessions", json={})
    assert status == 201 and g["principal"]["kind"] == "guest" and not g["principal"]["adult_confirmed"]
    status, body, _ = await api.call("GET", "/api/v1/performers/anna", token=g["token"])
    assert status == 403 and is_error(body, "adult_confirmation_required")
    status, body, _ = await api.call("POST", "/api/v1/me/adult-confirmation", token=g["token"])
    assert status == 200 and body["adult_confirmed"]
    status, body, _ = await api.call("GET", "/api/v1/performers/anna", token=g["token"])
    assert status == 200 and body["username"] == "anna"
    status, g2, _ = await api.call("POST", "/api/v1/guest-sessions", json={"adult_confirmed": True})
    assert (await api.call("GET", "/api/v1/performers/anna", token=g2["token"]))[0] == 200
    m, _ = await api.member("otto", adult=False)
    assert (await api.call("GET", "/api/v1/performers/anna", token=m))[0] == 403
    await api.call("POST", "/api/v1/me/adult-confirmation", token=m, json={})
    relogin = await api.accounts.login("otto", "password-otto")
    assert (await api.call("GET", "/api/v1/performers/anna", token=relogin.token))[0] == 200
    assert (await api.call("GET", "/api/v1/performers/anna"))[0] == 401


async def test_purchase_twice_with_one_key_is_one_top_up(api: Api) -> None:
    """Protects members from double charges over HTTP: 201 then 200 with the same payment, one
    top-up in the wallet; the key with another package is 409; credits are usable at once."""
    token, mid = await api.member("paul")
    status, w, _ = await api.call("GET", "/api/v1/wallet", token=token)
    assert status == 200 and w["credits"] == "0.00" and w["units_per_credit"] == 6000
    order = {"package": "p2999", "idempotency_key": "order-0001", "card_last4": "4242", "card_expiry": "12/29"}
    s1, first, _ = await api.call("POST", "/api/v1/wallet/purchases", token=token, json=order)
    s2, again, _ = await api.call("POST", "/api/v1/wallet/purchases", token=token, json=order)
    assert (s1, s2) == (201, 200) and first["payment_id"] == again["payment_id"] and again["replayed"]
    assert first["status"] == "credited" and first["card_last4"] == "4242" and first["credits"] == 30
    status, w, _ = await api.call("GET", "/api/v1/wallet", token=token)
    assert (w["credits"], w["vip_points"], w["available_units"]) == ("30.00", 1, 30 * 6000)
    status, body, _ = await api.call(
        "POST", "/api/v1/wallet/purchases", token=token, json={**order, "package": "p6999"}
    )
    assert status == 409 and is_error(body, "idempotency_conflict")
    status, body, _ = await api.call(
        "POST", "/api/v1/wallet/purchases", token=token, json={**order, "card_number": "4242424242424242"}
    )
    assert status == 400 and "card_number" in body["error"]["message"]
    assert api.daemon.billing is not None
    bal = await api.daemon.billing.ledger.balance(f"wallet:{mid}")
    assert bal.available == 30 * 6000


async def test_wallet_and_purchases_are_for_members_only(api: Api) -> None:
    """Protects wallets: a guest or performer token is refused with 403, no token with 401."""
    admin = await api.admin_token()
    perf, _ = await api.performer(admin, "anna")
    status, g, _ = await api.call("POST", "/api/v1/guest-sessions", json={"adult_confirmed": True})
    for token in (g["token"], perf):
        assert (await api.call("GET", "/api/v1/wallet", token=token))[0] == 403
        status, body, _ = await api.call(
            "POST", "/api/v1/wallet/purchases", token=token, json={"package": "p2999", "idempotency_key": "order-0009"}
        )
        assert status == 403 and is_error(body, "forbidden")
    status, body, r = await api.call("GET", "/api/v1/wallet")
    assert status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")


async def test_performer_profiles_admin_creates_performer_edits_own_only(api: Api) -> None:
    """Protects profiles over HTTP: admins create (members cannot), a performer edits only its
    own, the price and categories are validated, and /me shows a performer its profile."""
    admin = await api.admin_token()
    member, _ = await api.member("quin")
    status, body, _ = await api.call(
        "POST",
        "/api/v1/performers",
        token=member,
        json={"username": "eve", "password": "password-eve", "display_name": "Eve", "price_per_minute": 100},
    )
    assert status == 403
    anna, anna_id = await api.performer(admin, "anna", 200, categories=["girl"])
    bea, _ = await api.performer(admin, "bea", 300)
    status, body, _ = await api.call(
        "PATCH",
        "/api/v1/performers/anna",
        token=anna,
        json={"price_per_minute": 450, "bio": "Hello", "categories": ["girl", "fetish"]},
    )
    assert status == 200 and (body["price_per_minute"], body["categories"]) == (450, ["fetish", "girl"])
    assert (await api.call("PATCH", "/api/v1/performers/anna", token=bea, json={"bio": "x"}))[0] == 403
    assert (await api.call("PATCH", "/api/v1/performers/anna", token=member, json={"bio": "x"}))[0] == 403
    for bad in (
        {"price_per_minute": 0},
        {"price_per_minute": "450"},
        {"categories": ["girl", "celebrity"]},
        {"display_name": ""},
        {"unknown": 1},
        {"price_per_minute": None},
    ):
        status, body, _ = await api.call("PATCH", "/api/v1/performers/anna", token=anna, json=bad)
        assert status == 400 and is_error(body, "bad_request"), (bad, body)
    status, me, _ = await api.call("GET", "/api/v1/me", token=anna)
    assert me["kind"] == "performer" and me["performer"]["id"] == anna_id and me["performer"]["bio"] == "Hello"
    status, body, _ = await api.call("GET", "/api/v1/performers/nobody", token=member)
    assert status == 404 and is_error(body, "not_found")
    status, duo, _ = await api.call(
        "POST",
        "/api/v1/performers",
        token=admin,
        json={
            "username": "duo",
            "password": "password-duo",
            "display_name": "Duo",
            "price_per_minute": 500,
            "group_members": ["anna", "bea"],
        },
    )
    assert status == 201 and duo["is_group"] and duo["group_members"] == ["anna", "bea"]


async def test_earnings_are_the_performers_own_from_the_ledger(api: Api) -> None:
    """Protects GET /performers/{username}/earnings: the performer (or an admin) reads what the
    ledger posted to its earnings account, its share of a member's tip included; another performer,
    a member or a guest is 403 forbidden, no token 401, an unknown username 404 not_found."""
    admin = await api.admin_token()
    anna, anna_id = await api.performer(admin, "anna")
    bea, _ = await api.performer(admin, "bea")
    member, member_id = await api.member("paul")
    status, body, _ = await api.call("GET", "/api/v1/performers/anna/earnings", token=anna)
    assert status == 200 and body == {
        "credits": "0.00",
        "units": 0,
        "units_per_credit": 6000,
        "performer_share_bp": 5000,
    }, body
    order = {"package": "p2999", "idempotency_key": "order-0042"}
    assert (await api.call("POST", "/api/v1/wallet/purchases", token=member, json=order))[0] == 201
    assert api.daemon.billing is not None
    ledger = api.daemon.billing.ledger
    await ledger.open_performer(anna_id)
    await ledger.tip("tip-0001", member_id, anna_id, 10 * 6000, 5000)  # 10 credits, half to anna
    for token in (anna, admin):
        status, body, _ = await api.call("GET", "/api/v1/performers/anna/earnings", token=token)
        assert status == 200 and (body["credits"], body["units"]) == ("5.00", 30000), body
    status, g, _ = await api.call("POST", "/api/v1/guest-sessions", json={"adult_confirmed": True})
    for token in (bea, member, g["token"]):
        status, body, _ = await api.call("GET", "/api/v1/performers/anna/earnings", token=token)
        assert status == 403 and is_error(body, "forbidden") and "performer itself" in body["error"]["message"]
    status, body, _ = await api.call("GET", "/api/v1/performers/anna/earnings")
    assert status == 401 and is_error(body, "unauthorized")
    for token in (admin, anna):
        status, body, _ = await api.call("GET", "/api/v1/performers/nobody/earnings", token=token)
        assert status == 404 and is_error(body, "not_found"), body


async def test_bad_input_is_a_json_4xx_never_a_500(api: Api) -> None:
    """Protects the error contract: malformed JSON, wrong types, wrong media type, unknown
    routes and methods, oversized bodies all answer {error: {code, message}} with a 4xx."""
    url = "/api/v1/accounts"
    cases = [
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "bad_request"),
        ({"data": b"[1, 2]", "headers": {"Content-Type": "application/json"}}, 400, "bad_request"),
        ({"data": b"[" * 100_000, "headers": {"Content-Type": "application/json"}}, 413, "payload_too_large"),
        ({"data": b"[" * 60_000, "headers": {"Content-Type": "application/json"}}, 400, "bad_request"),
        ({"data": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}, 400, "bad_request"),
        (
            {"data": b"username=x", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
            415,
            "unsupported_media_type",
        ),
        ({"json": {"username": ["x"], "password": "password"}}, 400, "bad_request"),
        ({"json": {"username": "ok_name", "password": 12345678}}, 400, "bad_request"),
        ({"json": {"username": "ok_name"}}, 400, "bad_request"),
        ({"json": {"username": "ok_name", "password": "password", "adult_confirmed": "yes"}}, 400, "bad_request"),
        ({"json": {"username": "x" * 5000, "password": "p" * 5000}}, 400, "bad_request"),
        ({"json": {"username": "ok_name", "password": "password", "age": 99}}, 400, "bad_request"),
    ]
    for kw, status, code in cases:
        got, body, _ = await api.call("POST", url, **kw)
        assert (got, is_error(body, code)) == (status, True), (kw, got, body)
    got, body, _ = await api.call("GET", "/api/v1/nothing-here")
    assert got == 404 and is_error(body, "not_found")
    got, body, r = await api.call("PUT", "/api/v1/accounts", json={})
    assert got == 405 and is_error(body, "method_not_allowed") and "POST" in r.headers["Allow"]
    for header in ("Basic abc", "Bearer", "Bearer jas_" + "x" * 43, "Bearer \u00e9"):
        got, body, _ = await api.call("GET", "/api/v1/me", headers={"Authorization": header})
        assert got == 401 and is_error(body, "unauthorized"), header


async def test_openapi_document_matches_the_routes(api: Api) -> None:
    """Protects the published contract: every route of the API is in /openapi.json and every
    documented operation exists, with the same methods."""
    status, doc, _ = await api.call("GET", "/openapi.json")
    assert status == 200 and doc == openapi_document() and doc["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops if m != "parameters"}
    served = set()
    for resource in api.daemon.app.router.resources():
        info = resource.get_info()
        if "app" in info:  # the /api/v1 sub-application; its resources carry the prefix already
            for sub in info["app"].router.resources():
                served.update((route.method, sub.canonical) for route in sub)
        elif resource.canonical.startswith(("/api", "/openapi", "/signaling-schema")):
            served.update((route.method, resource.canonical) for route in resource if route.method != "HEAD")
    served = {(m, p) for m, p in served if m != "HEAD"}
    assert documented == served


async def test_without_accounts_the_api_says_so(make_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Protects nodes running without accounts: the API answers 503 accounts_unavailable."""
    d = await make_daemon()
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.post(d.http + "/api/v1/guest-sessions", json={}) as r:
            assert r.status == 503 and (await r.json())["error"]["code"] == "accounts_unavailable"


def test_the_first_admin_comes_from_the_command_line(tmp_path: Path) -> None:
    """Protects bootstrapping: `jasmin-sfu create-admin NAME` (password on stdin) makes an admin
    who can log in; a second one with the same name exits 2 with the reason."""
    import asyncio
    import subprocess
    import sys
    import time

    from jasmin_sfu.config import load_config
    from jasmin_sfu.services.accounts import open_accounts
    from tests.conftest import REPO

    env = {
        "PATH": "/usr/bin:/bin",
        "JASMIN_ACCOUNTS_DATA_DIR": str(tmp_path),
        "JASMIN_ACCOUNTS_PASSWORD_TIME_COST": "1",
        "JASMIN_ACCOUNTS_PASSWORD_MEMORY_KIB": "1024",
        "JASMIN_ACCOUNTS_PASSWORD_PARALLELISM": "1",
    }
    cmd = [sys.executable, "-m", "jasmin_sfu", "create-admin", "site_support"]
    made = subprocess.run(cmd, cwd=REPO, env=env, input="admin-password\n", capture_output=True, text=True)
    assert made.returncode == 0 and "created admin site_support" in made.stdout, made.stderr
    again = subprocess.run(cmd, cwd=REPO, env=env, input="admin-password\n", capture_output=True, text=True)
    assert again.returncode == 2 and "not available" in again.stderr

    async def login() -> str:
        accounts = await open_accounts(load_config(None, env=env).accounts, time.time)
        try:
            return (await accounts.login("site_support", "admin-password")).principal.kind
        finally:
            await accounts.close()

    assert asyncio.run(login()) == "admin"


async def test_text_no_store_can_keep_is_a_400_not_a_500(api: Api) -> None:
    """Protects the stores from input PostgreSQL cannot hold: a NUL or an unpaired surrogate in
    a JSON body, a path or a query is refused at the edge with 400 (it was a 500 on PostgreSQL)."""
    token, _ = await api.member("nul_tester")
    for body in (
        {"username": "ab\u0000cd", "password": "password-1"},
        {"username": "abcd", "password": "pass\ud800word"},
        {"username\u0000": "abcd", "password": "password-1"},
    ):
        status, resp, _ = await api.call("POST", "/api/v1/accounts", json=body)
        assert status == 400 and is_error(resp, "bad_request"), body
    status, resp, _ = await api.call("GET", "/api/v1/performers/al%00ice", token=token)
    assert status == 400 and is_error(resp, "bad_request")
    status, resp, _ = await api.call("GET", "/api/v1/performers?q=a%00b", token=token)
    assert status == 400 and is_error(resp, "bad_request")


def _pattern(schema: dict[str, object]) -> re.Pattern[str]:
    raw = str(schema["pattern"])
    return re.compile(raw.removesuffix("$") + r"\Z")


async def test_schema_valid_requests_are_accepted_and_text_rules_are_in_the_document(api: Api) -> None:
    """Protects issue 11.16: what the OpenAPI document allows the API accepts, and what the API
    refuses in text the document says. A control character or NUL in a text field breaks its
    pattern (and is refused 400); text with accents and emoji matches (and is taken); a blank
    required text breaks the pattern. A minimum above its maximum in a search or a preset is an
    empty range (200/201, no performer), not a 400; a group member that names no single
    performer is 404; nude and no-nudity categories cannot both be in one schema-valid list."""
    doc = openapi_document()["components"]["schemas"]
    display = _pattern(doc["CreatePerformerRequest"]["properties"]["display_name"])
    about = _pattern(doc["PrivacyProfilePatch"]["properties"]["about"])
    subject = _pattern(doc["MailingRequest"]["properties"]["subject"])
    password = _pattern(doc["RegisterRequest"]["properties"]["password"])
    for bad in ("a\x01b", "a\x00", "line\nbreak", "\x7f"):
        assert not display.match(bad) and not subject.match(bad), repr(bad)
    assert not display.match("   ") and not subject.match("\u3000")  # blank after strip()
    assert about.match("two\nlines\tand tab") and not about.match("bell\x07")
    assert display.match("Zoë 🌸") and password.match("pässwörd-🌸") and not password.match("nul\x00byte")
    cats = doc["CreatePerformerRequest"]["properties"]["categories"]["anyOf"]
    assert not any({"girl", "celebrity"} <= set(c["items"]["enum"]) for c in cats)

    admin = await api.admin_token()
    await api.performer(admin, "anna")
    token, _ = await api.member("mia")
    for q in ("?price_min=500&price_max=100", "?age_min=40&age_max=20"):
        status, body, _ = await api.call("GET", "/api/v1/search/performers" + q, token=token)
        assert status == 200 and body["results"] == [], (q, body)
    status, body, _ = await api.call(
        "POST",
        "/api/v1/me/search-presets",
        token=token,
        json={"name": "empty", "query": {"price_min": 500, "price_max": 100}},
    )
    assert status == 201, body
    status, body, _ = await api.call(
        "POST",
        "/api/v1/performers",
        token=admin,
        json={
            "username": "duo",
            "password": "password-duo",
            "display_name": "Duo",
            "price_per_minute": 100,
            "group_members": ["anna", "nobody1"],
        },
    )
    assert status == 404 and is_error(body, "not_found") and "nobody1" in body["error"]["message"]
    status, body, _ = await api.call(
        "POST",
        "/api/v1/performers",
        token=admin,
        json={
            "username": "zoe",
            "password": "password-zoe",
            "display_name": "Zoë 🌸",
            "price_per_minute": 100,
            "bio": "line one\nline two",
        },
    )
    assert status == 201 and body["display_name"] == "Zoë 🌸", body
