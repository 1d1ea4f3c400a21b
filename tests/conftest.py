"""Shared fixtures: the daemon in-process and as a real subprocess."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterator, Sequence

import pytest

# The launcher of the daemon process; these names are imported from here by the tests too.
from bench.daemon_process import REPO as REPO
from bench.daemon_process import DaemonProcess as DaemonProcess
from bench.daemon_process import drain_in_thread as drain_in_thread
from bench.daemon_process import scrape_metrics as scrape_metrics
from bench.daemon_process import start_daemon
from bench.daemon_process import stop_daemons as stop_daemons
from jasmin_sfu.app import Daemon
from jasmin_sfu.config import (
    AccountsConfig,
    AdmissionConfig,
    BillingConfig,
    Config,
    MediaConfig,
    PaymentsConfig,
    ServerConfig,
)
from tests import loop_guard
from tests.realparts import FakeClock

loop_guard.install()


@pytest.fixture(autouse=True)
def _fail_a_test_that_blocks_its_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    """tests/loop_guard.py: a callback that held an event loop past its limit fails the test."""
    loop_guard.take()
    yield
    held = loop_guard.take()
    if not held or request.node.get_closest_marker("blocks_loop"):
        return
    report = os.environ.get("JASMIN_TEST_LOOP_BLOCK_REPORT")
    if report:  # calibration: append to that file, do not fail
        with open(report, "a") as f:
            f.writelines(f"{seconds:.3f}s {request.node.nodeid}: {what}\n" for seconds, what in held)
        return
    lines = "\n".join(f"  {seconds:.2f} s: {what}" for seconds, what in held[:5])
    pytest.fail(
        f"the event loop was blocked past {loop_guard.LIMIT_S} s (tests/loop_guard.py):\n{lines}", pytrace=False
    )


def test_config(
    billing: BillingConfig | None = None,
    accounts: AccountsConfig | None = None,
    payments: PaymentsConfig | None = None,
    **media: object,
) -> Config:
    """Loopback-only config on a random port; media overrides by keyword.

    Billing is off unless a ``BillingConfig`` is given: the media and show
    tests are about packets, the billing tests turn it on with a temp data_dir.
    Accounts are off and client-given ids trusted (the legacy join) unless an
    ``AccountsConfig`` is given: the accounts tests turn them on.
    Admission control is off: the test's own aiortc peers share the daemon's
    process, so its CPU share is theirs too (tests/integration/test_admission.py
    turns each limit on).
    """
    if os.environ.get("SFU_TEST_SOCKET_PER_PEER") and "rtc_udp_port" not in media:
        # Run a suite with every in-process daemon's peer connections on a socket each, the
        # mode before the shared port became the default (docs/media.md, "One UDP port per
        # worker"): SFU_TEST_SOCKET_PER_PEER=1 python -m pytest tests/integration (daemons
        # started as processes take JASMIN_MEDIA_RTC_SOCKET_PER_PEER=true).
        media.setdefault("rtc_socket_per_peer", True)
    return Config(
        server=ServerConfig(host="127.0.0.1", port=0),
        media=dataclasses.replace(MediaConfig(listen_ips=("127.0.0.1",)), **media),  # type: ignore[arg-type]
        billing=billing or BillingConfig(enabled=False),
        accounts=accounts or AccountsConfig(enabled=False, trust_client_ids=True),
        payments=payments or PaymentsConfig(),
        admission=AdmissionConfig(max_viewers_per_worker=0, max_joins_in_flight=0, max_cpu_share=0.0),
    )


@pytest.fixture
def clock() -> FakeClock:
    """An injected clock that moves only when a test advances it."""
    return FakeClock()


@pytest.fixture(autouse=True)
def aioice_state() -> Iterator[None]:
    """aioice is patched process-wide (host addresses, port range, consent loop: by every
    media worker, bench.peers and some tests): each test gets back the state it began with."""
    import aioice.ice

    from jasmin_sfu.media import aiortc_adapter as adapter

    conn = aioice.ice.Connection
    saved = (
        aioice.ice.get_host_addresses,
        conn.get_component_candidates,
        conn.query_consent,
        list(adapter._HOST_ADDRESSES),
        adapter._PORT_RANGE,
    )
    yield
    aioice.ice.get_host_addresses = saved[0]
    conn.get_component_candidates, conn.query_consent = saved[1], saved[2]  # type: ignore[method-assign]
    adapter._HOST_ADDRESSES[:] = saved[3]
    adapter._PORT_RANGE = saved[4]


@pytest.fixture(autouse=True)
def close_shared_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A media Worker binds its shared UDP socket when made (the default, docs/media.md "One UDP
    port per worker"); the unit tests that make one and never close it get it closed here, after
    the test's own fixtures stopped their daemons (closing twice is harmless)."""
    from jasmin_sfu.media import aiortc_adapter as adapter

    opened: list[adapter.SharedPorts] = []
    original = adapter.open_shared_ports

    def recorded(*args: Any, **kwargs: Any) -> adapter.SharedPorts:
        shared = original(*args, **kwargs)
        opened.append(shared)
        return shared

    monkeypatch.setattr(adapter, "open_shared_ports", recorded)
    yield
    for shared in opened:
        shared.close()


