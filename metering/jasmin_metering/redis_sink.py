"""Redis Streams billing sink: XADD and the dedupe mark in one Lua script.

For each event the script checks ``<seen_prefix><source>|<id>``; when absent it
XADDs the event and then ``SET key hash NX EX ttl``. A Lua script runs atomically,
and the mark is written *after* the XADD on purpose: Redis does not roll a script
back, so if XADD fails the script stops before the mark and a retry stores the
event (OpenMeter #5118 claimed the id first and lost the event on failure).
Same key with another hash is reported as a conflict.

Dedupe window = ``dedupe_ttl_s`` (default 30 days); a re-send after that would
be stored again, so consumers keep (source, id) unique too.
"""

from __future__ import annotations

from typing import Any, Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from jasmin_metering.config import RedisStreamSinkConfig
from jasmin_metering.errors import SinkConflictError, SinkUnavailableError
from jasmin_metering.events import CloudEvent
from jasmin_metering.sink import dedupe_batch

# KEYS[1] = stream, KEYS[1+i] = seen key of event i
# ARGV = ttl, maxlen, n, then per event: source, id, hash, type, body
_SCRIPT = """
local ttl = tonumber(ARGV[1])
local maxlen = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local conflicts = {}
local added = 0
for i = 1, n do
  local b = 3 + (i - 1) * 5
  local seen = KEYS[i + 1]
  local prev = redis.call('GET', seen)
  if prev then
    if prev ~= ARGV[b + 3] then table.insert(conflicts, i) end
  else
    if maxlen > 0 then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'source', ARGV[b + 1], 'id', ARGV[b + 2],
        'hash', ARGV[b + 3], 'type', ARGV[b + 4], 'event', ARGV[b + 5])
    else
      redis.call('XADD', KEYS[1], '*', 'source', ARGV[b + 1], 'id', ARGV[b + 2],
        'hash', ARGV[b + 3], 'type', ARGV[b + 4], 'event', ARGV[b + 5])
    end
    if ttl > 0 then
      redis.call('SET', seen, ARGV[b + 3], 'NX', 'EX', ttl)
    else
      redis.call('SET', seen, ARGV[b + 3], 'NX')
    end
    added = added + 1
  end
end
return {added, conflicts}
"""


class RedisStreamSink:
    """Events appended to a Redis stream, each (source, id) once."""

    def __init__(self, config: RedisStreamSinkConfig, name: str = "redis") -> None:
        self.name = name
        self.config = config
        self._redis: Any = None
        self._script: Any = None

    def seen_key(self, ev: CloudEvent) -> str:
        """The dedupe key of one event."""
        return f"{self.config.seen_prefix}{ev.source}|{ev.id}"

    async def deliver(self, events: Sequence[CloudEvent]) -> None:
        """Run the dedupe-and-append script over the batch."""
        batch, conflicts = dedupe_batch(events)
        if batch:
            if self._redis is None:
                self._redis = aioredis.from_url(self.config.url, socket_connect_timeout=2, socket_timeout=5)
                self._script = self._redis.register_script(_SCRIPT)
            keys = [self.config.stream] + [self.seen_key(ev) for ev in batch]
            args: list[Any] = [self.config.dedupe_ttl_s, self.config.maxlen, len(batch)]
            for ev in batch:
                args += [ev.source, ev.id, ev.content_hash(), ev.type, ev.to_json()]
            try:
                _added, bad = await self._script(keys=keys, args=args)
            except (RedisError, OSError) as e:
                await self.close()
                raise SinkUnavailableError(f"redis sink: {e!r}") from e
            conflicts.extend(batch[int(i) - 1].key for i in bad)
        if conflicts:
            raise SinkConflictError(conflicts)

    async def close(self) -> None:
        """Close the connection pool."""
        r, self._redis = self._redis, None
        if r is not None:
            try:
                await r.aclose()
            except (RedisError, OSError):
                pass
