"""Show events for other parts of the node (billing, notifications, logs).

Every transition of every show is published here. Subscribers are called
synchronously, in order, and must not block; an exception in one is logged
and never reaches the show (media must not depend on billing being healthy).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShowEvent:
    """One thing that happened in a show.

    ``name``: show.online, show.offline, show.state_changed, private.requested,
    private.started, private.ended, private.declined, sneak_peek.started,
    sneak_peek.ended, cam2cam.started, cam2cam.ended.
    ``at`` is wall-clock seconds (UNIX time) of the occurrence.
    """

    name: str
    show_id: str
    at: float
    member_id: str | None = None
    performer_ids: tuple[str, ...] = ()
    state: str | None = None
    reason: str | None = None
    until: float | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Subscriber = Callable[[ShowEvent], None]


class EventBus:
    def __init__(self) -> None:
        self._subs: list[Subscriber] = []
        self.published = 0

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subs.append(fn)
        return lambda: self._subs.remove(fn) if fn in self._subs else None

    def publish(self, ev: ShowEvent) -> None:
        self.published += 1
        for fn in list(self._subs):
            try:
                fn(ev)
            except Exception:
                log.exception("show event subscriber failed", extra={"show_id": ev.show_id, "event": ev.name})
