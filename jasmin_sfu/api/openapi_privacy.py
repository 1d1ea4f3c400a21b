"""The OpenAPI paths and schemas of the privacy routes (``jasmin_sfu.api.rest_privacy``).

Merged into ``openapi_document()`` by one line; the fuzz test checks the routes
answer exactly as written here. Schema names are prefixed ``Privacy``.
"""

from __future__ import annotations

from typing import Any

from jasmin_sfu.api.openapi_parts import body as _body
from jasmin_sfu.api.openapi_parts import ref as _ref
from jasmin_sfu.api.openapi_parts import responses
from jasmin_sfu.api.openapi_parts import text as _text
from jasmin_sfu.services.privacy import (
    AGE_RANGES,
    GENDERS,
    MASK_RANKS,
    MAX_ABOUT,
    MAX_DISPLAY_NAME,
    MAX_LANGUAGES,
)
from jasmin_sfu.store.accounts_repo import MASK_VISIBILITIES, PROFILE_VISIBILITIES

_ERRORS = {
    400: "Malformed body, unknown field, or a value out of range",
    401: "Missing, malformed, unknown, expired or revoked token; or a wrong password (erasure)",
    403: "forbidden: the caller's role may not do this (profiles are members'; member views are for performers, "
         "support and the member itself)",
    404: "No such member (or it was erased)",
    413: "Body larger than 64 KiB",
    415: "Body is not application/json",
    429: "rate_limited: too many wrong passwords; Retry-After says when to try again",
    503: "Accounts are not enabled on this node, or the database is busy",
}


def _responses(ok: dict[int, tuple[str, str | None]], *errors: int) -> dict[str, Any]:
    return responses(_ERRORS, ok, *errors)


BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
USERNAME = {"type": "string", "pattern": "^[A-Za-z0-9_]{3,32}$", "example": "member1"}
_NSTR = {"type": "string", "nullable": True}


def _profile_fields(nullable: bool) -> dict[str, Any]:
    def s(extra: dict[str, Any]) -> dict[str, Any]:
        return {"type": "string", **({"nullable": True} if nullable else {}), **extra}

    gender: dict[str, Any] = {"enum": list(GENDERS) + ([None] if nullable else [""])}
    age: dict[str, Any] = {"enum": list(AGE_RANGES) + ([None] if nullable else [""])}
    return {
        "display_name": s(_text(MAX_DISPLAY_NAME) if not nullable else {"maxLength": MAX_DISPLAY_NAME}),
        "gender": s(gender),
        "age_range": s(age),
        "country": s({"pattern": "^([A-Z]{2})?$", "description": "ISO 3166-1 alpha-2; \"\" clears"}
                     if not nullable else {"pattern": "^[A-Z]{2}$"}),
        "languages": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]{2}$"},
                      "maxItems": MAX_LANGUAGES, "uniqueItems": True},
        "about": s(_text(MAX_ABOUT, multiline=True) if not nullable else {"maxLength": MAX_ABOUT}),
    }


def _download_responses(errors: tuple[int, ...]) -> dict[str, Any]:
    out = _responses({200: ("The data download", "PrivacyDownload")}, *errors)
    out["200"]["headers"] = {
        "Content-Disposition": {"required": True, "description": "A file to save, not a page to show",
                                "schema": {"type": "string", "pattern": "^attachment; filename=\"[a-z-]+\\.json\"$"}},
        "Cache-Control": {"required": True, "schema": {"type": "string", "enum": ["no-store"]}},
    }
    return out


