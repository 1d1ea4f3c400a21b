"""The wire shapes of the moderation routes (``jasmin_sfu.api.rest_chat``, docs/chat.md), and
their rows of the paths table: support's moderation log and content reports. Both answers are
built by the chat service; these structs document them (the fuzz test checks every answer
against the generated document)."""

from __future__ import annotations

from typing import Annotated, Any

from jasmin_sfu.api.wire import Closed, Meta, Op
from jasmin_sfu.api.wire_accounts import enum
from jasmin_sfu.services.chat import MODERATION_ACTIONS

ROOM_PATTERN = "^[A-Za-z0-9_.:-]{1,64}$"
MAX_LIMIT = 500


class ModerationActor(Closed):
    id: str
    username: str
    kind: str


class ModerationEntry(Closed):
    id: str
    room: str
    actor: ModerationActor
    action: Annotated[str, enum(MODERATION_ACTIONS)]
    target: Annotated[str, Meta(description="The chat user id acted on")] | None
    reason: str
    params: Annotated[dict[str, Any], Meta(description="seconds, message_id, lifted, messages ...")]
    ts: Annotated[float, Meta(description="UNIX seconds")]


class ModerationReport(Closed):
    id: str
    room: str
    message_id: str
    reporter: str
    author: str
    text: Annotated[str, Meta(description="The reported message as it was")]
    reason: str
    ts: float


class ModerationLog(Closed):
    entries: list[ModerationEntry]


class ModerationReports(Closed):
    reports: list[ModerationReport]


ERRORS = {
    400: "A query parameter is malformed or out of range",
    401: "Missing, malformed, unknown, expired or revoked token",
    403: "Only support (admin accounts) may read this",
    503: "Accounts or chat are not enabled on this node, or the database is busy",
}
_QUERY = (
    {
        "name": "room",
        "in": "query",
        "required": False,
        "description": "One room (a show id); absent: all rooms",
        "schema": {"type": "string", "pattern": ROOM_PATTERN, "example": "alice"},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "Newest first, at most this many",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100},
    },
)


def _op(path: str, operation_id: str, summary: str, shape: type) -> Op:
    return Op(
        "get",
        path,
        operation_id,
        summary,
        {200: (summary, shape)},
        tuple(ERRORS),
        ERRORS,
        bearer=True,
        parameters=_QUERY,
    )


OPS: tuple[Op, ...] = (
    _op("/api/v1/moderation/log", "moderationLog", "Free-chat moderation actions, newest first", ModerationLog),
    _op(
        "/api/v1/moderation/reports", "moderationReports", "Prohibited-content reports, newest first", ModerationReports
    ),
)
