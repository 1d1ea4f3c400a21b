"""Which shows exist on this node and the router carrying each one's media.

The show state machine (free, private, member chat ...) grows here; for now a
show exists while at least one performer connection is in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jasmin_sfu.media.router import Router
from jasmin_sfu.media.worker import Worker


@dataclass
class Show:
    id: str
    router: Router
    performers: set[Any] = field(default_factory=set)
    viewers: set[Any] = field(default_factory=set)


class ShowRegistry:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.shows: dict[str, Show] = {}

    def get(self, show_id: str) -> Show | None:
        return self.shows.get(show_id)

    def open(self, show_id: str) -> Show:
        show = self.shows.get(show_id)
        if show is None or show.router.closed:
            router = self.worker.get_or_create_router(show_id, {"show_id": show_id})
            show = Show(show_id, router)
            self.shows[show_id] = show
        return show

    async def close(self, show_id: str) -> None:
        show = self.shows.pop(show_id, None)
        if show is not None:
            await show.router.close()
