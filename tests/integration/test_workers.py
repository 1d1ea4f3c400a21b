"""One worker process per core: placement, routing, the merged endpoints, restarts, drain.

The pure parts (placement, port slices, the metrics merge) are tested as
tables; the supervisor itself runs as a real ``jasmin-sfu serve`` process with
two workers, aiortc performers and viewers on loopback.
"""

from __future__ import annotations

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
from jasmin_sfu.supervisor import Placement, decode_client_frame, merge_metrics, port_slices
from tests.conftest import start_daemon_process


# -- pure parts ------------------------------------------------------------------


def test_a_performer_places_its_show_on_the_least_loaded_worker_and_it_sticks() -> None:
    """Protects 'a show lives on one worker': later joins of a placed show go to its worker,
    whatever the loads; a viewer of an unplaced show is not placed (it gets unknown_show)."""
    p = Placement()
    assert p.route("a", "performer", {0: 3, 1: 1}) == 1
    assert p.route("a", "viewer", {0: 0, 1: 9}) == 1
    assert p.route("a", "performer", {0: 0, 1: 9}) == 1
    assert p.route("nobody-here", "viewer", {0: 0, 1: 0}) is None
    assert p.where("nobody-here") is None
    assert p.route("b", "performer", {0: 2, 1: 2}) == 0, "ties go to the lowest index"


def test_the_last_connection_leaving_unplaces_the_show() -> None:
    """Protects against a stale placement sending a show's next performer to a worker that
    no longer holds it (or holding it forever)."""
    p = Placement()
    p.route("a", "performer", {0: 0, 1: 0})
    p.hold("a", 0)
    p.hold("a", 0)
    p.release("a")
    assert p.where("a") == 0
    p.release("a")
    assert p.where("a") is None
    p.route("c", "performer", {0: 0})
    p.unplace_unheld("c")
    assert p.where("c") is None, "a failed first join forgets the placement"


def test_a_dead_worker_loses_its_shows_only() -> None:
    p = Placement()
    p.route("a", "performer", {0: 0, 1: 5})
    p.route("b", "performer", {0: 5, 1: 0})
    assert p.drop_worker(0) == ["a"]
    assert p.shows == {"b": 1}
    assert p.route("b", "viewer", {0: 0}) is None, "a placement on a worker that is down is not used"


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


def test_metrics_are_merged_per_family_with_a_worker_label() -> None:
    """Protects /metrics under workers: every sample keeps its family contiguous and says
    which worker it came from, and HELP/TYPE appear once."""
    w = ("# HELP jasmin_rtp_packets_total RTP packets\n# TYPE jasmin_rtp_packets_total counter\n"
         'jasmin_rtp_packets_total{direction="in"} {v}\n'
         "# HELP jasmin_shows Shows\n# TYPE jasmin_shows gauge\njasmin_shows {v}\n")
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


@pytest.mark.slow
async def test_two_workers_hold_one_show_each_restart_when_killed_and_drain_on_sigterm() -> None:
    """Protects one-worker-per-core: two shows land on two worker processes, each show's
    viewers get its media through the supervisor's routing, /metrics and /readyz cover both
    workers, a SIGKILLed worker is restarted, and SIGTERM stops every process with 0."""
    dp = await start_daemon_process(env={"JASMIN_SERVER_WORKERS": "2", "JASMIN_BILLING_ENABLED": "false"})
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
        assert await wait_for(lambda: all(v.frames.get("video", 0) >= 3 and v.frames.get("audio", 0) >= 3
                                          for v in (va, vb)), 30)

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
        assert await wait_for(lambda: any(v.frames.get("video", 0) > before[id(v)] + 5 for v in (va, vb)), 20), \
            "the show on the surviving worker keeps playing"
    finally:
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
            code = dp.proc.wait(30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            dp.proc.kill()
            raise
    assert code == 0, "".join(dp.output[-30:])
    for pid in child_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
