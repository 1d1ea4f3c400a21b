"""PyAV placeholders (jasmin_sfu/media/av_placeholder.py), each case in a fresh interpreter:
this test process keeps the real PyAV for its own aiortc peers."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_aiortc_imports_on_placeholders_and_a_decoding_path_fails_loudly() -> None:
    """Protects the daemon's start and its promise: with the placeholders aiortc and the
    adapter import and pass their self check, FFmpeg is never mapped, and making a frame
    or a codec context (what a decode or encode would do) raises AvNotLoaded, saying why."""
    out = run(
        """
        from jasmin_sfu.media import av_placeholder as a
        assert a.install()
        from jasmin_sfu.media import aiortc_adapter
        aiortc_adapter.self_check()
        import av, aiortc.codecs
        assert a.installed()
        for make in (lambda: av.VideoFrame(width=2, height=2), lambda: av.CodecContext.create("vp8", "r")):
            try:
                make()
            except a.AvNotLoaded as exc:
                print("refused:", exc)
        try:
            raise av.FFmpegError("x")
        except av.FFmpegError:
            print("error class ok")
        print("ffmpeg mapped:", any("libavcodec" in line for line in open("/proc/self/maps")))
        """
    )
    assert out.count("refused: jasmin-sfu does not decode or encode media") == 2, out
    assert "error class ok" in out and "ffmpeg mapped: False" in out, out


def test_too_late_once_pyav_is_loaded() -> None:
    """Protects against half a placeholder: after the real PyAV is imported, install does
    nothing and says so (the daemon then logs a warning)."""
    out = run(
        """
        import av
        from jasmin_sfu.media import av_placeholder as a
        print(a.install(), a.installed(), type(av.VideoFrame).__name__)
        """
    )
    assert out.split() == ["False", "False", "type"], out
