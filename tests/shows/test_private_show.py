"""Privates over loopback with aiortc peers: exclusivity counted in packets, Cam2Cam,
sneak peeks, denials and group shows.

Exclusivity is proven from send times, not by sleeping: the performer's peer logs
when it sent every payload (SendLog), each viewer logs the payloads it received,
and the daemon answers ``private.accept`` with ``accepted_at``, the instant it
paused everyone else. A packet sent after that instant was necessarily processed
after the pause, so no free viewer may hold one.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.peers import PatternTrack, SendLog, ToneTrack, publish, subscribe, wait_for
from jasmin_signaling.client import RemoteError, SignalingClient
from tests.conftest import REPO, seed_credits, start_daemon_process
from tests.realparts import missing
from tests.support import after, performer, watch


async def test_private_is_exclusive_counted_in_packets(daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects the site's core privacy rule: from the accept on, free viewers receive zero
    media packets sent after it; the member gets video and audio; after the show returns
    to free, free viewers resume on a keyframe and decode again, with no renegotiation."""
    url = daemon.url
    pub = await performer(url, "show-x")
    free = [await watch(url, "show-x") for _ in range(3)]
    member = await watch(url, "show-x", member_id="m1")
    everyone = free + [member]
    assert await wait_for(
        lambda: all(v.frames.get("video", 0) >= 3 and v.frames.get("audio", 0) >= 3 for v in everyone), 30
    )

    await member.client.request("private.request")
    req = await pub.client.next_event("private.requested")
    assert req["data"]["member_id"] == "m1"
    accepted = await pub.client.request("private.accept", member_id="m1")
    t_accept = accepted["accepted_at"]

    # The member keeps getting video and audio sent after the accept.
    ssrcs_member = lambda: {s for s, _ in after(member, pub.log, t_accept)}  # noqa: E731
    assert await wait_for(lambda: len(ssrcs_member()) == 2 and len(after(member, pub.log, t_accept)) >= 60, 20)
    # Meanwhile the performer kept sending (the proof below is not vacuous).
    assert sum(1 for t in pub.log.sent.values() if t > t_accept) >= 60
    for v in free:
        assert after(v, pub.log, t_accept) == [], "a free viewer received media sent after the accept"

    # Free viewers were told 'private', without the member's identity, and kept their connection.
    for v in free:
        ev = await v.client.next_event("show.state")
        assert ev["data"]["state"] == "private" and "member_id" not in ev["data"]
        assert v.pc.connectionState == "connected"

    # Back to free: resume with a fresh keyframe, no renegotiation.
    frames_before = [v.frames.get("video", 0) for v in free]
    await member.client.request("private.end")
    await pub.client.request("show.free")
    assert await wait_for(lambda: all(v.frames.get("video", 0) > b + 3 for v, b in zip(free, frames_before)), 20)
    for v in free:
        assert v.pc.connectionState == "connected" and len(v.pc.getTransceivers()) == 2
    for v in everyone:
        await v.close()
    await pub.close()