def privacy_schemas() -> dict[str, Any]:
    """Component schemas of the privacy routes."""
    mask = {
        "type": "object", "required": ["rank", "vip_points"], "additionalProperties": False,
        "properties": {"rank": {"type": "string", "nullable": True, "enum": [r for _, r in MASK_RANKS] + [None]},
                       "vip_points": {"type": "integer", "minimum": 0}},
    }
    profile = _profile_fields(nullable=True)
    return {
        "PrivacyMask": mask,
        "PrivacyProfile": {
            "type": "object", "required": [*profile, "mask"], "additionalProperties": False,
            "properties": {**profile, "mask": _ref("PrivacyMask")},
        },
        "PrivacyProfilePatch": {
            "type": "object", "additionalProperties": False, "properties": _profile_fields(nullable=False),
            "description": "Only the fields sent change; \"\" (or [] for languages) clears one",
        },
        "PrivacySettings": {
            "type": "object", "required": ["profile_visibility", "mask_visibility"], "additionalProperties": False,
            "properties": {"profile_visibility": {"type": "string", "enum": list(PROFILE_VISIBILITIES)},
                           "mask_visibility": {"type": "string", "enum": list(MASK_VISIBILITIES)}},
        },
        "PrivacySettingsPatch": {
            "type": "object", "additionalProperties": False,
            "properties": {"profile_visibility": {"type": "string", "enum": list(PROFILE_VISIBILITIES)},
                           "mask_visibility": {"type": "string", "enum": list(MASK_VISIBILITIES)}},
        },
        "PrivacyDownload": {
            "type": "object", "required": ["format", "member_id", "generated_at", "sources"],
            "properties": {
                "format": {"type": "string", "enum": ["jasmin-data-download/1"]},
                "member_id": {"type": "string"},
                "generated_at": {"type": "number"},
                "sources": {"type": "object", "description": "source name -> table name -> rows",
                            "additionalProperties": {"type": "object", "additionalProperties": {
                                "type": "array", "items": {"type": "object"}}}},
            },
        },
        "PrivacyErasureRequest": {
            "type": "object", "required": ["password"], "additionalProperties": False,
            "properties": {"password": _text(256, storable_only=True, format="password")},
        },
        "PrivacyErasure": {
            "type": "object", "required": ["status", "member_id", "rows"], "additionalProperties": False,
            "properties": {"status": {"type": "string", "enum": ["completed", "pending"]},
                           "member_id": {"type": "string"},
                           "rows": {"type": "object", "additionalProperties": {"type": "integer"}}},
        },
        "PrivacyMemberView": {
            "type": "object", "required": ["username", "site"],
            "description": "Performers: username, site, favourite, spending with them; profile and mask only "
                           "as the member's visibility allows. The member itself and support: everything.",
            "properties": {
                "member_id": {"type": "string"},
                "username": {"type": "string"},
                "site": {"type": "string"},
                "favourite": {"type": "boolean", "nullable": True},
                "spending": {"type": "object", "required": ["privates", "total_credits", "entries"], "properties": {
                    "privates": {"type": "integer"}, "private_seconds": {"type": "integer"},
                    "private_credits": {"type": "string"}, "tip_credits": {"type": "string"},
                    "total_credits": {"type": "string"},
                    "entries": {"type": "array", "items": {"type": "object"}}}},
                "profile": {"type": "object", "properties": profile},
                "profile_visibility": {"type": "string", "enum": list(PROFILE_VISIBILITIES)},
                "mask": _ref("PrivacyMask"),
                "mask_visibility": {"type": "string", "enum": list(MASK_VISIBILITIES)},
            },
        },
    }


def privacy_paths() -> dict[str, Any]:
    """Path items of the privacy routes."""
    me = (401, 403, 503)
    return {
        "/api/v1/me/profile": {
            "get": {"operationId": "getMemberProfile", "summary": "The member's own profile and mask",
                    "security": BEARER, "responses": _responses({200: ("The profile", "PrivacyProfile")}, *me)},
            "patch": {"operationId": "updateMemberProfile", "summary": "Change profile fields (all optional)",
                      "security": BEARER, "requestBody": _body("PrivacyProfilePatch"),
                      "responses": _responses({200: ("The profile", "PrivacyProfile")}, 400, 413, 415, *me)},
        },
        "/api/v1/me/privacy": {
            "get": {"operationId": "getPrivacySettings", "summary": "Who sees the profile and the mask",
                    "security": BEARER, "responses": _responses({200: ("The settings", "PrivacySettings")}, *me)},
            "patch": {"operationId": "updatePrivacySettings", "summary": "Change who sees the profile and the mask",
                      "security": BEARER, "requestBody": _body("PrivacySettingsPatch"),
                      "responses": _responses({200: ("The settings", "PrivacySettings")}, 400, 413, 415, *me)},
        },
        "/api/v1/me/data": {
            "get": {"operationId": "downloadMyData", "summary": "Everything held about the member, as JSON",
                    "security": BEARER, "responses": _download_responses(me)},
        },
        "/api/v1/me/erasure": {
            "post": {"operationId": "forgetMyData",
                     "summary": "Close the account and erase personal data (financial records are kept under the "
                                "pseudonymous member id); the username stays blacklisted for a period",
                     "security": BEARER, "requestBody": _body("PrivacyErasureRequest"),
                     "responses": _responses({200: ("Erased", "PrivacyErasure"),
                                              202: ("Recorded; finished by the next retention run", "PrivacyErasure")},
                                             400, 413, 415, 429, *me)},
        },
        "/api/v1/members/{username}": {
            "get": {"operationId": "memberView", "summary": "A member as the caller may see it",
                    "security": BEARER,
                    "parameters": [{"name": "username", "in": "path", "required": True, "schema": USERNAME}],
                    "responses": _responses({200: ("The member", "PrivacyMemberView")}, 401, 403, 404, 503)},
        },
        "/api/v1/members/by-id/{member_id}": {
            "get": {"operationId": "memberViewById",
                    "summary": "A member by its id (the member_id signaling shows performers)",
                    "security": BEARER,
                    "parameters": [{"name": "member_id", "in": "path", "required": True,
                                    "schema": _text(64, min_len=1, storable_only=True)}],
                    "responses": _responses({200: ("The member", "PrivacyMemberView")}, 401, 403, 404, 503)},
        },
    }
