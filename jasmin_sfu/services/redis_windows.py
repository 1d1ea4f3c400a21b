"""The shared limits' sliding windows in Redis: one count for every node of the site.

With ``[cluster]`` each node counts failed logins (jasmin_sfu/services/login_throttle.py)
and chat messages per user and room (jasmin_sfu/services/chat.py) here instead of
in its own memory (jasmin_sfu/services/windows.py), so N nodes behind a balancer
allow the documented numbers once, not N times. A window is a sorted set
``<prefix>:limit:<table>:<key>`` of event times (score: the node's clock, epoch
seconds), trimmed to the window and checked in one Lua script, so a check and
the count it reads are atomic; each set expires with its window and keeps at
most ``MAX_PER_KEY`` entries (the limits are at most a few dozen).

Redis unreachable: the windows fall back to this process's memory for that
call (logged once per outage, counted in ``fallbacks``): a login or a chat
message is never refused or let through unlimited because Redis is away, it
is limited as a single node would limit it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from jasmin_sfu.services.windows import MAX_PER_KEY, LocalWindows

log = logging.getLogger(__name__)

# KEYS[1] window; ARGV limit, window_s, now. Returns the score of the event whose leaving
# lets one more attempt in (as a string), or nil: under the limit.
_RETRY_AFTER = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[2]))
local n = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[1])
if n < limit then return false end
local e = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
return e[2]
"""
# KEYS[1] window; ARGV now, member, window_ms, max entries.
_ADD = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[4]) + 1))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


class RedisWindows:
    """:class:`jasmin_sfu.services.windows.Windows` in Redis, shared by the nodes of a cluster."""

    def __init__(self, url: str, prefix: str, *, client: Any = None, timeout_s: float = 2.0) -> None:
        self.prefix = prefix
        if client is None:
            import redis.asyncio as redis

            client = redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._redis = client
        self._local = LocalWindows()
        self.fallbacks = 0
        self._failing = False

    def _key(self, key: str) -> str:
        return f"{self.prefix}:limit:{key}"

    def _fell_back(self, exc: Exception) -> None:
        self.fallbacks += 1
        if not self._failing:
            log.error(
                "shared limits (login throttle, chat): Redis unreachable; counting in this process meanwhile",
                extra={"error": repr(exc)},
            )
        self._failing = True

    def _recovered(self) -> None:
        if self._failing:
            log.warning("shared limits (login throttle, chat): Redis answers again")
        self._failing = False

    async def retry_after(self, key: str, limit: int, window_s: float, now: float) -> float | None:
        try:
            score = await self._redis.eval(_RETRY_AFTER, 1, self._key(key), limit, window_s, now)
        except Exception as exc:  # noqa: BLE001 - limit as one node would
            self._fell_back(exc)
            return self._local.retry_after_now(key, limit, window_s, now)
        self._recovered()
        if score is None:
            return None
        return float(score) + window_s - now

    async def add(self, key: str, window_s: float, now: float) -> None:
        member = f"{now!r}:{secrets.token_hex(4)}"
        try:
            await self._redis.eval(_ADD, 1, self._key(key), now, member, max(1, round(window_s * 1000)), MAX_PER_KEY)
        except Exception as exc:  # noqa: BLE001
            self._fell_back(exc)
            self._local.add_now(key, window_s, now)
            return
        self._recovered()

    async def clear(self, key: str) -> None:
        self._local.clear_now(key)
        try:
            await self._redis.delete(self._key(key))
        except Exception as exc:  # noqa: BLE001
            self._fell_back(exc)
            return
        self._recovered()

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._redis.aclose(), 5.0)
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass
