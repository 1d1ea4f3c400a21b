"""Sliding windows of event times per key: the one definition the login throttle and the chat limits count in.

A key is ``<table>:<rest>``: the login throttle's tables are ``name``, ``addr``
and ``pair`` (jasmin_sfu/services/login_throttle.py), the chat's ``chat`` (messages
per user and room) and ``chatslow`` (the user's last message, for slow mode:
jasmin_sfu/services/chat.py). The windows live in this process's memory
(:class:`LocalWindows`) or, with ``[cluster]``, in Redis, shared by every node
(:class:`jasmin_sfu.services.redis_windows.RedisWindows`, which falls back on a
:class:`LocalWindows` while Redis is away).
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

# Tracked keys per table before old ones are dropped: bounds memory under a spray of
# random names (each key is a short deque; 100k keys are a few tens of MiB).
MAX_KEYS = 100_000
# Entries kept per key: far above any limit, so a flood cannot grow one window without bound.
MAX_PER_KEY = 1000


class Windows(Protocol):
    """Sliding windows of event times per key (``<table>:<key>``)."""

    async def retry_after(self, key: str, limit: int, window_s: float, now: float) -> float | None:
        """Seconds (> 0) until ``key`` holds fewer than ``limit`` events in the last ``window_s``,
        or None: it does now. Events older than the window are forgotten."""
        ...

    async def add(self, key: str, window_s: float, now: float) -> None:
        """Count one event of ``key`` at ``now``; it is kept for ``window_s`` at least."""
        ...

    async def clear(self, key: str) -> None:
        """Forget ``key``'s events."""
        ...


class LocalWindows:
    """The windows in this process's memory: at most ``MAX_KEYS`` keys per table, oldest dropped first."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, deque[float]]] = {}

    def _table(self, key: str) -> tuple[dict[str, deque[float]], str]:
        table, _, rest = key.partition(":")
        return self._tables.setdefault(table, {}), rest

    def _live(self, key: str, window_s: float, now: float) -> deque[float] | None:
        table, k = self._table(key)
        q = table.get(k)
        if q is None:
            return None
        while q and q[0] <= now - window_s:
            q.popleft()
        if not q:
            del table[k]
            return None
        return q

    async def retry_after(self, key: str, limit: int, window_s: float, now: float) -> float | None:
        return self.retry_after_now(key, limit, window_s, now)

    def retry_after_now(self, key: str, limit: int, window_s: float, now: float) -> float | None:
        """:meth:`retry_after` without a suspension point (the Redis windows fall back on it)."""
        q = self._live(key, window_s, now)
        if q is None or len(q) < limit:
            return None
        # One more event is allowed once the window holds limit - 1 events.
        return q[len(q) - limit] + window_s - now

    async def add(self, key: str, window_s: float, now: float) -> None:
        self.add_now(key, window_s, now)

    def add_now(self, key: str, window_s: float, now: float) -> None:
        table, k = self._table(key)
        q = table.get(k)
        if q is None:
            if len(table) >= MAX_KEYS:
                # Drop the oldest-inserted key (dicts keep insertion order).
                table.pop(next(iter(table)))
            q = table[k] = deque(maxlen=MAX_PER_KEY)
        # Events past the window go now: a key that is only ever added to stays bounded too.
        while q and q[0] <= now - window_s:
            q.popleft()
        q.append(now)

    async def clear(self, key: str) -> None:
        self.clear_now(key)

    def clear_now(self, key: str) -> None:
        table, k = self._table(key)
        table.pop(k, None)
