"""The billing-sink protocol.

A sink takes batches of CloudEvents and must be idempotent on (source, id):
delivering the same event any number of times leaves it stored once, and the
repeat answers success (Lago #3049: a duplicate answered 422 made retries look
like failures). The same key with a different payload (content hash, see
``CloudEvent.content_hash``) is a conflict: the sink stores the rest of the batch
and raises ``SinkConflictError`` naming the conflicting keys.

Transient failures raise ``SinkUnavailableError``; the outbox relay retries the
batch with backoff, so ``deliver`` returning means "durably stored".
"""

from __future__ import annotations

import re
from typing import Protocol, Sequence, runtime_checkable

from jasmin_metering.events import CloudEvent

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}\Z")


@runtime_checkable
class BillingSink(Protocol):
    """Where usage events end up. Idempotent on (source, id)."""

    name: str

    async def deliver(self, events: Sequence[CloudEvent]) -> None:
        """Store every event durably, each at most once."""
        ...

    async def close(self) -> None:
        """Release connections and files; deliver() may reopen them."""
        ...


def sql_ident(name: str) -> str:
    """Validate a table or schema name before it is put into SQL text."""
    if not _IDENT.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


def dedupe_batch(events: Sequence[CloudEvent]) -> tuple[list[CloudEvent], list[tuple[str, str]]]:
    """Drop repeats inside one batch; same key with another hash is a conflict."""
    seen: dict[tuple[str, str], str] = {}
    out: list[CloudEvent] = []
    conflicts: list[tuple[str, str]] = []
    for ev in events:
        h = ev.content_hash()
        prev = seen.get(ev.key)
        if prev is None:
            seen[ev.key] = h
            out.append(ev)
        elif prev != h:
            conflicts.append(ev.key)
    return out, conflicts
