"""Chat across two daemon processes' worth of state: two Daemons, one Redis, one PostgreSQL schema.

Real parts only (127.0.0.1): Redis pub/sub carries room events between the two
daemons (a unique channel prefix per test), the shared PostgreSQL schema holds
bans, so a ban decided on A holds on B. Skipped visibly when Redis or PostgreSQL
is down, never under CI=true.
"""

from __future__ import annotations

import dataclasses
from typing import AsyncIterator

import pytest

from jasmin_signaling.client import RemoteError, SignalingClient
from jasmin_sfu.app import Daemon
from jasmin_sfu.config import AccountsConfig, ChatConfig
from tests.conftest import test_config as make_config
from tests.realparts import PG_DSN, REDIS_PORT, REDIS_URL, pg_schema, require, unique_name


@pytest.fixture
async def two_daemons() -> AsyncIterator[tuple[Daemon, Daemon]]:
    require("Redis", REDIS_PORT)
    async with pg_schema() as schema:
        prefix = unique_name("jchat")
        accounts = AccountsConfig(
            dsn=f"{PG_DSN}?search_path={schema}",
            trust_client_ids=True,
            password_time_cost=1,
            password_memory_kib=1024,
            password_parallelism=1,
        )
        cfg = dataclasses.replace(
            make_config(accounts=accounts), chat=ChatConfig(redis_url=REDIS_URL, redis_prefix=prefix)
        )
        a, b = Daemon(cfg), Daemon(cfg)
        await a.start()
        try:
            await b.start()
            try:
                yield a, b
            finally:
                await b.stop()
        finally:
            await a.stop()


async def test_a_message_on_daemon_a_reaches_daemon_b_and_a_ban_on_a_holds_on_b(
    two_daemons: tuple[Daemon, Daemon],
) -> None:
    """Protects chat on a multi-node site: the room "anna" is open on both daemons; a member's
    message sent on B reaches a member and the performer on A (and back), a ban issued by the
    performer on A removes the banned member's connection on B, refuses its messages and
    its rejoin on B."""
    a, b = two_daemons
    clients: list[SignalingClient] = []

    async def connect(d: Daemon) -> SignalingClient:
        c = await SignalingClient.connect(f"ws://127.0.0.1:{d.port}/ws")
        clients.append(c)
        return c

    try:
        perf_a, perf_b = await connect(a), await connect(b)
        await perf_a.request("join", show_id="anna", role="performer", performer_id="anna")
        await perf_b.request("join", show_id="anna", role="performer", performer_id="anna")
        m1 = await connect(a)
        await m1.request("join", show_id="anna", role="viewer", member_id="m1")
        m2 = await connect(b)
        await m2.request("join", show_id="anna", role="viewer", member_id="m2")
        sent = (await m2.request("chat.send", text="hello from B"))["message"]
        got = (await m1.next_event("chat.message"))["data"]["message"]
        assert got == sent and got["author"]["id"] == "m2"
        assert (await perf_a.next_event("chat.message"))["data"]["message"]["id"] == sent["id"]
        back = (await m1.request("chat.send", text="hello from A"))["message"]
        while (await m2.next_event("chat.message"))["data"]["message"]["id"] != back["id"]:
            pass  # m2's own line comes first
        await perf_a.request("chat.ban", user="m2", reason="cross-node test")
        assert (await m2.next_event("chat.removed"))["data"]["action"] == "ban"
        with pytest.raises(RemoteError) as e:
            await m2.request("chat.send", text="still here?")
        assert e.value.code == "not_joined"
        again = await connect(b)
        with pytest.raises(RemoteError) as e:
            await again.request("join", show_id="anna", role="viewer", member_id="m2")
        assert e.value.code == "banned"
        # The ban lives in the shared database: B's chat service refuses m2's messages itself.
        assert b.chat is not None
        from jasmin_sfu.services.chat import ChatUser
        from jasmin_sfu.services.errors import ChatBannedError

        with pytest.raises(ChatBannedError):
            await b.chat.send("anna", ChatUser("m2", "m2", "member"), "direct")
    finally:
        for c in clients:
            await c.close()
