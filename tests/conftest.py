"""Shared fixtures: the daemon in-process and as a real subprocess."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import IO, Any, AsyncIterator, Iterator, Sequence

import aiohttp
import pytest

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
from jasmin_sfu.lifecycle import LISTENING
from tests import loop_guard
from tests.realparts import FakeClock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
    if os.environ.get("SFU_TEST_SHARED_PORT") and "rtc_udp_port" not in media:
        # Run a suite with every daemon's peer connections on one UDP port (docs/media.md,
        # "One UDP port per worker"): SFU_TEST_SHARED_PORT=1 python -m pytest tests/integration
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            media["rtc_udp_port"] = probe.getsockname()[1]
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


async def scrape_metrics(http: str) -> dict[str, float]:
    """``/metrics`` of the daemon at ``http`` as {sample name with labels: value}."""
    async with aiohttp.ClientSession() as s:
        async with s.get(http + "/metrics") as r:
            text = await r.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[str]
    port: int
    output: list[str]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def metrics(self) -> dict[str, float]:
        return await scrape_metrics(self.http)


async def start_daemon_process(
    env: dict[str, str] | None = None, cwd: str = REPO, wrapper: Sequence[str] = ()
) -> DaemonProcess:
    """Run ``python -m jasmin_sfu serve`` on a random port and wait for it.

    ``wrapper`` is a command line that execs its trailing arguments (the daemon's) in the
    same process, e.g. ``unshare`` then ``sh -c '...; exec "$@"'``: the pid stays the daemon's.
    """
    import tempfile

    data_dir = (env or {}).get("JASMIN_BILLING_DATA_DIR")
    if not data_dir:
        data_dir = tempfile.mkdtemp(prefix="jasmin-billing-")
        _made_dirs.append(data_dir)  # removed after the test (remove_made_dirs)
    # The old process tests join with client-given ids: trusted here, never in production.
    full_env = {
        **os.environ,
        "JASMIN_SERVER_PORT": "0",
        "JASMIN_LOG_LEVEL": "warning",
        "JASMIN_BILLING_DATA_DIR": data_dir,
        "JASMIN_ACCOUNTS_DATA_DIR": data_dir,
        "JASMIN_ACCOUNTS_TRUST_CLIENT_IDS": "true",
        **(env or {}),
    }
    if cwd != REPO:  # jasmin_sfu is found from the repository, not from the working directory
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, full_env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [*wrapper, sys.executable, "-m", "jasmin_sfu", "serve"],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    loop = asyncio.get_running_loop()
    assert proc.stdout is not None
    lines = []
    while True:
        line = await loop.run_in_executor(None, proc.stdout.readline)
        if not line:
            proc.stdout.close()
            proc.wait()
            raise RuntimeError("daemon exited before listening:\n" + "".join(lines))
        lines.append(line)
        m = LISTENING.search(line)
        if m:
            drain_in_thread(proc.stdout, lines)
            return DaemonProcess(proc, int(m.group(1)), lines)


def drain_in_thread(out: IO[str], lines: list[str]) -> threading.Thread:
    """Keep reading a child's output pipe into ``lines`` so a chatty child never blocks on it,
    and close the pipe at its end: an unclosed one is a ResourceWarning (an error in this
    suite) in whichever later test the garbage collector happens to free it."""

    def drain() -> None:
        with out:
            lines.extend(out)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return thread


_made_dirs: list[str] = []


@pytest.fixture(autouse=True)
def remove_made_dirs() -> Iterator[None]:
    """Data directories start_daemon_process made for a test are removed after it (the test
    or its fixture has stopped the daemon by then: this fixture's teardown runs last)."""
    yield
    while _made_dirs:
        shutil.rmtree(_made_dirs.pop(), ignore_errors=True)


async def stop_daemons(*procs: "subprocess.Popen[str]", timeout: float = 15.0) -> None:
    """SIGTERM every child still running, then wait for them all off the event loop: a daemon's
    drain takes seconds on a loaded machine, and a blocking ``wait`` would hold the test's loop
    (tests/loop_guard.py fails a test for that). A child that outlives ``timeout`` is killed."""
    running = [p for p in procs if p.poll() is None]
    for p in running:
        p.send_signal(signal.SIGTERM)
    loop = asyncio.get_running_loop()

    def wait(p: "subprocess.Popen[str]") -> None:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:  # pragma: no cover
            p.kill()
            p.wait()

    await asyncio.gather(*(loop.run_in_executor(None, wait, p) for p in running))


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
