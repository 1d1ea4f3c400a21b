"""One show over every worker of one machine (issue 15, docs/workers.md "One show over every worker").

The routing rule is tested as a table; the whole as a real ``jasmin-sfu serve`` supervisor
with two worker processes, aiortc performer and viewers on loopback through the
supervisor's port: guests of one show land on both workers (the other served through a
relay over 127.0.0.1 UDP) and all receive media; a private accepted on the show's worker
leaves every guest, on either worker, without a packet sent after ``accepted_at``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.peers import wait_for
from jasmin_sfu.supervisor import guest_worker, is_guest
from tests.conftest import start_daemon_process
from tests.integration.test_workers import _get, _stop
from tests.support import after, performer, watch


def test_a_guest_goes_to_the_least_loaded_worker_the_origin_winning_ties() -> None:
    """Protects the spreading rule: a guest goes where there are fewest connections, the
    show's worker on a tie (no relay for a small show), never to a worker refusing
    ``overloaded``, and to the origin when every other worker is full or down."""
    assert guest_worker(0, {0: 1, 1: 0}) == 1
    assert guest_worker(0, {0: 1, 1: 1}) == 0, "ties stay on the origin"
    assert guest_worker(1, {0: 3, 1: 3, 2: 2}) == 2
    assert guest_worker(0, {0: 5, 1: 0}, frozenset({1})) == 0, "a full worker is skipped"
    assert guest_worker(0, {0: 5, 1: 0, 2: 1}, frozenset({1})) == 2
    assert guest_worker(0, {0: 5}) == 0, "the other worker is down"
    assert guest_worker(0, {0: 5, 1: 9}, frozenset({0})) == 0, "a full origin still serves when nobody has room"


def test_only_guests_are_relayed() -> None:
    """Protects privates: members (a token or a member id) and performers always reach the
    show's worker, where the private, its Cam2Cam and its meter run."""
    assert is_guest({"role": "viewer", "show_id": "a"})
    assert not is_guest({"role": "viewer", "show_id": "a", "member_id": "m1"})
    assert not is_guest({"role": "viewer", "show_id": "a", "token": "t"})
    assert not is_guest({"role": "performer", "show_id": "a"})


def _sample(metrics: str, name: str, worker: int) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + "{") and f'worker="{worker}"' in line:
            return float(line.rpartition(" ")[2])
    raise AssertionError(f"no {name} for worker {worker} in /metrics")


@pytest.mark.slow
async def test_one_shows_guests_spread_over_both_workers_and_a_private_cuts_the_relay() -> None:
    """Protects issue 15's "Workers on this machine": with workers = 2, one show's four guest
    viewers joining through the supervisor land on both workers (two on the show's worker,
    two on the other, served by a relay) and all decode video and audio; the member joins
    on the show's worker. After a private's accept on the show's worker, no guest on either
    worker receives a payload the performer sent after ``accepted_at`` (counted as in
    test_private_isolation), the member keeps both tracks, and the relay stops carrying media.
    Red without the supervisor's routing: every guest would sit on the show's worker."""
    dp = await start_daemon_process(env={"JASMIN_SERVER_WORKERS": "2", "JASMIN_BILLING_ENABLED": "false",
                                         "JASMIN_ADMISSION_MAX_CPU_SHARE": "0"})
    opened: list[Any] = []
    try:
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
        assert await wait_for(lambda: all(v.frames.get("video", 0) >= 3 and v.frames.get("audio", 0) >= 3
                                          for v in everyone), 40), "every viewer decodes video and audio"

        _, ready = await _get(dp.http + "/readyz")
        workers = ready["workers"]
        [origin] = [w["index"] for w in workers if "relays" in w and not w["relays"]["edge_shows"]
                    and w["connections"] >= 3]
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
    finally:
        _, code = await _stop(dp, opened)
    assert code == 0, "".join(dp.output[-30:])
