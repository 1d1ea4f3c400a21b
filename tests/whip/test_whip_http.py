"""The HTTP semantics of WHIP (RFC 9725) and WHEP on this node, each status asserted:
201 + Location + ETag + application/sdp, DELETE, PATCH's 501 (the node does not trickle),
CORS preflight, 405 for other methods, and the error status of every bad input."""

from __future__ import annotations

import re
from typing import Any

from aiortc import RTCPeerConnection

from bench.peers import PatternTrack, ToneTrack, new_pc, publish, wait_for
from bench.whip_peers import post_offer, whep_play, whip_publish
from jasmin_signaling.client import SignalingClient
from jasmin_signaling.messages import MAX_SDP_CHARS
from jasmin_sfu.api.origin import OriginPolicy
from tests.api.conftest import Api


async def offer(pcs: list[Any], *, send: bool = True) -> str:
    """A real aiortc offer: sending pattern + tone (WHIP), or receiving video + audio (WHEP)."""
    pc: RTCPeerConnection = new_pc()
    pcs.append(pc)
    if send:
        pc.addTransceiver(PatternTrack(), direction="sendonly")
        pc.addTransceiver(ToneTrack(), direction="sendonly")
    else:
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


async def raw(
    api: Api, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str, Any]:
    async with api.session.request(method, api.http + path, data=body, headers=headers or {}) as r:
        return r.status, await r.text(), r.headers.copy()


def code(body: str) -> str:
    import json

    return str(json.loads(body)["error"]["code"])


async def test_whip_201_has_location_etag_sdp_and_delete_ends_it(api: Api, pcs: list[Any]) -> None:
    """Protects RFC 9725's success path: 201 with an application/sdp answer, a Location of the
    session under /whip/{show}, a strong ETag, no CORS headers for a client that sends no
    Origin (an encoder); DELETE returns 200 and ends the publish (the show goes offline); a
    second DELETE is 404."""
    admin = await api.admin_token()
    token, _ = await api.performer(admin, "anna")
    pub = await whip_publish(api.http, "anna", token)
    pcs.append(pub)
    h = pub.headers
    assert h["Content-Type"].startswith("application/sdp")
    assert re.fullmatch(r"/whip/anna/[A-Za-z0-9_-]{32}", pub.location), pub.location
    assert re.fullmatch(r'"[0-9a-f]{32}"', pub.etag), pub.etag
    assert "Access-Control-Allow-Origin" not in h
    assert "Link" not in h  # no ICE servers configured: no Link header
    assert await wait_for(lambda: pub.pc.connectionState == "connected", 20)
    assert api.daemon.shows.get("anna") is not None
    assert await pub.delete() == 200
    assert api.daemon.shows.get("anna") is None
    assert await pub.delete() == 404


async def test_patch_is_501_and_other_methods_are_405(api: Api, pcs: list[Any]) -> None:
    """Protects RFC 9725 section 4.3.1 for a node without trickle or ICE restart: PATCH on a
    session (trickle fragment or ICE restart with If-Match: *) is 501 Not Implemented, on an
    unknown session 404; GET/PUT on the endpoint and GET/POST on the session are 405 with Allow."""
    admin = await api.admin_token()
    token, _ = await api.performer(admin, "anna")
    pub = await whip_publish(api.http, "anna", token)
    pcs.append(pub)
    frag = b"a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n"
    sdpfrag = {"Content-Type": "application/trickle-ice-sdpfrag", "Authorization": f"Bearer {token}"}
    status, body, _ = await raw(api, "PATCH", pub.location, body=frag, headers=sdpfrag)
    assert status == 501 and code(body) == "not_implemented"
    status, _, _ = await raw(api, "PATCH", pub.location, body=frag, headers={**sdpfrag, "If-Match": "*"})
    assert status == 501
    status, _, _ = await raw(api, "PATCH", "/whip/anna/" + "x" * 32, body=frag, headers=sdpfrag)
    assert status == 404
    for method, path, allow in (
        ("GET", "/whip/anna", "POST"),
        ("PUT", "/whip/anna", "POST"),
        ("GET", pub.location, "DELETE"),
        ("POST", pub.location, "DELETE"),
        ("GET", "/whep/anna", "POST"),
    ):
        status, _, h = await raw(api, method, path)
        assert status == 405 and allow in h["Allow"], (method, path, status)
    assert pub.pc.connectionState != "closed" and api.daemon.shows.get("anna") is not None


