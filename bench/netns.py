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

Tests that put clients (or, later, nodes) on links of their own use the
context managers :func:`linked_host` (one namespace joined to this one by a
veth pair) and :func:`bridged_hosts` (N namespaces on one bridge), and
:func:`shape` / :func:`unshape` to cap and lift a link's rate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
from typing import Iterator

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


def _tc(args: list[str], netns: str | None) -> None:
    where = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*where, "tc", *args], check=True, capture_output=True, text=True)


def shape(
    dev: str, rate: str, burst: int = 1600, latency_ms: int = 300, netns: str | None = None, delay_ms: int = 0
) -> str:
    """Limit what leaves ``dev`` to ``rate`` (e.g. ``"60kbit"``), like a slow access
    link; returns the qdisc applied (for reports).

    Without ``delay_ms``: a token bucket (``tc qdisc tbf``), a FIFO of
    ``latency_ms`` worth of bytes and tail drop beyond it. With ``delay_ms``:
    ``netem`` (delay, the same rate and a queue of as many bytes) when the
    kernel has it; this machine's kernel has none, and then the tbf is applied
    alone, its queue the only delay (up to ``latency_ms`` while the link is
    full): the returned text says which."""
    tbf = [
        "qdisc",
        "replace",
        "dev",
        dev,
        "root",
        "tbf",
        "rate",
        rate,
        "burst",
        str(burst),
        "latency",
        f"{latency_ms}ms",
    ]
    if delay_ms:
        limit = max(4, int(_bits(rate) * latency_ms / 1000 / 8 / 1200))  # packets of ~1200 bytes
        netem = [
            "qdisc",
            "replace",
            "dev",
            dev,
            "root",
            "netem",
            "delay",
            f"{delay_ms}ms",
            "rate",
            rate,
            "limit",
            str(limit),
        ]
        try:
            _tc(netem, netns)
            return f"netem delay {delay_ms}ms rate {rate} limit {limit}"
        except subprocess.CalledProcessError:
            _tc(tbf, netns)
            return f"tbf rate {rate} latency {latency_ms}ms (no netem here: no {delay_ms}ms delay)"
    _tc(tbf, netns)
    return f"tbf rate {rate} latency {latency_ms}ms"


def unshape(dev: str, netns: str | None = None) -> None:
    """Lift :func:`shape`: ``dev`` back to its default qdisc."""
    where = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*where, "tc", "qdisc", "del", "dev", dev, "root"], capture_output=True, text=True)


def _bits(rate: str) -> int:
    """``tc`` rate text (``300kbit``, ``2mbit``, ``500000bit``) in bits per second."""
    units = {"kbit": 1000, "mbit": 1000_000, "gbit": 1000_000_000, "bit": 1}
    for unit, mult in units.items():
        if rate.endswith(unit):
            return int(float(rate[: -len(unit)]) * mult)
    raise ValueError(f"unknown rate {rate!r}: give kbit, mbit, gbit or bit")


def qdisc_stats(dev: str) -> str:
    """``tc -s qdisc show dev`` (sent, dropped, overlimits), for reports."""
    return subprocess.run(["tc", "-s", "qdisc", "show", "dev", dev], capture_output=True, text=True).stdout


def delete_linked(name: str, host_if: str) -> None:
    subprocess.run(["ip", "link", "del", host_if], capture_output=True)
    delete(name)


@dataclasses.dataclass(frozen=True)
class Host:
    """A namespace of :func:`linked_host` or :func:`bridged_hosts`.

    ``ip`` is its address, ``dev`` its end of the veth (inside it), ``near_if``
    the other end (in this namespace, or on the bridge): shape ``near_if`` to
    limit what reaches the host, ``dev`` (with ``netns=name``) what leaves it."""

    name: str
    ip: str
    dev: str
    near_if: str
    near_ip: str


@contextlib.contextmanager
def linked_host(name: str, near_if: str, near_ip: str, ip: str, prefix: int = 24) -> Iterator[Host]:
    """:func:`create_linked` for the ``with`` block; the namespace and veth go with it."""
    create_linked(name, near_if, near_ip, ip, prefix)
    try:
        yield Host(name=name, ip=ip, dev=near_if + "p", near_if=near_if, near_ip=near_ip)
    finally:
        delete_linked(name, near_if)


@contextlib.contextmanager
def bridged_hosts(prefix: str, n: int, subnet: str = "10.79.0") -> Iterator[list[Host]]:
    """``n`` namespaces on one bridge in this namespace, for the ``with`` block.

    The bridge ``<prefix>br`` has ``<subnet>.1/24`` here; host ``i`` is the
    namespace ``<prefix>h<i>`` with ``<subnet>.<i + 2>``, joined by the veth
    ``<prefix>v<i>`` (on the bridge) / ``<prefix>v<i>p`` (inside). The hosts
    reach each other and this namespace, nothing else. ``prefix`` keeps
    interface names within 15 bytes: at most 8 characters."""
    if not 1 <= n <= 200 or len(prefix) > 8:
        raise ValueError("bridged_hosts: 1..200 hosts and a prefix of at most 8 characters")
    br = prefix + "br"
    hosts: list[Host] = []
    _ip("link", "add", br, "type", "bridge")
    try:
        _ip("addr", "add", f"{subnet}.1/24", "dev", br)
        _ip("link", "set", br, "up")
        for i in range(n):
            name, near = f"{prefix}h{i}", f"{prefix}v{i}"
            _ip("netns", "add", name)
            hosts.append(Host(name=name, ip=f"{subnet}.{i + 2}", dev=near + "p", near_if=near, near_ip=f"{subnet}.1"))
            _ip("-n", name, "link", "set", "lo", "up")
            _ip("link", "add", near, "type", "veth", "peer", "name", near + "p", "netns", name)
            _ip("link", "set", near, "master", br)
            _ip("link", "set", near, "up")
            _ip("-n", name, "addr", "add", f"{subnet}.{i + 2}/24", "dev", near + "p")
            _ip("-n", name, "link", "set", near + "p", "up")
        yield hosts
    finally:
        for h in hosts:
            delete_linked(h.name, h.near_if)
        subprocess.run(["ip", "link", "del", br], capture_output=True)


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
