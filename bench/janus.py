"""Janus (Debian's ``janus`` package) as the comparison SFU.

The load tool installs nothing: Janus must already be installed
(``apt-get install -y janus``, see bench/README.md). Each run writes its own
configuration into a temporary directory (``/etc/janus`` is never read or
edited) and starts ``/usr/bin/janus`` pinned to one core with taskset.

The configuration is Janus's best for one publisher and many subscribers on
one core; :data:`CONFIG` is recorded verbatim in the result JSON:

* ``event_loops = 1``: a static event-loop thread shared by all handles
  instead of one loop thread per handle (the default). Measured before:
  default Janus 1.1.2 spent ~43 us of CPU per forwarded packet, with one
  static loop ~14.5 us.
* ``nack_optimizations = true``: the per-subscriber retransmission buffer is
  emptied whenever a keyframe is sent.
* only the VideoRoom plugin and the WebSockets transport are loaded; no event
  handlers (``broadcast = false``), no loggers; WebSockets on 127.0.0.1 only,
  plain (non-indented) JSON.
* ICE: host candidates only on ``jbench0`` (127.0.0.1/32 inside the bench
  network namespace, see bench/netns.py), no STUN server, no mDNS, no ICE-TCP,
  half-trickle (Janus's candidates in its SDP).
* The room (created over the API by the load tool): one publisher, VP8 and
  Opus, ``fir_freq = 0`` (no periodic keyframe requests; Janus still sends a
  PLI for each new subscriber, at most one per second), ``bitrate = 0``, and
  the optional header extensions off (audio level, video orientation,
  playout delay, transport-wide CC): the bench peers use none of them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING, Any

from bench import janus_client as jc

if TYPE_CHECKING:
    from bench.viewers import LightViewer

JANUS_BIN = "/usr/bin/janus"
LIBDIR = "/usr/lib/x86_64-linux-gnu/janus"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Everything we change from Janus's built-in defaults.
CONFIG: dict[str, Any] = {
    "janus.jcfg": {
        "general": {"event_loops": 1, "debug_level": 4, "session_timeout": 60},
        "media": {"nack_optimizations": True},
        "nat": {
            "ice_enforce_list": "jbench0",
            "ignore_mdns": True,
            "nice_debug": False,
            "stun_server": None,
            "full_trickle": False,
            "ice_lite": False,
            "ice_tcp": False,
        },
        "plugins": {"loaded": ["libjanus_videoroom.so"]},
        "transports": {"loaded": ["libjanus_websockets.so"]},
        "events": {"broadcast": False},
    },
    "janus.transport.websockets.jcfg": {"ws_ip": "127.0.0.1", "json": "plain", "wss": False, "admin_ws": False},
    "videoroom room": {
        "publishers": 1,
        "videocodec": "vp8",
        "audiocodec": "opus",
        "fir_freq": 0,
        "bitrate": 0,
        "audiolevel_ext": False,
        "videoorient_ext": False,
        "playoutdelay_ext": False,
        "transport_wide_cc_ext": False,
        "notify_joining": False,
    },
}

ROOM_OPTIONS = dict(CONFIG["videoroom room"])


def installed() -> str | None:
    """None when Janus can be run here, else the reason it cannot."""
    if not os.path.exists(JANUS_BIN):
        return f"{JANUS_BIN} not found: run 'apt-get install -y janus' (see bench/README.md)"
    if not os.path.exists(f"{LIBDIR}/plugins/libjanus_videoroom.so"):
        return f"{LIBDIR}/plugins/libjanus_videoroom.so not found"
    return None


def version() -> str:
    try:
        out = subprocess.run([JANUS_BIN, "--version"], capture_output=True, text=True, timeout=10).stdout
    except Exception:
        return "unknown"
    for line in out.splitlines():
        if line.startswith("Janus version"):
            return line.split("(")[-1].rstrip(")").strip() if "(" in line else line
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def _all_but(folder: str, keep: list[str]) -> str:
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".so"))
    except FileNotFoundError:
        return ""
    return ",".join(n for n in names if n not in keep)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: str, ws_port: int) -> str:
    """Write janus.jcfg and the plugin/transport configs; returns janus.jcfg's path."""
    c = CONFIG["janus.jcfg"]
    jcfg = f"""general: {{
	configs_folder = "{folder}"
	plugins_folder = "{LIBDIR}/plugins"
	transports_folder = "{LIBDIR}/transports"
	events_folder = "{LIBDIR}/events"
	loggers_folder = "{LIBDIR}/loggers"
	debug_level = {c["general"]["debug_level"]}
	session_timeout = {c["general"]["session_timeout"]}
	event_loops = {c["general"]["event_loops"]}
	protected_folders = ["/bin", "/boot", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr", "/var"]
}}
certificates: {{
}}
media: {{
	nack_optimizations = true
}}
nat: {{
	nice_debug = false
	ignore_mdns = true
	ice_enforce_list = "{c["nat"]["ice_enforce_list"]}"
}}
plugins: {{
	disable = "{_all_but(LIBDIR + "/plugins", c["plugins"]["loaded"])}"
}}
transports: {{
	disable = "{_all_but(LIBDIR + "/transports", c["transports"]["loaded"])}"
}}
loggers: {{
	disable = "{_all_but(LIBDIR + "/loggers", [])}"
}}
events: {{
	broadcast = false
}}
"""
    ws = f"""general: {{
	json = "plain"
	ws = true
	ws_port = {ws_port}
	ws_ip = "127.0.0.1"
	wss = false
}}
admin: {{
	admin_ws = false
	admin_wss = false
}}
"""
    videoroom = "general: {\n}\n"
    path = os.path.join(folder, "janus.jcfg")
    with open(path, "w") as f:
        f.write(jcfg)
    with open(os.path.join(folder, "janus.transport.websockets.jcfg"), "w") as f:
        f.write(ws)
    with open(os.path.join(folder, "janus.plugin.videoroom.jcfg"), "w") as f:
        f.write(videoroom)
    return path


