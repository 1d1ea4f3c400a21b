"""A supervised worker's side of revocations (docs/workers.md, "Revocations"): it posts its own
revocations to its supervisor, ends the sessions another worker revoked, and an erasure waits for
the other workers before erasing. The daemon runs in this process with accounts; its supervisor is
a stand-in aiohttp server on loopback that records what it is sent (the whole path with real
processes: tests/integration/test_workers_revocation.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from jasmin_sfu.app import INTERNAL_REVOKE, INTERNAL_SECRET_HEADER, Daemon
from jasmin_sfu.config import Config, ConfigError, ServerConfig, validate
from tests.api.conftest import accounts_config
from tests.conftest import test_config as node_config

SECRET = "s" * 43


class StandInSupervisor:
    """Records each revocation a worker posts; answers at once unless ``hold`` is cleared."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.asked = asyncio.Event()
        self.hold = asyncio.Event()
        self.hold.set()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def revoke(self, request: web.Request) -> web.Response:
        self.posts.append((request.headers.get(INTERNAL_SECRET_HEADER, ""), await request.json()))
        self.asked.set()
        await self.hold.wait()
        return web.json_response({"workers": 1, "unanswered": 0})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(INTERNAL_REVOKE, self.revoke)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"


async def _subscribed(http: aiohttp.ClientSession, ws_url: str, token: str) -> aiohttp.ClientWebSocketResponse:
    """A websocket following the member of ``token`` (notifications.subscribe): revocable, no show needed."""
    ws = await http.ws_connect(ws_url)
    await ws.send_json({"type": "hello", "protocol": "jasmin/1"})
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    await ws.send_json({"type": "request", "id": 1, "method": "notifications.subscribe", "data": {"token": token}})
    while True:
        msg = await ws.receive_json(timeout=5)
        if msg.get("id") == 1:
            assert msg.get("ok") is True, msg
            return ws


async def _close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return int(msg.data)
        if msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return ws.close_code


async def test_a_worker_ends_what_another_revoked_posts_its_own_and_an_erasure_waits_for_the_others(
    tmp_path: Path,
) -> None:
    """Protects revocation across worker processes, the worker's half: /internal/revoke refuses a
    caller without the secret (403) and a bad body (400 bad_request); with both it closes that
    token's websocket here with 4401 and answers how many, without posting it back to the
    supervisor (no loop); a logout here is posted to the supervisor with the secret and this
    worker's port; an erasure here is posted too, and nothing is erased until the supervisor
    answered (its other workers' websockets left their shows)."""
    sup = StandInSupervisor()
    await sup.start()
    base = node_config(accounts=accounts_config(str(tmp_path)))
    cfg = base.replace(server=dataclasses.replace(base.server, internal_secret=SECRET, supervisor_url=sup.url))
    d = Daemon(cfg)
    await d.start()
    try:
        assert d.accounts is not None
        http_url, ws_url = f"http://127.0.0.1:{d.port}", f"ws://127.0.0.1:{d.port}/ws"
        first = await d.accounts.register("mia", "password-mia", adult_confirmed=True)
        second = await d.accounts.login("mia", "password-mia")
        third = await d.accounts.login("mia", "password-mia")
        mid = first.principal.id
        async with aiohttp.ClientSession() as http:
            revoke = http_url + INTERNAL_REVOKE
            async with http.post(revoke, json={"session_id": first.principal.session_id}) as r:
                assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
            for bad in ({}, {"member_id": mid, "session_id": "s_1"}, {"member_id": 5}, {"member_id": "a b"}, [mid]):
                async with http.post(revoke, json=bad, headers={INTERNAL_SECRET_HEADER: SECRET}) as r:
                    assert r.status == 400, bad
                    assert (await r.json())["error"]["code"] == "bad_request"
            async with http.post(revoke, data=b"{", headers={INTERNAL_SECRET_HEADER: SECRET}) as r:
                assert r.status == 400

            ws1 = await _subscribed(http, ws_url, first.token)
            ws2 = await _subscribed(http, ws_url, second.token)
            ws3 = await _subscribed(http, ws_url, third.token)
            async with http.post(
                revoke,
                json={"session_id": first.principal.session_id, "reason": "token revoked"},
                headers={INTERNAL_SECRET_HEADER: SECRET},
            ) as r:
                assert r.status == 200 and await r.json() == {"ended": 1}
            assert await _close_code(ws1) == 4401
            assert sup.posts == [], "a revocation from another worker is not posted back"

            async with http.delete(
                http_url + "/api/v1/sessions/current", headers={"Authorization": f"Bearer {second.token}"}
            ) as r:
                assert r.status == 204
            assert await _close_code(ws2) == 4401
            await asyncio.wait_for(sup.asked.wait(), 10)
            assert sup.posts == [
                (SECRET, {"session_id": second.principal.session_id, "reason": "token revoked", "from_port": d.port})
            ]

            sup.asked.clear()
            sup.hold.clear()
            erasure = asyncio.ensure_future(
                http.post(
                    http_url + "/api/v1/me/erasure",
                    json={"password": "password-mia"},
                    headers={"Authorization": f"Bearer {third.token}"},
                )
            )
            await asyncio.wait_for(sup.asked.wait(), 10)
            assert sup.posts[-1] == (SECRET, {"member_id": mid, "reason": "account revoked", "from_port": d.port})
            assert await _close_code(ws3) == 4401
            await asyncio.wait([erasure], timeout=1)
            user = await d.accounts.store.user_by_id(mid)
            assert not erasure.done() and user is not None and user.username == "mia", (
                "nothing is erased while the other workers have not answered"
            )
            sup.hold.set()
            async with await erasure as r:
                assert r.status == 200 and (await r.json())["status"] == "completed"
            user = await d.accounts.store.user_by_id(mid)
            assert user is not None and user.username != "mia"
    finally:
        sup.hold.set()
        await d.stop()
        assert sup.runner is not None
        await sup.runner.cleanup()


def test_a_supervisor_url_needs_the_secret_and_a_loopback_address() -> None:
    """Protects the workers' revocation path from pointing anywhere but the local supervisor."""
    for server in (
        ServerConfig(supervisor_url="http://127.0.0.1:4000"),
        ServerConfig(internal_secret=SECRET, supervisor_url="http://10.0.0.1:4000"),
        ServerConfig(internal_secret=SECRET, supervisor_url="https://127.0.0.1:4000/x"),
    ):
        try:
            validate(Config(server=server))
        except ConfigError as exc:
            assert "server.supervisor_url" in str(exc)
        else:
            raise AssertionError(f"accepted {server.supervisor_url!r}")
    validate(Config(server=ServerConfig(internal_secret=SECRET, supervisor_url="http://127.0.0.1:4000")))
