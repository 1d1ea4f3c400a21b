"""WHIP and WHEP over loopback with aiortc peers: a WHIP publisher is the show's performer
for websocket viewers, privates and billing; a WHEP viewer is a free viewer of a websocket
performer's show."""

from __future__ import annotations

import asyncio

from bench.peers import publish, subscribe, wait_for
from bench.whip_peers import whep_play, whip_publish
from jasmin_signaling.client import SignalingClient
from tests.api.conftest import Api
from tests.api.test_signaling_auth import connect


async def buy(api: Api, token: str) -> None:
    status, body, _ = await api.call(
        "POST",
        "/api/v1/wallet/purchases",
        token=token,
        json={"package": "p2999", "idempotency_key": "purchase-" + token[-8:]},
    )
    assert status == 201, body


async def guest_token(api: Api) -> str:
    status, body, _ = await api.call("POST", "/api/v1/guest-sessions", json={"adult_confirmed": True})
    assert status == 201, body
    return str(body["token"])


async def test_whip_publisher_is_the_performer_for_websocket_viewers(api: Api, clients: list[SignalingClient]) -> None:
    """Protects WHIP ingest as a performer: a WHIP POST with the performer's token takes the
    show online (free) with its producers; a websocket member decodes its video and audio;
    DELETE on the Location ends the publish and, with no other performer, the show."""
    admin = await api.admin_token()
    anna_token, anna_id = await api.performer(admin, "anna")
    member_token, _ = await api.member("mia")
    pub = await whip_publish(api.http, "anna", anna_token)
    show = api.daemon.shows.get("anna")
    assert show is not None and show.machine.state.value == "free"
    assert show.performer_ids == (anna_id,) and len(show.router.producers) == 2
    viewer = await subscribe(api.ws, "anna", token=member_token)
    clients.append(viewer.client)
    assert await wait_for(lambda: viewer.frames.get("video", 0) >= 5 and viewer.frames.get("audio", 0) >= 5, 30)

    assert await pub.delete() == 200
    ev = await viewer.client.next_event("show.ended")
    assert ev["data"]["show_id"] == "anna"
    assert api.daemon.shows.get("anna") is None and api.daemon.whip.sessions == {}
    assert await pub.delete() == 404  # the session is gone
    await viewer.pc.close()
    await pub.close()


async def test_the_performers_websocket_controls_a_whip_show(api: Api, clients: list[SignalingClient]) -> None:
    """Protects the OBS flow: the performer's websocket joins the show its WHIP session made
    live (it sees the WHIP producers), accepts a private that is billed per second as with a
    browser performer, and the show outlives the websocket while WHIP still publishes."""
    admin = await api.admin_token()
    anna_token, anna_id = await api.performer(admin, "anna", price=600)
    mia_token, mia_id = await api.member("mia")
    await buy(api, mia_token)
    pub = await whip_publish(api.http, "anna", anna_token)
    perf = await connect(api, clients)
    joined = await perf.request("join", show_id="anna", role="performer", token=anna_token)
    assert joined["state"] == "free" and len(joined["producers"]) == 2
    mia = await subscribe(api.ws, "anna", token=mia_token)
    clients.append(mia.client)
    assert await wait_for(lambda: mia.frames.get("video", 0) >= 3, 30)

    _, before, _ = await api.call("GET", "/api/v1/wallet", token=mia_token)
    await mia.client.request("private.request")
    assert (await perf.next_event("private.requested"))["data"]["member_id"] == mia_id
    await perf.request("private.accept", member_id=mia_id)
    show = api.daemon.shows.get("anna")
    assert show is not None and show.machine.private_member == mia_id
    accepted_at = asyncio.get_running_loop().time()
    frames = mia.frames.get("video", 0)
    assert await wait_for(lambda: mia.frames.get("video", 0) >= frames + 30, 30)
    # At least 1.5 s of private, whatever the frames: on a loaded machine frames queued
    # before the accept can arrive in one burst, and a private under a second bills none.
    while asyncio.get_running_loop().time() - accepted_at < 1.5:
        await asyncio.sleep(0.1)
    await perf.request("private.end")
    await perf.request("show.free")
    assert show.machine.state.value == "free"
    billing = api.daemon.billing
    assert billing is not None

    async def spent() -> int:
        _, after, _ = await api.call("GET", "/api/v1/wallet", token=mia_token)
        return int(before["available_units"]) - int(after["available_units"])

    charged = 0
    for _ in range(100):
        charged = await spent()
        if charged > 0:
            break
        await wait_for(lambda: False, 0.1)
    assert charged > 0, "the private of a WHIP show was not billed"

    await perf.request("leave")
    assert api.daemon.shows.get("anna") is show and show.machine.state.value == "free"
    await pub.delete()
    await mia.pc.close()
    await pub.close()


