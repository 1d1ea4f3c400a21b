"""The real services of this machine, for tests: reachability, fresh PostgreSQL schemas, a fake clock.

A test needing PostgreSQL, Redis or NATS calls ``require(...)``: when the
service is unreachable it is skipped with a named reason, except when ``CI`` is
set (true, 1, yes or on, in any case: ``under_ci()``), where it fails (CI starts
the services, so "down" is a real error). ``missing()`` is that rule for any real
part (Chromium, the C extension). All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import itertools
import os
import socket
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, NoReturn, TypeVar

import pytest

HOST = "127.0.0.1"
PG_PORT = 5432
REDIS_PORT = 6379
NATS_PORT = 4222
PG_DSN = f"postgresql://postgres@{HOST}:{PG_PORT}/test"
REDIS_URL = f"redis://{HOST}:{REDIS_PORT}/0"
NATS_URL = f"nats://{HOST}:{NATS_PORT}"

RUN_ID = uuid.uuid4().hex[:10]
_counter = itertools.count(1)


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# The usual truthy spellings of CI (GitHub, GitLab and others set "true", some "1").
CI_TRUE = frozenset({"true", "1", "yes", "on"})


def under_ci() -> bool:
    """True when ``CI`` is set to true, 1, yes or on (any case, surrounding blanks ignored)."""
    return os.environ.get("CI", "").strip().lower() in CI_TRUE


def missing(reason: str) -> NoReturn:
    """A real part is missing: skip with ``reason`` by name, or fail under CI (see ``under_ci``)."""
    if under_ci():
        pytest.fail(f"{reason} (CI is set: a missing real part fails the run)", pytrace=False)
    pytest.skip(reason)


def require_fastpath() -> Any:
    """The built C fan-out (jasmin_sfu/media/_fastpath.c): without it, skip by name or fail under CI."""
    from jasmin_sfu.media import fastpath

    if fastpath.fastpath_ext is None:
        missing(f"C fast path unavailable (jasmin_sfu/media/_fastpath.c): {fastpath.unavailable_reason}")
    return fastpath.fastpath_ext


def require(name: str, port: int) -> None:
    """Skip (or, under CI, fail) when the named service is not listening."""
    if port_open(port):
        return
    missing(f"{name} is unreachable at {HOST}:{port}")


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind((HOST, 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def free_udp_range(n: int, host: str = HOST) -> tuple[int, int]:
    """``n`` consecutive UDP ports that were all free just now, around a kernel-chosen one."""
    for _ in range(50):
        first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        first.bind((host, 0))
        lo = int(first.getsockname()[1])
        held = [first]
        try:
            for port in range(lo + 1, lo + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind((host, port))
            return lo, lo + n - 1
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no {n} consecutive free UDP ports on {host}")


def unique_name(prefix: str) -> str:
    """A name unique to this test run and call (schemas, streams, keys)."""
    return f"{prefix}_{RUN_ID}_{next(_counter)}"


@asynccontextmanager
async def redis_key_prefix(stem: str) -> AsyncIterator[str]:
    """A Redis key prefix of one test's own on the real Redis (required): its keys are
    deleted afterwards."""
    import redis.asyncio as redis

    require("Redis", REDIS_PORT)
    name = unique_name(stem)
    yield name
    r = redis.from_url(REDIS_URL, socket_timeout=10, socket_connect_timeout=10)
    keys = [k async for k in r.scan_iter(match=f"{name}:*", count=1000)]
    if keys:
        await r.delete(*keys)
    await r.aclose()


@asynccontextmanager
async def pg_schema() -> AsyncIterator[str]:
    """A fresh PostgreSQL schema in database ``test``, dropped afterwards."""
    import asyncpg

    require("PostgreSQL", PG_PORT)
    name = unique_name("jasmin_t")
    con = await asyncpg.connect(PG_DSN)
    try:
        await con.execute(f"CREATE SCHEMA {name}")
    finally:
        await con.close()
    try:
        yield name
    finally:
        con = await asyncpg.connect(PG_DSN)
        try:
            await con.execute(f"DROP SCHEMA {name} CASCADE")
        finally:
            await con.close()


S = TypeVar("S")


@asynccontextmanager
async def open_store(
    kind: str, sqlite: Callable[[], Awaitable[S]], postgres: Callable[[str], Awaitable[S]]
) -> AsyncIterator[S]:
    """One store for a both-stores fixture: ``sqlite()``, or ``postgres(schema)`` in a fresh
    schema (skipped visibly, or failed under CI, when PostgreSQL is down); closed afterwards."""
    if kind == "sqlite":
        store: Any = await sqlite()
        try:
            yield store
        finally:
            await store.close()
        return
    async with pg_schema() as schema:
        store = await postgres(schema)
        try:
            yield store
        finally:
            await store.close()


class FakeClock:
    """An injectable clock (epoch seconds) that moves only when told."""

    def __init__(self, start: float = 1_780_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds
