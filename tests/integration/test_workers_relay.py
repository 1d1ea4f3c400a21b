"""One show over every worker of one machine (issue 15, docs/workers.md "One show over every worker").

The routing rule is tested as a table; the whole as a real ``jasmin-sfu serve`` supervisor
with two worker processes, aiortc performer and viewers on loopback through the
supervisor's port: guests of one show land on both workers (the other served through a
relay over 127.0.0.1 UDP) and all receive media; a private accepted on the show's worker
leaves every guest, on either worker, without a packet sent after ``accepted_at``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import aiohttp
import pytest

from bench.peers import publish, wait_for
from jasmin_sfu.api.relay import (
    NODE_HEADER,
    RELAY_OPEN_PATH,
    RELAY_ORIGIN_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SiblingOrigin,
    sign,
    sibling_origin,
)
from jasmin_sfu.app import INTERNAL_LOAD, INTERNAL_SECRET_HEADER, Daemon
from jasmin_sfu.media.pipe_transport import new_key
from jasmin_sfu.services.cluster import NodeLoad
from jasmin_sfu.supervisor import Placement, WorkerLoad, guest_worker, is_guest, node_load
from tests.conftest import DaemonProcess, start_daemon_process
from tests.conftest import test_config as loopback_config
from tests.integration.test_workers import STALE_LOADS, _get, _stop, conns
from tests.support import after, performer, watch


def test_a_guest_goes_to_the_least_loaded_worker_the_origin_winning_ties() -> None:
    """Protects the spreading rule on connections alone (no load read yet): a guest goes where
    there are fewest connections, the show's worker on a tie (no relay for a small show), never
    to a worker refusing ``overloaded``, and to the origin when every other worker is full or down."""
    assert guest_worker(0, conns({0: 1, 1: 0})) == 1
    assert guest_worker(0, conns({0: 1, 1: 1})) == 0, "ties stay on the origin"
    assert guest_worker(1, conns({0: 3, 1: 3, 2: 2})) == 2
    assert guest_worker(0, conns({0: 5, 1: 0}), frozenset({1})) == 0, "a full worker is skipped"
    assert guest_worker(0, conns({0: 5, 1: 0, 2: 1}), frozenset({1})) == 2
    assert guest_worker(0, conns({0: 5})) == 0, "the other worker is down"
    assert guest_worker(0, conns({0: 5, 1: 9}), frozenset({0})) == 0, "a full origin still serves when nobody has room"


def loaded(connections: int, **load: Any) -> WorkerLoad:
    return WorkerLoad(connections, NodeLoad(**load))


def test_places_follow_load_viewers_and_cpu_against_the_limits_not_only_connections() -> None:
    """Protects issue 15's "places follow load (viewers, CPU)": a worker past its viewer or CPU
    limit (as last read) gets no guest and no new show; a worker a tenth or more of its limits
    busier loses to a quieter one even with fewer connections; within the same tenth,
    connections decide (a burst between two reads spreads); a draining worker is skipped."""
    quiet = loaded(5, viewers=10, max_viewers=100, cpu=0.05, max_cpu=0.85)
    # Past the viewer limit, or the CPU limit: skipped, however few its connections.
    assert guest_worker(0, {0: quiet, 1: loaded(0, viewers=100, max_viewers=100)}) == 0
    assert guest_worker(0, {0: quiet, 1: loaded(0, cpu=0.9, max_cpu=0.85)}) == 0
    assert guest_worker(0, {0: quiet, 1: loaded(0, draining=True)}) == 0
    # Busier by CPU share (50 % of its limit against 6 %): the quieter origin keeps the guest.
    assert guest_worker(0, {0: quiet, 1: loaded(1, cpu=0.43, max_cpu=0.85)}) == 0
    assert guest_worker(1, {0: loaded(1, cpu=0.43, max_cpu=0.85), 1: quiet}) == 1
    # ... and by viewers: 60 of 100 against 10 of 100.
    assert guest_worker(1, {0: loaded(0, viewers=60, max_viewers=100), 1: quiet}) == 1
    # The same tenth: connections decide.
    assert guest_worker(0, {0: quiet, 1: loaded(2, viewers=12, max_viewers=100)}) == 1
    # A new show goes to the least loaded worker with room, not the one with fewest connections.
    p = Placement()
    assert p.route("s", "performer", {0: loaded(0, cpu=0.8, max_cpu=0.85), 1: quiet}) == 1
    assert p.route("t", "performer", {0: loaded(0, viewers=100, max_viewers=100), 1: quiet}) == 1
    assert p.route("u", "performer", {0: loaded(0, viewers=100, max_viewers=100)}) == 0, (
        "no room anywhere: still placed"
    )


def test_only_guests_are_relayed() -> None:
    """Protects privates: members (a token or a member id) and performers always reach the
    show's worker, where the private, its Cam2Cam and its meter run."""
    assert is_guest({"role": "viewer", "show_id": "a"})
    assert not is_guest({"role": "viewer", "show_id": "a", "member_id": "m1"})
    assert not is_guest({"role": "viewer", "show_id": "a", "token": "t"})
    assert not is_guest({"role": "performer", "show_id": "a"})


