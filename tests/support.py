"""Helpers shared by test modules (no test module imports another): fast account
settings, peers that log what a private's performer sent and viewers received, the
forwarding core's fakes and packets, and the real-browser page helpers."""

from __future__ import annotations

import asyncio
import socket
import struct
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from pylibsrtp import Policy, Session

from bench.peers import PatternTrack, SendLog, ToneTrack, Viewer, publish, subscribe
from jasmin_codecs.rtp import build_extensions, build_rtp
from jasmin_sfu.media import aiortc_adapter as adapter
from jasmin_sfu.media import fastpath
from jasmin_sfu.media.consumer import Consumer
from jasmin_sfu.media.keyframe_requester import KeyframeRequester
from jasmin_sfu.media.producer import Producer
from jasmin_sfu.media.retransmit import DEFAULT_POLICY, RetransmitPolicy
from jasmin_sfu.media.stats import MediaStats
from jasmin_sfu.services.accounts import AccountsSettings, Argon2Hashing
from jasmin_sfu.store.postgres_accounts import PostgresAccountsStore
from jasmin_sfu.store.postgres_chat import PostgresChatStore
from jasmin_sfu.store.postgres_ledger import PostgresLedgerStore
from jasmin_sfu.store.postgres_social import PostgresSocialStore
from jasmin_sfu.store.sqlite_accounts import SqliteAccountsStore
from jasmin_sfu.store.sqlite_chat import SqliteChatStore
from jasmin_sfu.store.sqlite_ledger import SqliteLedgerStore
from jasmin_sfu.store.sqlite_social import SqliteSocialStore
from tests.realparts import PG_DSN, pg_schema

# -- accounts ---------------------------------------------------------------------------------

# argon2id at its cheapest: these tests are about rules, not about the cost.
FAST = AccountsSettings(password_time_cost=1, password_memory_kib=1024, password_parallelism=1)


def fast_hashing(settings: AccountsSettings = FAST) -> Argon2Hashing:
    return Argon2Hashing(settings.password_time_cost, settings.password_memory_kib, settings.password_parallelism)


# (SQLite opener given the directory, PostgreSQL opener given the schema) per store.
_STORES: dict[str, tuple[Callable[[Path], Awaitable[Any]], Callable[[str], Awaitable[Any]]]] = {
    "accounts": (
        lambda d: SqliteAccountsStore.open(str(d / "accounts.sqlite3")),
        lambda schema: PostgresAccountsStore.open(PG_DSN, schema=schema),
    ),
    "ledger": (
        lambda d: SqliteLedgerStore.open(str(d / "ledger.sqlite3")),
        lambda schema: PostgresLedgerStore.open(PG_DSN, schema=schema),
    ),
    "chat": (
        lambda d: SqliteChatStore.open(str(d / "chat.sqlite3")),
        lambda schema: PostgresChatStore.open(PG_DSN, schema=schema),
    ),
    "social": (
        lambda d: SqliteSocialStore.open(str(d / "social.sqlite3"), str(d / "accounts.sqlite3")),
        lambda schema: PostgresSocialStore.open(PG_DSN, schema=schema),
    ),
}


@asynccontextmanager
async def service_stores(kind: str, directory: Path, *names: str) -> AsyncIterator[list[Any]]:
    """The named stores (accounts, ledger, chat, social) as a services world uses them: SQLite
    files in ``directory``, or all in one fresh PostgreSQL schema (dropped afterwards; skipped
    by name, or failed under CI, when PostgreSQL is down). The services built on them close them."""
    if kind == "sqlite":
        yield [await _STORES[name][0](directory) for name in names]
        return
    async with pg_schema() as schema:
        yield [await _STORES[name][1](schema) for name in names]


# -- privates over aiortc peers (exclusivity counted in packets) ----------------------------


async def watch(url: str, show: str, **join: Any) -> Viewer:
    v = await subscribe(url, show, count=True, pass_through=True, **join)
    assert v.counter is not None
    v.counter.keep_payloads = True
    return v


def after(viewer: Viewer, log: SendLog, t: float) -> list[tuple[int, float]]:
    """(ssrc, sent_at) of the packets this viewer got that were sent after ``t``."""
    assert viewer.counter is not None
    out = []
    for ssrc, digest, _arrived in viewer.counter.payloads:
        sent = log.sent_at(digest)
        assert sent is not None, "a viewer received a payload the performer never sent"
        if sent > t:
            out.append((ssrc, sent))
    return out


async def performer(url: str, show: str, **join: Any) -> Any:
    pub = await publish(url, show, tracks=[PatternTrack(), ToneTrack(noise=True)], **join)
    pub.log = SendLog().attach(pub.pc)  # type: ignore[attr-defined]
    return pub


