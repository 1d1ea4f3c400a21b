"""The relays' control channel (jasmin_sfu/api/relay.py, docs/cluster.md "Relays"): an origin opens a
relay only for a request signed with the cluster's secret, fresh and never seen before.

A daemon runs in this process on 127.0.0.1 with a ``[cluster]`` section on the real Redis (a key prefix
of the test's own); the requests are real HTTP POSTs to its ``/internal/relay/open``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator

import aiohttp
import pytest

from bench.peers import publish
from jasmin_sfu.api.relay import (
    NODE_HEADER,
    RELAY_OPEN_PATH,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    RelayError,
    RequestVerifier,
    sign,
)
from jasmin_sfu.api.relay_members import MEMBER_EVENTS_PATH, MEMBER_PATH
from jasmin_sfu.app import Daemon
from jasmin_sfu.config import ClusterConfig
from jasmin_sfu.media.pipe_transport import new_key
from tests.conftest import scrape_metrics
from tests.conftest import test_config as loopback_config
from tests.realparts import REDIS_URL, FakeClock, redis_key_prefix

SECRET = "r" * 40


@pytest.fixture
async def origin() -> AsyncIterator[Daemon]:
    async with redis_key_prefix("jrelay") as prefix:
        cfg = loopback_config().replace(
            cluster=ClusterConfig(
                redis_url=REDIS_URL, key_prefix=prefix, node_id="a", secret=SECRET, heartbeat_interval_s=0.2, ttl_s=2.0
            )
        )
        d = Daemon(cfg)
        await d.start()
        try:
            yield d
        finally:
            await d.stop()


def open_body(show_id: str = "anna", node: str = "edge1") -> bytes:
    return json.dumps(
        {"show_id": show_id, "node": node, "host": "127.0.0.1", "port": 9, "key": new_key().hex()}
    ).encode()


def signed(body: bytes, *, secret: str = SECRET, node: str = "edge1", at: float | None = None) -> dict[str, str]:
    stamp = str(time.time() if at is None else at)
    return {
        NODE_HEADER: node,
        TIMESTAMP_HEADER: stamp,
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, "POST", RELAY_OPEN_PATH, stamp, node, body),
    }


async def post(d: Daemon, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{d.port}{RELAY_OPEN_PATH}", data=body, headers=headers) as r:
            return r.status, await r.json()


async def test_an_origin_opens_a_relay_only_for_a_fresh_request_signed_with_the_secret(origin: Daemon) -> None:
    """Protects the control channel: a request signed with another secret, unsigned, stale, replayed
    or naming another node in its body is refused 403 and opens no pipe; a good one for a show not
    live here is 404 unknown_show; a good one for a live show answers the origin's UDP endpoint, its
    key and the show's audio and video producers, and /metrics counts the refusals."""
    pub = await publish(f"ws://127.0.0.1:{origin.port}/ws", "anna")
    try:
        body = open_body()
        for headers in (
            signed(body, secret="x" * 40),  # another site's secret
            {"Content-Type": "application/json"},  # unsigned
            signed(body, at=time.time() - 300),  # outside the replay window
            signed(body, node="edge2"),  # the body names edge1
        ):
            status, answer = await post(origin, body, headers)
            assert status == 403 and answer["error"]["code"] == "forbidden", (headers, answer)
        assert origin.relays is not None and not origin.relays.origin_pipes

        nobody = open_body("nobody")
        status, answer = await post(origin, nobody, signed(nobody))
        assert status == 404 and answer["error"]["code"] == "unknown_show"

        headers = signed(body)
        status, answer = await post(origin, body, headers)
        assert status == 200, answer
        assert answer["node"] == "a" and answer["host"] == "127.0.0.1" and answer["port"] > 0
        assert len(bytes.fromhex(answer["key"])) == 30
        kinds = sorted(p["kind"] for p in answer["producers"])
        assert kinds == ["audio", "video"]
        assert all(p["payload_type"] and p["mime"] for p in answer["producers"])
        assert set(origin.relays.origin_pipes) == {"edge1"}

        status, answer = await post(origin, body, headers)  # the same request again: a replay
        assert status == 403 and "replayed" in answer["error"]["message"]
        m = await scrape_metrics(f"http://127.0.0.1:{origin.port}")
        assert m["jasmin_relay_refused_total"] == 6 and m["jasmin_relay_opened_as_origin_total"] == 1
    finally:
        await pub.close()


