"""The demo page's files (``api/static``), served from memory and gzip-compressed for clients that
accept it.

The page is ~85 KB of HTML, CSS and JavaScript; gzip makes it about a quarter of that. That matters
to exactly the viewers the site must keep: on a 60 kbit/s link the uncompressed page took 11-30 s to
load (tests/browser/test_weak_viewer.py timed out on it at 30 s), the compressed one a few seconds.
The files are read once at start (they ship with the package and do not change while it runs).
"""

from __future__ import annotations

import mimetypes
from importlib import resources

from aiohttp import web

INDEX = "index.html"
# The page's files change with each release, not while the node runs: a browser revalidates.
CACHE_CONTROL = "no-cache"


class PageAssets:
    """``GET /`` (the page) and ``GET /static/{name}`` (its files)."""

    def __init__(self) -> None:
        folder = resources.files("jasmin_sfu.api") / "static"
        self.files: dict[str, tuple[bytes, str]] = {}
        for entry in folder.iterdir():
            if entry.is_file():
                kind = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
                self.files[entry.name] = (entry.read_bytes(), kind)

    def install(self, app: web.Application) -> None:
        app.router.add_get("/", self.index)
        app.router.add_get("/static/{name}", self.static)

    def _send(self, name: str) -> web.Response:
        found = self.files.get(name)
        if found is None:
            raise web.HTTPNotFound()
        body, kind = found
        charset = "utf-8" if kind.startswith("text/") or kind.endswith("javascript") else None
        resp = web.Response(body=body, content_type=kind, charset=charset, headers={"Cache-Control": CACHE_CONTROL})
        resp.enable_compression()  # gzip or deflate when the request's Accept-Encoding allows, else as is
        return resp

    async def index(self, request: web.Request) -> web.Response:
        return self._send(INDEX)

    async def static(self, request: web.Request) -> web.Response:
        return self._send(request.match_info["name"])
