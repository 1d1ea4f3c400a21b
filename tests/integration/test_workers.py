"""One worker process per core: placement, routing, the merged endpoints, restarts, drain.

The pure parts (placement, port slices, the metrics merge) are tested as
tables; the supervisor itself runs as a real ``jasmin-sfu serve`` process with
two workers, aiortc performers and viewers on loopback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
from typing import Any

import aiohttp
import msgpack
import pytest

from bench.peers import publish, subscribe, wait_for
from jasmin_sfu.app import INTERNAL_SECRET_HEADER, INTERNAL_SESSION_HEADER
from jasmin_sfu.supervisor import Placement, WorkerLoad, decode_client_frame, merge_metrics, port_slices, udp_ports
from tests.conftest import start_daemon_process
from tests.realparts import free_udp_range


# -- pure parts ------------------------------------------------------------------


def conns(connections: dict[int, int]) -> dict[int, WorkerLoad]:
    """Live workers with these connections and no load read yet."""
    return {i: WorkerLoad(n) for i, n in connections.items()}


def test_a_performer_places_its_show_on_the_least_loaded_worker_and_it_sticks() -> None:
    """Protects 'a show lives on one worker': later joins of a placed show go to its worker,
    whatever the loads; a viewer of an unplaced show is not placed (it gets unknown_show)."""
    p = Placement()
    assert p.route("a", "performer", conns({0: 3, 1: 1})) == 1
    assert p.route("a", "viewer", conns({0: 0, 1: 9})) == 1
    assert p.route("a", "performer", conns({0: 0, 1: 9})) == 1
    assert p.route("nobody-here", "viewer", conns({0: 0, 1: 0})) is None
    assert p.where("nobody-here") is None
    assert p.route("b", "performer", conns({0: 2, 1: 2})) == 0, "ties go to the lowest index"


def test_the_last_connection_leaving_unplaces_the_show() -> None:
    """Protects against a stale placement sending a show's next performer to a worker that
    no longer holds it (or holding it forever)."""
    p = Placement()
    p.route("a", "performer", conns({0: 0, 1: 0}))
    p.hold("a", 0)
    p.hold("a", 0)
    p.release("a")
    assert p.where("a") == 0
    p.release("a")
    assert p.where("a") is None
    p.route("c", "performer", conns({0: 0}))
    p.unplace_unheld("c")
    assert p.where("c") is None, "a failed first join forgets the placement"


def test_a_dead_worker_loses_its_shows_only() -> None:
    p = Placement()
    p.route("a", "performer", conns({0: 0, 1: 5}))
    p.route("b", "performer", conns({0: 5, 1: 0}))
    assert p.drop_worker(0) == ["a"]
    assert p.shows == {"b": 1}
    assert p.route("b", "viewer", conns({0: 0})) is None, "a placement on a worker that is down is not used"


@pytest.mark.parametrize(
    ("lo", "hi", "n", "want"),
    [
        (0, 0, 3, [(0, 0), (0, 0), (0, 0)]),
        (40000, 40999, 2, [(40000, 40499), (40500, 40999)]),
        (40000, 40100, 4, [(40000, 40024), (40025, 40049), (40050, 40074), (40075, 40099)]),
    ],
)
def test_ice_port_range_is_split_into_disjoint_slices(lo: int, hi: int, n: int, want: list[tuple[int, int]]) -> None:
    assert port_slices(lo, hi, n) == want


def test_a_port_range_smaller_than_the_worker_count_is_refused() -> None:
    with pytest.raises(ValueError):
        port_slices(40000, 40001, 3)


def test_each_worker_gets_its_own_shared_udp_port() -> None:
    """Protects a fixed media.rtc_udp_port under workers: worker i on port + i (0: none fixed, each
    worker picks a free port of its slice of the range);
    ports past 65535 or inside the ICE range are refused before any worker starts."""
    assert udp_ports(0, 3) == [0, 0, 0]
    assert udp_ports(41000, 3, 40000, 40999) == [41000, 41001, 41002]
    with pytest.raises(ValueError, match="65535"):
        udp_ports(65534, 3)
    with pytest.raises(ValueError, match="overlaps"):
        udp_ports(39999, 2, 40000, 40999)


@pytest.mark.slow
async def test_each_worker_binds_its_own_shared_port_inside_its_slice_of_the_range() -> None:
    """Protects the default under the supervisor (media.rtc_udp_port = 0): each worker binds one
    shared socket on a free port of its own slice of rtc_min_port..rtc_max_port, so the two
    workers' ports differ and both lie inside the range; /readyz names each worker's port."""
    lo, hi = free_udp_range(10)
    dp = await start_daemon_process(
        env={
            "JASMIN_SERVER_WORKERS": "2",
            "JASMIN_BILLING_ENABLED": "false",
            "JASMIN_MEDIA_RTC_MIN_PORT": str(lo),
            "JASMIN_MEDIA_RTC_MAX_PORT": str(hi),
        }
    )
    try:
        status, ready = await _get(dp.http + "/readyz")
        assert status == 200, ready
        said = [w["media_udp"] for w in ready["workers"]]
        assert [s["sockets"] for s in said] == ["shared", "shared"], said
        for (a, b), s in zip(port_slices(lo, hi, 2), said):
            assert a <= s["port"] <= b and s["listen"] == [f"127.0.0.1:{s['port']}"], (lo, hi, said)
    finally:
        _, code = await _stop(dp, [])
    assert code == 0, "".join(dp.output[-30:])


def test_metrics_are_merged_per_family_with_a_worker_label() -> None:
    """Protects /metrics under workers: every sample keeps its family contiguous and says
    which worker it came from, and HELP/TYPE appear once."""
    w = (
        "# HELP jasmin_rtp_packets_total RTP packets\n# TYPE jasmin_rtp_packets_total counter\n"
        'jasmin_rtp_packets_total{direction="in"} {v}\n'
        "# HELP jasmin_shows Shows\n# TYPE jasmin_shows gauge\njasmin_shows {v}\n"
    )
    merged = merge_metrics({0: w.replace("{v}", "1"), 1: w.replace("{v}", "2")}).splitlines()
    assert merged == [
        "# HELP jasmin_rtp_packets_total RTP packets",
        "# TYPE jasmin_rtp_packets_total counter",
        'jasmin_rtp_packets_total{worker="0",direction="in"} 1',
        'jasmin_rtp_packets_total{worker="1",direction="in"} 2',
        "# HELP jasmin_shows Shows",
        "# TYPE jasmin_shows gauge",
        'jasmin_shows{worker="0"} 1',
        'jasmin_shows{worker="1"} 2',
    ]


def test_client_frames_are_read_in_both_codecs_and_garbage_is_ignored() -> None:
    frame = {"type": "request", "id": 1, "method": "join", "data": {"show_id": "a"}}
    assert decode_client_frame(json.dumps(frame)) == frame
    assert decode_client_frame(msgpack.packb(frame)) == frame
    for junk in ("{", "[1, 2]", b"\xc1", "null"):
        assert decode_client_frame(junk) is None


async def test_a_worker_takes_the_session_id_only_with_the_supervisor_secret(make_daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects session ids: a client that sends the internal header without the secret
    cannot choose its session id (it would impersonate another connection)."""
    secret = "s" * 40
    d = await make_daemon()
    d.daemon.cfg = d.daemon.cfg.replace(server=dataclasses.replace(d.daemon.cfg.server, internal_secret=secret))

    async def welcome(headers: dict[str, str]) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.ws_connect(d.url, headers=headers) as ws:
            await ws.send_str(json.dumps({"type": "hello", "protocol": "jasmin/1"}))
            return json.loads((await ws.receive()).data)

    named = await welcome({INTERNAL_SECRET_HEADER: secret, INTERNAL_SESSION_HEADER: "abc123"})
    assert named["session_id"] == "abc123"
    forged = await welcome({INTERNAL_SECRET_HEADER: "x" * 40, INTERNAL_SESSION_HEADER: "abc123"})
    assert forged["session_id"] != "abc123"
    bare = await welcome({INTERNAL_SESSION_HEADER: "abc123"})
    assert bare["session_id"] != "abc123"


