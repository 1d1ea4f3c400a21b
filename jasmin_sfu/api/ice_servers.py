"""Time-limited TURN credentials for viewers behind UDP-blocking networks (docs/deploy.md).

The TURN REST API scheme (draft-uberti-behave-turn-rest-00), which coturn
checks with ``use-auth-secret`` and ``static-auth-secret``: the username is
``"<expiry, UNIX seconds>:<id>"`` and the password (``credential``) is
``base64(HMAC-SHA1(secret, username))``. coturn needs no database and no call to
this node: it recomputes the HMAC and refuses a username whose expiry has
passed. The id is random per issue, so coturn's logs hold no account id.

Handed out as RTCIceServer dictionaries (``urls``, ``username``,
``credential``): in the signaling ``join`` answer (``ice_servers``) and on
``GET /api/v1/ice-servers`` (any session token: guests and members alike).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any, Callable

from aiohttp import web

from jasmin_sfu.api.rest_common import ApiContext, ApiError, answer
from jasmin_sfu.api.wire_ice import IceServer
from jasmin_sfu.api.wire_ice import IceServers as IceServersView


def turn_password(secret: str, username: str) -> str:
    """coturn's ``use-auth-secret`` password: base64(HMAC-SHA1(secret, username))."""
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


class IceServers:
    """Issues the RTCIceServer list; ``urls`` empty means no TURN (an empty list)."""

    def __init__(
        self,
        urls: tuple[str, ...],
        secret: str,
        ttl_s: int,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: secrets.token_hex(8),
    ) -> None:
        self.urls = urls
        self._secret = secret
        self.ttl_s = ttl_s
        self._clock = clock
        self._new_id = new_id

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    def expiry(self) -> int:
        """When credentials issued now stop being accepted, UNIX seconds."""
        return int(self._clock()) + self.ttl_s

    def issue(self) -> list[dict[str, Any]]:
        """A fresh credential for every configured URL (one RTCIceServer), or ``[]``."""
        if not self.urls:
            return []
        username = f"{self.expiry()}:{self._new_id()}"
        return [{"urls": list(self.urls), "username": username, "credential": turn_password(self._secret, username)}]


ICE_KEY = web.AppKey("ice_servers", IceServers)


def add_ice_routes(router: web.UrlDispatcher, api: ApiContext) -> None:
    """``GET /ice-servers`` on the ``/api/v1`` sub-application (any valid session token)."""

    async def ice_servers(request: web.Request) -> web.Response:
        await api.principal(request)  # 401 without a valid token, whoever it belongs to
        for key in request.query:
            raise ApiError(400, "bad_request", f"{key[:64]}: unknown query parameter")
        issuer = request.config_dict.get(ICE_KEY)
        # Credentials: no proxy or browser cache may keep them or hand them to another client.
        headers = {"Cache-Control": "no-store"}
        if issuer is None or not issuer.enabled:
            return answer(IceServersView(ice_servers=[], expires_at=None), headers=headers)
        servers = [IceServer(**server) for server in issuer.issue()]
        return answer(IceServersView(ice_servers=servers, expires_at=issuer.expiry()), headers=headers)

    router.add_get("/ice-servers", ice_servers)
