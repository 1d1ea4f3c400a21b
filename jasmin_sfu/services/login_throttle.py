"""Login throttling: failed password checks per username and per client address.

Online guessing is the threat (NIST 800-63B 5.2.2: limit failed attempts per
account, at most 100 in a row). Two sliding windows of ``window_s`` seconds
(15 minutes by default):

* **per username** (case-folded): ``max_per_username`` failures (10). Against
  one account, 10 guesses per 15 minutes is under 1000 a day: a password from
  a 10^6 list takes years. The cost of the rule is that anybody can keep one
  name locked by failing on purpose; the lock lifts 15 minutes after the
  oldest counted failure, and a success clears the name's failures.
* **per client address**: ``max_per_address`` failures (50): one machine
  spraying many names. The address limit counts failures only and never
  blocks a right password for a name that is not itself throttled: many
  members share one address (a NAT, a campus, a mobile carrier), and one
  attacker among them must not lock them all out. Once an address is over its
  limit (``address_retry_after``), ``AccountsService.login`` refuses from it,
  before any hashing, every unknown name and every name that already failed
  from that address in the window (``check_pair``): a sprayer gets no more
  guesses at unknown names and one guess per real name per window there,
  while a neighbour with the right password logs in.

A throttled attempt is refused *before* the password is hashed, so a flood
costs no argon2 time (a hash is ~50 ms and 64 MiB). The answer is
``LoginRateLimitedError`` with ``retry_after_s``: when the oldest failure in the
full window leaves it. Counts live in this process's memory (``LocalWindows``): a node restart
forgets them. With ``[cluster]`` they live in Redis instead
(jasmin_sfu/services/redis_windows.py), shared by every node, so N nodes behind
a balancer allow the numbers once, not N times (docs/cluster.md). Time is injected (``clock``: epoch seconds).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Protocol

from jasmin_sfu.services.errors import LoginRateLimitedError

# Tracked keys before old ones are dropped: bounds memory under a spray of
# random names (each key is a short deque; 100k keys are a few tens of MiB).
MAX_KEYS = 100_000


@dataclass(frozen=True)
class ThrottleSettings:
    """The documented numbers (config ``[accounts] login_*``)."""

    window_s: float = 900.0
    max_per_username: int = 10
    max_per_address: int = 50


class Windows(Protocol):
    """Sliding windows of failure times per key (``<table>:<key>``, tables ``name``, ``addr``, ``pair``):
    in this process (:class:`LocalWindows`) or shared by every node through Redis
    (jasmin_sfu/services/redis_windows.py, with ``[cluster]``)."""

    async def retry_after(self, key: str, limit: int, window_s: float, now: float) -> float | None:
        """Seconds until ``key`` holds fewer than ``limit`` failures (at least 1), or None: it does now."""
        ...

    async def add(self, key: str, window_s: float, now: float) -> None:
        """Count one failure of ``key`` at ``now``."""
        ...

    async def clear(self, key: str) -> None:
        """Forget ``key``'s failures."""
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
        # The attempt is allowed again once the window holds limit - 1 failures.
        return max(1.0, q[len(q) - limit] + window_s - now)

    async def add(self, key: str, window_s: float, now: float) -> None:
        self.add_now(key, now)

    def add_now(self, key: str, now: float) -> None:
        table, k = self._table(key)
        if k not in table and len(table) >= MAX_KEYS:
            # Drop the oldest-inserted key (dicts keep insertion order).
            table.pop(next(iter(table)))
        table.setdefault(k, deque()).append(now)

    async def clear(self, key: str) -> None:
        self.clear_now(key)

    def clear_now(self, key: str) -> None:
        table, k = self._table(key)
        table.pop(k, None)


class LoginThrottle:
    """Sliding-window failure counts; ``check`` before a password check, ``failed``/``succeeded`` after."""

    def __init__(self, settings: ThrottleSettings, clock: Callable[[], float], windows: Windows | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.windows: Windows = windows if windows is not None else LocalWindows()

    async def _retry_after(self, key: str, limit: int) -> float | None:
        return await self.windows.retry_after(key, limit, self.settings.window_s, self.clock())

    @staticmethod
    def _refuse(wait: float) -> LoginRateLimitedError:
        w = math.ceil(wait)
        return LoginRateLimitedError(f"too many failed logins; retry in {w} s", w)

    async def check_name(self, username_key: str | None) -> None:
        """Raise ``LoginRateLimitedError`` when the name used up its failures (from anywhere)."""
        if username_key is None:
            return
        w = await self._retry_after(f"name:{username_key}", self.settings.max_per_username)
        if w is not None:
            raise self._refuse(w)

    async def address_retry_after(self, address: str | None) -> int | None:
        """Seconds until the address is under its failure limit again (None: it is under it now)."""
        if address is None:
            return None
        w = await self._retry_after(f"addr:{address}", self.settings.max_per_address)
        return None if w is None else math.ceil(w)

    async def check_pair(self, username_key: str | None, address: str | None) -> None:
        """Raise when the address is over its limit and the name already failed from it in the window."""
        wait = await self.address_retry_after(address)
        if wait is None or username_key is None:
            return
        if await self._retry_after(f"pair:{address}\x00{username_key}", 1) is not None:
            raise self._refuse(wait)

    async def check(self, username_key: str | None, address: str | None) -> None:
        """Raise when the name, or the address, used up its failures (the strict check of both)."""
        await self.check_name(username_key)
        wait = await self.address_retry_after(address)
        if wait is not None:
            raise self._refuse(wait)

    async def failed(self, username_key: str | None, address: str | None) -> None:
        """Count one failed attempt against the name and the address."""
        now, window = self.clock(), self.settings.window_s
        if username_key is not None:
            await self.windows.add(f"name:{username_key}", window, now)
        if address is not None:
            await self.windows.add(f"addr:{address}", window, now)
            if username_key is not None:
                await self.windows.add(f"pair:{address}\x00{username_key}", window, now)

    async def succeeded(self, username_key: str) -> None:
        """The right password: the name's failures are forgotten (the address's stay)."""
        await self.windows.clear(f"name:{username_key}")
