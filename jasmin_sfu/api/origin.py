"""Which web pages may talk to this node: the ``Origin`` allow-list (``server.allowed_origins``).

A browser names the page behind every websocket upgrade and every cross-site
request in ``Origin``. Allowed are: the node's own origin (a page served by
the Host the request came in on: the demo page, or a site proxying the node
under its own name), the origins configured in ``server.allowed_origins``,
and requests without ``Origin`` (non-browser clients, which any script could
imitate anyway: identity is the token, never the Origin). ``Origin: null``
(sandboxed frames, ``file:`` pages) is refused unless ``"null"`` is listed;
``"*"`` lists every origin.

``/ws`` refuses the upgrade with 403 and a JSON error body; ``/api/...`` is
refused the same way, and answers an allowed cross-site origin with CORS
headers (and its preflight ``OPTIONS`` with 204). Other paths (the demo page,
health, metrics) are not guarded.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_DEFAULT_PORTS = {"http": "80", "https": "443"}
# The request headers a browser client of /api/v1 sends (docs/accounts.md).
_CORS_HEADERS = "Authorization, Content-Type"
_CORS_METHODS = "GET, POST, PUT, PATCH, DELETE"
_CORS_MAX_AGE = "600"


def _netloc(scheme: str, netloc: str) -> str:
    """``host[:port]`` in lower case, without the scheme's default port."""
    netloc = netloc.lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default and netloc.endswith(":" + default):
        netloc = netloc[: -len(default) - 1]
    return netloc


class OriginPolicy:
    """The allow-list; ``allowed`` as validated by the config (lower case, no path)."""

    def __init__(self, allowed: Iterable[str]) -> None:
        self.allowed = frozenset(a.lower() for a in allowed)
        self.any = "*" in self.allowed

    def own(self, origin: str, host: str) -> bool:
        """Whether ``origin`` is the node's own: its host and port are the request's Host."""
        parts = urlsplit(origin)
        if parts.scheme not in _DEFAULT_PORTS or not parts.netloc or not host:
            return False
        return _netloc(parts.scheme, parts.netloc) == _netloc(parts.scheme, host)

    def allows(self, origin: str | None, host: str) -> bool:
        if origin is None:
            return True
        origin = origin.lower()
        if self.any or origin in self.allowed:
            return True
        return origin != "null" and self.own(origin, host)


def refused(origin: str) -> web.Response:
    return web.json_response(
        {
            "error": {
                "code": "forbidden",
                "message": f"origin {origin[:200]!r} may not use this node (server.allowed_origins)",
            }
        },
        status=403,
    )


def origin_middleware(policy: OriginPolicy, api_prefix: str = "/api/") -> Callable[..., Awaitable[web.StreamResponse]]:
    """The guard for ``/ws`` and ``api_prefix`` (CORS there too); installed on the main app."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        is_api = path.startswith(api_prefix)
        if not (is_api or path == "/ws"):
            return await handler(request)
        origin = request.headers.get("Origin")
        if origin is None:
            return await handler(request)
        if not policy.allows(origin, request.host):
            return refused(origin)
        if not is_api:
            return await handler(request)
        cors = {
            "Access-Control-Allow-Origin": origin,
            "Vary": "Origin",
            "Access-Control-Expose-Headers": "Retry-After, WWW-Authenticate",
        }
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return web.Response(
                status=204,
                headers={
                    **cors,
                    "Access-Control-Allow-Methods": _CORS_METHODS,
                    "Access-Control-Allow-Headers": _CORS_HEADERS,
                    "Access-Control-Max-Age": _CORS_MAX_AGE,
                },
            )
        response = await handler(request)
        response.headers.update(cors)
        return response

    return guard
