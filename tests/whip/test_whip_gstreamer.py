"""A WHIP publisher no one here wrote: Debian's GStreamer webrtcbin (tests/whip/gst_whip.py,
system Python with python3-gi) publishes x264 H264 + Opus; a websocket viewer decodes it.

Installed by `make gstreamer` (apt-get); without it the test skips by name (fails under CI=true).
The script posts webrtcbin's offer untouched: a=setup:actpass with its default RSA certificate,
so the node is the DTLS client and must offer ECDHE-RSA suites (docs/whip-whep.md, "DTLS")."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.peers import subscribe, wait_for
from tests.api.conftest import Api

pytestmark = pytest.mark.slow

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).parent / "gst_whip.py"
PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0');"
    "gi.require_version('GstSdp', '1.0'); from gi.repository import Gst, GstWebRTC, GstSdp; Gst.init(None);"
    "missing = [e for e in ('webrtcbin', 'x264enc', 'opusenc', 'rtph264pay', 'nicesrc', 'videotestsrc')"
    " if Gst.ElementFactory.find(e) is None]; print(' '.join(missing))"
)
NO_GSTREAMER = "GStreamer webrtcbin not installed: run `make gstreamer` (Debian gstreamer1.0-* and python3-gi)"


def require_gstreamer() -> None:
    try:
        out = subprocess.run([SYSTEM_PYTHON, "-c", PROBE], capture_output=True, text=True, timeout=60)
        missing = out.stdout.strip() if out.returncode == 0 else out.stderr.strip().splitlines()[-1:]
    except (OSError, subprocess.TimeoutExpired) as exc:
        missing = str(exc)
    if not missing:
        return
    reason = f"{NO_GSTREAMER} (missing: {missing})"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


async def lines(proc: asyncio.subprocess.Process) -> Any:
    assert proc.stdout is not None
    while True:
        raw = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not raw:
            return
        yield json.loads(raw)


async def test_gstreamer_webrtcbin_publishes_h264_over_whip(api: Api) -> None:
    """Protects WHIP interop with GStreamer: webrtcbin's non-trickle offer (x264 constrained
    baseline, packetization-mode 1, Opus) is answered 201, connects, the show goes free with an
    H264 and an Opus producer, a websocket member decodes the H264 video, and the script's
    DELETE on the Location (200) ends the show. The offer is webrtcbin's default (a=setup:actpass,
    RSA certificate): red ("failed" instead of "connected") when the node, as DTLS client,
    offers no ECDHE-RSA suite."""
    require_gstreamer()
    admin = await api.admin_token()
    token, _ = await api.performer(admin, "anna")
    member, _ = await api.member("mia")
    proc = await asyncio.create_subprocess_exec(
        SYSTEM_PYTHON,
        str(SCRIPT),
        api.http + "/whip/anna",
        token,
        "6",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
    )
    events = lines(proc)
    try:
        posted = await events.__anext__()
        assert posted["step"] == "posted" and posted["status"] == 201, posted
        assert posted["location"].startswith("/whip/anna/")
        assert set(posted["setup"]) == {"a=setup:actpass"}, "webrtcbin's own offer, no setup:active workaround"
        show = api.daemon.shows.get("anna")
        assert show is not None and show.machine.state.value == "free"
        assert sorted(p.mime for p in show.router.producers.values()) == ["audio/opus", "video/H264"]
        connected = await events.__anext__()
        assert connected["step"] == "connected", connected
        viewer = await subscribe(api.ws, "anna", token=member)
        assert await wait_for(lambda: viewer.frames.get("video", 0) >= 10 and viewer.frames.get("audio", 0) >= 10, 30)
        deleted = await events.__anext__()
        assert deleted == {"step": "deleted", "status": 200}
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert api.daemon.shows.get("anna") is None
        await viewer.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if proc.stderr is not None:
            err = (await proc.stderr.read()).decode(errors="replace")
            if err.strip():
                sys.stderr.write(err[-4000:])
