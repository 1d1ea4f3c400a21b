"""A private network namespace for the SFU comparison: loopback only, no way out.

Janus 1.1 (libnice) skips loopback interfaces when it gathers ICE candidates,
so on a plain loopback it offers no candidate at all. Inside a namespace made
here, 127.0.0.1/32 is also assigned to a second, non-loopback interface
(:data:`IFACE`: a ``dummy`` link, or one end of a veth pair whose both ends stay
inside the namespace when the kernel has no dummy driver); Janus is told to
gather only there (``ice_enforce_list``) and still offers 127.0.0.1. Packets
between 127.0.0.1 endpoints keep going through ``lo``.

The load tool re-executes itself inside the namespace (``ip netns exec``), so
the daemons it starts, the aiortc peers and every socket share that one
loopback and nothing can reach another host: there is no other interface, no
route and no STUN server.

Needs root (``ip netns add``). The tool only creates and deletes the namespace;
it installs nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

ENV_MARK = "BENCH_LOAD_NETNS"  # not JASMIN_*: the daemon rejects unknown JASMIN_ variables
IFACE = "jbench0"
PEER = "jbench1"


def inside() -> str | None:
    """The namespace name when this process was re-executed inside one."""
    return os.environ.get(ENV_MARK) or None


def available() -> str | None:
    """None when a namespace can be made here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root (ip netns add)"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2)"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def create(name: str) -> None:
    """Create ``name`` with lo up and 127.0.0.1/32 also on :data:`IFACE`."""
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        try:
            _ip("-n", name, "link", "add", IFACE, "type", "dummy")
        except subprocess.CalledProcessError:
            # No dummy driver in this kernel: a veth pair, both ends in here.
            _ip("-n", name, "link", "add", IFACE, "type", "veth", "peer", "name", PEER)
            _ip("-n", name, "link", "set", PEER, "up")
        _ip("-n", name, "addr", "add", "127.0.0.1/32", "dev", IFACE)
        _ip("-n", name, "link", "set", IFACE, "up")
    except subprocess.CalledProcessError:
        delete(name)
        raise


def create_linked(name: str, host_if: str, host_ip: str, ns_ip: str, prefix: int = 24) -> None:
    """Create ``name`` joined to the current namespace by a veth pair.

    ``host_if`` (here, ``host_ip``) and its peer inside ``name`` (``ns_ip``)
    are one link of a /``prefix`` network of their own: a peer in ``name``
    reaches this namespace through the veth and nowhere else (no default
    route). Used by tests that put one client on a shaped link (:func:`shape`).
    """
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("link", "add", host_if, "type", "veth", "peer", "name", host_if + "p", "netns", name)
        _ip("addr", "add", f"{host_ip}/{prefix}", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", name, "addr", "add", f"{ns_ip}/{prefix}", "dev", host_if + "p")
        _ip("-n", name, "link", "set", host_if + "p", "up")
    except subprocess.CalledProcessError:
        delete_linked(name, host_if)
        raise


def shape(dev: str, rate: str, burst: int = 1600, latency_ms: int = 300, netns: str | None = None) -> None:
    """Limit what leaves ``dev`` to ``rate`` (e.g. ``"60kbit"``) with a token bucket
    (``tc qdisc tbf``; this machine's kernel has no netem): a FIFO of
    ``latency_ms`` worth of bytes, and tail drop beyond it, like a slow access link."""
    where = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*where, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate,
                    "burst", str(burst), "latency", f"{latency_ms}ms"], check=True, capture_output=True, text=True)


def qdisc_stats(dev: str) -> str:
    """``tc -s qdisc show dev`` (sent, dropped, overlimits), for reports."""
    return subprocess.run(["tc", "-s", "qdisc", "show", "dev", dev], capture_output=True, text=True).stdout


def delete_linked(name: str, host_if: str) -> None:
    subprocess.run(["ip", "link", "del", host_if], capture_output=True)
    delete(name)


def delete(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def describe(name: str) -> dict[str, object]:
    """Interfaces and addresses of the namespace (recorded in the JSON)."""
    out = subprocess.run(["ip", "-n", name, "-brief", "addr"], capture_output=True, text=True).stdout
    return {"name": name, "interfaces": [" ".join(line.split()) for line in out.splitlines() if line.strip()]}


def run_inside(argv: list[str]) -> int:
    """Create a namespace, run ``python argv`` inside it, delete it; returns the exit code."""
    name = f"jasmin-bench-{os.getpid()}"
    create(name)
    try:
        env = {**os.environ, ENV_MARK: name}
        cmd = ["ip", "netns", "exec", name, sys.executable, *argv]
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130
    finally:
        delete(name)