async def test_cam2cam_reaches_only_the_performer(daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects Cam2Cam privacy: the performer decodes the member's camera; nobody else
    gets a packet of it, learns of it, or can subscribe to it by a guessed id; it closes
    when the private ends."""
    url = daemon.url
    pub = await performer(url, "show-c2c")
    guest = await watch(url, "show-c2c")
    member = await watch(url, "show-c2c", member_id="m1")
    assert await wait_for(lambda: guest.frames.get("video", 0) >= 2 and member.frames.get("video", 0) >= 2, 30)
    await member.client.request("private.request")
    await pub.client.request("private.accept", member_id="m1")

    cam = await publish(url, "show-c2c", client=member.client, tracks=[PatternTrack(), ToneTrack()])
    cam_log = SendLog().attach(cam.pc)
    cam_ids = [p["producer_id"] for p in cam.producers]
    added = await pub.client.next_event("producer.added")
    while added["data"]["producer"]["producer_id"] not in cam_ids:  # skip the performer's own
        added = await pub.client.next_event("producer.added")
    assert added["data"]["producer"]["app_data"]["cam2cam"] is True
    assert added["data"]["producer"]["app_data"]["member_id"] == "m1"

    perf_view = await subscribe(url, "show-c2c", client=pub.client, producer_ids=cam_ids)
    assert await wait_for(lambda: perf_view.frames.get("video", 0) >= 5, 30)

    # A guest who guesses (or replays) the id is refused, and was never told it exists.
    for pid in cam_ids:
        with pytest.raises(RemoteError) as e:
            await guest.client.request("subscribe", producer_ids=[pid])
        assert e.value.code == "unknown_producer"
    while not guest.client.events.empty():
        ev = guest.client.events.get_nowait()
        assert ev["event"] != "producer.added", ev
    # No connection but the performer's received any of it.
    router = daemon.daemon.shows.get("show-c2c").router
    for pid in cam_ids:
        consumers = list(router.producers[pid].consumers.values())
        assert len(consumers) == 1 and consumers[0].audience_key == perf_view_session(pub)
    for v in (guest, member):
        assert v.counter is not None
        assert not any(cam_log.sent_at(d) for _s, d, _t in v.counter.payloads)

    # The private ends: the Cam2Cam producers are closed for everyone.
    await pub.client.request("private.end")
    removed: set[str] = set()
    while not set(cam_ids) <= removed:
        removed.add((await pub.client.next_event("producer.removed"))["data"]["producer_id"])
    assert await wait_for(lambda: all(pid not in router.producers for pid in cam_ids), 10)
    await perf_view.pc.close()
    await cam.pc.close()
    for v in (guest, member):
        await v.close()
    await pub.close()


def perf_view_session(pub: Any) -> str:
    return str(pub.client.welcome["session_id"])


async def test_sneak_peek_gives_media_then_stops(make_daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects the sneak peek: a member in member chat gets media for the configured
    time, then nothing sent after the peek's end; one peek per member at a time."""
    d = await make_daemon()
    # The instant the daemon ended m2's peek (its audience is reset in the same step): the
    # bus subscriber runs synchronously inside it, so a payload sent later was processed later.
    peek_ended_at: list[float] = []
    d.daemon.bus.subscribe(
        lambda ev: peek_ended_at.append(time.time()) if (ev.name, ev.member_id) == ("sneak_peek.ended", "m2") else None
    )
    d.daemon.shows.settings = type(d.daemon.shows.settings)(sneak_peek_s=1.5, auto_accept=True)
    url = d.url
    pub = await performer(url, "show-peek")
    m1 = await watch(url, "show-peek", member_id="m1")
    m2 = await watch(url, "show-peek", member_id="m2")
    assert await wait_for(lambda: m2.frames.get("video", 0) >= 2, 30)
    await m1.client.request("private.request")  # auto-accepted
    await m1.client.request("private.end")
    state = await m2.client.next_event("show.state")
    while state["data"]["state"] != "member_chat":
        state = await m2.client.next_event("show.state")

    peek = await m2.client.request("sneak_peek")
    start, until = peek["started_at"], peek["until"]
    assert until - start == pytest.approx(1.5)
    assert await wait_for(lambda: len([x for x in after(m2, pub.log, start) if x[1] < until]) >= 20, 10)
    ended = await m2.client.next_event("sneak_peek.ended", timeout=10)
    assert ended["data"]["reason"] == "time_up" and ended["data"]["at"] == until
    assert len(peek_ended_at) == 1
    # Keep the performer sending for a while, then check nothing sent after the end arrived.
    assert await wait_for(lambda: sum(1 for t in pub.log.sent.values() if t > peek_ended_at[0]) >= 60, 10)
    assert after(m2, pub.log, peek_ended_at[0]) == []
    first = await m1.client.request("sneak_peek")  # m1, back in member chat, may peek
    assert first["until"] - first["started_at"] == pytest.approx(1.5)
    with pytest.raises(RemoteError) as e:
        await m1.client.request("sneak_peek")  # but not twice at a time
    assert e.value.code == "invalid_state" and "already peeking" in e.value.message
    for v in (m1, m2):
        await v.close()
    await pub.close()


async def test_denials_are_errors_and_change_nothing(daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects who may do what: a guest asking for a private, a second member while one
    runs, and a viewer using performer verbs all get an error code; the show is unchanged."""
    url = daemon.url
    pub = await publish(url, "show-deny")
    guest = await SignalingClient.connect(url)
    await guest.request("join", show_id="show-deny", role="viewer")
    m1 = await SignalingClient.connect(url)
    await m1.request("join", show_id="show-deny", role="viewer", member_id="m1")
    m2 = await SignalingClient.connect(url)
    await m2.request("join", show_id="show-deny", role="viewer", member_id="m2")
    show = daemon.daemon.shows.get("show-deny")

    with pytest.raises(RemoteError) as e:
        await guest.request("private.request")
    assert e.value.code == "forbidden"
    assert show.machine.requests == {}

    for verb, data in [
        ("private.accept", {"member_id": "m1"}),
        ("show.free", {}),
        ("show.settings", {"auto_accept": True}),
        ("private.decline", {"member_id": "m1"}),
    ]:
        for who in (guest, m1):
            with pytest.raises(RemoteError) as e:
                await who.request(verb, **data)
            assert e.value.code == "forbidden", verb
    assert show.machine.auto_accept is False

    await m1.request("private.request")
    await pub.client.request("private.accept", member_id="m1")
    with pytest.raises(RemoteError) as e:
        await m2.request("private.request")
    assert e.value.code == "private_busy"
    with pytest.raises(RemoteError) as e:
        await guest.request("private.end")
    assert e.value.code == "forbidden"
    with pytest.raises(RemoteError) as e:
        await m2.request("private.end")
    assert e.value.code == "forbidden"
    assert show.machine.private_member == "m1" and show.machine.state.value == "private"
    # A guest may not publish; neither may a member outside its private.
    with pytest.raises(RemoteError) as e:
        await m2.request("publish", sdp=pub.pc.localDescription.sdp)
    assert e.value.code == "forbidden"
    for c in (guest, m1, m2):
        await c.close()
    await pub.close()


async def test_member_leaving_ends_the_private(daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects billing and exclusivity: a member who disconnects ends the private at once."""
    pub = await publish(daemon.url, "show-drop")
    m1 = await SignalingClient.connect(daemon.url)
    await m1.request("join", show_id="show-drop", role="viewer", member_id="m1")
    await m1.request("private.request")
    await pub.client.request("private.accept", member_id="m1")
    await m1.close()
    ended = await pub.client.next_event("private.ended")
    assert ended["data"]["reason"] == "disconnect" and ended["data"]["member_id"] == "m1"
    assert daemon.daemon.shows.get("show-drop").machine.state.value == "member_chat"
    await pub.close()


async def test_group_show_viewers_get_every_performer(daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects group shows: two performers publish in one show; a viewer decodes both."""
    url = daemon.url
    a = await publish(url, "show-group", performer_id="anna")
    b = await publish(url, "show-group", performer_id="bea")
    v = await subscribe(url, "show-group")
    assert len(v.consumers) == 4
    assert await wait_for(lambda: v.frames.get("video", 0) >= 10 and v.frames.get("audio", 0) >= 10, 30)
    videos = [t for t in v.tracks if t.kind == "video"]
    assert len(videos) == 2
    # One performer leaving does not end the show for the other.
    await a.client.request("leave")
    await v.client.next_event("producer.removed")
    assert daemon.daemon.shows.get("show-group") is not None
    await v.close()
    await a.close()
    await b.close()


async def test_show_events_reach_other_parts(daemon) -> None:  # type: ignore[no-untyped-def]
    """Protects the integration point for billing: every transition is published on the bus."""
    seen: list[Any] = []
    daemon.daemon.bus.subscribe(seen.append)
    pub = await publish(daemon.url, "show-bus")
    m1 = await SignalingClient.connect(daemon.url)
    await m1.request("join", show_id="show-bus", role="viewer", member_id="m1")
    await m1.request("private.request")
    await pub.client.request("private.accept", member_id="m1")
    await m1.request("private.end")
    await pub.client.request("show.free")
    await pub.client.request("leave")
    assert await wait_for(lambda: any(e.name == "show.offline" for e in seen), 10)
    names = [e.name for e in seen]
    assert names[:1] == ["show.state_changed"]
    for n in ("private.requested", "private.started", "private.ended", "show.offline"):
        assert n in names, names
    started = next(e for e in seen if e.name == "private.started")
    ended = next(e for e in seen if e.name == "private.ended")
    assert started.member_id == ended.member_id == "m1" and ended.at >= started.at
    assert [e.state for e in seen if e.name == "show.state_changed"] == [
        "free",
        "private",
        "member_chat",
        "free",
        "offline",
    ]
    await m1.close()
    await pub.close()


PACKAGE = "p2999"


# Everything the node writes that is not a camera: its money and account records.
DATA_FILES = re.compile(
    r"(ledger|billing-outbox|billing-events|accounts|chat|social)\.sqlite3(-wal|-shm|-journal)?|billing-events\.jsonl"
)


def tree_state(root: str) -> dict[str, tuple[int, int]]:
    """(size, mtime in ns) of every regular file under ``root``."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:  # removed while walking (a journal)
                continue
            out[path] = (st.st_size, st.st_mtime_ns)
    return out


def written_files(pid: int) -> list[str]:
    """Regular files the process holds open for writing (from /proc), as the process names them."""
    out = []
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags = int(next(line for line in f if line.startswith("flags:")).split()[1], 8)
        except (OSError, StopIteration):
            continue
        if target.startswith("/") and not target.startswith(("/dev/null", "/proc/")) and flags & 0o3:
            out.append(target)
    return out


class PayloadLog:
    """The tails of the RTP packets a peer sends (plain, before SRTP): camera bytes to look for."""

    def __init__(self, pc: Any) -> None:
        self.tails: set[bytes] = set()
        for t in pc.getTransceivers():
            dtls = t.sender.transport
            original = dtls._send_rtp

            async def send(data: bytes, _original: Any = original) -> None:
                if len(data) >= 100 and not 192 <= data[1] <= 223:  # RTP with a real payload
                    self.tails.add(data[-48:])
                await _original(data)

            dtls._send_rtp = send


def namespaced(root: str) -> list[str]:
    """A wrapper giving the daemon private /tmp, /var/tmp and /dev/shm, all inside ``root``.

    Everywhere a process puts scratch files lands in one tree the test can walk, and other
    processes' files in the real /tmp cannot be mistaken for the node's."""
    if (
        shutil.which("unshare") is None
        or subprocess.run(
            ["unshare", "--mount", *([] if os.geteuid() == 0 else ["--map-root-user"]), "true"], capture_output=True
        ).returncode
        != 0
    ):
        missing("a private mount namespace (unshare --mount) for the disk-write check")
    # The repository and the interpreter stay visible where they are, even when they live under
    # a directory this hides (CI may clone into /tmp): each is bound into the tree that covers it.
    keep: list[tuple[str, str]] = []  # (path, where it goes inside root)
    for path in sorted({os.path.realpath(REPO), os.path.realpath(sys.prefix)}):
        if any(path.startswith(k + "/") for k, _ in keep):
            continue
        for hidden, into in (("/tmp", ""), ("/var/tmp", "var-tmp/"), ("/dev/shm", "shm/")):
            if path.startswith(hidden + "/"):
                inside = into + os.path.relpath(path, hidden)
                os.makedirs(os.path.join(root, inside), exist_ok=True)
                keep.append((path, inside))
    binds = "".join(f'mount --bind "{path}" "$0/{inside}" && ' for path, inside in keep)
    script = (
        binds + 'mount --rbind "$0/var-tmp" /var/tmp && mount --rbind "$0/shm" /dev/shm && mount --rbind "$0" /tmp'
        ' && cd /tmp/cwd && exec "$@"'
    )
    return ["unshare", "--mount", *([] if os.geteuid() == 0 else ["--map-root-user"]), "sh", "-c", script, root]


async def test_cam2cam_is_never_written_to_disk(tmp_path: Path) -> None:
    """Protects 'no member camera is ever stored': every file the node creates or changes
    from the Cam2Cam's start to the node's exit, in its data dir, working directory,
    TMPDIR, HOME, /tmp, /var/tmp and /dev/shm, is one of its money or account records
    and holds none of the member's camera packets; every file it holds open for writing
    is in those places (so nothing is written where the test does not look)."""
    root = str(tmp_path / "node")
    for d in ("data", "cwd", "tmpdir", "home", "var-tmp", "shm"):
        os.makedirs(os.path.join(root, d))
    await seed_credits(os.path.join(root, "data"), "m1", PACKAGE)
    # Inside its namespace the node sees root as /tmp.
    env = {
        "TMPDIR": "/tmp/tmpdir",
        "HOME": "/tmp/home",
        "JASMIN_BILLING_DATA_DIR": "/tmp/data",
        "JASMIN_ACCOUNTS_DATA_DIR": "/tmp/data",
    }
    dp = await start_daemon_process(env=env, cwd=os.path.join(root, "cwd"), wrapper=namespaced(root))
    try:
        url = dp.url
        pub = await publish(url, "show-disk")
        member = await subscribe(url, "show-disk", member_id="m1")
        await member.client.request("private.request")
        await pub.client.request("private.accept", member_id="m1")
        before = tree_state(root)
        cam = await publish(url, "show-disk", client=member.client)
        camera = PayloadLog(cam.pc)
        cam_ids = [p["producer_id"] for p in cam.producers]
        view = await subscribe(url, "show-disk", client=pub.client, producer_ids=cam_ids)
        # The Cam2Cam runs across billed seconds (the billing file sink writes meanwhile).
        usage = Path(root, "data", "billing-events.jsonl")
        assert await wait_for(
            lambda: (
                view.frames.get("video", 0) >= 10 and usage.exists() and usage.read_bytes().count(b".usage.v1") >= 2
            ),
            30,
        )
        assert len(camera.tails) >= 10
        inside = ("/tmp/", "/var/tmp/", "/dev/shm/", root + "/")
        assert [f for f in written_files(dp.proc.pid) if not f.startswith(inside)] == []
        check_writes(root, before, camera.tails)  # while it runs
        await view.pc.close()
        await cam.pc.close()
        await member.client.request("private.end")
        await member.close()
        await pub.close()
    finally:
        dp.proc.terminate()
        await asyncio.get_running_loop().run_in_executor(None, dp.proc.wait, 20)
    changed = check_writes(root, before, camera.tails)  # and after the node exited
    assert "data/billing-events.jsonl" in changed, "the check saw no billing record written"


def check_writes(root: str, before: dict[str, tuple[int, int]], camera: set[bytes]) -> list[str]:
    """The files under ``root`` created or changed since ``before``: each must be a record file
    of the data dir and hold none of the ``camera`` packet tails."""
    after = tree_state(root)
    changed = sorted(os.path.relpath(p, root) for p, st in after.items() if before.get(p) != st)
    for rel in changed:
        assert os.path.dirname(rel) == "data" and DATA_FILES.fullmatch(os.path.basename(rel)), rel
        with open(os.path.join(root, rel), "rb") as f:
            content = f.read()
        assert not any(tail in content for tail in camera), f"{rel} holds the member's camera packets"
    return changed
