"""bench/daemon_process.py, the one launcher of the daemon process for the tests and the benches."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import pytest

from bench.daemon_process import TOOL_ENV, end_process, start_daemon, stop_daemons

# A child that answers SIGTERM only once the test lets it: it says "term", then exits 0 when a
# line arrives on its stdin (ready: it has set its handler).
SLOW_DRAIN = """
import signal, sys
def term(*_):
    print("term", flush=True)
    sys.stdin.readline()
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("ready", flush=True)
while True:
    signal.pause()
"""

IGNORES_TERM = """
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
while True:
    signal.pause()
"""


@pytest.fixture
def tmp_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The launcher's temporary data directories are made in this test's own directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


async def test_stop_ends_the_daemon_and_removes_the_data_dir_it_made(tmp_dirs: Path) -> None:
    """Protects the launcher's start and stop: the daemon answers on the port it reported, gets a data
    directory of its own that stop removes once it has exited cleanly (the TTFF tools left theirs
    behind), and a data directory the caller gave is the caller's: kept."""
    made = await asyncio.to_thread(start_daemon, TOOL_ENV)
    given_dir = tmp_dirs / "given"
    given_dir.mkdir()
    given = await asyncio.to_thread(start_daemon, {**TOOL_ENV, "JASMIN_BILLING_DATA_DIR": str(given_dir)})
    try:
        assert made.made_dir is not None and os.path.dirname(made.made_dir) == str(tmp_dirs)
        assert os.path.isdir(made.made_dir) and given.made_dir is None
        async with aiohttp.ClientSession() as s:
            for node in (made, given):
                async with s.get(node.http + "/healthz") as r:
                    assert r.status == 200
    finally:
        await asyncio.gather(asyncio.to_thread(made.stop), asyncio.to_thread(given.stop))
    assert made.proc.returncode == 0 and given.proc.returncode == 0
    assert sorted(os.listdir(tmp_dirs)) == ["given"]


async def test_a_daemon_that_exits_before_listening_is_an_error_with_its_output(tmp_dirs: Path) -> None:
    """Protects the caller's diagnosis: a daemon that refuses its config is a RuntimeError carrying
    its exit status and what it printed (the bad key), not a hang, and its data directory is gone."""
    with pytest.raises(RuntimeError) as err:
        await asyncio.to_thread(start_daemon, {**TOOL_ENV, "JASMIN_SERVER_PORT": "nope"})
    assert "status 2" in str(err.value) and "server.port" in str(err.value)
    assert os.listdir(tmp_dirs) == []


@pytest.mark.timeout(120)
async def test_stop_daemons_waits_for_a_draining_child_off_the_event_loop() -> None:
    """Protects the loop while daemons drain (they take seconds on a loaded machine): stop_daemons
    SIGTERMs and waits in threads, so the test's loop goes on meanwhile. Here the loop is what
    lets the child finish; had stop_daemons waited on the loop, the child would be SIGKILLed at
    the timeout instead of exiting 0."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_DRAIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert await asyncio.to_thread(proc.stdout.readline) == "ready\n"
        stopping = asyncio.create_task(stop_daemons(proc, timeout=20))
        assert await asyncio.to_thread(proc.stdout.readline) == "term\n"
        proc.stdin.write("drained\n")
        proc.stdin.flush()
        await stopping
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()


@pytest.mark.timeout(120)
def test_a_child_that_outlives_the_timeout_is_killed() -> None:
    """Protects the end of a run: a daemon stuck in its drain (here one that ignores SIGTERM) is
    SIGKILLed past the timeout, and the stop returns instead of waiting forever."""
    proc = subprocess.Popen([sys.executable, "-c", IGNORES_TERM], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    with proc.stdout:
        assert proc.stdout.readline() == "ready\n"
        end_process(proc, timeout=0.5)
    assert proc.returncode == -signal.SIGKILL
