"""A real coturn inside network namespaces made here (nothing leaves the machine), for the
TURN tests (tests/turn, tests/browser/test_turn_page.py) and ``python -m bench.turn``.

Needs root, ``ip``, Debian's ``coturn`` and, for :func:`drop_udp`, ``nftables``
(``make coturn`` installs both).

* :func:`namespace` creates a namespace (lo up) and deletes it afterwards;
  :func:`veth` links two namespaces (``None``: the test's own) with a /24 each side.
* :func:`entered` switches the calling thread into a namespace for a moment:
  a socket belongs to the namespace it was created in, so a client created
  inside talks to coturn there while the rest of the test (and the machine's
  namespace) is untouched.
* :func:`drop_udp` makes a namespace drop every UDP packet (nftables).
* :class:`Coturn` writes a ``use-auth-secret`` configuration with a test
  certificate and runs ``turnserver`` in a namespace: UDP/TCP 3478, TLS 5349.
"""

from __future__ import annotations

import ctypes
import datetime
import ipaddress
import itertools
import os
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from bench import netns

CLONE_NEWNET = 0x40000000
TURN_PORT = 3478
TURNS_PORT = 5349
REALM = "jasmin.test"
_names = itertools.count(1)


def _run(*cmd: str, ns: str | None = None) -> None:
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    done = subprocess.run(full, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(full)}: {done.stderr.strip()}")


@contextmanager
def namespace(tag: str) -> Iterator[str]:
    """A fresh namespace ``jturn-<pid>-<n>-<tag>`` with lo up; deleted (with its links) afterwards."""
    name = f"jturn-{os.getpid()}-{next(_names)}-{tag}"
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        # A namespace is destroyed asynchronously; deleting its veths first removes their
        # peers in other namespaces at once (the browser tests check for a loopback-only one).
        links = subprocess.run(
            ["ip", "-n", name, "-o", "link", "show", "type", "veth"], capture_output=True, text=True
        ).stdout
        for line in links.splitlines():
            subprocess.run(
                ["ip", "-n", name, "link", "del", line.split(":")[1].strip().split("@")[0]], capture_output=True
            )
        netns.delete(name)


def veth(a: str | None, a_ip: str, b: str, b_ip: str) -> None:
    """A veth pair between namespace ``a`` (None: this process's) and ``b``, addresses /24."""
    n = next(_names)
    end_a, end_b = f"jt{os.getpid() % 100000}a{n}", f"jt{os.getpid() % 100000}b{n}"
    _run("ip", "link", "add", end_a, "type", "veth", "peer", "name", end_b, "netns", b, ns=a)
    _run("ip", "addr", "add", f"{a_ip}/24", "dev", end_a, ns=a)
    _run("ip", "link", "set", end_a, "up", ns=a)
    _run("ip", "-n", b, "addr", "add", f"{b_ip}/24", "dev", end_b)
    _run("ip", "-n", b, "link", "set", end_b, "up")
    # The carrier comes up a moment later; Chromium (and coturn) should find both ends up.
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        state = subprocess.run(["ip", "-n", b, "-br", "link", "show", end_b], capture_output=True, text=True).stdout
        if " UP " in state:
            return
        time.sleep(0.05)
    raise RuntimeError(f"veth {end_a}-{end_b} did not come up: {state.strip()}")


def route(name: str, address: str, via: str) -> None:
    """In namespace ``name``: ``address`` (a host) is reached through ``via``."""
    _run("ip", "-n", name, "route", "add", f"{address}/32", "via", via)


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def entered(name: str) -> Iterator[None]:
    """The calling thread inside namespace ``name`` until the block ends."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def drop_udp(name: str) -> None:
    """Every UDP packet in or out of namespace ``name`` is dropped (an office firewall)."""
    rules = (
        "table inet udpblock {\n"
        "  chain input { type filter hook input priority 0; policy accept; meta l4proto udp counter drop; }\n"
        "  chain output { type filter hook output priority 0; policy accept; meta l4proto udp counter drop; }\n"
        "}\n"
    )
    subprocess.run(
        ["ip", "netns", "exec", name, "nft", "-f", "-"], input=rules, text=True, check=True, capture_output=True
    )


def udp_dropped(name: str) -> int:
    """Packets the UDP rules of :func:`drop_udp` dropped so far in ``name``."""
    out = subprocess.run(
        ["ip", "netns", "exec", name, "nft", "list", "table", "inet", "udpblock"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(int(part.split()[0]) for part in out.split("counter packets ")[1:])


def write_certificate(directory: Path, ips: list[str]) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for ``ips`` (Python cryptography, an aiortc dependency)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "turn.jasmin.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("turn.jasmin.test")] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "turn-cert.pem", directory / "turn-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class Coturn:
    """``turnserver`` with use-auth-secret in namespace ``ns``: UDP/TCP 3478 and TLS 5349 on
    ``listen_ip``, relays from ``relay_ip``; its log goes to ``directory/turnserver.log``.
    ``extra``: more configuration lines; ``cpu``: pin it there (taskset)."""

    def __init__(
        self,
        ns: str,
        directory: Path,
        secret: str,
        listen_ip: str,
        relay_ip: str,
        extra: tuple[str, ...] = (),
        cpu: int | None = None,
    ) -> None:
        self.ns, self.listen_ip, self.log = ns, listen_ip, directory / "turnserver.log"
        cert, key = write_certificate(directory, sorted({listen_ip, relay_ip}))
        lines = [
            f"listening-ip={listen_ip}",
            f"relay-ip={relay_ip}",
            f"listening-port={TURN_PORT}",
            f"tls-listening-port={TURNS_PORT}",
            "use-auth-secret",
            f"static-auth-secret={secret}",
            f"realm={REALM}",
            f"cert={cert}",
            f"pkey={key}",
            "fingerprint",
            "no-cli",
            "no-dtls",
            "no-tlsv1",
            "no-tlsv1_1",
            f"userdb={directory / 'turndb'}",
            f"pidfile={directory / 'turnserver.pid'}",
            "simple-log",
            "verbose",
            *extra,
        ]
        self.config = directory / "turnserver.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self._log = open(self.log, "w")
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                *(["taskset", "-c", str(cpu)] if cpu is not None else []),
                "turnserver",
                "-c",
                str(self.config),
                "--log-file",
                "stdout",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_listening()

    def _wait_listening(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"turnserver exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            with entered(self.ns):
                ok = all(self._open(port) for port in (TURN_PORT, TURNS_PORT))
            if ok:
                return
            time.sleep(0.1)
        raise RuntimeError(f"turnserver did not listen: {self.log.read_text()[-2000:]}")

    def _open(self, port: int) -> bool:
        try:
            with socket.create_connection((self.listen_ip, port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.proc.kill()
            self.proc.wait()
        self._log.close()
