"""The real services of this machine, for tests: reachability, fresh PostgreSQL schemas, a fake clock.

A test needing PostgreSQL, Redis or NATS calls ``require(...)``: when the
service is unreachable it is skipped with a named reason, except under
``CI=true``, where it fails (CI starts the services, so "down" is a real error).
All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import itertools
import os
import socket
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

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


def require(name: str, port: int) -> None:
    """Skip (or, with CI=true, fail) when the named service is not listening."""
    if port_open(port):
        return
    reason = f"{name} is unreachable at {HOST}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing service fails the run)")
    pytest.skip(reason)


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind((HOST, 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def unique_name(prefix: str) -> str:
    """A name unique to this test run and call (schemas, streams, keys)."""
    return f"{prefix}_{RUN_ID}_{next(_counter)}"


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