def test_the_relay_origin_header_names_a_loopback_sibling_or_nothing() -> None:
    """Protects the worker against a forged or garbled routing header: only a JSON object
    with a show, a node and a http://127.0.0.1:PORT URL is read; anything else is ignored."""
    good = {"show_id": "duo", "node": "n1w0", "url": "http://127.0.0.1:4100"}
    assert sibling_origin(json.dumps(good)) == SiblingOrigin("duo", "n1w0", "http://127.0.0.1:4100")
    for bad in (
        "",
        "{",
        "[]",
        json.dumps({**good, "url": "http://10.0.0.1:4100"}),
        json.dumps({**good, "url": "http://127.0.0.1:4100/x"}),
        json.dumps({**good, "show_id": ""}),
        json.dumps({**good, "node": 3}),
        "x" * 600,
    ):
        assert sibling_origin(bad) is None, bad


SECRET = "w" * 40


@pytest.fixture
async def worker() -> AsyncIterator[Daemon]:
    """A daemon configured as a supervised worker (its per-run secret set), in this process."""
    cfg = loopback_config()
    d = Daemon(cfg.replace(server=dataclasses.replace(cfg.server, internal_secret=SECRET)))
    await d.start()
    try:
        yield d
    finally:
        await d.stop()


async def test_a_worker_opens_relays_only_for_its_supervisors_secret_and_ignores_unsigned_routing(
    worker: Daemon,
) -> None:
    """Protects the worker-mode control channel: a relay request signed with another secret is
    403 and opens no pipe, one signed with the supervisor's secret is answered; a client that
    sends the relay-origin header itself (no secret) does not make the worker open a relay
    (its join is unknown_show, and no edge show appears)."""
    pub = await publish(f"ws://127.0.0.1:{worker.port}/ws", "anna")
    try:
        body = json.dumps(
            {"show_id": "anna", "node": "other", "host": "127.0.0.1", "port": 9, "key": new_key().hex()}
        ).encode()

        def signed(secret: str) -> dict[str, str]:
            stamp = str(time.time())
            return {
                NODE_HEADER: "other",
                TIMESTAMP_HEADER: stamp,
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(secret, "POST", RELAY_OPEN_PATH, stamp, "other", body),
            }

        async with aiohttp.ClientSession() as s:
            url = f"http://127.0.0.1:{worker.port}{RELAY_OPEN_PATH}"
            async with s.post(url, data=body, headers=signed("x" * 40)) as r:
                assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
            assert worker.relays is not None and not worker.relays.origin_pipes
            async with s.post(url, data=body, headers=signed(SECRET)) as r:
                assert r.status == 200, await r.text()
            assert set(worker.relays.origin_pipes) == {"other"}

        forged = json.dumps({"show_id": "ghost", "node": "x", "url": f"http://127.0.0.1:{worker.port}"})
        for headers in ({RELAY_ORIGIN_HEADER: forged}, {RELAY_ORIGIN_HEADER: forged, INTERNAL_SECRET_HEADER: "y" * 40}):
            async with (
                aiohttp.ClientSession() as s,
                s.ws_connect(f"ws://127.0.0.1:{worker.port}/ws", headers=headers) as ws,
            ):
                await ws.send_str(json.dumps({"type": "hello", "protocol": "jasmin/1"}))
                assert json.loads((await ws.receive()).data)["type"] == "welcome"
                await ws.send_str(
                    json.dumps(
                        {"type": "request", "id": 1, "method": "join", "data": {"show_id": "ghost", "role": "viewer"}}
                    )
                )
                while (answer := json.loads((await ws.receive()).data)).get("id") != 1:
                    pass
                assert answer["error"]["code"] == "unknown_show", answer
        assert not worker.relays.edge_shows and not worker.relays.edge_pipes
    finally:
        await pub.close()


