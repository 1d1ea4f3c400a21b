"""bench/netns.py's shaped-link plumbing, on the kernel: namespaces, veth pairs, a bridge, tc.

The shaped-viewer browser tests (tests/browser/netlab.py) and, later, several
nodes on one bridge (issue 15) stand on ``linked_host``, ``bridged_hosts``,
``shape`` and ``unshape``. The check runs in a child process inside
``unshare --net``, so the bridge and the veths it adds live in a throwaway
network namespace, never on the machine's own; the named namespaces are
global (``/run/netns``) and must all be gone after it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from bench import netns
from tests.realparts import missing

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import socket, subprocess, sys
    from bench import netns

    PY = sys.executable
    RECV = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.bind(('0.0.0.0', 9999)); s.settimeout(5); print(s.recvfrom(64)[1][0])")

    def ns_run(name, code, **kw):
        return subprocess.Popen(["ip", "netns", "exec", name, PY, "-c", code], stdout=subprocess.PIPE, text=True, **kw)

    def send_from(name, dst):
        code = f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('{dst}', 9999))"
        subprocess.run(["ip", "netns", "exec", name, PY, "-c", code], check=True)

    tag = sys.argv[3]  # python -c: argv is ["-c", this code, the repo, the tag]
    names = []
    with netns.bridged_hosts("t" + tag, 3) as hosts:
        names += [h.name for h in hosts]
        assert [h.ip for h in hosts] == ["10.79.0.2", "10.79.0.3", "10.79.0.4"], hosts
        # host 0 -> host 2 across the bridge
        rx = ns_run(hosts[2].name, RECV)
        import time; time.sleep(0.5)
        send_from(hosts[0].name, hosts[2].ip)
        assert rx.communicate(timeout=10)[0].strip() == hosts[0].ip
        # this namespace (the bridge's address) -> host 1
        rx = ns_run(hosts[1].name, RECV)
        time.sleep(0.5)
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", (hosts[1].ip, 9999))
        assert rx.communicate(timeout=10)[0].strip() == hosts[0].near_ip
    with netns.linked_host("tl" + tag, "tv" + tag, "10.78.0.1", "10.78.0.2") as host:
        names.append(host.name)
        applied = netns.shape(host.near_if, "300kbit", latency_ms=200, delay_ms=50)
        shown = netns.qdisc_stats(host.near_if)
        assert ("netem" in applied and "netem" in shown) or ("tbf" in applied and "rate 300Kbit" in shown), shown
        netns.unshape(host.near_if)
        assert "tbf" not in netns.qdisc_stats(host.near_if) and "netem" not in netns.qdisc_stats(host.near_if)
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(n in left.split() for n in names), left
    links = subprocess.run(["ip", "-brief", "link"], capture_output=True, text=True).stdout.split()
    assert "t" + tag + "br" not in links and "tv" + tag not in links, links
    print("OK")
    """
)


def test_linked_and_bridged_hosts_reach_each_other_are_shaped_and_leave_nothing() -> None:
    """Protects the shaped-link plumbing: three namespaces on one bridge reach each
    other and the bridge's namespace; a veth-linked namespace gets the tc shaping
    asked for (netem where the kernel has it, else tbf at the rate) and unshape
    lifts it; every namespace, veth and bridge is gone after the ``with`` blocks."""
    reason = netns.available()
    if reason is None and shutil.which("unshare") is None:
        reason = "needs unshare (util-linux)"
    if reason is not None:
        missing(f"netns plumbing test {reason}")
    tag = str(os.getpid() % 10000)
    out = subprocess.run(
        [
            "unshare",
            "--net",
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[2]); exec(sys.argv[1])",
            CHILD,
            str(ROOT),
            tag,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), (out.stdout, out.stderr)
