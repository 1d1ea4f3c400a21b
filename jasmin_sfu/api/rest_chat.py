"""REST endpoints of free-chat moderation, for support: the moderation log and content reports.

``GET /api/v1/moderation/log?room=&limit=`` and ``GET /api/v1/moderation/reports?room=&limit=``,
admin tokens only. Registered by one line in ``rest.ROUTE_MODULES``; the daemon puts a
``ChatRef`` under ``CHAT_KEY`` on its app, found here through ``request.config_dict``.
"""

from __future__ import annotations

import re
from typing import Callable

from aiohttp import web

from jasmin_sfu.api.rest_common import ApiContext, ApiError
from jasmin_sfu.api.wire_chat import MAX_LIMIT, ROOM_PATTERN
from jasmin_sfu.services.accounts import ADMIN
from jasmin_sfu.services.chat import ChatService
from jasmin_sfu.services.errors import NotPermittedError

_ROOM_RE = re.compile(ROOM_PATTERN)


class ChatRef:
    """How the REST sub-application finds the daemon's chat service (opened in ``start``)."""

    def __init__(self, get: Callable[[], ChatService | None]) -> None:
        self.get = get


CHAT_KEY = web.AppKey("chat", ChatRef)


def add_chat_routes(router: web.UrlDispatcher, api: ApiContext) -> None:
    """Register the moderation routes on the ``/api/v1`` sub-application."""
    routes = ChatRoutes(api)
    router.add_get("/moderation/log", routes.log)
    router.add_get("/moderation/reports", routes.reports)


class ChatRoutes:
    def __init__(self, api: ApiContext) -> None:
        self.api = api

    async def _support(self, request: web.Request) -> tuple[ChatService, str | None, int]:
        p = await self.api.principal(request)
        if p.kind != ADMIN:
            raise NotPermittedError("only support (admin accounts) may read moderation records")
        ref = request.config_dict.get(CHAT_KEY)
        chat = ref.get() if ref is not None else None
        if chat is None:
            raise ApiError(503, "chat_unavailable", "chat is not enabled on this node")
        for key in request.query:
            if key not in ("room", "limit"):
                raise ApiError(400, "bad_request", f"{key[:64]}: unknown query parameter")
        room = request.query.get("room")
        if room is not None and not _ROOM_RE.match(room):
            raise ApiError(400, "bad_request", "room: 1-64 characters of A-Z a-z 0-9 _ . : -")
        raw = request.query.get("limit", "100")
        if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= MAX_LIMIT:
            raise ApiError(400, "bad_request", f"limit: an integer 1..{MAX_LIMIT}")
        return chat, room, int(raw)

    async def log(self, request: web.Request) -> web.Response:
        chat, room, limit = await self._support(request)
        return web.json_response({"entries": await chat.moderation_log(room, limit)})

    async def reports(self, request: web.Request) -> web.Response:
        chat, room, limit = await self._support(request)
        return web.json_response({"reports": await chat.reports(room, limit)})
