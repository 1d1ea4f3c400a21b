"""Admission control over loopback with aiortc peers: a full worker refuses joins at once.

Each limit is driven by its configured threshold, never by timing: the viewer
limit by counting viewers, joins in flight by a viewer held after `join` (it
has not subscribed yet, so no frame reached it) and an injected clock for the
timeout, the CPU limit by an injected sampler. The viewers already watching
are counted in packets at their SRTP layer before and after each refusal.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, AsyncIterator

import aiohttp
import pytest

from bench.peers import Viewer, new_pc, publish, subscribe, wait_for
from bench.whip_peers import post_offer
from jasmin_signaling.client import Overloaded, RemoteError, SignalingClient
from jasmin_sfu.api.admission import ProcessCpu
from jasmin_sfu.app import Daemon
from jasmin_sfu.config import AdmissionConfig, ConfigError, load_config
from jasmin_sfu.supervisor import Placement, Supervisor, WorkerLoad
from tests.conftest import Running, scrape_metrics
from tests.conftest import test_config as loopback_config


def admission_config(**limits: Any) -> Any:
    off = AdmissionConfig(max_viewers_per_worker=0, max_joins_in_flight=0, max_cpu_share=0.0, retry_after_ms=1500)
    return dataclasses.replace(loopback_config(), admission=dataclasses.replace(off, **limits))


@pytest.fixture
async def full_at_two() -> AsyncIterator[Running]:
    d = Daemon(admission_config(max_viewers_per_worker=2))
    await d.start()
    yield Running(d, f"ws://127.0.0.1:{d.port}/ws", f"http://127.0.0.1:{d.port}")
    await d.stop()


async def refused(url: str, **join: Any) -> Overloaded:
    """Join on a new connection, expecting `overloaded`; the connection is closed after."""
    c = await SignalingClient.connect(url)
    try:
        with pytest.raises(Overloaded) as info:
            await c.request("join", **join)
        return info.value
    finally:
        await c.close()


async def keeps_media(viewers: list[Viewer], more: int = 50) -> bool:
    """Every viewer receives ``more`` packets beyond what it had."""
    base = [v.counter.total if v.counter else 0 for v in viewers]
    return await wait_for(
        lambda: all(v.counter is not None and v.counter.total >= b + more for v, b in zip(viewers, base)), 30
    )


async def test_third_viewer_refused_at_once_and_the_two_watching_keep_their_media(full_at_two: Running) -> None:
    """Protects admission by viewer count: with max_viewers_per_worker = 2 the third viewer's
    join is answered `overloaded` (reason `viewers`, the configured retry_after_ms, a typed
    error in the Python SDK) instead of being accepted; a performer opening a new show on
    the full worker is refused too; the two viewers keep receiving media; /metrics counts
    the refusals; once a viewer leaves, a join is admitted again."""
    url = full_at_two.url
    pub = await publish(url, "show-a")
    watching = [await subscribe(url, "show-a", count=True, pass_through=True) for _ in range(2)]
    try:
        assert await keeps_media(watching)
        err = await refused(url, show_id="show-a", role="viewer")
        assert isinstance(err, RemoteError) and err.code == "overloaded"
        assert err.reason == "viewers" and err.retry_after_ms == 1500
        assert "2 viewers" in err.message
        # A new show on the full worker would bring viewers it cannot take either.
        err = await refused(url, show_id="show-b", role="performer")
        assert err.reason == "viewers"
        assert await keeps_media(watching)
        m = await scrape_metrics(full_at_two.http)
        assert m['jasmin_admission_refusals_total{reason="viewers"}'] == 2
        assert m['jasmin_admission_refusals_total{reason="cpu"}'] == 0
        assert m["jasmin_admission_viewers"] == 2
        # Room again: the refusal follows the count, it is not a state the worker stays in.
        await watching.pop().close()
        assert await wait_for(lambda: full_at_two.daemon.admission.viewers == 1, 10)
        third = await subscribe(url, "show-a", count=True)
        watching.append(third)
        assert await keeps_media(watching)
    finally:
        for v in watching:
            await v.close()
        await pub.close()


async def test_the_member_of_the_running_private_is_never_refused(full_at_two: Running) -> None:
    """Protects the paying member: on a full worker (2 viewers: the member and a guest),
    a second connection of the member whose private is running is admitted (join and
    subscribe answer), while another member's join (a new viewer, even one coming to ask
    for a private) is refused; the member keeps its private's media."""
    url = full_at_two.url
    pub = await publish(url, "show-p")
    member = await subscribe(url, "show-p", count=True, pass_through=True, member_id="m1")
    guest = await subscribe(url, "show-p", count=True, pass_through=True)
    again: Viewer | None = None
    try:
        await member.client.request("private.request")
        await pub.client.request("private.accept", member_id="m1")
        err = await refused(url, show_id="show-p", role="viewer", member_id="m2")
        assert err.reason == "viewers"
        again = await subscribe(url, "show-p", count=True, member_id="m1")
        assert again.transport_id
        assert await keeps_media([member])
        assert full_at_two.daemon.admission.viewers == 3
    finally:
        for v in (member, guest, again):
            if v is not None:
                await v.close()
        await pub.close()


