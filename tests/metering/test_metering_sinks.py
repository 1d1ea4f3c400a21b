"""Every billing sink against the real thing on this machine: exactly once, duplicates answer
success, conflicts are named, failures are retryable and lose nothing."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import AsyncIterator

import pytest

from jasmin_metering.config import (
    FileSinkConfig,
    NatsSinkConfig,
    PostgresSinkConfig,
    RedisStreamSinkConfig,
)
from jasmin_metering.errors import SinkConflictError, SinkUnavailableError
from jasmin_metering.events import CloudEvent
from jasmin_metering.file_sink import FileSink
from jasmin_metering.nats_sink import NatsSink
from jasmin_metering.postgres_sink import PostgresSink
from jasmin_metering.redis_sink import RedisStreamSink
from jasmin_metering.sink import BillingSink
from jasmin_metering.webhook_sink import WebhookSink, sign, verify_signature
from tests.metering.conftest import (
    KINDS,
    Counts,
    Receiver,
    make_events,
    open_sink,
    pg_keys,
    redis_stream_keys,
    webhook_config,
)
from tests.realparts import FakeClock, closed_port


@pytest.fixture(params=KINDS)
async def real_sink(
    request: pytest.FixtureRequest, tmp_path: os.PathLike[str], clock: FakeClock
) -> AsyncIterator[tuple[BillingSink, Counts]]:
    async with open_sink(request.param, tmp_path, clock) as pair:
        yield pair


async def test_each_event_stored_exactly_once_after_duplicate_deliveries(
    real_sink: tuple[BillingSink, Counts],
) -> None:
    sink, counts = real_sink
    events = make_events(3, 20)
    await sink.deliver(events[:40])
    await sink.deliver(events[20:])  # overlaps the first batch
    await sink.deliver(events + events[:5])  # everything again, with repeats inside the batch
    got = await counts()
    assert set(got) == {e.key for e in events}
    assert all(n == 1 for n in got.values()), [k for k, n in got.items() if n != 1][:3]


async def test_lago_3049_duplicate_answers_success(real_sink: tuple[BillingSink, Counts]) -> None:
    """Lago #3049: re-sending stored ids answered 422, so retries looked like failures.
    Every sink answers a pure duplicate batch with success."""
    sink, counts = real_sink
    events = make_events(1, 5)
    await sink.deliver(events)
    for _ in range(3):
        await sink.deliver(events)  # no exception = success
    assert sum((await counts()).values()) == len(events)


async def test_same_id_different_payload_is_a_named_conflict(real_sink: tuple[BillingSink, Counts]) -> None:
    sink, counts = real_sink
    events = make_events(1, 4)
    await sink.deliver(events[:2])
    forged = CloudEvent.from_dict({**events[1].to_dict(), "data": {**events[1].data, "amount": 1}})
    if isinstance(sink, NatsSink):
        # JetStream dedupes by Nats-Msg-Id alone and cannot see the payload: the first
        # stored wins, silently. The outbox refuses such a conflict before any sink.
        await sink.deliver([forged] + events[2:])
        assert await counts() == Counter({e.key: 1 for e in events})
        return
    with pytest.raises(SinkConflictError) as ei:
        await sink.deliver([forged] + events[2:])
    assert ei.value.conflicts == [forged.key]
    got = await counts()
    assert set(got) == {e.key for e in events} and all(n == 1 for n in got.values())


async def test_file_sink_group_commit_one_fsync_for_many_batches(tmp_path: os.PathLike[str]) -> None:
    sink = FileSink(
        FileSinkConfig(path=os.path.join(tmp_path, "g.jsonl"), fsync_every_events=5, fsync_interval_ms=60_000)
    )
    events = make_events(1, 5, close=False)
    # five concurrent single-event batches reach the 5-event threshold: one fsync acks all
    await asyncio.gather(*[sink.deliver([e]) for e in events])
    assert sink.fsyncs == 1
    await sink.close()
    timed = FileSink(
        FileSinkConfig(path=os.path.join(tmp_path, "t.jsonl"), fsync_every_events=1000, fsync_interval_ms=1)
    )
    await timed.deliver(events[:1])  # below the count: the timer fsyncs it
    assert timed.fsyncs == 1
    await timed.close()


async def test_file_sink_cuts_a_torn_tail_and_keeps_dedupe_across_restarts(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "b.jsonl")
    events = make_events(1, 6)
    s1 = FileSink(FileSinkConfig(path=path, fsync_interval_ms=1))
    await s1.deliver(events[:4])
    await s1.close()
    with open(path, "ab") as f:  # a crash in the middle of a write
        f.write(events[4].to_json()[:30])
    s2 = FileSink(FileSinkConfig(path=path, fsync_interval_ms=1))
    await s2.deliver(events)  # 0-3 are known after the rescan, 4 is written whole this time
    await s2.close()
    assert [e.key for e in s2.stored()] == [e.key for e in events]


async def test_webhook_signature_is_hmac_sha256_of_timestamp_and_body() -> None:
    body = b'[{"id":"x"}]'
    header = sign("k", body, 1_780_000_000)
    assert header.startswith("t=1780000000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify_signature("k", header, body, 1_780_000_100)
    assert not verify_signature("other", header, body, 1_780_000_100)
    assert not verify_signature("k", header, body + b" ", 1_780_000_100)
    assert not verify_signature("k", header, body, 1_780_001_000)  # older than 300 s
    assert not verify_signature("k", "garbage", body, 1_780_000_000)


async def test_webhook_retries_503_with_backoff_then_delivers(receiver: tuple[Receiver, int], clock: FakeClock) -> None:
    rcv, port = receiver
    rcv.fail_first = 2
    sink = WebhookSink(webhook_config(port), clock)
    events = make_events(1, 3)
    await sink.deliver(events)
    assert rcv.answered_503 == 2 and sink.attempts == 3
    assert set(rcv.stored) == {e.key for e in events}
    rcv.fail_first = 10  # longer than max_attempts: the relay will retry later
    with pytest.raises(SinkUnavailableError):
        await sink.deliver(events)
    await sink.close()


async def test_webhook_wrong_secret_is_refused_and_retried(receiver: tuple[Receiver, int], clock: FakeClock) -> None:
    rcv, port = receiver
    cfg = webhook_config(port)
    from dataclasses import replace

    sink = WebhookSink(replace(cfg, secret="wrong"), clock)
    with pytest.raises(SinkUnavailableError):
        await sink.deliver(make_events(1, 1))
    assert rcv.bad_signatures == cfg.max_attempts and not rcv.stored
    await sink.close()


async def test_sinks_on_a_closed_port_raise_unavailable(clock: FakeClock) -> None:
    port = closed_port()
    events = make_events(1, 1)
    sinks: list[BillingSink] = [
        WebhookSink(webhook_config(port), clock),
        RedisStreamSink(RedisStreamSinkConfig(url=f"redis://127.0.0.1:{port}/0")),
        NatsSink(NatsSinkConfig(servers=(f"nats://127.0.0.1:{port}",), connect_timeout_s=0.5)),
        PostgresSink(PostgresSinkConfig(dsn=f"postgresql://postgres@127.0.0.1:{port}/test", connect_timeout_s=1)),
    ]
    for s in sinks:
        with pytest.raises(SinkUnavailableError):
            await s.deliver(events)
        await s.close()


async def test_openmeter_5118_failed_write_then_retry_counts_once(redis_sink_config: RedisStreamSinkConfig) -> None:
    """OpenMeter #5118: the id was claimed (SET NX) before the write and never released when the
    write failed, so the retry was answered "duplicate" and the event was metered zero times.
    Here the mark is written by the same script, after the XADD: a failed XADD leaves no mark."""
    import redis.asyncio as aioredis

    cfg = redis_sink_config
    r = aioredis.from_url(cfg.url)
    await r.set(cfg.stream, "not a stream")  # XADD will fail with WRONGTYPE
    sink = RedisStreamSink(cfg)
    events = make_events(1, 3, close=False)
    with pytest.raises(SinkUnavailableError):
        await sink.deliver(events)
    assert await r.exists(*[sink.seen_key(e) for e in events]) == 0  # nothing claimed
    await r.delete(cfg.stream)
    await r.aclose()
    await sink.deliver(events)  # the retry
    await sink.deliver(events)  # and a duplicate
    got = await redis_stream_keys(cfg)
    assert got == Counter({e.key: 1 for e in events})
    await sink.close()


async def test_openmeter_5118_postgres_failed_batch_leaves_no_mark(pg_sink_config: PostgresSinkConfig) -> None:
    """The same lesson on PostgreSQL: the row is the mark, so a failed transaction marks nothing."""
    sink = PostgresSink(pg_sink_config)
    events = make_events(1, 3, close=False)
    await sink.deliver(events[:1])
    bad = CloudEvent.from_dict({**events[1].to_dict(), "data": {**events[1].data, "x": "\x00"}})
    import asyncpg

    with pytest.raises(asyncpg.exceptions.UntranslatableCharacterError):
        await sink.deliver([bad])  # PostgreSQL refuses NUL in jsonb: the transaction fails whole
    await sink.deliver(events)
    assert await pg_keys(pg_sink_config) == Counter({e.key: 1 for e in events})
    await sink.close()


async def test_nats_duplicate_window_is_configured(nats_sink_config: NatsSinkConfig) -> None:
    import nats

    sink = NatsSink(nats_sink_config)
    events = make_events(1, 2, close=False)
    await sink.deliver(events)
    await sink.deliver(events)
    assert sink.duplicates == 2
    nc = await nats.connect(servers=list(nats_sink_config.servers))
    info = await nc.jetstream().stream_info(nats_sink_config.stream)
    await nc.close()
    assert info.config.duplicate_window == nats_sink_config.duplicate_window_s
    await sink.close()
