"""Fixtures for the metering tests: event generation, a real HTTP receiver, real sinks.

The receiver is an aiohttp server on 127.0.0.1 that checks the HMAC signature and
stores events by (source, id) - what a billing system behind the webhook does.
Sinks against PostgreSQL, Redis and NATS get a unique schema / stream / subject
per test and clean up after themselves; unreachable services skip with a named
reason (fail when CI is set, see tests/realparts.py).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from jasmin_metering.config import (
    EventConfig,
    FileSinkConfig,
    NatsSinkConfig,
    PostgresSinkConfig,
    RedisStreamSinkConfig,
    SqliteSinkConfig,
    WebhookSinkConfig,
)
from jasmin_metering.events import CloudEvent, EventFactory
from jasmin_metering.file_sink import FileSink
from jasmin_metering.meter import Meter, SessionSpec
from jasmin_metering.nats_sink import NatsSink
from jasmin_metering.postgres_sink import PostgresSink
from jasmin_metering.redis_sink import RedisStreamSink
from jasmin_metering.sink import BillingSink
from jasmin_metering.sqlite_sink import SqliteSink
from jasmin_metering.webhook_sink import SIGNATURE_HEADER, WebhookSink, verify_signature
from tests.realparts import (
    HOST,
    NATS_PORT,
    NATS_URL,
    PG_DSN,
    REDIS_PORT,
    REDIS_URL,
    FakeClock,
    pg_schema,
    require,
    unique_name,
)

SECRET = "test-secret-not-for-production"


def make_events(sessions: int, seconds: int, *, close: bool = True, t0: float = 1_780_000_000.0) -> list[CloudEvent]:
    """Events of ``sessions`` privates of ``seconds`` billed seconds each, interleaved per second."""
    meter = Meter()
    ef = EventFactory(EventConfig(), lambda: t0 + seconds + 1)
    for i in range(sessions):
        meter.start(SessionSpec("private", f"S{i:03d}", f"m{i}", "p1", f"wallet:m{i}", 199), t0)
    out: list[CloudEvent] = []
    for k in range(1, seconds + 1):
        out += [ef.usage(r) for r in meter.advance(t0 + k)]
    if close:
        for i in range(sessions):
            recs, closed = meter.stop(f"S{i:03d}", t0 + seconds + 0.4, "member_left")
            out += [ef.usage(r) for r in recs] + [ef.closed(closed)]
    return out


@dataclass
class Receiver:
    """A billing system behind the webhook: dedupes on (source, id), 409 on conflicts."""

    clock: FakeClock
    fail_first: int = 0
    stored: dict[tuple[str, str], str] = field(default_factory=dict)
    posts: int = 0
    bad_signatures: int = 0
    answered_503: int = 0
    received: Counter[tuple[str, str]] = field(default_factory=Counter)

    async def handle(self, request: web.Request) -> web.Response:
        self.posts += 1
        body = await request.read()
        if not verify_signature(SECRET, request.headers.get(SIGNATURE_HEADER, ""), body, self.clock()):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.fail_first > 0:
            self.fail_first -= 1
            self.answered_503 += 1
            return web.Response(status=503)
        assert request.content_type == "application/cloudevents-batch+json"
        conflicts = []
        for obj in json.loads(body):
            ev = CloudEvent.from_dict(obj)
            self.received[ev.key] += 1
            prev = self.stored.get(ev.key)
            if prev is None:
                self.stored[ev.key] = ev.content_hash()
            elif prev != ev.content_hash():
                conflicts.append({"source": ev.source, "id": ev.id})
        if conflicts:
            return web.json_response({"conflicts": conflicts}, status=409)
        return web.Response(status=204)


async def start_receiver(rcv: Receiver, port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve ``rcv`` on 127.0.0.1:port (0 = any free port)."""
    app = web.Application()
    app.router.add_post("/billing", rcv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    await site.start()
    server: Any = site._server
    return runner, int(server.sockets[0].getsockname()[1])


def webhook_config(port: int) -> WebhookSinkConfig:
    return WebhookSinkConfig(
        url=f"http://{HOST}:{port}/billing", secret=SECRET, max_attempts=3, initial_backoff_ms=5, max_backoff_ms=20
    )


@asynccontextmanager
async def receiver_ctx(clock: FakeClock) -> AsyncIterator[tuple[Receiver, int]]:
    """A running receiver and its port."""
    rcv = Receiver(clock)
    runner, port = await start_receiver(rcv)
    try:
        yield rcv, port
    finally:
        await runner.cleanup()


@asynccontextmanager
async def pg_ctx() -> AsyncIterator[PostgresSinkConfig]:
    """A PostgreSQL sink config on a fresh schema."""
    async with pg_schema() as schema:
        yield PostgresSinkConfig(dsn=PG_DSN, schema=schema, pool_max=2)


@asynccontextmanager
async def redis_ctx() -> AsyncIterator[RedisStreamSinkConfig]:
    """A Redis sink config on a fresh stream; its keys are deleted afterwards."""
    require("Redis", REDIS_PORT)
    import redis.asyncio as aioredis

    tag = unique_name("t")
    cfg = RedisStreamSinkConfig(
        url=REDIS_URL, stream=f"jasmin:test:{{{tag}}}", seen_prefix=f"jasmin:test:{{{tag}}}:seen:", dedupe_ttl_s=600
    )
    yield cfg
    r = aioredis.from_url(REDIS_URL)
    keys = [k async for k in r.scan_iter(match=f"jasmin:test:{{{tag}}}*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()


async def redis_stream_keys(cfg: RedisStreamSinkConfig) -> Counter[tuple[str, str]]:
    """(source, id) -> how many stream entries carry it."""
    import redis.asyncio as aioredis

    r = aioredis.from_url(cfg.url)
    try:
        entries: Any = await r.xrange(cfg.stream)
    finally:
        await r.aclose()
    return Counter((f[b"source"].decode(), f[b"id"].decode()) for _, f in entries)


@asynccontextmanager
async def nats_ctx() -> AsyncIterator[NatsSinkConfig]:
    """A NATS sink config on a fresh stream, deleted afterwards."""
    require("NATS JetStream", NATS_PORT)
    import nats

    name = unique_name("JT").upper()
    cfg = NatsSinkConfig(
        servers=(NATS_URL,), stream=name, subject=f"jasmin.test.{name.lower()}", duplicate_window_s=120
    )
    yield cfg
    nc = await nats.connect(servers=[NATS_URL])
    try:
        await nc.jetstream().delete_stream(name)
    except Exception:
        pass
    await nc.close()


@pytest.fixture
async def receiver(clock: FakeClock) -> AsyncIterator[tuple[Receiver, int]]:
    async with receiver_ctx(clock) as r:
        yield r


@pytest.fixture
async def pg_sink_config() -> AsyncIterator[PostgresSinkConfig]:
    async with pg_ctx() as c:
        yield c


@pytest.fixture
async def redis_sink_config() -> AsyncIterator[RedisStreamSinkConfig]:
    async with redis_ctx() as c:
        yield c


@pytest.fixture
async def nats_sink_config() -> AsyncIterator[NatsSinkConfig]:
    async with nats_ctx() as c:
        yield c


async def nats_stream_keys(cfg: NatsSinkConfig) -> Counter[tuple[str, str]]:
    """(source, id) -> how many stream messages carry it."""
    import nats

    nc = await nats.connect(servers=list(cfg.servers))
    try:
        js = nc.jetstream()
        info = await js.stream_info(cfg.stream)
        out: Counter[tuple[str, str]] = Counter()
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(cfg.stream, seq)
            assert msg.data is not None and msg.headers is not None
            ev = CloudEvent.from_json(msg.data)
            assert msg.headers["Nats-Msg-Id"] == ev.id
            out[ev.key] += 1
        return out
    finally:
        await nc.close()


async def pg_keys(cfg: PostgresSinkConfig) -> Counter[tuple[str, str]]:
    """(source, id) -> how many rows carry it (the primary key makes it 0 or 1)."""
    import asyncpg

    con = await asyncpg.connect(cfg.dsn, server_settings={"search_path": cfg.schema})
    try:
        rows = await con.fetch(f"SELECT source, id, body FROM {cfg.table}")
    finally:
        await con.close()
    for r in rows:
        assert json.loads(r["body"])["id"] == r["id"]
    return Counter((r["source"], r["id"]) for r in rows)


Counts = Callable[[], Awaitable[Counter[tuple[str, str]]]]
KINDS = ["file", "sqlite", "postgres", "webhook", "redis", "nats"]


@asynccontextmanager
async def open_sink(
    kind: str, tmp_path: os.PathLike[str], clock: FakeClock
) -> AsyncIterator[tuple[BillingSink, Counts]]:
    """A real sink of ``kind`` and a function counting what it holds per (source, id)."""
    async with AsyncExitStack() as stack:
        sink: BillingSink
        counts: Counts
        if kind == "file":
            fs = FileSink(FileSinkConfig(path=os.path.join(tmp_path, f"log-{kind}.jsonl"), fsync_interval_ms=5))

            async def counts_file() -> Counter[tuple[str, str]]:
                return Counter(e.key for e in fs.stored())

            sink, counts = fs, counts_file
        elif kind == "sqlite":
            ss = SqliteSink(SqliteSinkConfig(path=os.path.join(tmp_path, "sink.sqlite3")))

            async def counts_sqlite() -> Counter[tuple[str, str]]:
                return Counter((s, i) for s, i, _ in ss.stored())

            sink, counts = ss, counts_sqlite
        elif kind == "postgres":
            cfg_pg = await stack.enter_async_context(pg_ctx())
            sink, counts = PostgresSink(cfg_pg), (lambda: pg_keys(cfg_pg))
        elif kind == "webhook":
            rcv, port = await stack.enter_async_context(receiver_ctx(clock))

            async def counts_webhook() -> Counter[tuple[str, str]]:
                return Counter({k: 1 for k in rcv.stored})

            sink, counts = WebhookSink(webhook_config(port), clock), counts_webhook
        elif kind == "redis":
            cfg_r = await stack.enter_async_context(redis_ctx())
            sink, counts = RedisStreamSink(cfg_r), (lambda: redis_stream_keys(cfg_r))
        else:
            cfg_n = await stack.enter_async_context(nats_ctx())
            sink, counts = NatsSink(cfg_n), (lambda: nats_stream_keys(cfg_n))
        try:
            yield sink, counts
        finally:
            await sink.close()