async def test_a_join_held_before_its_first_frame_counts_in_flight() -> None:
    """Protects admission by joins in flight: with max_joins_in_flight = 1, a viewer that
    joined and has no frame yet (held: it has not subscribed) makes the next join
    `overloaded` (reason `joins_in_flight`); once the held viewer's media starts the next
    join is admitted; a join that never gets media stops counting after join_timeout_s
    (an injected clock); the viewer already watching keeps its media throughout."""
    d = Daemon(admission_config(max_joins_in_flight=1, join_timeout_s=5.0))
    await d.start()
    url = f"ws://127.0.0.1:{d.port}/ws"
    http = f"http://127.0.0.1:{d.port}"
    now = [1000.0]
    d.admission.clock = lambda: now[0]
    pub = await publish(url, "show-f")
    viewers: list[Viewer] = []
    held = await SignalingClient.connect(url)
    try:
        viewers.append(await subscribe(url, "show-f", count=True, pass_through=True))
        assert await wait_for(lambda: d.admission.joins_in_flight() == 0, 20)
        await held.request("join", show_id="show-f", role="viewer")
        assert (await scrape_metrics(http))["jasmin_joins_in_flight"] == 1
        err = await refused(url, show_id="show-f", role="viewer")
        assert err.reason == "joins_in_flight"
        assert await keeps_media(viewers)
        # The held join completes: subscribe, answer, first keyframe.
        viewers.append(await subscribe(url, "show-f", count=True, client=held))
        assert await wait_for(lambda: d.admission.joins_in_flight() == 0, 20)
        viewers.append(await subscribe(url, "show-f", count=True))
        assert await wait_for(lambda: d.admission.joins_in_flight() == 0, 20)
        # A join that never subscribes holds its slot only until join_timeout_s.
        stuck = await SignalingClient.connect(url)
        try:
            await stuck.request("join", show_id="show-f", role="viewer")
            assert (await refused(url, show_id="show-f", role="viewer")).reason == "joins_in_flight"
            now[0] += 5.0
            viewers.append(await subscribe(url, "show-f", count=True))
        finally:
            await stuck.close()
        assert await keeps_media(viewers)
        assert (await scrape_metrics(http))['jasmin_admission_refusals_total{reason="joins_in_flight"}'] == 2
    finally:
        for v in viewers:
            await v.close()
        await held.close()
        await pub.close()
        await d.stop()


async def test_a_whep_viewer_on_a_full_node_gets_503_overloaded_with_retry_after(full_at_two: Running) -> None:
    """Protects admission on the WHEP path (its join is the websocket's): a WHEP POST on a node
    holding its 2 viewers is 503 `overloaded` with Retry-After = retry_after_ms in whole seconds
    (1500 ms: 2), not a 500; the viewers already watching keep their media."""
    pub = await publish(full_at_two.url, "show-w")
    watching = [await subscribe(full_at_two.url, "show-w", count=True, pass_through=True) for _ in range(2)]
    pc = new_pc()
    try:
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        status, body, headers = await post_offer(full_at_two.http + "/whep/show-w", pc.localDescription.sdp, None)
        assert (status, json.loads(body)["error"]["code"]) == (503, "overloaded"), body
        assert headers["Retry-After"] == "2"
        assert await keeps_media(watching)
        assert full_at_two.daemon.admission.viewers == 2
    finally:
        await pc.close()
        for v in watching:
            await v.close()
        await pub.close()


class FixedCpu:
    def __init__(self, share: float) -> None:
        self.value = share

    def share(self) -> float:
        return self.value


