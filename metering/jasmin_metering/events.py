"""CloudEvents 1.0 usage events, JSON encoded (docs/money.md, "Usage events").

* ``source`` = the session URN, ``id`` = ``<session_id>:<seq zero-padded to 12>``,
  ``sequence`` = the same padded seq (contiguous from 1 within the source),
  ``partitionkey`` = ``wallet/<wallet_id>``, ``subject`` = ``member/<member_id>``.
* ``time`` = when the billed second completed, ``recordedtime`` = when the event
  was created; both RFC 3339 UTC with milliseconds.
* Amounts are integers in the ledger's smallest unit (``asset_scale`` units = 1 credit).
* The closing event continues the sequence (seq = last usage seq + 1) so a consumer
  holding sequence 1..N with a closing event at N knows it has everything; its
  ``data`` carries ``last_seq`` (the last *usage* seq), totals and the reason.

No MessagePack format exists in the CloudEvents spec, so none is produced here.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from jasmin_metering.config import EventConfig
from jasmin_metering.errors import EventFormatError
from jasmin_metering.meter import US, SessionClosed, UsageRecord

SEQ_WIDTH = 12  # 10^12 seconds is 31,000 years of one session


def event_id(session_id: str, seq: int) -> str:
    """The deterministic event id: a retry or replay produces the same id."""
    return f"{session_id}:{seq:0{SEQ_WIDTH}d}"


def rfc3339_us(t_us: int) -> str:
    """Integer epoch microseconds to RFC 3339 UTC with milliseconds."""
    d = _dt.datetime.fromtimestamp(t_us // US, tz=_dt.UTC)
    ms = (t_us % US) // 1000
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same event always has the same bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class CloudEvent:
    """One CloudEvents 1.0 event (structured mode)."""

    id: str
    source: str
    type: str
    time: str
    sequence: str
    partitionkey: str
    subject: str
    recordedtime: str
    data: Mapping[str, Any]
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    specversion: str = "1.0"
    _hash: str = field(default="", compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The structured-mode JSON object."""
        d: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time,
            "subject": self.subject,
            "datacontenttype": self.datacontenttype,
            "sequence": self.sequence,
            "partitionkey": self.partitionkey,
            "recordedtime": self.recordedtime,
            "data": dict(self.data),
        }
        if self.dataschema:
            d["dataschema"] = self.dataschema
        return d

    def to_json(self) -> bytes:
        """Canonical JSON bytes (``application/cloudevents+json``)."""
        return canonical_json(self.to_dict())

    @property
    def key(self) -> tuple[str, str]:
        """The idempotency key every sink dedupes on."""
        return (self.source, self.id)

    @property
    def seq(self) -> int:
        """The integer sequence number."""
        return int(self.sequence)

    @property
    def is_closing(self) -> bool:
        """True for the session's closing event."""
        return bool(self.data.get("closing", False))

    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON *without* ``recordedtime``.

        ``recordedtime`` changes when the same occurrence is re-recorded (the
        CloudEvents recordedtime extension), which is not a different event; any
        other difference under the same (source, id) is a conflict.
        """
        if self._hash:
            return self._hash
        d = self.to_dict()
        d.pop("recordedtime", None)
        h = hashlib.sha256(canonical_json(d)).hexdigest()
        object.__setattr__(self, "_hash", h)
        return h

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CloudEvent":
        """Parse a structured-mode object; raises EventFormatError when incomplete."""
        try:
            if d["specversion"] != "1.0":
                raise EventFormatError(f"specversion {d['specversion']!r}")
            ev = cls(
                id=str(d["id"]),
                source=str(d["source"]),
                type=str(d["type"]),
                time=str(d["time"]),
                sequence=str(d["sequence"]),
                partitionkey=str(d["partitionkey"]),
                subject=str(d["subject"]),
                recordedtime=str(d["recordedtime"]),
                data=dict(d["data"]),
                datacontenttype=str(d.get("datacontenttype", "application/json")),
                dataschema=d.get("dataschema"),
            )
        except (KeyError, TypeError) as e:
            raise EventFormatError(f"missing or bad attribute: {e}") from e
        if not ev.sequence.isdigit():
            raise EventFormatError(f"sequence must be digits: {ev.sequence!r}")
        return ev

    @classmethod
    def from_json(cls, raw: bytes | str) -> "CloudEvent":
        """Parse canonical (or any) structured-mode JSON."""
        try:
            obj = json.loads(raw)
        except ValueError as e:
            raise EventFormatError(f"not JSON: {e}") from e
        if not isinstance(obj, dict):
            raise EventFormatError("a CloudEvent is a JSON object")
        return cls.from_dict(obj)


def batch_json(events: list[CloudEvent]) -> bytes:
    """``application/cloudevents-batch+json``: a JSON array of events."""
    return canonical_json([e.to_dict() for e in events])


class EventFactory:
    """Turns meter output into CloudEvents; the clock stamps ``recordedtime``."""

    def __init__(self, config: EventConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock

    def source(self, session_id: str) -> str:
        """The session URN (the CloudEvents ``source``)."""
        return self.config.source_prefix + session_id

    def _schema(self, kind: str, what: str) -> str | None:
        base = self.config.dataschema_base
        return f"{base}/{kind}-{what}/v1.json" if base else None

    def usage(self, rec: UsageRecord) -> CloudEvent:
        """The event of one billed second."""
        s = rec.spec
        c = self.config
        data: dict[str, Any] = {
            "session_id": s.session_id,
            "kind": s.kind,
            "member_id": s.member_id,
            "performer_id": s.performer_id,
            "wallet_id": s.wallet_id,
            "seq": rec.seq,
            "interval_start": rfc3339_us(rec.interval_start_us),
            "interval_end": rfc3339_us(rec.interval_end_us),
            "units": rec.units,
            "unit": "second",
            "rate_per_unit": s.rate_per_second,
            "amount": rec.amount,
            "asset": c.asset,
            "asset_scale": c.asset_scale,
            "reservation_id": rec.grant.reservation_id if rec.grant else None,
            "grant_request_number": rec.grant.request_number if rec.grant else None,
            "final": rec.grant.final if rec.grant else False,
        }
        return CloudEvent(
            id=event_id(s.session_id, rec.seq),
            source=self.source(s.session_id),
            type=f"{c.type_prefix}.{s.kind}.usage.v1",
            time=rfc3339_us(rec.interval_end_us),
            sequence=f"{rec.seq:0{SEQ_WIDTH}d}",
            partitionkey=f"wallet/{s.wallet_id}",
            subject=f"member/{s.member_id}",
            recordedtime=rfc3339_us(round(self._clock() * US)),
            data=data,
            dataschema=self._schema(s.kind, "usage"),
        )

    def closed(self, closed: SessionClosed) -> CloudEvent:
        """The closing event: sequence = last usage seq + 1, totals and reason in ``data``."""
        s = closed.spec
        c = self.config
        seq = closed.last_seq + 1
        data: dict[str, Any] = {
            "session_id": s.session_id,
            "kind": s.kind,
            "member_id": s.member_id,
            "performer_id": s.performer_id,
            "wallet_id": s.wallet_id,
            "seq": seq,
            "closing": True,
            "last_seq": closed.last_seq,
            "billed_seconds": closed.billed_seconds,
            "total_amount": closed.total_amount,
            "asset": c.asset,
            "asset_scale": c.asset_scale,
            "rate_per_unit": s.rate_per_second,
            "reason": closed.reason,
            "started_at": rfc3339_us(closed.started_at_us),
            "ended_at": rfc3339_us(closed.ended_at_us),
            "unbilled_ms": closed.unbilled_us // 1000,
            "over_grant_ms": closed.over_grant_us // 1000,
        }
        return CloudEvent(
            id=event_id(s.session_id, seq),
            source=self.source(s.session_id),
            type=f"{c.type_prefix}.{s.kind}.closed.v1",
            time=rfc3339_us(closed.ended_at_us),
            sequence=f"{seq:0{SEQ_WIDTH}d}",
            partitionkey=f"wallet/{s.wallet_id}",
            subject=f"member/{s.member_id}",
            recordedtime=rfc3339_us(round(self._clock() * US)),
            data=data,
            dataschema=self._schema(s.kind, "closed"),
        )
