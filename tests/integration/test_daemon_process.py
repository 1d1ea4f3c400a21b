"""The daemon as an operator runs it: a real process, HTTP endpoints, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import aiohttp

from bench.peers import publish, subscribe, wait_for
from tests.conftest import REPO, DaemonProcess, start_daemon_process


async def test_health_ready_metrics_and_demo_page(daemon_process: DaemonProcess) -> None:
    """Protects the operator endpoints: /healthz, /readyz, /metrics and the demo page answer."""
    async with aiohttp.ClientSession() as s:
        async with s.get(daemon_process.http + "/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
        async with s.get(daemon_process.http + "/readyz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ready"
        async with s.get(daemon_process.http + "/") as r:
            assert r.status == 200 and "<html" in (await r.text()).lower()
    m = await daemon_process.metrics()
    for name in (
        "jasmin_shows",
        "jasmin_producers",
        "jasmin_consumers",
        "jasmin_rtp_packets_in_total",
        "jasmin_rtp_packets_out_total",
        "jasmin_nack_packets_served_total",
        "jasmin_plis_sent_total",
    ):
        assert name in m, name


async def test_sigterm_closes_every_peer_and_exits_zero() -> None:
    """Protects graceful drain: with a publisher and a viewer connected, SIGTERM ends the
    process with status 0 and both peers see their connections closed."""
    dp = await start_daemon_process()
    try:
        pub = await publish(dp.url, "show-term")
        viewer = await subscribe(dp.url, "show-term")
        assert await wait_for(lambda: viewer.frames.get("video", 0) >= 2, timeout=20)
        dp.proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        code = await loop.run_in_executor(None, dp.proc.wait, 20)
        assert code == 0, "".join(dp.output)
        assert await wait_for(lambda: pub.client.closed and viewer.client.closed, timeout=10)
        assert await wait_for(
            lambda: (
                viewer.pc.connectionState in ("closed", "failed", "disconnected")
                or viewer.pc.iceConnectionState in ("closed", "failed", "disconnected")
            ),
            timeout=40,
        )
        await viewer.close()
        await pub.close()
    finally:
        if dp.proc.poll() is None:
            dp.proc.kill()


async def test_the_daemon_forwards_without_loading_ffmpeg() -> None:
    """Protects the base memory (issue 16): the daemon process answers aiortc's PyAV
    import with placeholders (jasmin_sfu/media/av_placeholder.py), so FFmpeg's
    libraries are never mapped (~25 MB of RSS), and a publisher's video and audio
    still reach a viewer, which decodes them; the node created no codec."""
    dp = await start_daemon_process()
    try:
        pub = await publish(dp.url, "show-noav")
        viewer = await subscribe(dp.url, "show-noav")
        assert await wait_for(
            lambda: viewer.frames.get("video", 0) >= 5 and viewer.frames.get("audio", 0) >= 5, timeout=20
        )
        with open(f"/proc/{dp.proc.pid}/maps") as f:
            ffmpeg = {line.split()[-1] for line in f if "libavcodec" in line or "libavformat" in line}
        assert not ffmpeg, ffmpeg
        m = await dp.metrics()
        assert m["jasmin_aiortc_encoders_created_total"] == 0 and m["jasmin_aiortc_decoders_created_total"] == 0
        await viewer.close()
        await pub.close()
    finally:
        if dp.proc.poll() is None:
            dp.proc.kill()


def test_check_config_command_reports_errors() -> None:
    """Protects the CLI: a bad config exits 2 with the key named; a good one prints the tree."""
    bad = subprocess.run(
        [sys.executable, "-m", "jasmin_sfu", "check-config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"JASMIN_SERVER_PORT": "nope", "PATH": "/usr/bin:/bin"},
    )
    assert bad.returncode == 2 and "server.port" in bad.stderr
    good = subprocess.run(
        [sys.executable, "-m", "jasmin_sfu", "check-config"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert good.returncode == 0 and "ServerConfig" in good.stdout


async def test_logs_are_json_lines_with_ids() -> None:
    """Protects structured logs: each line is a JSON object; joins carry show and session ids."""
    dp = await start_daemon_process(env={"JASMIN_LOG_LEVEL": "info"})
    try:
        pub = await publish(dp.url, "show-logs")
        await pub.close()
        assert await wait_for(lambda: any("joined" in line for line in dp.output), timeout=10), dp.output
    finally:
        dp.proc.send_signal(signal.SIGTERM)
        await asyncio.get_running_loop().run_in_executor(None, dp.proc.wait, 20)
    records = [json.loads(line) for line in dp.output if line.startswith("{")]
    joined = [r for r in records if r["msg"] == "joined"]
    assert joined and joined[0]["show_id"] == "show-logs" and joined[0]["session_id"]
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