async def test_cors_preflight_follows_the_origin_allow_list(api: Api, pcs: list[Any]) -> None:
    """Protects browser WHIP/WHEP clients under the node's Origin allow-list (server.allowed_origins,
    as /api): for a listed origin OPTIONS on the endpoints and the session answers 204 with the
    methods and Authorization/Content-Type allowed, Accept-Post: application/sdp, and the origin
    echoed; a 201 for it exposes Location and ETag; an unlisted page's preflight and POST get 403."""
    api.daemon.whip.origins = OriginPolicy(["https://player.example"])
    pre = {
        "Origin": "https://player.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    for path in ("/whip/anna", "/whep/anna"):
        status, _, h = await raw(api, "OPTIONS", path, headers=pre)
        assert status == 204
        assert h["Access-Control-Allow-Origin"] == "https://player.example" and h["Vary"] == "Origin"
        assert "POST" in h["Access-Control-Allow-Methods"]
        allowed = h["Access-Control-Allow-Headers"].lower()
        assert "authorization" in allowed and "content-type" in allowed
        assert h["Accept-Post"] == "application/sdp"
    status, _, h = await raw(
        api, "OPTIONS", "/whip/anna/" + "x" * 32, headers={**pre, "Access-Control-Request-Method": "DELETE"}
    )
    assert status == 204 and "DELETE" in h["Access-Control-Allow-Methods"]

    admin = await api.admin_token()
    token, _ = await api.performer(admin, "anna")
    status, _, h = await raw(
        api,
        "POST",
        "/whip/anna",
        body=(await offer(pcs)).encode(),
        headers={
            "Origin": "https://player.example",
            "Content-Type": "application/sdp",
            "Authorization": f"Bearer {token}",
        },
    )
    assert status == 201 and h["Access-Control-Allow-Origin"] == "https://player.example"
    assert {"Location", "ETag", "Link"} <= {x.strip() for x in h["Access-Control-Expose-Headers"].split(",")}
    status, _, h = await raw(api, "DELETE", h["Location"], headers={"Origin": "https://player.example"})
    assert status == 200 and h["Access-Control-Allow-Origin"] == "https://player.example"

    foreign = {**pre, "Origin": "https://hotlink.example"}
    for path in ("/whip/anna", "/whep/anna"):
        status, body, h = await raw(api, "OPTIONS", path, headers=foreign)
        assert (status, code(body)) == (403, "forbidden") and "Access-Control-Allow-Origin" not in h
    status, body, _ = await raw(
        api,
        "POST",
        "/whep/anna",
        body=(await offer(pcs, send=False)).encode(),
        headers={"Origin": "https://hotlink.example", "Content-Type": "application/sdp"},
    )
    assert (status, code(body)) == (403, "forbidden")


async def test_whip_bad_inputs_get_their_status(api: Api, pcs: list[Any]) -> None:
    """Protects RFC 9725's error statuses, and that no refused POST leaves a show online:
    401 without/with a malformed/unknown bearer token, 403 for a member's token or another
    performer's, 404 for an unknown or malformed show id, 415 for another content type, 400 for
    SDP that is not SDP, not UTF-8 or does not send, 413 beyond the size limit, 503 draining."""
    admin = await api.admin_token()
    anna, _ = await api.performer(admin, "anna")
    bob, _ = await api.performer(admin, "bob")
    mia, _ = await api.member("mia")
    sdp = await offer(pcs)
    url = api.http + "/whip/anna"

    async def post(
        body: bytes | str,
        token: str | None = anna,
        ctype: str = "application/sdp",
        path: str = "/whip/anna",
        extra: dict[str, str] | None = None,
    ) -> tuple[int, str, Any]:
        # A page of the node's own origin (allowed without any server.allowed_origins).
        headers = {"Content-Type": ctype, "Origin": api.http, **(extra or {})}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return await raw(api, "POST", path, body=body.encode() if isinstance(body, str) else body, headers=headers)

    cases: list[tuple[int, str, tuple[int, str, Any]]] = [
        (401, "unauthorized", await post(sdp, token=None)),
        (401, "unauthorized", await post(sdp, token=None, extra={"Authorization": "Basic YW5uYTpwdw=="})),
        (401, "unauthorized", await post(sdp, token="not a token!")),
        (401, "unauthorized", await post(sdp, token="jas_" + "A" * 43)),
        (403, "forbidden", await post(sdp, token=mia)),
        (403, "forbidden", await post(sdp, token=bob)),
        (404, "unknown_show", await post(sdp, path="/whip/nobody")),
        (404, "unknown_show", await post(sdp, path="/whip/bad%20id%21")),
        (415, "unsupported_media_type", await post(sdp, ctype="application/json")),
        (415, "unsupported_media_type", await post(sdp, ctype="text/plain")),
        (400, "bad_sdp", await post("hello")),
        (400, "bad_sdp", await post("v=0\r\nm=video banana\r\n")),
        (400, "bad_sdp", await post(b"v=0\r\n\xff\xfe")),
        (400, "bad_sdp", await post("v=0\r\no=- 1 1 IN IP4 0.0.0.0\x00\r\n")),
        (400, "bad_sdp", await post(await offer(pcs, send=False))),
        (413, "too_large", await post(sdp + "a=x-pad:" + "x" * MAX_SDP_CHARS + "\r\n")),
    ]
    for want, want_code, (status, body, h) in cases:
        assert (status, code(body)) == (want, want_code), body
        assert h["Access-Control-Allow-Origin"] == api.http  # errors are readable by the page too
        if status == 401:
            assert h["WWW-Authenticate"].startswith("Bearer")
    assert api.daemon.shows.get("anna") is None and api.daemon.whip.sessions == {}
    status, body, _ = await post(sdp, path="/whip/bob")
    assert status == 403  # anna's token does not own bob's show

    api.daemon.draining = True
    try:
        status, body, h = await post(sdp)
        assert (status, code(body)) == (503, "unavailable") and int(h["Retry-After"]) > 0
        status, _, _ = await raw(
            api, "POST", "/whep/anna", body=sdp.encode(), headers={"Content-Type": "application/sdp"}
        )
        assert status == 503
    finally:
        api.daemon.draining = False
    assert api.daemon.shows.get("anna") is None
    del url


async def test_a_new_whip_session_replaces_the_encoders_old_one(api: Api, pcs: list[Any]) -> None:
    """Protects an encoder's reconnect (OBS after a network drop): a second WHIP POST of the
    same performer replaces the first session without taking the show offline; the old
    session's resource is gone (404), the new one ends the show on DELETE."""
    admin = await api.admin_token()
    token, _ = await api.performer(admin, "anna")
    first = await whip_publish(api.http, "anna", token)
    pcs.append(first)
    show = api.daemon.shows.get("anna")
    second = await whip_publish(api.http, "anna", token)
    pcs.append(second)
    assert api.daemon.shows.get("anna") is show and show is not None and show.machine.state.value == "free"
    assert list(api.daemon.whip.sessions) == [second.location.rsplit("/", 1)[1]]
    assert len(show.router.producers) == 2
    assert await first.delete() == 404
    assert await second.delete() == 200
    assert api.daemon.shows.get("anna") is None


async def test_whep_bad_inputs_get_their_status(api: Api, pcs: list[Any]) -> None:
    """Protects WHEP under join's rules: 401 without a token (this node does not trust
    token-less joins) or with an unknown one, 403 for a guest without the 18+ confirmation and
    for a member banned from the show's room, 404 for a show that is not live or has nothing
    published yet, 415 and 400 for a wrong body; a WHEP viewer is counted nowhere after refusal."""
    admin = await api.admin_token()
    anna, _ = await api.performer(admin, "anna")
    mia, mia_id = await api.member("mia")
    status, g, _ = await api.call("POST", "/api/v1/guest-sessions", json={})
    assert status == 201
    minor_guest = g["token"]
    sdp = await offer(pcs, send=False)

    async def post(body: str, token: str | None, ctype: str = "application/sdp") -> tuple[int, str]:
        headers = {"Content-Type": ctype}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        status, text, _ = await raw(api, "POST", "/whep/anna", body=body.encode(), headers=headers)
        return status, code(text)

    assert await post(sdp, mia) == (404, "unknown_show")  # not live
    perf = await SignalingClient.connect(api.ws)
    pcs.append(perf)
    await perf.request("join", show_id="anna", role="performer", token=anna)
    assert await post(sdp, mia) == (404, "unknown_producer")  # live, nothing published
    pub = await publish(api.ws, "anna", client=perf)
    pcs.append(pub.pc)
    assert await post(sdp, None) == (401, "unauthorized")
    assert await post(sdp, "jas_" + "A" * 43) == (401, "unauthorized")
    assert await post(sdp, minor_guest) == (403, "adult_confirmation_required")
    assert await post(sdp, mia, ctype="text/plain") == (415, "unsupported_media_type")
    assert await post("v=0\r\nm=video x\r\n", mia) == (400, "bad_sdp")
    await perf.request("chat.ban", user=mia_id, reason="test")
    assert await post(sdp, mia) == (403, "banned")
    show = api.daemon.shows.get("anna")
    assert show is not None and len(show.participants) == 1 and api.daemon.whip.sessions == {}
    # And a member in good standing plays.
    viewer = await whep_play(api.http, "anna", (await api.member("bob"))[0])
    pcs.append(viewer)
    assert await wait_for(lambda: viewer.frames.get("video", 0) >= 2, 30)


async def test_the_nodes_turn_servers_are_link_headers(api: Api, pcs: list[Any]) -> None:
    """Protects RFC 9725 section 4.4 with the node's [turn] settings: a WHIP 201 carries one
    Link header per TURN URL, rel="ice-server", with a freshly issued time-limited username and
    the credential coturn will recompute (HMAC of the shared secret), credential-type password."""
    from jasmin_sfu.api.ice_servers import IceServers, turn_password

    admin = await api.admin_token()
    token, _ = await api.performer(admin, "anna")
    urls = ("turn:127.0.0.1:3478?transport=udp", "turns:127.0.0.1:5349?transport=tcp")
    api.daemon.ice_servers = IceServers(urls, "s3cret", 600, new_id=lambda: "abcd")
    status, _, h = await post_offer(api.http + "/whip/anna", await offer(pcs), token)
    assert status == 201
    links = h.getall("Link")
    assert len(links) == 2
    for url, link in zip(urls, links):
        m = re.fullmatch(
            r'<(.+)>; rel="ice-server"; username="(\d+:abcd)"; credential="(.+)"; '
            r'credential-type="password"',
            link,
        )
        assert m is not None, link
        assert m.group(1) == url and m.group(3) == turn_password("s3cret", m.group(2))