@dataclass
class Running:
    daemon: Daemon
    url: str
    http: str


@pytest.fixture
async def daemon() -> AsyncIterator[Running]:
    d = Daemon(test_config())
    await d.start()
    yield Running(d, f"ws://127.0.0.1:{d.port}/ws", f"http://127.0.0.1:{d.port}")
    await d.stop()


@pytest.fixture
async def make_daemon() -> AsyncIterator[object]:
    started: list[Daemon] = []

    async def make(
        billing: BillingConfig | None = None,
        accounts: AccountsConfig | None = None,
        payments: PaymentsConfig | None = None,
        accounts_clock: Any = None,
        **media: object,
    ) -> Running:
        kw = {"accounts_clock": accounts_clock} if accounts_clock is not None else {}
        d = Daemon(test_config(billing, accounts, payments, **media), **kw)
        await d.start()
        started.append(d)
        return Running(d, f"ws://127.0.0.1:{d.port}/ws", f"http://127.0.0.1:{d.port}")

    yield make
    for d in started:
        await d.stop()


async def start_daemon_process(
    env: dict[str, str] | None = None, cwd: str = REPO, wrapper: Sequence[str] = ()
) -> DaemonProcess:
    """Run ``python -m jasmin_sfu serve`` on a random port and wait for it, off the event loop
    (bench/daemon_process.py, the one launcher of the tests and the benches).

    ``wrapper`` is a command line that execs its trailing arguments (the daemon's) in the
    same process, e.g. ``unshare`` then ``sh -c '...; exec "$@"'``: the pid stays the daemon's.
    Billing is on (the daemon's default); the data directory made for it is removed after the test.
    """
    # The old process tests join with client-given ids: trusted here, never in production.
    dp = await asyncio.to_thread(
        start_daemon, {"JASMIN_ACCOUNTS_TRUST_CLIENT_IDS": "true", **(env or {})}, cwd=cwd, wrapper=wrapper
    )
    if dp.made_dir:
        _made_dirs.append(dp.made_dir)  # removed after the test (remove_made_dirs)
    return dp


_made_dirs: list[str] = []


@pytest.fixture(autouse=True)
def remove_made_dirs() -> Iterator[None]:
    """Data directories start_daemon_process made for a test are removed after it (the test
    or its fixture has stopped the daemon by then: this fixture's teardown runs last)."""
    yield
    while _made_dirs:
        shutil.rmtree(_made_dirs.pop(), ignore_errors=True)


@pytest.fixture
async def daemon_process() -> AsyncIterator[DaemonProcess]:
    dp = await start_daemon_process()
    yield dp
    await stop_daemons(dp.proc, timeout=10)


async def seed_credits(data_dir: str, member_id: str, package_code: str, payment_id: str | None = None) -> None:
    """Top up a member in the SQLite ledger a daemon will open from ``data_dir``."""
    import time as _time

    from jasmin_sfu.services.ledger import Ledger
    from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore

    os.makedirs(data_dir, exist_ok=True)
    store = await SqliteLedgerStore.open(os.path.join(data_dir, "ledger.sqlite3"))
    try:
        ledger = Ledger(store, _time.time)
        await ledger.bootstrap()
        await ledger.open_member(member_id)
        await ledger.top_up(payment_id or f"seed-{member_id}-{package_code}", member_id, package_code)
    finally:
        await store.close()