async def test_a_worker_tells_its_load_to_its_supervisor_only(worker: Daemon) -> None:
    """Protects the load the placement rule reads: GET /internal/load answers the worker's NodeLoad
    (the cluster heartbeat's own: viewers, CPU, its admission limits) with the supervisor's secret
    only (403 otherwise), and a garbled answer is read as nothing, never as a load."""
    url = f"http://127.0.0.1:{worker.port}{INTERNAL_LOAD}"
    async with aiohttp.ClientSession() as s:
        for headers in ({}, {INTERNAL_SECRET_HEADER: "x" * 40}):
            async with s.get(url, headers=headers) as r:
                assert r.status == 403
        async with s.get(url, headers={INTERNAL_SECRET_HEADER: SECRET}) as r:
            assert r.status == 200
            load = node_load(await r.json())
    a = worker.cfg.admission
    assert load == NodeLoad(0, 0, load.cpu if load else 0.0, a.max_viewers_per_worker, a.max_cpu_share, False)
    for bad in (None, [], {"viewers": "many"}, {"viewers": 1}):
        assert node_load(bad) is None


def _sample(metrics: str, name: str, worker: int) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + "{") and f'worker="{worker}"' in line:
            return float(line.rpartition(" ")[2])
    raise AssertionError(f"no {name} for worker {worker} in /metrics")


@asynccontextmanager
async def two_workers(**env: str) -> AsyncIterator[tuple[DaemonProcess, list[Any]]]:
    """A ``jasmin-sfu serve`` supervisor with two worker processes (billing off, the CPU limit off)
    and ``env`` on top, and the list of peers the test opens. Afterwards the peers are closed, the
    daemon stopped, and its exit code must be 0 (when the test itself passed)."""
    dp = await start_daemon_process(
        env={
            "JASMIN_SERVER_WORKERS": "2",
            "JASMIN_BILLING_ENABLED": "false",
            "JASMIN_ADMISSION_MAX_CPU_SHARE": "0",
            **env,
        }
    )
    opened: list[Any] = []
    try:
        yield dp, opened
    finally:
        _, code = await _stop(dp, opened)
    assert code == 0, "".join(dp.output[-30:])


