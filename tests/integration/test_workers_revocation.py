"""Revocation with ``server.workers = 2``: an erasure or a logout served by one worker process
ends the member's websockets on the other worker too (docs/privacy.md, "Forget my data";
docs/workers.md, "Revocations").

Real processes: ``jasmin-sfu serve`` as a supervisor with two workers, billing and the demo
accounts on, raw websockets over loopback. Which worker serves a REST request is found, not
assumed: REST requests go to the live workers in turn, and a member's favourites list says
its performer is online only when the worker that answered holds the show.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from aiohttp import web

from jasmin_sfu import supervisor as supervisor_module
from jasmin_sfu.app import INTERNAL_REVOKE, INTERNAL_SECRET_HEADER
from jasmin_sfu.services.demo import DEMO_MEMBER, DEMO_MEMBER_PASSWORD, DEMO_PERFORMER, DEMO_PERFORMER_PASSWORD
from jasmin_sfu.services.ledger import wallet_account
from jasmin_sfu.supervisor import Supervisor
from tests.conftest import start_daemon_process, test_config as node_config
from tests.integration.test_workers import _get, _login, _stop

SHOW = DEMO_PERFORMER


@dataclass
class Raw:
    """A websocket that said hello, with a reader that keeps every frame and the close code,
    each stamped from ``clock`` (shared with the test, to order a close against an answer)."""

    ws: aiohttp.ClientWebSocketResponse
    http: aiohttp.ClientSession
    clock: "itertools.count[int]"
    events: list[dict[str, Any]] = field(default_factory=list)
    closed_at: int | None = None
    close_code: int | None = None
    _ids: "itertools.count[int]" = field(default_factory=lambda: itertools.count(1))
    _answers: dict[int, "asyncio.Future[dict[str, Any]]"] = field(default_factory=dict)
    _reader: "asyncio.Task[None] | None" = None

    @classmethod
    async def connect(cls, url: str, clock: "itertools.count[int]") -> "Raw":
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(url)
        await ws.send_json({"type": "hello", "protocol": "jasmin/1", "client": "test-revocation"})
        welcome = await ws.receive_json(timeout=10)
        assert welcome.get("type") == "welcome", welcome
        raw = cls(ws, http, clock)
        raw._reader = asyncio.get_running_loop().create_task(raw._read())
        return raw

    async def _read(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                frame = json.loads(msg.data)
                if frame.get("type") in ("response", "error") and frame.get("id") in self._answers:
                    self._answers.pop(frame["id"]).set_result(frame)
                elif frame.get("type") == "event":
                    self.events.append(frame)
                continue
            # The code as the server sent it (ws.close_code may say 1006 when the client's
            # closing handshake races the server's disconnect).
            self.close_code = int(msg.data) if msg.type == aiohttp.WSMsgType.CLOSE else self.ws.close_code
            self.closed_at = next(self.clock)
            for fut in self._answers.values():
                fut.set_exception(ConnectionError("closed"))
            return

    async def request(self, method: str, **data: Any) -> dict[str, Any]:
        rid = next(self._ids)
        fut = self._answers[rid] = asyncio.get_running_loop().create_future()
        await self.ws.send_json({"type": "request", "id": rid, "method": method, "data": data})
        frame = await asyncio.wait_for(fut, 15)
        assert frame.get("ok") is True, frame
        return dict(frame.get("data") or {})

    async def event(self, name: str, timeout: float = 15) -> dict[str, Any]:
        for _ in range(int(timeout / 0.05)):
            for ev in self.events:
                if ev.get("event") == name:
                    return ev
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {name} event; got {[e.get('event') for e in self.events]}")

    async def closed(self, timeout: float = 15) -> int | None:
        """The close code once the server closed this socket (None: still open after ``timeout``)."""
        assert self._reader is not None
        await asyncio.wait([self._reader], timeout=timeout)
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.http.close()


async def _rest(http: str, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(
            method,
            http + path,
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        return r.status, (await r.json() if r.content_type == "application/json" else await r.text())


async def _online_here(http: str, token: str) -> bool:
    """Whether the worker that answers this REST request holds the show (its favourites say online)."""
    status, body = await _rest(http, "GET", "/api/v1/me/favourites", token)
    assert status == 200, body
    [fav] = [f for f in body["favourites"] if f["username"] == SHOW]
    return bool(fav["online"])


async def _next_rest_on_the_other_worker(http: str, token: str) -> None:
    """Make the next REST request go to the worker that does NOT hold the show.

    REST requests go to the two workers in turn: a probe answered by the show's worker means
    the next one goes to the other. The alternation itself is checked, not assumed."""
    first = await _online_here(http, token)
    if first:
        return
    assert await _online_here(http, token), "REST requests alternate between the two workers"


async def _worker_of_the_show(http: str) -> int:
    _, ready = await _get(http + "/readyz")
    [index] = [w["index"] for w in ready["workers"] if w["routers"] == 1]
    assert [w["routers"] for w in ready["workers"]].count(0) == 1, ready
    return int(index)


def _billing_log(data_dir: str, worker: int, member_id: str) -> list[dict[str, Any]]:
    path = os.path.join(data_dir, f"worker{worker}", "billing-events.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        return [
            e
            for e in (json.loads(line) for line in f.read().splitlines())
            if e.get("data", {}).get("member_id") == member_id
        ]


def _cc_sessions(data_dir: str, member_id: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(os.path.join(data_dir, "ledger.sqlite3"))
    try:
        return db.execute(
            "SELECT used_seconds, charged, rate, status FROM cc_sessions WHERE wallet_id = ?",
            (wallet_account(member_id),),
        ).fetchall()
    finally:
        db.close()


async def _poll(cond: Any, timeout: float = 20.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return True
        await asyncio.sleep(0.05)
    return bool(cond())


@pytest.mark.slow
async def test_erasure_and_logout_on_one_worker_end_the_members_websockets_on_the_other(tmp_path: Any) -> None:
    """Protects "forget my data" and logout with server.workers = 2: the member's websocket on
    worker B (joined to a show there, in a paid private) is closed with 4401 by an erasure that
    worker A serves, before the erasure answers; the private ends (the performer hears
    private.ended, reason disconnect) and billing closes it once (one closing event, the
    ledger's charge equal to its seconds times the rate). A logout served by A closes its
    token's websocket on B with 4401 and leaves the member's other token's websocket up.
    Red before the fix: a revocation reached only the worker that served the request."""
    data_dir = str(tmp_path)
    dp = await start_daemon_process(
        env={"JASMIN_SERVER_WORKERS": "2", "JASMIN_BILLING_DATA_DIR": data_dir, "JASMIN_ACCOUNTS_DATA_DIR": data_dir}
    )
    clock = itertools.count()
    opened: list[Any] = []
    try:
        ptok = await _login(dp.http, DEMO_PERFORMER, DEMO_PERFORMER_PASSWORD)
        leaving = await _login(dp.http, DEMO_MEMBER, DEMO_MEMBER_PASSWORD)
        mtok = await _login(dp.http, DEMO_MEMBER, DEMO_MEMBER_PASSWORD)
        status, body = await _rest(dp.http, "PUT", f"/api/v1/me/favourites/{SHOW}", mtok)
        assert status in (200, 201), body

        perf = await Raw.connect(dp.url, clock)
        opened.append(perf)
        await perf.request("join", show_id=SHOW, role="performer", token=ptok)
        b = await _worker_of_the_show(dp.http)
        viewer_of_leaving = await Raw.connect(dp.url, clock)
        mem = await Raw.connect(dp.url, clock)
        opened += [viewer_of_leaving, mem]
        await viewer_of_leaving.request("join", show_id=SHOW, role="viewer", token=leaving)
        mid = (await mem.request("join", show_id=SHOW, role="viewer", token=mtok))["member_id"]
        _, ready = await _get(dp.http + "/readyz")
        assert ready["workers"][b]["connections"] == 3, "the performer and both member websockets are on B"

        # Logout of one token, served by A: its websocket on B closes, the other token's stays.
        await _next_rest_on_the_other_worker(dp.http, mtok)
        status, body = await _rest(dp.http, "DELETE", "/api/v1/sessions/current", leaving)
        assert status == 204, body
        assert await viewer_of_leaving.closed() == 4401, "the logged-out token's websocket on B is closed"
        assert mem.close_code is None

        # A paid private on B.
        await mem.request("private.request")
        await perf.event("private.requested")
        await perf.request("private.accept", member_id=mid)
        assert await _poll(lambda: sum(1 for e in _billing_log(data_dir, b, mid) if "usage" in e["type"]) >= 2), (
            "billing meters the private on B"
        )

        # The erasure, served by A.
        await _next_rest_on_the_other_worker(dp.http, mtok)
        status, body = await _rest(dp.http, "POST", "/api/v1/me/erasure", mtok, {"password": DEMO_MEMBER_PASSWORD})
        answered_at = next(clock)
        assert status == 200 and body["status"] == "completed", body
        assert await mem.closed() == 4401, "the erased member's websocket on B is closed with 4401"
        assert mem.closed_at is not None and mem.closed_at < answered_at, "closed before the erasure answered"
        ended = await perf.event("private.ended")
        assert ended["data"]["member_id"] == mid and ended["data"]["reason"] == "disconnect", ended

        # Billing closed the private once, exactly: the charge is its seconds times the rate.
        assert await _poll(lambda: any("closed" in e["type"] for e in _billing_log(data_dir, b, mid)))
        [closed] = [e for e in _billing_log(data_dir, b, mid) if "closed" in e["type"]]
        billed = closed["data"]["billed_seconds"]
        assert billed >= 2
        assert await _poll(lambda: [r[0] for r in _cc_sessions(data_dir, mid)] == [billed]), _cc_sessions(data_dir, mid)
        [(used, charged, rate, _status)] = _cc_sessions(data_dir, mid)
        assert charged == used * rate == closed["data"]["total_amount"]
        # The performer's websocket is untouched, and no second closing event follows.
        await perf.request("leave")
        assert [e for e in _billing_log(data_dir, b, mid) if "closed" in e["type"]] == [closed]
    finally:
        _, code = await _stop(dp, opened)
    assert code == 0, "".join(dp.output[-30:])


def _logged_port(output: list[str], msg: str) -> list[int]:
    """Ports named by the supervisor's JSON log lines with message ``msg`` (JASMIN_LOG_LEVEL=info)."""
    ports = []
    for line in output:
        if f'"msg": "{msg}"' in line:
            m = re.search(r'"port": (\d+)', line)
            if m:
                ports.append(int(m.group(1)))
    return ports


@pytest.mark.slow
async def test_the_internal_revoke_endpoints_refuse_anyone_without_the_supervisor_secret() -> None:
    """Protects /internal/revoke (which closes any member's websockets): the supervisor's and the
    workers' answer 403 without the per-run secret or with a wrong one, and the public port does
    not pass /internal/ paths on to a worker (its proxy adds the secret to what it forwards)."""
    dp = await start_daemon_process(
        env={"JASMIN_SERVER_WORKERS": "2", "JASMIN_BILLING_ENABLED": "false", "JASMIN_LOG_LEVEL": "info"}
    )
    try:
        body = {"member_id": "u_0123456789abcdef0123", "reason": "test"}
        internal = _logged_port(dp.output, "internal endpoint listening")
        workers = _logged_port(dp.output, "worker up")
        assert len(internal) == 1 and len(workers) == 2, "".join(dp.output[-30:])
        async with aiohttp.ClientSession() as s:
            for base in [f"http://127.0.0.1:{p}" for p in internal + workers]:
                for headers in ({}, {INTERNAL_SECRET_HEADER: "x" * 43}):
                    async with s.post(base + "/internal/revoke", json=body, headers=headers) as r:
                        assert r.status == 403, (base, headers, await r.text())
                        assert (await r.json())["error"]["code"] == "forbidden"
            for path in ("/internal/revoke", "/internal/http-sessions"):
                async with s.request("POST" if path.endswith("revoke") else "GET", dp.http + path, json=body) as r:
                    assert r.status == 404, (path, await r.text())
    finally:
        _, code = await _stop(dp, [])
    assert code == 0, "".join(dp.output[-30:])


async def test_the_supervisor_passes_a_revocation_to_every_other_worker_and_counts_one_that_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Protects the fan-out: a revocation a worker posts reaches every other live worker (with the
    secret, without the poster's port), never the poster itself; a worker that does not answer
    within the wait is counted (jasmin_supervisor_revocations_unanswered_total) and the answer
    still comes, so the erasure waiting on it goes on. Stand-in workers: loopback aiohttp servers."""
    monkeypatch.setattr(supervisor_module, "REVOKE_WAIT_S", 0.3)
    asked: dict[int, list[tuple[str, Any]]] = {0: [], 1: [], 2: []}
    never = asyncio.Event()

    def worker(index: int) -> web.Application:
        async def revoke(request: web.Request) -> web.Response:
            asked[index].append((request.headers.get(INTERNAL_SECRET_HEADER, ""), await request.json()))
            if index == 2:
                await never.wait()  # a worker stuck past the wait
            return web.json_response({"ended": 1})

        app = web.Application()
        app.router.add_post(INTERNAL_REVOKE, revoke)
        return app

    runners = [web.AppRunner(worker(i), shutdown_timeout=0.1) for i in range(3)]
    cfg = node_config()
    sup = Supervisor(cfg.replace(server=dataclasses.replace(cfg.server, workers=3)))
    sup.http = aiohttp.ClientSession()
    try:
        for w, runner in zip(sup.workers, runners):
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            w.port, w.alive = runner.addresses[0][1], True
        await sup._start_internal()  # what start() does before spawning the workers
        url = sup.internal_url + INTERNAL_REVOKE
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json={"member_id": "u_1"}) as r:
                assert r.status == 403
            async with http.post(url, data=b"[", headers={INTERNAL_SECRET_HEADER: sup.secret}) as r:
                assert r.status == 400 and (await r.json())["error"]["code"] == "bad_request"
            body = {"member_id": "u_1", "reason": "account revoked", "from_port": sup.workers[0].port}
            async with http.post(url, json=body, headers={INTERNAL_SECRET_HEADER: sup.secret}) as r:
                assert r.status == 200 and await r.json() == {"workers": 2, "unanswered": 1}
        assert asked[0] == [], "the worker that made the revocation is not asked"
        for i in (1, 2):
            assert asked[i] == [(sup.secret, {"member_id": "u_1", "reason": "account revoked"})]
        assert (sup.revocations, sup.revocations_unanswered) == (1, 1)
    finally:
        never.set()
        for runner in runners:
            await runner.cleanup()
        if sup._internal is not None:
            await sup._internal.close()
        await sup.http.close()
