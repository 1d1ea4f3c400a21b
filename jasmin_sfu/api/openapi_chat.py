"""The OpenAPI paths and schemas of the moderation endpoints (merged into ``openapi_document()``).

Standalone (imports neither ``openapi`` nor ``rest``) so both may import it.
"""

from __future__ import annotations

from typing import Any

from jasmin_sfu.api.openapi_parts import json_response as _json
from jasmin_sfu.api.openapi_parts import ref as _ref
from jasmin_sfu.services.chat import MODERATION_ACTIONS

ROOM_PATTERN = "^[A-Za-z0-9_.:-]{1,64}$"
MAX_LIMIT = 500

_ERRORS = {
    400: "A query parameter is malformed or out of range",
    401: "Missing, malformed, unknown, expired or revoked token",
    403: "Only support (admin accounts) may read this",
    503: "Accounts or chat are not enabled on this node, or the database is busy",
}


def _query() -> list[dict[str, Any]]:
    return [
        {"name": "room", "in": "query", "required": False, "description": "One room (a show id); absent: all rooms",
         "schema": {"type": "string", "pattern": ROOM_PATTERN, "example": "alice"}},
        {"name": "limit", "in": "query", "required": False, "description": "Newest first, at most this many",
         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100}},
    ]


def _get(op: str, summary: str, schema: str) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _json(_ref(schema), summary)}
    for status, text in _ERRORS.items():
        responses[str(status)] = _json(_ref("Error"), text)
    return {"get": {"operationId": op, "summary": summary, "security": [{"bearerAuth": []}],
                    "parameters": _query(), "responses": responses}}


def chat_paths() -> dict[str, Any]:
    """The moderation log and the content reports (support only)."""
    return {
        "/api/v1/moderation/log": _get("moderationLog", "Free-chat moderation actions, newest first",
                                       "ModerationLog"),
        "/api/v1/moderation/reports": _get("moderationReports", "Prohibited-content reports, newest first",
                                           "ModerationReports"),
    }


def chat_schemas() -> dict[str, Any]:
    who = {"type": "object", "required": ["id", "username", "kind"], "additionalProperties": False,
           "properties": {"id": {"type": "string"}, "username": {"type": "string"}, "kind": {"type": "string"}}}
    entry = {
        "type": "object", "additionalProperties": False,
        "required": ["id", "room", "actor", "action", "target", "reason", "params", "ts"],
        "properties": {
            "id": {"type": "string"}, "room": {"type": "string"}, "actor": who,
            "action": {"type": "string", "enum": list(MODERATION_ACTIONS)},
            "target": {"type": "string", "nullable": True, "description": "The chat user id acted on"},
            "reason": {"type": "string"},
            "params": {"type": "object", "description": "seconds, message_id, lifted, messages ..."},
            "ts": {"type": "number", "description": "UNIX seconds"},
        },
    }
    report = {
        "type": "object", "additionalProperties": False,
        "required": ["id", "room", "message_id", "reporter", "author", "text", "reason", "ts"],
        "properties": {
            "id": {"type": "string"}, "room": {"type": "string"}, "message_id": {"type": "string"},
            "reporter": {"type": "string"}, "author": {"type": "string"},
            "text": {"type": "string", "description": "The reported message as it was"},
            "reason": {"type": "string"}, "ts": {"type": "number"},
        },
    }
    return {
        "ModerationLog": {"type": "object", "required": ["entries"], "additionalProperties": False,
                          "properties": {"entries": {"type": "array", "items": entry}}},
        "ModerationReports": {"type": "object", "required": ["reports"], "additionalProperties": False,
                              "properties": {"reports": {"type": "array", "items": report}}},
    }
