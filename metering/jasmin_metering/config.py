"""Configuration dataclasses of the metering package, one per sink.

The daemon's config tree embeds these (section ``metering``); every default is
the embedded, single-machine choice. Durations are named with their unit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EventConfig:
    """How usage events are named (``metering.events``)."""

    # type = f"{type_prefix}.{kind}.usage.v1" / f"{type_prefix}.{kind}.closed.v1"
    type_prefix: str = "com.jasmin.live"
    # source = source_prefix + session_id
    source_prefix: str = "urn:jasmin:live:session:"
    # dataschema = f"{dataschema_base}/{kind}-usage/v1.json" when set.
    dataschema_base: str = ""
    asset: str = "CREDIT"
    # amount / asset_scale = credits (1 credit = 6000 units, docs/money.md).
    asset_scale: int = 6000


@dataclass(frozen=True)
class OutboxConfig:
    """The durable outbox (``metering.outbox``): one SQLite file in WAL mode."""

    path: str = "var/billing-outbox.sqlite3"
    # NORMAL: a commit is a WAL append without fsync (~20 us), survives a process
    # kill; an OS crash may lose the commits since the last checkpoint, which the
    # relay runs every checkpoint_interval_ms. FULL fsyncs every commit (0.1-10 ms
    # inside the media loop): choose it only on hardware where that is cheap.
    synchronous: str = "NORMAL"
    checkpoint_interval_ms: int = 1000


@dataclass(frozen=True)
class RelayConfig:
    """The relay from the outbox to the sinks (``metering.relay``)."""

    batch_max: int = 500
    # Exponential backoff per sink: 50 ms, 100 ms, ... capped at 10 s, with
    # jitter in [0.5, 1.0] x delay so sinks coming back are not hit in lockstep.
    initial_backoff_ms: int = 50
    max_backoff_ms: int = 10_000
    # A wake-up when nothing signalled (events written by another process).
    poll_interval_ms: int = 1000
    # Delete events every configured sink has acked (the sinks keep the record).
    prune_acked: bool = True


@dataclass(frozen=True)
class FileSinkConfig:
    """Local append-only JSON-lines log (``metering.sinks.file``), the embedded default."""

    path: str = "var/billing-events.jsonl"
    # Group commit: fsync when this many events wait, or fsync_interval_ms after
    # the first unsynced write, whichever comes first. deliver() returns only
    # after the fsync covering its events, so an ack always means durable.
    fsync_every_events: int = 256
    fsync_interval_ms: int = 200


@dataclass(frozen=True)
class SqliteSinkConfig:
    """SQLite table of events (``metering.sinks.sqlite``)."""

    path: str = "var/billing-events.sqlite3"
    table: str = "billing_events"


@dataclass(frozen=True)
class PostgresSinkConfig:
    """PostgreSQL table of events (``metering.sinks.postgres``)."""

    dsn: str = "postgresql://postgres@127.0.0.1:5432/jasmin"
    table: str = "billing_events"
    # search_path for the pool; empty = the server default.
    schema: str = ""
    pool_min: int = 1
    pool_max: int = 4
    connect_timeout_s: float = 5.0


@dataclass(frozen=True)
class WebhookSinkConfig:
    """HTTP webhook (``metering.sinks.webhook``): POST of a CloudEvents JSON batch.

    Signed with ``Jasmin-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``.
    """

    url: str = ""
    secret: str = ""
    timeout_s: float = 5.0
    # Attempts inside one deliver() (50, 100, 200 ms ... backoff), then the relay's
    # own, longer backoff takes over.
    max_attempts: int = 4
    initial_backoff_ms: int = 50
    max_backoff_ms: int = 2000


@dataclass(frozen=True)
class RedisStreamSinkConfig:
    """Redis Streams (``metering.sinks.redis``): XADD + SET NX in one Lua script.

    ``stream`` and ``seen_prefix`` share the ``{usage}`` hash tag so one script's
    keys live in one Redis Cluster slot.
    """

    url: str = "redis://127.0.0.1:6379/0"
    stream: str = "jasmin:billing:{usage}"
    seen_prefix: str = "jasmin:billing:{usage}:seen:"
    # The dedupe window: a (source, id) re-sent later than this is stored again.
    # The outbox re-sends only what was never acked, within minutes of a fault.
    dedupe_ttl_s: int = 30 * 86400
    # XADD MAXLEN ~ n (0 = unbounded): consumers must keep up within it.
    maxlen: int = 0


@dataclass(frozen=True)
class NatsSinkConfig:
    """NATS JetStream (``metering.sinks.nats``): publish with ``Nats-Msg-Id`` = event id."""

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    stream: str = "JASMIN_BILLING"
    subject: str = "jasmin.billing.usage"
    # JetStream drops a message whose Nats-Msg-Id it saw within this window. It
    # keeps every id of the window in memory: 1 h at 1000 events/s is 3.6 M ids.
    # A re-send after the window is stored twice: consumers dedupe on (source, id).
    duplicate_window_s: int = 3600
    connect_timeout_s: float = 2.0
    publish_timeout_s: float = 5.0