@pytest.mark.slow
async def test_one_shows_guests_spread_over_both_workers_and_a_private_cuts_the_relay() -> None:
    """Protects issue 15's "Workers on this machine": with workers = 2, one show's four guest
    viewers joining through the supervisor land on both workers (two on the show's worker,
    two on the other, served by a relay) and all decode video and audio; the member joins
    on the show's worker. After a private's accept on the show's worker, no guest on either
    worker receives a payload the performer sent after ``accepted_at`` (counted as in
    test_private_isolation), the member keeps both tracks, and the relay stops carrying media.
    Red without the supervisor's routing: every guest would sit on the show's worker."""
    async with two_workers(**STALE_LOADS) as (dp, opened):
        url = dp.url
        pub = await performer(url, "duo")
        opened.append(pub)
        guests = []
        for _ in range(4):  # one at a time: the loads the supervisor sees are then known
            guests.append(await watch(url, "duo"))
            opened.append(guests[-1])
        member = await watch(url, "duo", member_id="m1")
        opened.append(member)
        everyone = [*guests, member]
        assert await wait_for(
            lambda: all(v.frames.get("video", 0) >= 3 and v.frames.get("audio", 0) >= 3 for v in everyone), 40
        ), "every viewer decodes video and audio"

        _, ready = await _get(dp.http + "/readyz")
        workers = ready["workers"]
        [origin] = [
            w["index"] for w in workers if "relays" in w and not w["relays"]["edge_shows"] and w["connections"] >= 3
        ]
        edge = 1 - origin
        assert workers[origin]["connections"] == 4, "the performer, two guests and the member"
        assert workers[edge]["connections"] == 2, "two guests on the other worker"
        assert list(workers[edge]["relays"]["edge_shows"]) == ["duo"], "served there by a relay"
        assert workers[edge]["admission"]["viewers"] == 2
        _, metrics = await _get(dp.http + "/metrics")
        assert _sample(metrics, "jasmin_relay_streams_out", origin) == 2.0, "video and audio relayed once"
        assert "jasmin_supervisor_relayed_joins_total 2" in metrics

        # A private accepted on the show's worker: the relay is cut in the same loop step.
        await member.client.request("private.request")
        await pub.client.next_event("private.requested")
        accepted = await pub.client.request("private.accept", member_id="m1")
        t_accept = accepted["accepted_at"]

        def member_after() -> list[tuple[int, float]]:
            return after(member, pub.log, t_accept)

        assert await wait_for(lambda: len({s for s, _ in member_after()}) == 2 and len(member_after()) >= 60, 20)
        assert sum(1 for t in pub.log.sent.values() if t > t_accept) >= 60  # not vacuous
        for g in guests:
            assert after(g, pub.log, t_accept) == [], "a guest received media sent after the accept"
        for g in guests:  # told on both workers (the edge relays the origin's state)
            while (await g.client.next_event("show.state"))["data"]["state"] != "private":
                pass
        name = "jasmin_relay_packets_out_total"
        sent = _sample((await _get(dp.http + "/metrics"))[1], name, origin)
        await asyncio.sleep(1.0)
        # No media left the origin for the edge since (at most a NACK's resend of an older packet).
        assert _sample((await _get(dp.http + "/metrics"))[1], name, origin) - sent < 20