# -- the forwarding core without sockets ------------------------------------------------------

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
VP8_KEY = bytes([0x10, 0x00, 0x9D, 0x01, 0x2A])  # S=1 PID=0, P=0: keyframe start
VP8_DELTA = bytes([0x10, 0x01, 0x00, 0x00])  # P=1: interframe
VP8_CONT = bytes([0x00, 0xAA, 0xBB])  # not a partition start


class FakeSink:
    def __init__(self, ready: bool = True, fail: bool = False) -> None:
        self.ready = ready
        self.fail = fail
        self.sent: list[bytes] = []
        self.on_ready: list[Any] = []

    def send(self, pkt: bytes) -> bool:
        if self.fail:
            raise AssertionError("a sink must never be called in a way that raises")  # pragma: no cover
        if not self.ready:
            return False
        self.sent.append(pkt)
        return True


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Scheduled:
    def __init__(self) -> None:
        self.calls: list[tuple[float, Any]] = []

    def __call__(self, delay: float, fn: Any) -> None:
        self.calls.append((delay, fn))


def make_producer(
    kind: str = "video",
    mime: str = "video/VP8",
    pt: int = 96,
    rtcp_out: list[bytes] | None = None,
    clock: Clock | None = None,
    sched: Scheduled | None = None,
    producer_id: str = "p1",
    app_data: dict[str, Any] | None = None,
) -> tuple[Producer, MediaStats]:
    stats = MediaStats()
    out = rtcp_out if rtcp_out is not None else []
    clock = clock or Clock()
    sched = sched or Scheduled()
    p = Producer(
        producer_id=producer_id,
        kind=kind,
        mime=mime,
        clock_rate=90000 if kind == "video" else 48000,
        payload_type=pt,
        ssrc=0x11111111,
        rtx_ssrc=0x22222222,
        rtx_payload_type=97,
        codec_parameters={},
        extensions={MID: 4, ABS: 2} if kind == "video" else {MID: 4, LEVEL: 1},
        send_rtcp=lambda b: out.append(b) or True,
        rtcp_ssrc=0xABCDEF01,
        stats=stats,
        cache_size=64,
        keyframes=lambda prod: KeyframeRequester(0.5, clock, prod.send_pli, sched),
        app_data=app_data,
    )
    p.send_clock = clock  # the abs-send-time the node writes: made-up time, so outputs compare
    return p, stats


def make_consumer(
    p: Producer,
    stats: MediaStats,
    *,
    ssrc: int = 0x33333333,
    pt: int = 100,
    sink: FakeSink | None = None,
    clock: Clock | None = None,
    cid: str = "c1",
    policy: RetransmitPolicy = DEFAULT_POLICY,
) -> tuple[Consumer, FakeSink]:
    sink = sink or FakeSink()
    c = Consumer(
        consumer_id=cid,
        producer=p,
        ssrc=ssrc,
        payload_type=pt,
        sink=sink,  # type: ignore[arg-type]
        stats=stats,
        clock=clock or Clock(),
        policy=policy,
    )
    c.profile = p.profile_for({4: 1, 2: 3}, {1: b"v0"})  # viewer leg: mid id 1 = "v0", abs-send-time id 3
    c.ast_id = 3 if p.ast_id else 0  # as WebRtcTransport sets it: padding carries the media's send time
    p.add_consumer(c)
    return c, sink


def pkt(
    seq: int,
    ts: int,
    payload: bytes,
    *,
    pt: int = 96,
    marker: bool = False,
    ssrc: int = 0x11111111,
    exts: list[tuple[int, bytes]] | None = None,
) -> bytes:
    profile, body = build_extensions(exts if exts is not None else [(4, b"0"), (2, b"\x01\x02\x03")])
    section = struct.pack("!HH", profile, len(body) // 4) + body if body else b""
    return build_rtp(
        marker=marker, payload_type=pt, sequence=seq, timestamp=ts, ssrc=ssrc, payload=payload, ext_section=section
    )


# -- real-browser pages -----------------------------------------------------------------------

# -- the C fan-out's test sink --------------------------------------------------------

KEY = bytes(range(30))


def srtp_pair() -> tuple[Session, Session]:
    tx_policy = Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND)
    tx_policy.allow_repeat_tx = True  # as aiortc sets it: NACK replies repeat a sequence number
    tx = Session(tx_policy)
    rx = Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_INBOUND))
    return tx, rx