# -- the supervisor as a process -----------------------------------------------------

# Loads read once an hour (zero: read at start): these tests place by connections, which they
# count; placement by load is tested in test_workers_relay.py.
STALE_LOADS = {"JASMIN_SERVER_WORKER_LOAD_POLL_S": "3600"}


async def _get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


def _placed(metrics: str) -> dict[str, float]:
    out = {}
    for line in metrics.splitlines():
        if line.startswith("jasmin_supervisor_shows_placed"):
            name, _, value = line.rpartition(" ")
            out[name.split('"')[1]] = float(value)
    return out


async def _stop(dp: Any, opened: list[Any]) -> tuple[list[int], int]:
    """Close what the test opened, SIGTERM the supervisor; (its workers' pids, its exit code)."""
    for peer in opened:
        try:
            await peer.close()
        except Exception:
            pass
    child_pids = []
    try:
        _, ready = await _get(dp.http + "/readyz")
        child_pids = [w["pid"] for w in ready["workers"]]
    except Exception:
        pass
    dp.proc.send_signal(signal.SIGTERM)
    try:
        # In a thread: a drain of several seconds (billing sinks on a loaded machine) must not
        # hold this test's event loop (tests/loop_guard.py).
        code = await asyncio.to_thread(dp.proc.wait, 30)
    except subprocess.TimeoutExpired:  # pragma: no cover
        dp.proc.kill()
        raise
    return child_pids, int(code)