async def test_whep_viewer_watches_a_websocket_performer(api: Api, clients: list[SignalingClient]) -> None:
    """Protects WHEP playback: a guest token's recvonly offer to /whep/{show} is answered with
    the show's producers; the viewer decodes video and audio from a websocket performer, and
    DELETE ends its session (its consumers are gone)."""
    admin = await api.admin_token()
    anna_token, _ = await api.performer(admin, "anna")
    pub = await publish(api.ws, "anna", token=anna_token)
    clients.append(pub.client)
    viewer = await whep_play(api.http, "anna", await guest_token(api))
    assert await wait_for(lambda: viewer.frames.get("video", 0) >= 5 and viewer.frames.get("audio", 0) >= 5, 30)
    show = api.daemon.shows.get("anna")
    assert show is not None and len(show.router.consumers) == 2
    assert await viewer.delete() == 200
    assert await wait_for(lambda: len(show.router.consumers) == 0, 10)
    assert len(show.participants) == 1
    await viewer.close()
    await pub.pc.close()


async def test_a_whep_session_ends_when_the_media_it_plays_ends(api: Api, clients: list[SignalingClient]) -> None:
    """Protects WHEP players from a silent stream: WHEP cannot renegotiate, so when the
    performer's encoder reconnects (a new WHIP session replaces the old producers) the WHEP
    session ends (its resource is gone, its connection closed) and a new POST plays the new
    producers."""
    admin = await api.admin_token()
    anna_token, _ = await api.performer(admin, "anna")
    pub = await whip_publish(api.http, "anna", anna_token)
    guest = await guest_token(api)
    viewer = await whep_play(api.http, "anna", guest)
    assert await wait_for(lambda: viewer.frames.get("video", 0) >= 3, 30)
    again = await whip_publish(api.http, "anna", anna_token)
    assert await wait_for(lambda: viewer.location.rsplit("/", 1)[1] not in api.daemon.whip.sessions, 10)
    assert await wait_for(lambda: viewer.pc.connectionState in ("closed", "failed"), 40)
    assert await viewer.delete() == 404
    replay = await whep_play(api.http, "anna", guest)
    assert await wait_for(lambda: replay.frames.get("video", 0) >= 3, 30)
    for peer in (viewer, replay, pub, again):
        await peer.close()


async def test_a_revoked_token_ends_its_whip_and_whep_sessions(api: Api) -> None:
    """Protects revocation over HTTP sessions as over websockets: the performer's logout ends
    its WHIP session (the show goes offline) and a member's logout ends its WHEP session."""
    admin = await api.admin_token()
    anna_token, _ = await api.performer(admin, "anna")
    mia_token, _ = await api.member("mia")
    pub = await whip_publish(api.http, "anna", anna_token)
    viewer = await whep_play(api.http, "anna", mia_token)
    assert await wait_for(lambda: viewer.frames.get("video", 0) >= 2, 30)
    assert (await api.call("DELETE", "/api/v1/sessions/current", token=mia_token))[0] == 204
    assert await wait_for(lambda: [s.kind for s in api.daemon.whip.sessions.values()] == ["whip"], 10)
    assert (await api.call("DELETE", "/api/v1/sessions/current", token=anna_token))[0] == 204
    assert await wait_for(lambda: api.daemon.shows.get("anna") is None and not api.daemon.whip.sessions, 10)
    await viewer.close()
    await pub.close()


async def test_a_chat_ban_ends_the_members_whep_session(api: Api, clients: list[SignalingClient]) -> None:
    """Protects the room's moderation over WHEP: a member banned from the show's room while
    playing loses the playback (its WHEP session ends), as a banned websocket leaves the show."""
    admin = await api.admin_token()
    anna_token, _ = await api.performer(admin, "anna")
    mia_token, mia_id = await api.member("mia")
    perf = await connect(api, clients)
    await perf.request("join", show_id="anna", role="performer", token=anna_token)
    pub = await publish(api.ws, "anna", client=perf)
    viewer = await whep_play(api.http, "anna", mia_token)
    assert await wait_for(lambda: viewer.frames.get("video", 0) >= 2, 30)
    await perf.request("chat.ban", user=mia_id, reason="test")
    assert await wait_for(lambda: not api.daemon.whip.sessions, 10)
    show = api.daemon.shows.get("anna")
    assert show is not None and await wait_for(lambda: len(show.participants) == 1, 10)
    await viewer.close()
    await pub.pc.close()
