"""Signaling joins authenticated by tokens: the server derives role and identity; client-given
ids are refused unless the node trusts them (accounts.trust_client_ids, legacy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from jasmin_signaling.client import RemoteError, SignalingClient
from tests.api.conftest import Api, start_api


@pytest.fixture
async def clients() -> AsyncIterator[list[SignalingClient]]:
    opened: list[SignalingClient] = []
    yield opened
    for c in opened:
        await c.close()


async def connect(api: Api, clients: list[SignalingClient]) -> SignalingClient:
    c = await SignalingClient.connect(api.ws)
    clients.append(c)
    return c


async def refused(c: SignalingClient, code: str, **join: Any) -> str:
    with pytest.raises(RemoteError) as e:
        await c.request("join", **join)
    assert e.value.code == code, e.value
    return e.value.message


async def test_a_member_token_joins_as_that_member(api: Api, clients: list[SignalingClient]) -> None:
    """Protects identity on the wire: the member's id comes from its token, the performer sees
    that id in the private request, and the show price comes from the performer's profile."""
    admin = await api.admin_token()
    anna_token, anna_id = await api.performer(admin, "anna", price=450)
    member_token, member_id = await api.member("mia")
    perf = await connect(api, clients)
    joined = await perf.request("join", show_id="anna", role="performer", token=anna_token)
    assert (joined["performer_id"], joined["price_per_minute"]) == (anna_id, 450)
    viewer = await connect(api, clients)
    joined = await viewer.request("join", show_id="anna", role="viewer", token=member_token)
    assert joined["role"] == "viewer" and joined["member_id"] == member_id
    await viewer.request("private.request")
    ev = await perf.next_event("private.requested")
    assert ev["data"]["member_id"] == member_id
    show = api.daemon.shows.get("anna")
    assert show is not None and show.performer_ids == (anna_id,) and show.price_per_minute == 450


async def test_forged_ids_are_refused_when_the_node_does_not_trust_them(
    api: Api, clients: list[SignalingClient]
) -> None:
    """Protects members' wallets from impersonation: with trust_client_ids off a client-given
    member_id or performer_id is bad_request, a token-less join is unauthorized, and a token
    cannot be combined with ids."""
    admin = await api.admin_token()
    anna_token, _ = await api.performer(admin, "anna")
    member_token, member_id = await api.member("mia")
    perf = await connect(api, clients)
    await refused(perf, "unauthorized", show_id="anna", role="performer")
    await refused(perf, "bad_request", show_id="anna", role="performer", performer_id="anna")
    await perf.request("join", show_id="anna", role="performer", token=anna_token)
    c = await connect(api, clients)
    message = await refused(c, "bad_request", show_id="anna", role="viewer", member_id=member_id)
    assert "member_id" in message
    assert "guest-sessions" in await refused(c, "unauthorized", show_id="anna", role="viewer")
    await refused(c, "bad_request", show_id="anna", role="viewer", token=member_token, member_id=member_id)
    await refused(c, "unauthorized", show_id="anna", role="viewer", token="jas_" + "A" * 43)
    await refused(c, "bad_request", show_id="anna", role="viewer", token="not a token!")
    assert api.daemon.shows.get("anna") is not None and len(api.daemon.shows.get("anna").participants) == 1  # type: ignore[union-attr]


async def test_a_guest_watches_but_cannot_request_a_private(api: Api, clients: list[SignalingClient]) -> None:
    """Protects the paid path: a guest token (18+ confirmed) joins free chat as a guest and is
    forbidden to request a private; without the confirmation it cannot join at all."""
    admin = await api.admin_token()
    anna_token, _ = await api.performer(admin, "anna")
    perf = await connect(api, clients)
    await perf.request("join", show_id="anna", role="performer", token=anna_token)
    _, unconfirmed, _ = await api.call("POST", "/api/v1/guest-sessions", json={})
    c = await connect(api, clients)
    await refused(c, "adult_confirmation_required", show_id="anna", role="viewer", token=unconfirmed["token"])
    await api.call("POST", "/api/v1/me/adult-confirmation", token=unconfirmed["token"])
    joined = await c.request("join", show_id="anna", role="viewer", token=unconfirmed["token"])
    assert joined["role"] == "viewer" and "member_id" not in joined
    with pytest.raises(RemoteError) as e:
        await c.request("private.request")
    assert e.value.code == "forbidden"
    unconfirmed_member, _ = await api.member("nick", adult=False)
    await refused(
        await connect(api, clients),
        "adult_confirmation_required",
        show_id="anna",
        role="viewer",
        token=unconfirmed_member,
    )


async def test_a_performer_performs_only_in_its_own_or_its_groups_show(
    api: Api, clients: list[SignalingClient]
) -> None:
    """Protects shows from takeover: another performer, a member or a revoked/expired token
    cannot perform; a group account's show takes its listed performers at the group's price."""
    admin = await api.admin_token()
    anna_token, anna_id = await api.performer(admin, "anna", price=200)
    bea_token, bea_id = await api.performer(admin, "bea", price=300)
    await api.call(
        "POST",
        "/api/v1/performers",
        token=admin,
        json={
            "username": "duo",
            "password": "password-duo",
            "display_name": "Duo",
            "price_per_minute": 700,
            "group_members": ["anna", "bea"],
        },
    )
    member_token, _ = await api.member("mia")
    c = await connect(api, clients)
    await refused(c, "forbidden", show_id="anna", role="performer", token=bea_token)
    await refused(c, "forbidden", show_id="mia", role="performer", token=member_token)
    a = await connect(api, clients)
    assert (await a.request("join", show_id="duo", role="performer", token=anna_token))["price_per_minute"] == 700
    b = await connect(api, clients)
    await b.request("join", show_id="duo", role="performer", token=bea_token)
    show = api.daemon.shows.get("duo")
    assert show is not None and show.performer_ids == tuple(sorted((anna_id, bea_id)))
    await api.call("DELETE", "/api/v1/sessions/current", token=anna_token)
    await refused(c, "unauthorized", show_id="anna", role="performer", token=anna_token)
    api.clock.advance(api.daemon.cfg.accounts.session_ttl_s)
    await refused(c, "unauthorized", show_id="bea", role="performer", token=bea_token)


async def test_trusting_nodes_keep_the_legacy_join_and_still_honour_tokens(
    tmp_path: Path, clients: list[SignalingClient]
) -> None:
    """Protects backwards compatibility, behind accounts.trust_client_ids only: ids are taken as
    given without a token, while a token still decides identity when sent."""
    d, clock = await start_api(tmp_path, trust_client_ids=True)
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(d, f"http://127.0.0.1:{d.port}", f"ws://127.0.0.1:{d.port}/ws", clock, session)
            perf = await connect(api, clients)
            assert "performer_id" not in await perf.request("join", show_id="legacy", role="performer")
            old = await connect(api, clients)
            assert (await old.request("join", show_id="legacy", role="viewer", member_id="m1"))["member_id"] == "m1"
            token, mid = await api.member("mia")
            new = await connect(api, clients)
            assert (await new.request("join", show_id="legacy", role="viewer", token=token))["member_id"] == mid
    finally:
        for c in clients:
            await c.close()
        clients.clear()
        await d.stop()