async def test_a_worker_past_its_cpu_share_refuses_joins() -> None:
    """Protects admission by CPU: with max_cpu_share = 0.8, a worker whose sampler reads
    0.9 refuses a viewer's join (reason `cpu`) and readyz reports it overloaded but stays
    200 (its shows' viewers can go nowhere else); at 0.5 the join is admitted; the viewer
    already watching keeps its media."""
    d = Daemon(admission_config(max_cpu_share=0.8))
    await d.start()
    url = f"ws://127.0.0.1:{d.port}/ws"
    http = f"http://127.0.0.1:{d.port}"
    cpu = FixedCpu(0.5)
    d.admission.cpu = cpu
    pub = await publish(url, "show-c")
    viewers = [await subscribe(url, "show-c", count=True, pass_through=True)]
    try:
        assert await keeps_media(viewers)
        cpu.value = 0.9
        err = await refused(url, show_id="show-c", role="viewer")
        assert err.reason == "cpu" and "80%" in err.message
        async with aiohttp.ClientSession() as s:
            async with s.get(http + "/readyz") as r:
                assert r.status == 200
                assert (await r.json())["admission"]["overloaded"] == "cpu"
        assert await keeps_media(viewers)
        cpu.value = 0.5
        viewers.append(await subscribe(url, "show-c", count=True))
        assert await keeps_media(viewers)
        assert (await scrape_metrics(http))['jasmin_admission_refusals_total{reason="cpu"}'] == 1
    finally:
        for v in viewers:
            await v.close()
        await pub.close()
        await d.stop()


def test_process_cpu_share_is_cpu_time_over_wall_time_per_window() -> None:
    """Protects the CPU measure: CPU seconds over wall seconds since the last sample, kept
    for window_s, and the start-up before the first sample not counted (injected clocks:
    no sleeping, no real CPU needed)."""
    wall, cpu = [0.0], [0.0]
    s = ProcessCpu(window_s=1.0, cpu=lambda: cpu[0], wall=lambda: wall[0])
    wall[0], cpu[0] = 5.0, 5.0  # start-up: a busy process before any join
    assert s.share() == 0.0
    wall[0], cpu[0] = 0.0, 0.0
    s = ProcessCpu(window_s=1.0, cpu=lambda: cpu[0], wall=lambda: wall[0])
    assert s.share() == 0.0
    wall[0], cpu[0] = 2.0, 1.5
    assert s.share() == 0.75
    wall[0], cpu[0] = 2.5, 2.0  # within the window: the last measure
    assert s.share() == 0.75
    wall[0], cpu[0] = 3.0, 2.1
    assert s.share() == pytest.approx(0.6)


def test_admission_keys_from_file_and_environment_and_validated(tmp_path: Any) -> None:
    """Protects the config: [admission] keys load from TOML and JASMIN_ADMISSION_*, 0 turns a
    limit off, and out-of-range values are refused with a message naming the key."""
    f = tmp_path / "j.toml"
    f.write_text("[admission]\nmax_viewers_per_worker = 0\nmax_cpu_share = 0.7\n")
    cfg = load_config(f, env={"JASMIN_ADMISSION_MAX_JOINS_IN_FLIGHT": "7"})
    assert (cfg.admission.max_viewers_per_worker, cfg.admission.max_joins_in_flight) == (0, 7)
    assert cfg.admission.max_cpu_share == 0.7
    assert load_config(None, env={}).admission.max_viewers_per_worker == 400
    with pytest.raises(ConfigError, match="max_cpu_share"):
        load_config(None, env={"JASMIN_ADMISSION_MAX_CPU_SHARE": "1.5"})
    with pytest.raises(ConfigError, match="max_viewers_per_worker"):
        load_config(None, env={"JASMIN_ADMISSION_MAX_VIEWERS_PER_WORKER": "-1"})


def test_supervisor_places_a_new_show_on_a_worker_with_room() -> None:
    """Protects placement with server.workers > 1: a worker that answered a join `overloaded`
    gets no new show while another has room (even with fewer connections), a show placed on
    it keeps going there (its media is there), and with every worker full the least loaded
    is still chosen (it answers `overloaded` itself)."""
    sup = Supervisor(loopback_config())
    sup.refused(0, {"code": "overloaded", "reason": "viewers", "retry_after_ms": 60_000})
    sup.refused(1, {"code": "unknown_show", "message": "not live"})
    assert sup.full() == frozenset({0})
    p = Placement()
    loads = {0: WorkerLoad(1), 1: WorkerLoad(5)}  # connections; no load read yet
    assert p.route("old", "performer", loads) == 0
    p.hold("old", 0)
    assert p.route("new", "performer", loads, sup.full()) == 1
    assert p.route("old", "viewer", loads, sup.full()) == 0
    assert p.route("third", "performer", loads, frozenset({0, 1})) == 0
