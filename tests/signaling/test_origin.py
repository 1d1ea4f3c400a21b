"""Which web pages may use the node (server.allowed_origins), and malformed HTTP without noise."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, AsyncIterator

import aiohttp
import pytest

from jasmin_sfu.app import Daemon
from jasmin_sfu.config import ConfigError, ServerConfig, load_config, validate
from tests.conftest import test_config as loopback_config


async def _start(allowed: tuple[str, ...] = ()) -> tuple[Daemon, str]:
    cfg = loopback_config()
    d = Daemon(dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, allowed_origins=allowed)))
    await d.start()
    return d, f"127.0.0.1:{d.port}"


@pytest.fixture
async def node() -> AsyncIterator[tuple[Daemon, str]]:
    d, host = await _start(("https://site.example", "https://other.example:8443"))
    yield d, host
    await d.stop()


async def _ws(host: str, origin: str | None) -> tuple[int, Any]:
    """(status, first frame or error body) of a websocket upgrade with ``origin``."""
    headers = {"Origin": origin} if origin is not None else {}
    async with aiohttp.ClientSession() as s:
        try:
            async with s.ws_connect(f"ws://{host}/ws", headers=headers) as ws:
                await ws.send_json({"type": "hello", "protocol": "jasmin/1"})
                return 101, (await ws.receive_json(timeout=10))["type"]
        except aiohttp.WSServerHandshakeError as e:
            async with s.get(
                f"http://{host}/ws",
                headers={
                    **headers,
                    "Connection": "Upgrade",
                    "Upgrade": "websocket",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                },
            ) as r:
                return e.status, await r.json()


@pytest.mark.parametrize(
    "origin,allowed",
    [
        (None, True),  # a non-browser client
        ("http://{host}", True),  # the node's own page
        ("HTTP://{HOST}", True),
        ("https://site.example", True),  # configured
        ("https://other.example:8443", True),
        ("http://evil.example", False),
        ("https://site.example.evil.example", False),
        ("https://other.example", False),  # configured with another port
        ("null", False),  # sandboxed frame, file: page
        ("http://127.0.0.1:1", False),  # the node's host, another port
    ],
)
async def test_websocket_upgrade_checks_the_origin(node: tuple[Daemon, str], origin: str | None, allowed: bool) -> None:
    """Protects item 13 of issue 11: any web page could open /ws (`Origin: http://evil.example`
    and `Origin: null` got a welcome). Now only the node's own origin, the configured ones and
    clients without an Origin get the upgrade; the rest are refused with 403 and a JSON body
    naming server.allowed_origins."""
    _d, host = node
    if origin is not None:
        origin = origin.format(host=host, HOST=host.upper())
    status, body = await _ws(host, origin)
    if allowed:
        assert (status, body) == (101, "welcome")
    else:
        assert status == 403
        assert body["error"]["code"] == "forbidden" and "server.allowed_origins" in body["error"]["message"]


async def test_null_and_star_are_allowed_only_when_listed() -> None:
    """Protects the documented exceptions: "null" is refused unless listed, "*" allows every origin."""
    for allowed, origin, ok in [
        (("null",), "null", True),
        (("*",), "http://evil.example", True),
        (("*",), "null", True),
        ((), "null", False),
    ]:
        d, host = await _start(allowed)
        try:
            status, _ = await _ws(host, origin)
            assert (status == 101) is ok, (allowed, origin, status)
        finally:
            await d.stop()


async def test_rest_answers_cors_for_allowed_origins_only(node: tuple[Daemon, str]) -> None:
    """Protects item 13 on REST: an allowed cross-site origin gets Access-Control-Allow-Origin
    (and its preflight a 204 naming the methods and headers); another origin is refused with
    403, the same error shape as the API's; a request without Origin is served as before."""
    _d, host = node
    base = f"http://{host}/api/v1/packages"
    async with aiohttp.ClientSession() as s:
        async with s.get(base) as r:
            assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
        async with s.get(base, headers={"Origin": "https://site.example"}) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == "https://site.example"
            assert r.headers["Vary"] == "Origin"
        async with s.options(
            base,
            headers={
                "Origin": "https://site.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        ) as r:
            assert r.status == 204
            assert "POST" in r.headers["Access-Control-Allow-Methods"]
            assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
        async with s.get(base, headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
            assert "Access-Control-Allow-Origin" not in r.headers
        async with s.get(f"http://{host}/healthz", headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 200  # not guarded: no data, no effect


def test_allowed_origins_config() -> None:
    """Protects the key's validation and its env form: an origin with a path or no scheme is a
    config error; JASMIN_SERVER_ALLOWED_ORIGINS is a comma-separated list."""
    for bad in ("site.example", "https://site.example/", "https://site.example/app", "ftp://site.example", "*.example"):
        with pytest.raises(ConfigError, match="allowed_origins"):
            validate(dataclasses.replace(loopback_config(), server=ServerConfig(allowed_origins=(bad,))))
    env = {"JASMIN_SERVER_ALLOWED_ORIGINS": "https://a.example, null"}
    assert load_config(None, env=env).server.allowed_origins == ("https://a.example", "null")


async def test_nul_in_a_request_header_is_a_400_without_an_error_log(daemon, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """Protects item 14 of issue 11: aiohttp answers a NUL in a header with 400 itself but logged
    an error-level traceback for the client's mistake. Now it is one info line; the node serves on."""
    port = daemon.daemon.port
    for raw in (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"GET /api/v1/packages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\x00\r\n\r\n",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        assert status_line.split()[1] == b"400", status_line
        writer.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    async with aiohttp.ClientSession() as s:
        async with s.get(daemon.http + "/healthz") as r:
            assert r.status == 200


async def test_the_supervisor_checks_the_origin_of_ws_itself() -> None:
    """Protects item 13 with server.workers > 1: the supervisor bridges /ws to a worker over its
    own connection (no Origin), so the supervisor must refuse a foreign page itself; REST is
    proxied with the page's Origin and Host. And its aiohttp logs a NUL header as no error."""
    import signal

    from tests.conftest import start_daemon_process

    dp = await start_daemon_process(
        env={
            "JASMIN_SERVER_WORKERS": "2",
            "JASMIN_BILLING_ENABLED": "false",
            "JASMIN_SERVER_ALLOWED_ORIGINS": "https://site.example",
            "JASMIN_LOG_LEVEL": "info",
        }
    )
    try:
        host = f"127.0.0.1:{dp.port}"
        assert await _ws(host, "https://site.example") == (101, "welcome")
        assert await _ws(host, f"http://{host}") == (101, "welcome")
        status, body = await _ws(host, "http://evil.example")
        assert status == 403 and body["error"]["code"] == "forbidden"
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://{host}/api/v1/packages", headers={"Origin": "http://evil.example"}) as r:
                assert r.status == 403
            async with s.get(f"http://{host}/api/v1/packages", headers={"Origin": "https://site.example"}) as r:
                assert r.headers.get("Access-Control-Allow-Origin") == "https://site.example"
        reader, writer = await asyncio.open_connection("127.0.0.1", dp.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.readline(), 10)).split()[1] == b"400"
        writer.close()
    finally:
        dp.proc.send_signal(signal.SIGTERM)
        dp.proc.wait(20)
    out = "".join(dp.output)
    assert "Error handling request" in out  # the info line is there...
    assert "Traceback" not in out and '"level": "error"' not in out.lower(), out[-3000:]
