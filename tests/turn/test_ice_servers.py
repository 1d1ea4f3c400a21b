"""TURN REST API credentials: the pure issuer, the [turn] config section, the join answer and
GET /api/v1/ice-servers (jasmin_sfu/api/ice_servers.py, docs/deploy.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest

from jasmin_signaling.client import SignalingClient
from jasmin_sfu.api.ice_servers import IceServers, turn_password
from jasmin_sfu.app import Daemon
from jasmin_sfu.config import BillingConfig, ConfigError, TurnConfig, load_config
from tests.api.conftest import Api, accounts_config, api  # noqa: F401 - the api fixture
from tests.conftest import test_config as loopback_config
from tests.realparts import FakeClock

SECRET = "north-secret-0123456789"
URLS = (
    "turn:10.0.0.1:3478?transport=udp",
    "turn:10.0.0.1:3478?transport=tcp",
    "turns:turn.example.com:5349?transport=tcp",
)


def test_password_matches_an_independent_hmac_sha1() -> None:
    """Protects the credential coturn recomputes: base64(HMAC-SHA1(secret, username)). The expected
    value was computed outside Python: printf '%s' '1780086400:9f86d081884c7d65' |
    openssl dgst -sha1 -hmac 'north-secret-0123456789' -binary | base64."""
    assert turn_password(SECRET, "1780086400:9f86d081884c7d65") == "IiyhIlVZ+z7IUR7PLLapfm7N+Dk="


def test_username_is_expiry_then_id_and_expiry_follows_the_clock() -> None:
    """Protects the TURN REST API username "<expiry unix>:<id>": the expiry is the injected clock
    plus ttl_s (coturn refuses the credential after it), each issue has a fresh id, and every
    configured URL is in the one RTCIceServer."""
    clock = FakeClock(1_780_000_000.5)
    ids = iter(["aaaa", "bbbb"])
    issuer = IceServers(URLS, SECRET, 86400, clock, lambda: next(ids))
    (first,) = issuer.issue()
    assert first == {
        "urls": list(URLS),
        "username": "1780086400:aaaa",
        "credential": turn_password(SECRET, "1780086400:aaaa"),
    }
    clock.advance(100)
    (second,) = issuer.issue()
    assert second["username"] == "1780086500:bbbb"
    expected = base64.b64encode(hmac.new(SECRET.encode(), b"1780086500:bbbb", hashlib.sha1).digest()).decode()
    assert second["credential"] == expected
    assert IceServers((), "", 86400, clock).issue() == []


def test_turn_section_from_file_and_environment(tmp_path: Path) -> None:
    """Protects the [turn] section: TOML and JASMIN_TURN_* (lists comma-separated) both reach it,
    the secret is not printed by check-config (repr), and bad values are named errors."""
    f = tmp_path / "j.toml"
    f.write_text('[turn]\nurls = ["turn:t.example.com:3478?transport=udp"]\nsecret = "%s"\nttl_s = 3600\n' % SECRET)
    cfg = load_config(f, env={})
    assert cfg.turn == TurnConfig(("turn:t.example.com:3478?transport=udp",), SECRET, 3600)
    assert SECRET not in repr(cfg)
    cfg = load_config(
        None, env={"JASMIN_TURN_URLS": ",".join(URLS), "JASMIN_TURN_SECRET": SECRET, "JASMIN_TURN_TTL_S": "600"}
    )
    assert cfg.turn.urls == URLS and cfg.turn.ttl_s == 600
    bad = {
        "JASMIN_TURN_URLS": "stun:t.example.com:3478",  # not TURN
        "JASMIN_TURN_SECRET": SECRET,
    }
    for env, needle in [
        (bad, "turn.urls"),
        ({"JASMIN_TURN_URLS": "turns:t.example.com:5349?transport=udp", "JASMIN_TURN_SECRET": SECRET}, "turn.urls"),
        ({"JASMIN_TURN_URLS": "turn:t.example.com:70000", "JASMIN_TURN_SECRET": SECRET}, "turn.urls"),
        ({"JASMIN_TURN_URLS": "turn:t.example.com", "JASMIN_TURN_SECRET": "short"}, "turn.secret"),
        ({"JASMIN_TURN_SECRET": SECRET}, "turn.secret"),
        (
            {"JASMIN_TURN_URLS": "turn:t.example.com", "JASMIN_TURN_SECRET": SECRET, "JASMIN_TURN_TTL_S": "10"},
            "turn.ttl_s",
        ),
        ({"JASMIN_TURN_TTL_S": "a day"}, "turn.ttl_s"),
    ]:
        with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
            load_config(None, env=env)


@pytest.fixture
async def turn_api(tmp_path: Path) -> AsyncIterator[Api]:
    clock = FakeClock()
    cfg = loopback_config(billing=BillingConfig(enabled=False), accounts=accounts_config(str(tmp_path)))
    d = Daemon(cfg.replace(turn=TurnConfig(URLS, SECRET, 600)), accounts_clock=clock)
    await d.start()
    async with aiohttp.ClientSession() as session:
        yield Api(d, f"http://127.0.0.1:{d.port}", f"ws://127.0.0.1:{d.port}/ws", clock, session)
    await d.stop()


def _valid(server: dict[str, object], now: float, ttl: int) -> None:
    username = server["username"]
    assert isinstance(username, str)
    expiry, _, ident = username.partition(":")
    assert int(expiry) == int(now) + ttl and len(ident) == 16
    assert server["credential"] == turn_password(SECRET, username) and server["urls"] == list(URLS)


async def test_guests_and_members_get_credentials_on_rest_and_in_join(turn_api: Api) -> None:
    """Protects the two ways a viewer learns its TURN servers: GET /api/v1/ice-servers answers any
    session token (a guest's and a member's) with fresh credentials and their expiry, never to be
    cached (Cache-Control: no-store); a request without a token is 401 and an unknown query
    parameter a 400; and the signaling join answer carries ice_servers for a guest viewer."""
    api = turn_api  # noqa: F811 - a local name, not the imported fixture
    status, guest, _ = await api.call("POST", "/api/v1/guest-sessions", json={"adult_confirmed": True})
    assert status == 201
    member_token, _ = await api.member("mia")
    for token in (guest["token"], member_token):
        status, body, response = await api.call("GET", "/api/v1/ice-servers", token=token)
        assert status == 200, body
        assert response.headers["Cache-Control"] == "no-store"
        assert body["expires_at"] == int(api.clock.now) + 600
        (server,) = body["ice_servers"]
        _valid(server, api.clock.now, 600)
    status, body, _ = await api.call("GET", "/api/v1/ice-servers")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body, _ = await api.call("GET", "/api/v1/ice-servers?ttl=99", token=member_token)
    assert status == 400 and body["error"] == {"code": "bad_request", "message": "ttl: unknown query parameter"}

    admin = await api.admin_token()
    anna_token, _ = await api.performer(admin, "anna")
    perf = await SignalingClient.connect(api.ws)
    viewer = await SignalingClient.connect(api.ws)
    try:
        joined = await perf.request("join", show_id="anna", role="performer", token=anna_token)
        _valid(joined["ice_servers"][0], api.clock.now, 600)
        api.clock.advance(30)
        joined = await viewer.request("join", show_id="anna", role="viewer", token=guest["token"])
        (server,) = joined["ice_servers"]
        _valid(server, api.clock.now, 600)
    finally:
        await perf.close()
        await viewer.close()


async def test_without_turn_the_lists_are_empty(api: Api) -> None:  # noqa: F811 - the imported fixture
    """Protects nodes without [turn]: the route answers an empty list and no expiry (the client
    then uses host candidates only), never an error."""
    status, guest, _ = await api.call("POST", "/api/v1/guest-sessions", json={"adult_confirmed": True})
    status, body, _ = await api.call("GET", "/api/v1/ice-servers", token=guest["token"])
    assert status == 200 and body == {"ice_servers": [], "expires_at": None}