def test_the_verifier_names_why_it_refuses() -> None:
    """Protects the verifier's rules with an injected clock: the window is both ways (a clock ahead
    or behind by more than the window is refused), a replay is refused while remembered, and every
    refusal is a RelayError with code forbidden."""
    clock = FakeClock()
    v = RequestVerifier(SECRET, clock, window_s=30)
    body = b"{}"

    def headers(at: float) -> dict[str, str]:
        stamp = str(at)
        return {
            NODE_HEADER: "n",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: sign(SECRET, "POST", "/p", stamp, "n", body),
        }

    now = clock()
    assert v.verify("POST", "/p", headers(now + 29), body) == "n"
    for at, why in ((now + 31, "window"), (now - 31, "window"), (now + 29, "replayed")):
        with pytest.raises(RelayError) as e:
            v.verify("POST", "/p", headers(at), body)
        assert e.value.code == "forbidden" and why in str(e.value)
    with pytest.raises(RelayError, match="bad timestamp"):
        v.verify("POST", "/p", {NODE_HEADER: "n", TIMESTAMP_HEADER: "soon", SIGNATURE_HEADER: "00"}, body)
    with pytest.raises(RelayError, match="bad signature"):
        v.verify("POST", "/other", headers(now), body)  # signed for /p


def member_body(verb: str = "join", show_id: str = "anna", node: str = "edge1") -> bytes:
    return json.dumps(
        {
            "show_id": show_id,
            "node": node,
            "session": "s1",
            "member_id": "m1",
            "verb": verb,
            "http_url": "http://127.0.0.1:9",
        }
    ).encode()


async def post_to(d: Daemon, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{d.port}{path}", data=body, headers=headers) as r:
            return r.status, await r.json()


async def test_the_members_calls_between_nodes_are_refused_as_the_open_is(origin: Daemon) -> None:
    """Protects the members' control channel (jasmin_sfu/api/relay_members.py): a member call to the
    origin (``/internal/relay/member``) and a delivery of member events to an edge
    (``/internal/relay/member-events``) signed with another secret, unsigned, stale, naming another
    node in the body, or signed for the other path are refused 403 and change nothing; a replay of a
    good one is refused 403; a good member join for a show not live is 404 unknown_show, for a live
    show it puts the member's session in the show; good events are acknowledged by sequence number."""
    pub = await publish(f"ws://127.0.0.1:{origin.port}/ws", "anna")
    try:
        events = json.dumps({"node": "edge1", "epoch": "e1", "items": []}).encode()
        for path, body in ((MEMBER_PATH, member_body()), (MEMBER_EVENTS_PATH, events)):
            other = MEMBER_EVENTS_PATH if path == MEMBER_PATH else MEMBER_PATH
            for headers in (
                signed_for(path, body, secret="x" * 40),  # another site's secret
                {"Content-Type": "application/json"},  # unsigned
                signed_for(path, body, at=time.time() - 300),  # outside the replay window
                signed_for(path, body, node="edge2"),  # the body names edge1
                signed_for(other, body),  # signed for the other endpoint
            ):
                status, answer = await post_to(origin, path, body, headers)
                assert status == 403 and answer["error"]["code"] == "forbidden", (path, headers, answer)
        anna = origin.shows.shows["anna"]
        assert [p.session_id for p in anna.participants.values() if p.role == "viewer"] == []

        nobody = member_body(show_id="nobody")
        status, answer = await post_to(origin, MEMBER_PATH, nobody, signed_for(MEMBER_PATH, nobody))
        assert status == 404 and answer["error"]["code"] == "unknown_show"
        body = member_body()
        headers = signed_for(MEMBER_PATH, body)
        status, answer = await post_to(origin, MEMBER_PATH, body, headers)
        assert status == 200 and answer == {"data": {}}, answer
        assert [p.member_id for p in anna.participants.values() if p.role == "viewer"] == ["m1"]
        status, answer = await post_to(origin, MEMBER_PATH, body, headers)  # a replay
        assert status == 403 and "replayed" in answer["error"]["message"]
        ask = member_body("private.request")
        status, answer = await post_to(origin, MEMBER_PATH, ask, signed_for(MEMBER_PATH, ask))
        assert status == 200 and answer["data"] == {"state": "free", "private_member": False}
        assert set(anna.machine.requests) == {"m1"}

        events = json.dumps(
            {"node": "edge1", "epoch": "e1", "items": [{"seq": 1, "kind": "audience", "show_id": "x", "members": None}]}
        ).encode()
        headers = signed_for(MEMBER_EVENTS_PATH, events)
        status, answer = await post_to(origin, MEMBER_EVENTS_PATH, events, headers)
        assert status == 200 and answer == {"acked": 1}
        status, answer = await post_to(origin, MEMBER_EVENTS_PATH, events, headers)
        assert status == 403 and "replayed" in answer["error"]["message"]
    finally:
        await pub.close()


def signed_for(
    path: str, body: bytes, *, secret: str = SECRET, node: str = "edge1", at: float | None = None
) -> dict[str, str]:
    stamp = str(time.time() if at is None else at)
    return {
        NODE_HEADER: node,
        TIMESTAMP_HEADER: stamp,
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, "POST", path, stamp, node, body),
    }


