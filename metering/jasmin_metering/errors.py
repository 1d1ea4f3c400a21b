"""Errors of the metering package (meter, events, sinks, outbox).

Mapped to signaling error codes or log lines only at the edge.
"""

from __future__ import annotations


class MeteringError(Exception):
    """Base class of metering errors."""


class MeterStateError(MeteringError):
    """A meter call does not fit the session's state (unknown, already started, closed)."""


class SessionClosedError(MeterStateError):
    """The session was stopped: no second may be billed after its closing event."""


class EventFormatError(MeteringError):
    """A CloudEvent is malformed (missing attribute, bad id or sequence)."""


class SinkError(MeteringError):
    """Base class of billing-sink errors."""


class SinkUnavailableError(SinkError):
    """The sink could not take the batch now; the relay retries with backoff."""


class SinkConflictError(SinkError):
    """Events whose (source, id) is already stored with a different payload.

    The sink stored every other event of the batch; the conflicting keys are
    listed so the relay can set them aside instead of retrying forever.
    """

    def __init__(self, conflicts: list[tuple[str, str]]) -> None:
        super().__init__(f"{len(conflicts)} event(s) exist with a different payload: {conflicts[:3]}")
        self.conflicts = conflicts


class OutboxError(MeteringError):
    """Base class of outbox errors."""


class OutboxConflictError(OutboxError):
    """An append reuses (source, id) with a different payload."""


class SequenceGapError(OutboxError):
    """An append would leave a hole in a session's contiguous sequence."""


class OutboxSessionClosedError(OutboxError):
    """An append for a session whose closing event is already in the outbox."""
