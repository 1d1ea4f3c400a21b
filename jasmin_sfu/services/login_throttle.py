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
full window leaves it. Counts live in this process's memory (``LocalWindows``,
jasmin_sfu/services/windows.py, tables ``name``, ``addr``, ``pair``): a node restart
forgets them. With ``[cluster]`` they live in Redis instead
(jasmin_sfu/services/redis_windows.py), shared by every node, so N nodes behind
a balancer allow the numbers once, not N times (docs/cluster.md). Time is injected (``clock``: epoch seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from jasmin_sfu.services.errors import LoginRateLimitedError
from jasmin_sfu.services.windows import LocalWindows, Windows

__all__ = ["LocalWindows", "LoginThrottle", "ThrottleSettings", "Windows"]


@dataclass(frozen=True)
class ThrottleSettings:
    """The documented numbers (config ``[accounts] login_*``)."""

    window_s: float = 900.0
    max_per_username: int = 10
    max_per_address: int = 50


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
        w = max(1, math.ceil(wait))
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
        return None if w is None else max(1, math.ceil(w))

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
