"""The demo page on a cluster (docs/cluster.md): viewer pages served by one node watch a show held by
another, in real Chromium: the first through that node's relay (an edge), the next, once the edge is
full, following `moved` once.

The browser tests run in a loopback-only network namespace (``make test-browser``), where this
machine's Redis is out of reach: the test starts its own ``redis-server`` on a free loopback port.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any, AsyncIterator, Iterator

import pytest

from jasmin_sfu.app import Daemon
from jasmin_sfu.config import AccountsConfig, AdmissionConfig, BillingConfig, ClusterConfig, Config, ServerConfig
from tests.browser.test_demo_page import RTP_STATS_JS
from tests.realparts import closed_port, missing, port_open
from tests.support import open_page, poll, wait_state

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A redis-server of this test's own on 127.0.0.1 (no persistence), stopped afterwards."""
    if shutil.which("redis-server") is None:
        missing("redis-server not installed: apt-get install redis-server")
    port = closed_port()
    proc = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if port_open(port):
                break
            if proc.poll() is not None:
                missing(f"redis-server exited at start ({proc.returncode})")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture
async def nodes(redis_url: str) -> AsyncIterator[tuple[Daemon, Daemon]]:
    """Two nodes of one site; each allows any page origin, so a page of one may open the other's /ws.
    Node b holds one viewer at most (then it is a full edge)."""
    started: list[Daemon] = []
    try:
        for node_id in ("a", "b"):
            d = Daemon(
                Config(
                    server=ServerConfig(host="127.0.0.1", port=0, allowed_origins=("*",)),
                    billing=BillingConfig(enabled=False),
                    accounts=AccountsConfig(enabled=False, trust_client_ids=True),
                    cluster=ClusterConfig(
                        redis_url=redis_url,
                        key_prefix="page",
                        node_id=node_id,
                        secret="p" * 40,
                        heartbeat_interval_s=0.2,
                        ttl_s=2.0,
                    ),
                    admission=AdmissionConfig(max_viewers_per_worker=1 if node_id == "b" else 400, max_cpu_share=0),
                )
            )
            await d.start()
            started.append(d)
        yield started[0], started[1]
    finally:
        for d in started:
            await d.stop()


async def test_viewer_pages_on_one_node_watch_through_its_relay_then_follow_moved_when_it_is_full(
    nodes: tuple[Daemon, Daemon], browser: Any
) -> None:
    """Protects relayed media as Chromium decodes it and the page's side of the redirect: a show
    published through node a's page, watched through node b's page: b serves it through a relay from a
    and the page decodes its video; a second page on b, now full, is answered `moved`, opens a's
    websocket, joins there once and decodes the show's video."""
    a, b = nodes
    logs: list[str] = []
    performer = await open_page(browser, f"http://127.0.0.1:{a.port}/?role=performer&show=alice", logs)
    await performer.click("#go-live")
    await wait_state(performer, "live", logs)
    assert await performer.evaluate("window.jasmin.signaling.movedTo") is None

    for moved_to in (None, f"ws://127.0.0.1:{a.port}/ws"):
        viewer = await open_page(browser, f"http://127.0.0.1:{b.port}/?role=viewer&show=alice", logs)
        await viewer.click("#watch")
        await wait_state(viewer, "live", logs)
        assert await viewer.evaluate("window.jasmin.signaling.movedTo") == moved_to

        async def stats(page: Any = viewer) -> Any:
            return await page.evaluate(RTP_STATS_JS)

        got = await poll(stats, lambda s: s["inbound"].get("video", {}).get("framesDecoded", 0) > 0)
        assert got["inbound"]["video"]["framesDecoded"] > 0, (got, logs)
    assert b.cluster is not None and b.cluster.stats.redirects == 1
    assert b.cluster.stats.placements["edge"] == 1
