"""jasmin_metering: usage metering, CloudEvents usage events, billing sinks and the durable outbox.

Imports nothing of ours. The pieces, in the order data flows:

* ``meter.Meter`` - pure per-second meter (time passed in) -> ``UsageRecord`` / ``SessionClosed``
* ``events.EventFactory`` - records -> CloudEvents 1.0 (JSON)
* ``outbox.Outbox`` - synchronous, durable append (SQLite WAL) with per-session seq counters
* ``outbox.OutboxRelay`` - at-least-once delivery to every ``sink.BillingSink``, one cursor each
* sinks: ``file_sink.FileSink`` (default), ``sqlite_sink.SqliteSink``, ``postgres_sink.PostgresSink``,
  ``webhook_sink.WebhookSink``, ``redis_sink.RedisStreamSink``, ``nats_sink.NatsSink``

The network sinks import their client libraries; import them from their modules.
"""

from jasmin_metering.config import (
    EventConfig,
    FileSinkConfig,
    NatsSinkConfig,
    OutboxConfig,
    PostgresSinkConfig,
    RedisStreamSinkConfig,
    RelayConfig,
    SqliteSinkConfig,
    WebhookSinkConfig,
)
from jasmin_metering.events import CloudEvent, EventFactory, event_id
from jasmin_metering.meter import GrantTag, Meter, SessionClosed, SessionSpec, UsageRecord
from jasmin_metering.outbox import Outbox, OutboxRelay
from jasmin_metering.sink import BillingSink

__all__ = [
    "BillingSink",
    "CloudEvent",
    "EventConfig",
    "EventFactory",
    "FileSinkConfig",
    "GrantTag",
    "Meter",
    "NatsSinkConfig",
    "Outbox",
    "OutboxConfig",
    "OutboxRelay",
    "PostgresSinkConfig",
    "RedisStreamSinkConfig",
    "RelayConfig",
    "SessionClosed",
    "SessionSpec",
    "SqliteSinkConfig",
    "UsageRecord",
    "WebhookSinkConfig",
    "event_id",
]
