"""The OpenAPI 3 document of the REST API, served at ``/openapi.json``.

Written by hand, next to ``jasmin_sfu.api.rest``; ``tests/api/test_openapi_fuzz.py``
generates requests from it and checks the answers against it (status codes,
content types, bodies), so a drift between the two fails the suite.
"""

from __future__ import annotations

from typing import Any

from jasmin_sfu import __version__
from jasmin_sfu.api.ice_servers import ice_paths, ice_schemas
from jasmin_sfu.api.openapi_chat import chat_paths, chat_schemas
from jasmin_sfu.api.openapi_parts import body as _body
from jasmin_sfu.api.openapi_parts import closed_object as _object
from jasmin_sfu.api.openapi_parts import ref as _ref
from jasmin_sfu.api.openapi_parts import responses
from jasmin_sfu.api.openapi_parts import text as _text
from jasmin_sfu.api.openapi_privacy import privacy_paths, privacy_schemas
from jasmin_sfu.api.openapi_social import social_paths, social_schemas
from jasmin_sfu.services.accounts import (
    CATEGORIES,
    MAX_BIO,
    MAX_DISPLAY_NAME,
    MAX_PASSWORD,
    MAX_PRICE,
    MIN_PASSWORD,
    NON_NUDE_CATEGORIES,
    NUDE_CATEGORIES,
)
from jasmin_sfu.services.ledger import PACKAGES

_ERRORS = {
    400: "Malformed body, unknown field, or a value out of range",
    401: "Missing, malformed, unknown, expired or revoked token (or wrong credentials at login)",
    402: "The payment processor declined the charge",
    403: "The caller's role may not do this, or the 18+ confirmation is missing",
    404: "No such performer",
    409: "Conflict: username unavailable, or an idempotency key reused for another purchase",
    413: "Body larger than 64 KiB",
    415: "Body is not application/json",
    429: "rate_limited: too many failed logins for this username or address; Retry-After says when",
    503: "Accounts, billing or payments are not enabled on this node, or the database is busy",
}


def _responses(ok: dict[int, tuple[str, str | None]], *errors: int) -> dict[str, Any]:
    return responses(_ERRORS, ok, *errors)


USERNAME = {"type": "string", "pattern": "^[A-Za-z0-9_]{3,32}$", "example": "alice"}
PASSWORD = _text(MAX_PASSWORD, min_len=MIN_PASSWORD, storable_only=True, format="password",
                 description="Not equal to the username (case-insensitive)")
DISPLAY_NAME = _text(MAX_DISPLAY_NAME, min_len=1, description="Trimmed; one line")
BIO = _text(MAX_BIO, multiline=True, description="Trimmed")
PRICE = {"type": "integer", "minimum": 1, "maximum": MAX_PRICE,
         "description": "Hundredths of a credit per minute, billed per second"}