class CSink:
    """A consumer sink with a real C target: libsrtp protect + sendto a UDP sink on 127.0.0.1."""

    def __init__(self) -> None:
        self.tx, self.rx = srtp_pair()
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.out.bind(("127.0.0.1", 0))
        self.out.setblocking(False)
        self.inbox = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.inbox.bind(("127.0.0.1", 0))
        self.inbox.settimeout(2)
        self.ready = True
        self.closed = False
        self.on_ready: list[Any] = []
        fp = fastpath.fastpath_ext
        self.target = fp.Target(
            adapter.srtp_protect_address(),
            adapter.srtp_session_address(self.tx),
            self.tx,
            self.out.fileno(),
            "127.0.0.1",
            self.inbox.getsockname()[1],
        )

    def send(self, packet: bytes) -> bool:
        return bool(fastpath.fastpath_ext.send(self.target, packet))

    def received(self, n: int) -> list[bytes]:
        """The next ``n`` datagrams, unprotected (raises if one fails authentication)."""
        return [self.rx.unprotect(self.inbox.recv(4096)) for _ in range(n)]

    def nothing_received(self) -> bool:
        self.inbox.settimeout(0.05)
        try:
            self.inbox.recv(4096)
        except (TimeoutError, BlockingIOError):
            return True
        finally:
            self.inbox.settimeout(2)
        return False

    def close(self) -> None:
        self.out.close()
        self.inbox.close()


TIMEOUT_S = 30.0


async def open_page(browser: Any, url: str, logs: list[str]) -> Any:
    page = await browser.new_page()
    name = "performer" if "performer" in url else "viewer"
    page.on("console", lambda msg: logs.append(f"[{name} {msg.type}] {msg.text}"))
    page.on("pageerror", lambda exc: logs.append(f"[{name} pageerror] {exc}"))
    await page.goto(url)
    return page


async def wait_state(page: Any, state: str, logs: list[str]) -> None:
    """Wait for ``window.jasmin.state``; an error state fails at once with its code."""
    js = "s => window.jasmin.state === s || window.jasmin.state === 'error'"
    try:
        await page.wait_for_function(js, arg=state, timeout=TIMEOUT_S * 1000)
    except Exception:  # playwright's TimeoutError: report the page's state instead
        pass
    info = await page.evaluate(
        "({state: jasmin.state, error: jasmin.lastError, status: document.querySelector('#status').textContent})"
    )
    assert info["state"] == state, (info, logs)


async def poll(sample: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool]) -> Any:
    """Sample until ``ok`` holds or TIMEOUT_S passes; returns the last sample."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    value = await sample()
    while not ok(value) and loop.time() < deadline:
        await asyncio.sleep(0.25)
        value = await sample()
    return value


async def wait_line(page: Any, text: str) -> dict[str, Any]:
    """The chat line with ``text`` once the page shows it: its author and colour as rendered."""
    sel = f"#chat-log li:has-text({text!r})"
    await page.wait_for_selector(sel, timeout=15_000)
    return dict(
        await page.eval_on_selector(
            sel, "li => ({who: li.querySelector('strong').textContent, color: li.style.color, kind: li.dataset.kind})"
        )
    )


async def seed_alice_and_mia(node: Any) -> tuple[str, Any]:
    """On ``node`` (an in-process Daemon with accounts): an admin, the performer ``alice`` (300 a
    minute) and the adult member ``mia``. Returns (alice's session token, mia's login: ``.token``,
    ``.principal``)."""
    accounts = node.accounts
    assert accounts is not None
    await accounts.create_admin("boss", "boss-password")
    boss = (await accounts.login("boss", "boss-password")).principal
    await accounts.create_performer(boss, "alice", "alice-password", display_name="Alice", price_per_minute=300)
    performer_token = (await accounts.login("alice", "alice-password")).token
    member = await accounts.register("mia", "mia-password", adult_confirmed=True)
    return performer_token, member


async def alice_live_and_mia_watching(node: Any, browser: Any, logs: list[str]) -> tuple[Any, Any]:
    """:func:`seed_alice_and_mia`, then alice's demo page goes live and mia's watches it (both
    pages in state `live`). Returns (alice's page, mia's page)."""
    performer_token, member = await seed_alice_and_mia(node)
    base = f"http://127.0.0.1:{node.port}"
    performer = await open_page(browser, f"{base}/?role=performer&show=alice&token={performer_token}", logs)
    await performer.click("#go-live")
    await wait_state(performer, "live", logs)
    viewer = await open_page(browser, f"{base}/?role=viewer&show=alice&token={member.token}", logs)
    await viewer.click("#watch")
    await wait_state(viewer, "live", logs)
    return performer, viewer
