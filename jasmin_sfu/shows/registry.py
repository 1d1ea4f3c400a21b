"""Which shows exist on this node; each has its own router on the worker and its paid-private flow."""

from __future__ import annotations

import time
from typing import Callable

from jasmin_sfu.config import ShowsConfig
from jasmin_sfu.media.worker import Worker

from .billing import PrivateBilling
from .events import EventBus
from .machine import Rejected
from .privates import Privates
from .show import Show


class ShowRegistry:
    def __init__(
        self,
        worker: Worker,
        bus: EventBus | None = None,
        settings: ShowsConfig | None = None,
        clock: Callable[[], float] = time.time,
        billing: PrivateBilling | None = None,
    ) -> None:
        self.worker = worker
        # Bills the privates of shows opened from now on; None: privates are free (no billing).
        self.billing = billing
        self.bus = bus or EventBus()
        self.settings = settings or ShowsConfig()
        self.clock = clock
        self.shows: dict[str, Show] = {}
        self._privates: dict[str, Privates] = {}

    def get(self, show_id: str) -> Show | None:
        show = self.shows.get(show_id)
        return show if show is not None and not show.closed else None

    def open(self, show_id: str) -> Show:
        show = self.get(show_id)
        if show is None:
            router = self.worker.get_or_create_router(show_id, {"show_id": show_id})
            show = Show(show_id, router, self.bus, self.settings, self.clock)
            self.shows[show_id] = show
            self._privates[show_id] = Privates(show, self.billing)
        return show

    def privates(self, show: Show) -> Privates:
        """The paid-private flow of ``show``; ``invalid_state`` once the show has ended."""
        found = self._privates.get(show.id)
        if found is None or found.show is not show or show.closed:
            raise Rejected("invalid_state", "the show has ended")
        return found

    async def close(self, show_id: str, show: Show | None = None) -> None:
        """Close the show under ``show_id``; with ``show`` given, only if it is still that one.

        A late leave from an ended show must not close a new show the same
        performer opened since under the same id.
        """
        current = self.shows.get(show_id)
        if current is None or (show is not None and current is not show):
            return
        del self.shows[show_id]
        self._privates.pop(show_id, None)
        await current.close()