# hot_flirt and celebrity (no nudity, even in private) never mix with the nude categories: either
# list holds categories of one kind only (an empty list is both).
CATEGORY_LIST = {"anyOf": [
    {"type": "array", "items": {"type": "string", "enum": list(cats)}, "uniqueItems": True, "maxItems": len(cats)}
    for cats in (NUDE_CATEGORIES, NON_NUDE_CATEGORIES)
], "description": "hot_flirt and celebrity (no nudity) cannot be combined with the nude categories"}
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def _schemas() -> dict[str, Any]:
    nullable_str = {"type": "string", "nullable": True}
    principal = {
        "type": "object",
        "required": ["kind", "id", "username", "adult_confirmed", "expires_at"],
        "properties": {
            "kind": {"type": "string", "enum": ["guest", "member", "performer", "admin"]},
            "id": {"type": "string", "description": "The account id (signaling's member_id / performer_id); "
                                                    "a guest's session id"},
            "username": nullable_str,
            "adult_confirmed": {"type": "boolean"},
            "expires_at": {"type": "number", "description": "When the token expires, UNIX seconds"},
        },
    }
    profile = {
        "type": "object",
        "required": ["id", "username", "display_name", "bio", "price_per_minute", "categories", "is_group",
                     "group_members"],
        "properties": {
            "id": {"type": "string"},
            "username": {"type": "string"},
            "display_name": {"type": "string"},
            "bio": {"type": "string"},
            "price_per_minute": {"type": "integer"},
            "categories": {"type": "array", "items": {"type": "string", "enum": list(CATEGORIES)}},
            "is_group": {"type": "boolean"},
            "group_members": {"type": "array", "items": {"type": "string"},
                              "description": "Usernames of the performers of a group account"},
        },
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                }
            },
        },
        "Principal": principal,
        "Me": {
            "allOf": [
                principal,
                {"type": "object", "properties": {"performer": _ref("PerformerProfile")}},
            ]
        },
        "Token": {
            "type": "object",
            "required": ["token", "token_type", "expires_at", "principal"],
            "properties": {
                "token": {"type": "string", "description": "Shown once; send as Authorization: Bearer <token> "
                                                           "and as `token` in the signaling join"},
                "token_type": {"type": "string", "enum": ["Bearer"]},
                "expires_at": {"type": "number"},
                "principal": _ref("Principal"),
            },
        },
        "PerformerProfile": profile,
        "Packages": {
            "type": "object",
            "required": ["packages"],
            "properties": {
                "packages": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["code", "price_cents", "currency", "credits", "vip_points"],
                        "properties": {
                            "code": {"type": "string"},
                            "price_cents": {"type": "integer"},
                            "currency": {"type": "string"},
                            "credits": {"type": "integer"},
                            "vip_points": {"type": "integer"},
                        },
                    },
                }
            },
        },
        "Wallet": {
            "type": "object",
            "required": ["credits", "available_units", "held_units", "units_per_credit", "vip_points"],
            "properties": {
                "credits": {"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$",
                            "description": "Available credits, two decimals, rounded down"},
                "available_units": {"type": "integer", "description": "Ledger units (1/6000 credit) a debit may take"},
                "held_units": {"type": "integer", "description": "Units held by running privates"},
                "units_per_credit": {"type": "integer"},
                "vip_points": {"type": "integer"},
            },
        },
        "Purchase": {
            "type": "object",
            "required": ["payment_id", "package", "credits", "vip_points", "amount_cents", "currency", "status",
                         "created_at", "card_last4", "card_expiry", "replayed"],
            "properties": {
                "payment_id": {"type": "string", "description": "Also the ledger transfer id of the top-up"},
                "package": {"type": "string"},
                "credits": {"type": "integer"},
                "vip_points": {"type": "integer"},
                "amount_cents": {"type": "integer"},
                "currency": {"type": "string"},
                "status": {"type": "string", "enum": ["approved", "credited"]},
                "created_at": {"type": "number"},
                "card_last4": nullable_str,
                "card_expiry": nullable_str,
                "replayed": {"type": "boolean", "description": "An earlier request with this key did the purchase"},
            },
        },
        "GuestSessionRequest": _object({"adult_confirmed": {"type": "boolean"}}),
        "RegisterRequest": _object(
            {"username": USERNAME, "password": PASSWORD, "adult_confirmed": {"type": "boolean"}},
            ["username", "password"],
        ),
        "LoginRequest": _object(
            {"username": _text(64, storable_only=True), "password": _text(MAX_PASSWORD, storable_only=True)},
            ["username", "password"],
        ),
        "AdultConfirmationRequest": _object({}),
        "PurchaseRequest": _object(
            {
                "package": {"type": "string", "enum": [p.code for p in PACKAGES]},
                "idempotency_key": {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,64}$",
                                    "description": "Chosen by the client; a retry with the same key buys once"},
                "card_last4": {"type": "string", "pattern": "^[0-9]{4}$"},
                "card_expiry": {"type": "string", "pattern": "^(0[1-9]|1[0-2])/[0-9]{2}$", "example": "12/29"},
            },
            ["package", "idempotency_key"],
        ),
        "CreatePerformerRequest": _object(
            {
                "username": USERNAME,
                "password": PASSWORD,
                "display_name": DISPLAY_NAME,
                "price_per_minute": PRICE,
                "categories": CATEGORY_LIST,
                "bio": BIO,
                "group_members": {"type": "array", "items": USERNAME, "minItems": 1, "maxItems": 16,
                                  "uniqueItems": True,
                                  "description": "Makes a group account: its show is these performers' too. Each"
                                                 " name must be an existing performer that is not a group account"
                                                 " (404 not_found otherwise); a name given twice counts once."},
            },
            ["username", "password", "display_name", "price_per_minute"],
        ),
        "UpdatePerformerRequest": _object(
            {
                "display_name": DISPLAY_NAME,
                "bio": BIO,
                "price_per_minute": PRICE,
                "categories": CATEGORY_LIST,
            }
        ),
    }