def cam2cam_body(**over: Any) -> bytes:
    body: dict[str, Any] = json.loads(member_body("cam2cam"))
    body.update(host="127.0.0.1", port=9, key="ab" * 30, producers=[CAM_DESC])
    body.update(over)
    return json.dumps(body).encode()


CAM_DESC = {
    "producer_id": "c" * 32,
    "kind": "video",
    "mime": "video/VP8",
    "clock_rate": 90000,
    "payload_type": 96,
    "app_data": {"member_id": "someone-else", "cam2cam": False},
    "layers": [{"index": 0, "rid": None, "ssrc": 1234, "next_seq": None}],
}


async def test_a_cam2cam_call_from_an_edge_is_checked_as_a_local_publish_and_bad_ones_change_nothing(
    origin: Daemon,
) -> None:
    """Protects the `cam2cam` member verb (Cam2Cam sent from an edge): outside a running private it is
    refused 409 `forbidden` as a local member's publish; inside one, a malformed call (producers not a
    list, none, too many, not descriptions, a key that is not hex or not 30 bytes, a port that is not
    a number, a body too large) is 400 `bad_request` and leaves no replica and no Cam2Cam; a good one
    answers the origin's pipe end and puts a replica in the show's router exclusive to the
    performers, with the origin's app_data (not the edge's); `cam2cam.stop` removes it. Red when
    the origin opens a pipe before its private check, or takes the edge's app_data."""
    url = f"ws://127.0.0.1:{origin.port}/ws"
    pub = await publish(url, "anna")
    try:
        anna = origin.shows.shows["anna"]
        for body in (member_body(), cam2cam_body()):
            status, answer = await post_to(origin, MEMBER_PATH, body, signed_for(MEMBER_PATH, body))
        assert status == 409 and answer["error"]["code"] == "forbidden", answer
        assert origin.relays is not None and "edge1" not in origin.relays.edge_pipes  # refused before any pipe
        assert not anna.machine.cam2cam
        ask = member_body("private.request")
        assert (await post_to(origin, MEMBER_PATH, ask, signed_for(MEMBER_PATH, ask)))[0] == 200
        await pub.client.request("private.accept", member_id="m1")
        assert anna.machine.can_cam2cam("m1")
        before = set(anna.router.producers)
        for bad in (
            cam2cam_body(producers={"a": 1}),
            cam2cam_body(producers=[]),
            cam2cam_body(producers=[CAM_DESC] * 5),
            cam2cam_body(producers=[5]),
            cam2cam_body(producers=[{"producer_id": "x"}]),
            cam2cam_body(key="zz"),
            cam2cam_body(key="ab" * 8),
            cam2cam_body(port="nine"),
            cam2cam_body(pad="x" * 20000),
        ):
            status, answer = await post_to(origin, MEMBER_PATH, bad, signed_for(MEMBER_PATH, bad))
            assert status == 400 and answer["error"]["code"] == "bad_request", (bad[:120], answer)
            assert set(anna.router.producers) == before and not anna.machine.cam2cam
        good = cam2cam_body()
        status, answer = await post_to(origin, MEMBER_PATH, good, signed_for(MEMBER_PATH, good))
        assert status == 200 and len(bytes.fromhex(answer["data"]["key"])) == 30, answer
        replica = anna.router.producers["c" * 32]
        performer = str(pub.client.welcome["session_id"])
        assert replica.exclusive and replica.audience == frozenset({performer})
        assert replica.app_data["member_id"] == "m1" and replica.app_data["cam2cam"] is True
        assert anna.machine.cam2cam
        stop = member_body("cam2cam.stop")
        status, answer = await post_to(origin, MEMBER_PATH, stop, signed_for(MEMBER_PATH, stop))
        assert status == 200 and "c" * 32 not in anna.router.producers and not anna.machine.cam2cam
    finally:
        await pub.close()


async def test_two_first_calls_toward_one_node_share_one_pipe(origin: Daemon) -> None:
    """Protects the pipes from a race (binding yields to the loop): two concurrent first calls
    toward the same node, as a show's relay and a member's Cam2Cam can make, get the same pipe,
    on one socket; the second does not bind another that the first's caller then holds alone.
    Seen red with the per-node lock removed (two pipes, the dict keeping the second)."""
    relays = origin.relays
    assert relays is not None
    for role, pipes in (("origin", relays.origin_pipes), ("edge", relays.edge_pipes)):
        got = await asyncio.gather(*(relays.pipe_to("edge7", role) for _ in range(3)))
        assert got[0] is got[1] is got[2] and pipes["edge7"] is got[0], role
        assert not got[0].closed and got[0].local is not None
    # Each role has its own pipe with the node.
    assert relays.origin_pipes["edge7"] is not relays.edge_pipes["edge7"]
