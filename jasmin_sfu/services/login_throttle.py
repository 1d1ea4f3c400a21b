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
full window leaves it. Counts live in this process's memory: a node restart
forgets them, and N nodes behind a balancer allow N times the numbers
(docs/privacy.md). Time is injected (``clock``: epoch seconds).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable

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


class LoginThrottle:
    """Sliding-window failure counts; ``check`` before a password check, ``failed``/``succeeded`` after."""

    def __init__(self, settings: ThrottleSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self._names: dict[str, deque[float]] = {}
        self._addresses: dict[str, deque[float]] = {}
        # (address, name) -> failures: what a throttled address may still try.
        self._pairs: dict[str, deque[float]] = {}

    def _live(self, table: dict[str, deque[float]], key: str, now: float) -> deque[float] | None:
        q = table.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.settings.window_s:
            q.popleft()
        if not q:
            del table[key]
            return None
        return q

    def _retry_after(self, q: deque[float] | None, limit: int, now: float) -> float | None:
        if q is None or len(q) < limit:
            return None
        # The attempt is allowed again once the window holds limit - 1 failures.
        return max(1.0, q[len(q) - limit] + self.settings.window_s - now)

    @staticmethod
    def _refuse(wait: float) -> LoginRateLimitedError:
        w = math.ceil(wait)
        return LoginRateLimitedError(f"too many failed logins; retry in {w} s", w)

    def check_name(self, username_key: str | None) -> None:
        """Raise ``LoginRateLimitedError`` when the name used up its failures (from anywhere)."""
        if username_key is None:
            return
        now = self.clock()
        w = self._retry_after(self._live(self._names, username_key, now), self.settings.max_per_username, now)
        if w is not None:
            raise self._refuse(w)

    def address_retry_after(self, address: str | None) -> int | None:
        """Seconds until the address is under its failure limit again (None: it is under it now)."""
        if address is None:
            return None
        now = self.clock()
        w = self._retry_after(self._live(self._addresses, address, now), self.settings.max_per_address, now)
        return None if w is None else math.ceil(w)

    def check_pair(self, username_key: str | None, address: str | None) -> None:
        """Raise when the address is over its limit and the name already failed from it in the window."""
        wait = self.address_retry_after(address)
        if wait is None or username_key is None:
            return
        if self._live(self._pairs, f"{address}\x00{username_key}", self.clock()) is not None:
            raise self._refuse(wait)

    def check(self, username_key: str | None, address: str | None) -> None:
        """Raise when the name, or the address, used up its failures (the strict check of both)."""
        self.check_name(username_key)
        wait = self.address_retry_after(address)
        if wait is not None:
            raise self._refuse(wait)

    def _add(self, table: dict[str, deque[float]], key: str, now: float) -> None:
        if key not in table and len(table) >= MAX_KEYS:
            # Drop the oldest-inserted key (dicts keep insertion order).
            table.pop(next(iter(table)))
        table.setdefault(key, deque()).append(now)

    def failed(self, username_key: str | None, address: str | None) -> None:
        """Count one failed attempt against the name and the address."""
        now = self.clock()
        if username_key is not None:
            self._add(self._names, username_key, now)
        if address is not None:
            self._add(self._addresses, address, now)
            if username_key is not None:
                self._add(self._pairs, f"{address}\x00{username_key}", now)

    def succeeded(self, username_key: str) -> None:
        """The right password: the name's failures are forgotten (the address's stay)."""
        self._names.pop(username_key, None)