def _paths() -> dict[str, Any]:
    username_param = {"name": "username", "in": "path", "required": True, "schema": USERNAME}
    return {
        "/api/v1/guest-sessions": {
            "post": {
                "operationId": "startGuest",
                "summary": "A guest session; the token carries the 18+ confirmation",
                "requestBody": _body("GuestSessionRequest", required=False),
                "responses": _responses({201: ("A guest token", "Token")}, 400, 413, 415, 503),
            }
        },
        "/api/v1/accounts": {
            "post": {
                "operationId": "register",
                "summary": "Register a member (signed in at once)",
                "requestBody": _body("RegisterRequest"),
                "responses": _responses({201: ("A member token", "Token")}, 400, 409, 413, 415, 503),
            }
        },
        "/api/v1/sessions": {
            "post": {
                "operationId": "login",
                "summary": "Log in with username and password",
                "requestBody": _body("LoginRequest"),
                "responses": _responses({201: ("A new token", "Token")}, 400, 401, 413, 415, 429, 503),
            }
        },
        "/api/v1/sessions/current": {
            "delete": {
                "operationId": "logout",
                "summary": "Revoke the token of this request",
                "security": BEARER,
                "responses": _responses({204: ("Revoked", None)}, 401, 503),
            }
        },
        "/api/v1/me": {
            "get": {
                "operationId": "me",
                "summary": "Who the token speaks for (performers: with their profile)",
                "security": BEARER,
                "responses": _responses({200: ("The principal", "Me")}, 401, 503),
            }
        },
        "/api/v1/me/adult-confirmation": {
            "post": {
                "operationId": "confirmAdult",
                "summary": "Confirm being 18 or older (a guest's token, or a member's account for a year)",
                "security": BEARER,
                "requestBody": _body("AdultConfirmationRequest", required=False),
                "responses": _responses({200: ("The principal, confirmed", "Principal")}, 400, 401, 413, 415, 503),
            }
        },
        "/api/v1/packages": {
            "get": {
                "operationId": "packages",
                "summary": "The credit packages",
                "responses": _responses({200: ("Packages", "Packages")}),
            }
        },
        "/api/v1/wallet": {
            "get": {
                "operationId": "wallet",
                "summary": "The member's credits and VIP points",
                "security": BEARER,
                "responses": _responses({200: ("The wallet", "Wallet")}, 401, 403, 503),
            }
        },
        "/api/v1/wallet/purchases": {
            "post": {
                "operationId": "purchase",
                "summary": "Buy a credit package (idempotent by idempotency_key); credits are usable at once",
                "security": BEARER,
                "requestBody": _body("PurchaseRequest"),
                "responses": _responses(
                    {201: ("Bought now", "Purchase"), 200: ("Bought earlier with this key", "Purchase")},
                    400, 401, 402, 403, 409, 413, 415, 503,
                ),
            }
        },
        "/api/v1/performers": {
            "post": {
                "operationId": "createPerformer",
                "summary": "Create a performer or group account (admins)",
                "security": BEARER,
                "requestBody": _body("CreatePerformerRequest"),
                "responses": _responses({201: ("The profile", "PerformerProfile")},
                                        400, 401, 403, 404, 409, 413, 415, 503),
            }
        },
        "/api/v1/performers/{username}": {
            "parameters": [username_param],
            "get": {
                "operationId": "performer",
                "summary": "A performer's profile (needs the 18+ confirmation)",
                "security": BEARER,
                "responses": _responses({200: ("The profile", "PerformerProfile")}, 401, 403, 404, 503),
            },
            "patch": {
                "operationId": "updatePerformer",
                "summary": "Change a profile (the performer itself, or an admin)",
                "security": BEARER,
                "requestBody": _body("UpdatePerformerRequest"),
                "responses": _responses({200: ("The profile", "PerformerProfile")}, 400, 401, 403, 404, 413, 415, 503),
            },
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3", "content": {"application/json": {"schema": {
                    "type": "object"}}}}},
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    """The whole document (a fresh dict each call)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "jasmin-sfu accounts API",
            "version": __version__,
            "description": "Accounts, sessions, the 18+ confirmation, wallet and performer profiles. "
                           "Errors are {\"error\": {\"code\", \"message\"}}. See docs/accounts.md. "
                           "WHIP and WHEP (/whip, /whep) are not here: they carry application/sdp, "
                           "see docs/whip-whep.md.",
        },
        "servers": [{"url": "/"}],
        "paths": {**_paths(), **chat_paths(), **social_paths(), **privacy_paths(), **ice_paths()},
        "components": {
            "schemas": {**_schemas(), **chat_schemas(), **social_schemas(), **privacy_schemas(), **ice_schemas()},
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