async def _sample_total(http: str, name: str) -> float:
    _, metrics = await _get(http + "/metrics")
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rpartition(" ")[2])
    raise AssertionError(f"no {name} in /metrics")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("poll_s", "whep", "relayed", "fallbacks"),
    [
        pytest.param("0.2", False, 0, 0, id="full_worker_skipped"),
        pytest.param("3600", False, 1, 1, id="refused_relay_served_by_origin"),
        pytest.param("3600", True, 1, 1, id="refused_whep_relay_served_by_origin"),
    ],
)
async def test_a_full_worker_gets_no_guest_and_a_refused_relay_falls_back_to_the_origin(
    poll_s: str, whep: bool, relayed: int, fallbacks: int
) -> None:
    """Protects placement by load (issue 15) with real workers, driven by a configured limit
    (admission.max_viewers_per_worker = 2), not by timing. Worker b holds show "beta" and its two
    WHEP viewers: at its viewer limit, yet with fewer websockets than worker a (show "alpha"'s
    performer and a member), so the old connections-only rule would send alpha's guest there.

    - full_worker_skipped: the supervisor has read worker b's load (its /readyz says so), so the
      guest goes straight to alpha's worker: no relay tried, no fallback. Red when the rule
      ignores the workers' loads (a relayed join, refused).
    - refused_relay_served_by_origin: the supervisor reads loads once an hour, so it still sees
      worker b empty and relays the guest there; worker b answers ``overloaded`` and the
      supervisor joins the guest on alpha's worker instead, counted in
      jasmin_supervisor_relay_fallbacks_total. Red without the fallback: the guest gets the error.
    - refused_whep_relay_served_by_origin: the same for a WHEP guest: worker b's 503
      ``overloaded`` is not passed on, the POST is sent to alpha's worker, which answers 201.

    Either way the guest decodes alpha's video and audio, on worker a."""
    from bench.whip_peers import whep_play

    limits = {"JASMIN_SERVER_WORKER_LOAD_POLL_S": poll_s, "JASMIN_ADMISSION_MAX_VIEWERS_PER_WORKER": "2"}
    async with two_workers(**limits) as (dp, opened):
        url = dp.url

        async def workers() -> list[dict[str, Any]]:
            _, body = await _get(dp.http + "/readyz")
            return list(body["workers"])

        alpha = await performer(url, "alpha")
        opened.append(alpha)
        opened.append(await watch(url, "alpha", member_id="m1"))  # members join on their show's worker
        [a] = [w["index"] for w in await workers() if w["connections"] == 2]
        b = 1 - a
        beta = await performer(url, "beta")  # the other worker: it has no connection
        opened.append(beta)
        for _ in range(2):  # WHEP viewers: viewers of worker b, but no websocket: b is full
            opened.append(await whep_play(dp.http, "beta"))
        if relayed == 0:

            async def read() -> bool:
                return bool((await workers())[b]["load"]["viewers"] == 2)

            assert await _until(read), "the supervisor reads worker b's load"
        ready = await workers()
        assert (ready[a]["connections"], ready[b]["connections"]) == (2, 1)
        assert (ready[a]["admission"]["viewers"], ready[b]["admission"]["viewers"]) == (1, 2)
        guest = await (whep_play(dp.http, "alpha") if whep else watch(url, "alpha"))
        opened.append(guest)
        assert await wait_for(lambda: guest.frames.get("video", 0) >= 3 and guest.frames.get("audio", 0) >= 3, 30)
        ready = await workers()
        assert (ready[a]["admission"]["viewers"], ready[b]["admission"]["viewers"]) == (2, 2), "on alpha's worker"
        assert not ready[b]["relays"]["edge_shows"], "worker b refused before opening a relay"
        assert await _sample_total(dp.http, "jasmin_supervisor_relayed_joins_total") == relayed
        assert await _sample_total(dp.http, "jasmin_supervisor_relay_fallbacks_total") == fallbacks


@pytest.mark.slow
async def test_a_whep_guest_spreads_like_a_websocket_guest_and_its_resource_reaches_its_worker() -> None:
    """Protects WHEP under workers (issue 15): a WHEP guest of a placed show goes to the least
    loaded worker like a websocket guest (here the other worker: the show's has its performer's
    websocket; loads are read once an hour, so connections decide), is served there by a relay
    and decodes video and audio; its PATCH and DELETE reach that worker (not the show's).
    Red when WHEP viewers all go to the show's worker."""
    from bench.whip_peers import whep_play
    from tests.integration.test_workers import _patch

    async with two_workers(**STALE_LOADS) as (dp, opened):
        pub = await performer(dp.url, "gamma")
        opened.append(pub)
        _, ready = await _get(dp.http + "/readyz")
        [origin] = [w["index"] for w in ready["workers"] if w["connections"] == 1]
        edge = 1 - origin
        whep = await whep_play(dp.http, "gamma")
        opened.append(whep)
        assert await wait_for(lambda: whep.frames.get("video", 0) >= 3 and whep.frames.get("audio", 0) >= 3, 30)
        _, ready = await _get(dp.http + "/readyz")
        assert ready["workers"][edge]["admission"]["viewers"] == 1, "served on the other worker"
        assert list(ready["workers"][edge]["relays"]["edge_shows"]) == ["gamma"], "through a relay"
        assert await _sample_total(dp.http, "jasmin_supervisor_relayed_joins_total") == 1
        for _ in range(3):  # the resource lives on the edge: found there every time
            assert await _patch(whep.url) == 501
        assert await whep.delete() == 200
        assert await whep.delete() == 404, "the session ended on the edge"
        _, ready = await _get(dp.http + "/readyz")
        assert ready["workers"][edge]["admission"]["viewers"] == 0


async def _until(check: Any, timeout: float = 20.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False
