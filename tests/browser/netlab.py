"""Browsers on links of their own: network namespaces, veth pairs, a bridge, ``tc``.

The ``netlab`` fixture (tests/browser/conftest.py) hands a test a :class:`NetLab`:
``link()`` makes a namespace joined to the test's own by a veth pair,
``bridge(n)`` makes n namespaces on one bridge (bench/netns.py does the
plumbing), ``browser(host, origin)`` starts Chromium inside a namespace, and
``shape``/``unshape`` cap and lift the rate toward a host. Everything is gone
after the test, browsers first. The suite's browser tests run inside
``unshare --net`` (the Makefile's ``test-browser``), so the namespaces' links
lead only to that namespace's loopback-only world; the named namespaces
themselves are global (``/run/netns``), hence the process id in their names.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import subprocess
from pathlib import Path
from typing import Any, Callable, NoReturn

from bench import netns
from bench.netns import Host


class NetLab:
    """One test's namespaces and the Chromiums inside them."""

    def __init__(
        self,
        *,
        chromium: str,
        chromium_args: list[str],
        playwright: Any,
        tmp_path: Path,
        stack: contextlib.ExitStack,
        astack: contextlib.AsyncExitStack,
        missing: Callable[[str], NoReturn],
    ) -> None:
        self._chromium = chromium
        self._args = chromium_args
        self._pw = playwright
        self._tmp = tmp_path
        self._stack = stack
        self._astack = astack
        self._missing = missing
        self._tag = os.getpid() % 100000
        self._n = 0

    def _name(self, kind: str) -> str:
        self._n += 1
        return f"j{kind}{self._tag}{self._n}"  # within 15 bytes with the veth's "p" suffix

    def link(self, near_ip: str, ip: str) -> Host:
        """A namespace with ``ip``, joined by a veth pair to this one's ``near_ip`` (a /24 of its own)."""
        try:
            return self._stack.enter_context(netns.linked_host(self._name("n"), self._name("v"), near_ip, ip))
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            self._missing(f"cannot build a namespace and veth ({exc}; stderr: {getattr(exc, 'stderr', '')})")

    def bridge(self, n: int, subnet: str = "10.79.0") -> list[Host]:
        """``n`` namespaces on one bridge whose address here is ``<subnet>.1``."""
        try:
            return self._stack.enter_context(netns.bridged_hosts(f"b{self._tag}", n, subnet))
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            self._missing(f"cannot build the bridged namespaces ({exc}; stderr: {getattr(exc, 'stderr', '')})")

    @staticmethod
    def shape(host: Host, rate: str, *, delay_ms: int = 0, latency_ms: int = 300) -> str:
        """Cap what reaches ``host`` (the near end's egress); returns the qdisc applied."""
        return netns.shape(host.near_if, rate, latency_ms=latency_ms, delay_ms=delay_ms)

    @staticmethod
    def unshape(host: Host) -> None:
        netns.unshape(host.near_if)

    @staticmethod
    async def qdisc(host: Host) -> str:
        """``tc -s qdisc show`` of the near end, one line. Asynchronous: a blocking
        ``subprocess.run`` in the test's loop stalls the in-process node, and a
        stall of the node is a delay spike every viewer's estimator sees."""
        proc = await asyncio.create_subprocess_exec(
            "tc", "-s", "qdisc", "show", "dev", host.near_if, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        return " ".join(out.decode().split())

    @staticmethod
    async def receive_drops(host: Host) -> int:
        """What the kernel inside ``host`` dropped on the way into its sockets so far: UDP
        datagrams refused for a full receive buffer (``RcvbufErrors`` of /proc/net/snmp in the
        namespace) and packets its end of the veth dropped (``ip -s link``). On a loaded machine
        a browser's network thread falls behind and its socket overflows (this machine's own
        namespace counted 5264 such drops during one suite run): that loss is neither the
        node's nor the shaped link's."""

        async def inside(*argv: str) -> str:
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", host.name, *argv, stdout=asyncio.subprocess.PIPE
            )
            out, _ = await proc.communicate()
            return out.decode()

        snmp = [
            line.split() for line in (await inside("cat", "/proc/net/snmp")).splitlines() if line.startswith("Udp:")
        ]
        rcvbuf = int(snmp[1][snmp[0].index("RcvbufErrors")]) if len(snmp) == 2 else 0
        link = (await inside("ip", "-s", "link", "show", "dev", host.dev)).splitlines()
        rx = next((i for i, line in enumerate(link) if line.split()[:1] == ["RX:"]), None)
        veth = int(link[rx + 1].split()[3]) if rx is not None and rx + 1 < len(link) else 0
        return rcvbuf + veth

    async def browser(self, host: Host, origin: str) -> Any:
        """A headless Chromium (fake camera and microphone) run inside ``host``'s
        namespace (``ip netns exec``), allowed to treat ``origin`` (plain http on
        the node's address on that link) as secure, so getUserMedia works."""
        wrapper = self._tmp / f"chromium-in-{host.name}"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {host.name} {self._chromium} "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
        args = [a for a in self._args if not a.startswith("--host-resolver-rules")]
        args += [
            f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {host.near_ip}",
            f"--unsafely-treat-insecure-origin-as-secure={origin}",
        ]
        pw = await self._astack.enter_async_context(self._pw())
        context = await pw.chromium.launch_persistent_context(
            str(self._tmp / f"profile-{host.name}"), executable_path=str(wrapper), headless=True, args=args
        )
        self._astack.push_async_callback(context.close)
        return context
