"""jasmin-sfu as a child process: the one launcher of the benches and the tests.

``start_daemon`` runs ``python -m jasmin_sfu serve`` of a checkout on a free port (``JASMIN_SERVER_PORT=0``),
waits for its listening line (``jasmin_sfu.lifecycle.LISTENING``), then keeps reading its output in a
thread so a chatty daemon never blocks on a full pipe. ``DaemonProcess.stop`` ends it: SIGTERM (the
daemon drains), SIGKILL past a timeout.

Both block: a daemon's start and drain take seconds on a loaded machine, and a blocked event loop stalls
every peer on it (tests/loop_guard.py fails a test for it). A coroutine calls them through
``asyncio.to_thread`` (``await asyncio.to_thread(start_daemon, env)``), or ``stop_daemons``.

Used by bench/targets.py, bench/whep_ttff.py, bench/relay_ttff.py and tests/conftest.py
(``start_daemon_process``); bench never imports tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, MutableSequence, Sequence
from dataclasses import dataclass
from typing import IO

import aiohttp

from jasmin_sfu.lifecycle import LISTENING

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A checkout's import roots (setup.cfg package_dir): the daemon of ``repo`` imports its own packages.
IMPORT_ROOTS = ("", "codecs", "signaling", "metering")

# A node for a tool that joins without tokens: loopback only, billing and accounts off,
# client-given ids trusted (never in production).
TOOL_ENV: Mapping[str, str] = {
    "JASMIN_SERVER_HOST": "127.0.0.1",
    "JASMIN_MEDIA_LISTEN_IPS": "127.0.0.1",
    "JASMIN_BILLING_ENABLED": "false",
    "JASMIN_ACCOUNTS_ENABLED": "false",
    "JASMIN_ACCOUNTS_TRUST_CLIENT_IDS": "true",
}


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


def end_process(proc: subprocess.Popen[str], timeout: float = 15.0) -> None:
    """SIGTERM ``proc`` if it still runs and wait for it; SIGKILL it if it outlives ``timeout``. Blocks."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def stop_daemons(*procs: subprocess.Popen[str], timeout: float = 15.0) -> None:
    """``end_process`` every one of ``procs`` at once, each waited for in a thread: the event loop
    goes on while they drain."""
    await asyncio.gather(*(asyncio.to_thread(end_process, p, timeout) for p in procs))


def drain_in_thread(out: IO[str], lines: MutableSequence[str]) -> threading.Thread:
    """Keep reading a child's output pipe into ``lines`` so a chatty child never blocks on it,
    and close the pipe at its end: an unclosed one is a ResourceWarning (an error in the test
    suite) in whichever later test the garbage collector happens to free it."""

    def drain() -> None:
        with out:
            lines.extend(out)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return thread


@dataclass
class DaemonProcess:
    """A started daemon: its process, the port it listens on, its output so far (stdout and
    stderr, still filled by a thread) and the data directory the launcher made for it, if any."""

    proc: subprocess.Popen[str]
    port: int
    output: MutableSequence[str]
    made_dir: str | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def metrics(self) -> dict[str, float]:
        return await scrape_metrics(self.http)

    def stop(self, timeout: float = 15.0) -> None:
        """``end_process``, then remove the data directory the launcher made. Blocks."""
        end_process(self.proc, timeout)
        if self.made_dir:
            shutil.rmtree(self.made_dir, ignore_errors=True)


def daemon_env(env: Mapping[str, str], repo: str, data_dir: str) -> dict[str, str]:
    """This process's environment, then a free port, warning-level logs and ``data_dir`` for the
    ledger and the accounts, then ``env``; ``repo``'s import roots first on PYTHONPATH."""
    full = {
        **os.environ,
        "JASMIN_SERVER_PORT": "0",
        "JASMIN_LOG_LEVEL": "warning",
        "JASMIN_BILLING_DATA_DIR": data_dir,
        "JASMIN_ACCOUNTS_DATA_DIR": data_dir,
        **env,
    }
    roots = [os.path.join(repo, d) if d else repo for d in IMPORT_ROOTS]
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [*roots, full.get("PYTHONPATH")]))
    return full


def start_daemon(
    env: Mapping[str, str] = TOOL_ENV,
    *,
    repo: str = REPO,
    cwd: str | None = None,
    wrapper: Sequence[str] = (),
    output: MutableSequence[str] | None = None,
) -> DaemonProcess:
    """Run ``python -m jasmin_sfu serve`` of the checkout ``repo`` (in ``cwd``, by default ``repo``)
    with ``daemon_env(env)`` and return once it listens. Blocks.

    Without ``JASMIN_BILLING_DATA_DIR`` in ``env`` the daemon gets a new temporary data directory,
    removed by ``stop`` (``made_dir``). ``wrapper`` is a command line that execs its trailing
    arguments (the daemon's) in the same process (``taskset -c 0``, ``unshare ...``): the pid stays
    the daemon's. ``output`` receives every line the daemon prints (a bounded ``deque`` for a long
    run); a new list by default. A daemon that exits before listening is a RuntimeError with its
    exit status and output."""
    made_dir = None if env.get("JASMIN_BILLING_DATA_DIR") else tempfile.mkdtemp(prefix="jasmin-daemon-")
    data_dir = env.get("JASMIN_BILLING_DATA_DIR") or made_dir or ""
    lines: MutableSequence[str] = [] if output is None else output
    proc = subprocess.Popen(
        [*wrapper, sys.executable, "-m", "jasmin_sfu", "serve"],
        cwd=cwd or repo,
        env=daemon_env(env, repo, data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    while line := proc.stdout.readline():
        lines.append(line)
        m = LISTENING.search(line)
        if m:
            drain_in_thread(proc.stdout, lines)
            return DaemonProcess(proc, int(m.group(1)), lines, made_dir)
    proc.stdout.close()
    status = proc.wait()
    if made_dir:
        shutil.rmtree(made_dir, ignore_errors=True)
    raise RuntimeError(f"the daemon exited before listening (status {status}):\n" + "".join(lines))