@pytest.mark.slow
async def test_two_workers_hold_one_show_each_restart_when_killed_and_drain_on_sigterm() -> None:
    """Protects one-worker-per-core: two shows land on two worker processes, each show's
    viewers get its media through the supervisor's routing, /metrics and /readyz cover both
    workers, a SIGKILLed worker is restarted, and SIGTERM stops every process with 0."""
    dp = await start_daemon_process(
        env={"JASMIN_SERVER_WORKERS": "2", "JASMIN_BILLING_ENABLED": "false", **STALE_LOADS}
    )
    opened: list[Any] = []
    try:
        url = dp.url
        status, ready = await _get(dp.http + "/readyz")
        assert status == 200 and len(ready["workers"]) == 2
        pids = [w["pid"] for w in ready["workers"]]
        assert len(set(pids)) == 2 and dp.proc.pid not in pids

        pa = await publish(url, "show-a")
        pb = await publish(url, "show-b")
        va = await subscribe(url, "show-a")
        vb = await subscribe(url, "show-b", binary=True)
        opened += [pa, pb, va, vb]
        assert await wait_for(
            lambda: all(v.frames.get("video", 0) >= 3 and v.frames.get("audio", 0) >= 3 for v in (va, vb)), 30
        )

        _, metrics = await _get(dp.http + "/metrics")
        assert _placed(metrics) == {"0": 1.0, "1": 1.0}, "the two shows are on different workers"
        assert 'worker="0"' in metrics and 'worker="1"' in metrics and "jasmin_rtp" in metrics
        _, ready = await _get(dp.http + "/readyz")
        assert sorted(w["routers"] for w in ready["workers"]) == [1, 1]

        # The REST API and the demo page come through the supervisor too.
        status, page = await _get(dp.http + "/")
        assert status == 200 and "jasmin" in page

        # A worker killed outright is restarted; the other worker's show plays on.
        victim = ready["workers"][0]
        os.kill(victim["pid"], signal.SIGKILL)

        async def restarted() -> bool:
            s, r = await _get(dp.http + "/readyz")
            return s == 200 and r["workers"][0]["restarts"] == 1 and r["workers"][0]["pid"] != victim["pid"]

        for _ in range(200):
            if await restarted():
                break
            await wait_for(lambda: False, 0.1)
        assert await restarted()
        before = {id(v): v.frames.get("video", 0) for v in (va, vb)}
        assert await wait_for(lambda: any(v.frames.get("video", 0) > before[id(v)] + 5 for v in (va, vb)), 20), (
            "the show on the surviving worker keeps playing"
        )
    finally:
        child_pids, code = await _stop(dp, opened)
    assert code == 0, "".join(dp.output[-30:])
    for pid in child_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def _login(http: str, username: str, password: str) -> str:
    async with (
        aiohttp.ClientSession() as s,
        s.post(http + "/api/v1/sessions", json={"username": username, "password": password}) as r,
    ):
        body = await r.json()
        assert r.status == 201, body
        return str(body["token"])


async def _patch(url: str) -> int:
    headers = {"Content-Type": "application/trickle-ice-sdpfrag"}
    async with aiohttp.ClientSession() as s, s.patch(url, data=b"", headers=headers) as r:
        return r.status


