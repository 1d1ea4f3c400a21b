"""Which shows exist on this node; each has its own router on the worker."""

from __future__ import annotations

import time
from typing import Callable

from jasmin_sfu.media.worker import Worker

from .events import EventBus
from .show import Show, ShowSettings


class ShowRegistry:
    def __init__(
        self,
        worker: Worker,
        bus: EventBus | None = None,
        settings: ShowSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.worker = worker
        self.bus = bus or EventBus()
        self.settings = settings or ShowSettings()
        self.clock = clock
        self.shows: dict[str, Show] = {}

    def get(self, show_id: str) -> Show | None:
        show = self.shows.get(show_id)
        return show if show is not None and not show.closed else None

    def open(self, show_id: str) -> Show:
        show = self.get(show_id)
        if show is None:
            router = self.worker.get_or_create_router(show_id, {"show_id": show_id})
            show = Show(show_id, router, self.bus, self.settings, self.clock)
            self.shows[show_id] = show
        return show

    async def close(self, show_id: str, show: Show | None = None) -> None:
        """Close the show under ``show_id``; with ``show`` given, only if it is still that one.

        A late leave from an ended show must not close a new show the same
        performer opened since under the same id.
        """
        current = self.shows.get(show_id)
        if current is None or (show is not None and current is not show):
            return
        del self.shows[show_id]
        await current.close()
