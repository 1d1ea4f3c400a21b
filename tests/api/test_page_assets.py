"""The demo page's files are served compressed (jasmin_sfu/api/page_assets.py)."""

from __future__ import annotations

import gzip
from importlib import resources

import aiohttp

from tests.conftest import Running


async def test_every_page_file_is_served_gzip_when_accepted_and_as_is_otherwise(daemon: Running) -> None:
    """Protects the weak-link page load (tests/browser/test_weak_viewer.py timed out loading the
    uncompressed page over 60 kbit/s): `/` and every file of api/static come gzip-compressed to a
    client that accepts it, decompress to the shipped bytes, and the whole page is under 40 % of
    its size; a client that does not accept gzip gets the bytes as they are; an unknown or
    escaping name is a 404."""
    folder = resources.files("jasmin_sfu.api") / "static"
    names = sorted(e.name for e in folder.iterdir() if e.is_file())
    assert "app.js" in names and "index.html" in names
    raw_total = wire_total = 0
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        for name in names:
            path = "/" if name == "index.html" else f"/static/{name}"
            shipped = (folder / name).read_bytes()
            async with s.get(daemon.http + path, headers={"Accept-Encoding": "gzip"}) as r:
                assert r.status == 200, name
                assert r.headers.get("Content-Encoding") == "gzip", name
                body = await r.read()
            assert gzip.decompress(body) == shipped, name
            raw_total += len(shipped)
            wire_total += len(body)
            async with s.get(daemon.http + path, headers={"Accept-Encoding": "identity"}) as r:
                assert r.status == 200 and "Content-Encoding" not in r.headers, name
                assert await r.read() == shipped, name
        assert wire_total < 0.4 * raw_total, (wire_total, raw_total)
        for bad in ("/static/nope.js", "/static/..%2Fapp.py", "/static/%2e%2e%2fconfig.py"):
            async with s.get(daemon.http + bad) as r:
                assert r.status == 404, bad