@pytest.mark.slow
async def test_whip_and_whep_are_routed_to_the_worker_of_their_show() -> None:
    """Protects WHIP/WHEP under workers: a WHIP POST places its show like a performer's
    websocket join (here on worker 1, the least loaded), a websocket viewer and a WHEP
    viewer of that show reach worker 1 and decode its media, the session resources (PATCH,
    DELETE) reach the worker that holds the session every time (not a worker in turn), and
    the DELETE ends the session there. Red when /whip and /whep go to any worker."""
    from bench.whip_peers import whep_play, whip_publish
    from jasmin_sfu.services.demo import DEMO_PERFORMER, DEMO_PERFORMER_PASSWORD

    # Billing on: the demo performer (its token for the WHIP POST) is seeded only with billing.
    dp = await start_daemon_process(env={"JASMIN_SERVER_WORKERS": "2", **STALE_LOADS})
    opened: list[Any] = []
    try:
        url = dp.url
        # A websocket show (placed on worker 1, then the least loaded) and two idle websockets
        # (on worker 0) leave worker 1 the least loaded: the WHIP POST places its show there.
        other = await publish(url, "show-other")
        opened.append(other)
        http = aiohttp.ClientSession()
        idle = [await http.ws_connect(url), await http.ws_connect(url)]
        opened += [*idle, http]
        for ws in idle:
            await ws.send_str(json.dumps({"type": "hello", "protocol": "jasmin/1"}))
            assert json.loads((await ws.receive()).data)["type"] == "welcome"
        token = await _login(dp.http, DEMO_PERFORMER, DEMO_PERFORMER_PASSWORD)
        pub = await whip_publish(dp.http, DEMO_PERFORMER, token)
        opened.append(pub)
        assert pub.location.startswith(f"/whip/{DEMO_PERFORMER}/")
        _, metrics = await _get(dp.http + "/metrics")
        assert _placed(metrics) == {"0": 0.0, "1": 2.0}, "the WHIP show is placed on the least loaded worker"
        _, ready = await _get(dp.http + "/readyz")
        assert [w["routers"] for w in ready["workers"]] == [0, 2]

        ws_viewer = await subscribe(url, DEMO_PERFORMER)
        whep = await whep_play(dp.http, DEMO_PERFORMER)
        opened += [ws_viewer, whep]
        assert await wait_for(
            lambda: all(v.frames.get("video", 0) >= 3 and v.frames.get("audio", 0) >= 3 for v in (ws_viewer, whep)), 30
        )

        # Two requests in a row would reach both workers if they went to a worker in turn.
        for _ in range(3):
            assert await _patch(whep.url) == 501, "the resource is found on the worker that holds it"
            assert await _patch(pub.url) == 501
        assert await whep.delete() == 200
        assert await whep.delete() == 404, "the WHEP session ended on its worker"
        assert await pub.delete() == 200
        assert await _patch(pub.url) == 404, "the WHIP session ended on its worker"
        ev = await ws_viewer.client.next_event("show.ended")
        assert ev["data"]["show_id"] == DEMO_PERFORMER, "the websocket viewer on worker 1 sees the publish end"
        _, ready = await _get(dp.http + "/readyz")
        assert [w["routers"] for w in ready["workers"]] == [0, 1], "the DELETE ended the show on worker 1"
        await ws_viewer.close()  # the last websocket joined to the show

        async def placed() -> dict[str, float]:
            return _placed((await _get(dp.http + "/metrics"))[1])

        for _ in range(100):
            if await placed() == {"0": 0.0, "1": 1.0}:
                break
            await wait_for(lambda: False, 0.1)
        assert await placed() == {"0": 0.0, "1": 1.0}, "the DELETEs released the WHIP show's placement"
    finally:
        _, code = await _stop(dp, opened)
    assert code == 0, "".join(dp.output[-30:])


def _swept(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("jasmin_supervisor_http_sessions_swept_total "):
            return float(line.rpartition(" ")[2])
    raise AssertionError("no jasmin_supervisor_http_sessions_swept_total in the supervisor's /metrics")


@pytest.mark.slow
async def test_a_whep_session_ended_without_delete_releases_its_show_placement() -> None:
    """Protects the supervisor's session map: a WHEP viewer that goes away without a DELETE
    (its tab closed) ends its session on the worker, and the supervisor's sweep releases the
    placement that session held, so the show is unplaced once its performer DELETEs. Red when
    the supervisor keeps such a session (and its hold on the show) until the worker restarts."""
    from bench.whip_peers import whep_play, whip_publish
    from jasmin_sfu.services.demo import DEMO_PERFORMER, DEMO_PERFORMER_PASSWORD

    dp = await start_daemon_process(
        env={"JASMIN_SERVER_WORKERS": "2", "JASMIN_SERVER_HTTP_SESSION_SWEEP_S": "0.5", **STALE_LOADS}
    )
    opened: list[Any] = []
    try:
        token = await _login(dp.http, DEMO_PERFORMER, DEMO_PERFORMER_PASSWORD)
        pub = await whip_publish(dp.http, DEMO_PERFORMER, token)
        opened.append(pub)
        whep = await whep_play(dp.http, DEMO_PERFORMER)
        opened.append(whep)
        assert await wait_for(lambda: whep.frames.get("video", 0) >= 3, 30), "the WHEP viewer gets media"
        assert sum((_placed((await _get(dp.http + "/metrics"))[1])).values()) == 1.0

        await whep.close()  # no DELETE: the viewer's peer connection just goes away
        swept = 0.0
        for _ in range(300):
            swept = _swept((await _get(dp.http + "/metrics"))[1])
            if swept >= 1:
                break
            await asyncio.sleep(0.1)
        assert swept == 1.0, "the sweep released the WHEP session that ended without a DELETE"

        assert await pub.delete() == 200
        placed: dict[str, float] = {}
        for _ in range(100):
            placed = _placed((await _get(dp.http + "/metrics"))[1])
            if sum(placed.values()) == 0:
                break
            await asyncio.sleep(0.1)
        assert sum(placed.values()) == 0.0, f"the show is unplaced once nothing holds it: {placed}"
    finally:
        _, code = await _stop(dp, opened)
    assert code == 0, "".join(dp.output[-30:])