class JanusUnderTest:
    """Janus started from a temp-dir configuration, pinned to ``cpu``."""

    name = "janus"

    def __init__(self, cpu: int | None, keep_dir: bool = False) -> None:
        why = installed()
        if why:
            raise RuntimeError(why)
        self.dir = tempfile.mkdtemp(prefix="jasmin-bench-janus-")
        self.keep_dir = keep_dir
        self.port = _free_port()
        cfg = write_config(self.dir, self.port)
        cmd = [JANUS_BIN, "-C", cfg, "-F", self.dir, "-o"]
        if cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(cpu)] + cmd
        self.log_path = os.path.join(self.dir, "janus.log")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.dir, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"janus exited with {self.proc.returncode}; log: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"janus did not open its websocket port; log: {self.log_tail()}")
        self.version = version()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def threads(self) -> int:
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/task"))
        except OSError:
            return 0

    def describe(self) -> dict[str, Any]:
        return {
            "software": f"Janus {self.version} (Debian package janus)",
            "plugin": "janus.plugin.videoroom",
            "config": CONFIG,
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


class JanusTarget:
    """The load tool's view of Janus: process, VideoRoom room, publisher feed, subscriber handles."""

    name = "janus"
    ROOM = 4242

    def __init__(self, cpu: int | None) -> None:
        self.janus = JanusUnderTest(cpu)
        self.session: Any = None
        self.feed = 0

    def cpu_seconds(self) -> float:
        return self.janus.cpu_seconds()

    def rss_mb(self) -> float:
        return self.janus.rss_mb()

    def describe(self) -> dict[str, Any]:
        d = self.janus.describe()
        d["threads_at_end"] = self.janus.threads()
        return d

    async def publish(self, offer_sdp: str) -> str:
        from bench import janus_client as jc

        self.session = await jc.JanusSession.connect(self.janus.url)
        await jc.create_room(self.session, self.ROOM, ROOM_OPTIONS)
        _h, self.feed, answer = await jc.publish(self.session, self.ROOM, offer_sdp)
        return answer

    async def subscribe(self, v: "LightViewer") -> None:
        v.t_join_ns = time.time_ns()
        h, offer = await jc.subscribe_offer(self.session, self.ROOM, self.feed)
        v.ctx["handle"] = h
        answer = await v.answer(offer)
        await jc.subscribe_answer(self.session, h, self.ROOM, answer)

    async def unsubscribe(self, v: "LightViewer") -> None:
        await v.close()
        h = v.ctx.pop("handle", None)
        if h is not None and self.session is not None:
            await self.session.detach(h)

    async def close(self) -> None:
        if self.session is not None:
            try:
                await asyncio.wait_for(self.session.close(), 15)
            except Exception:
                pass
        await asyncio.to_thread(self.janus.stop)


def _selftest() -> None:  # pragma: no cover - manual check: python -m bench.janus (inside a netns)
    j = JanusUnderTest(cpu=None, keep_dir=True)
    try:
        print("janus up on", j.url, "config in", j.dir, "threads", j.threads())
        time.sleep(1)
    finally:
        j.stop()
    print(j.log_tail(40))


if __name__ == "__main__":  # pragma: no cover
    _selftest()
