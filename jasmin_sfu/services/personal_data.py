"""The seam between privacy rights and every service that holds data about a person.

docs/product.md's rights (data download, "forget my data", retention limits) cut
across every store: accounts, chat logs, favourites, ratings, messages, usage.
Rather than the privacy service reaching into each store, each service that
keeps rows about a user registers one ``PersonalDataSource`` with the
``PersonalDataRegistry`` (app.py wires them). The privacy service then:

* builds the data download from ``export`` of every source (one key per
  source, one list of rows per table), so a new table about members that is
  not exported is a bug a test can find;
* erases through ``erase`` of every source, in registration order, and keeps
  financial records (the ledger registers a source whose ``erase`` keeps the
  rows under the pseudonymous id: the law's 10 years beat the right to erasure);
* runs retention through ``purge`` with one ``RetentionPolicy`` (times injected).

Every method must be idempotent: erasure and retention are retried after a
crash, and a second run must find nothing left to do (and say 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class RetentionPolicy:
    """The limits of docs/product.md, as absolute cut-offs in microseconds since the epoch.

    ``now_us`` is the run's time; a source deletes what is older than the
    cut-off that applies to it (a chat line of a member whose last purchase is
    before ``usage_before_us``, a guest's rows before ``guest_before_us`` ...).
    ``last_purchase_us`` maps a member id to its last purchase (absent: never
    bought, so the member's own creation time counts).
    """

    now_us: int
    usage_before_us: int  # chat logs and usage data: 120 days after the last purchase
    guest_before_us: int  # guest data: 15 days
    identity_before_us: int  # identity-check data: 5 days
    inactive_before_us: int  # accounts inactive for over a year may be closed
    last_purchase_us: dict[str, int]


class PersonalDataSource(Protocol):
    """One service's rows about people, for download, erasure and retention."""

    #: A stable key in the data download, e.g. ``"chat"``, ``"favourites"``.
    name: str

    async def export(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every row held about ``user_id``, by table, as JSON-ready dicts."""
        ...

    async def erase(self, user_id: str, pseudonym: str) -> int:
        """Erase ``user_id``'s personal data (or re-key kept records to ``pseudonym``); rows touched."""
        ...

    async def purge(self, policy: RetentionPolicy) -> int:
        """Delete what the retention policy no longer allows; rows deleted."""
        ...


class PersonalDataRegistry:
    """The sources in registration order (app.py registers each service's source once)."""

    def __init__(self) -> None:
        self._sources: dict[str, PersonalDataSource] = {}

    def register(self, source: PersonalDataSource) -> None:
        """Add a source; a second source under the same name is a wiring bug."""
        if source.name in self._sources:
            raise ValueError(f"personal data source {source.name!r} registered twice")
        self._sources[source.name] = source

    @property
    def sources(self) -> tuple[PersonalDataSource, ...]:
        """Every registered source, in registration order."""
        return tuple(self._sources.values())
