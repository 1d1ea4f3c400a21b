"""The OpenAPI paths and schemas of the social routes (``jasmin_sfu.api.rest_social``).

Merged into ``openapi_document()`` by one line; the fuzz test
(tests/api/test_openapi_fuzz.py) checks the routes answer exactly as written
here. Schema names are prefixed ``Social`` where a generic name could clash.
"""

from __future__ import annotations

from typing import Any

from jasmin_sfu.api.openapi_parts import body as _body
from jasmin_sfu.api.openapi_parts import closed_object as _object
from jasmin_sfu.api.openapi_parts import ref as _ref
from jasmin_sfu.api.openapi_parts import responses
from jasmin_sfu.api.openapi_parts import text as _text
from jasmin_sfu.services.accounts import CATEGORIES
from jasmin_sfu.services.search import (
    BUILDS,
    CAMERA_QUALITIES,
    ETHNICITIES,
    HAIR_COLOURS,
    MAX_AGE,
    MAX_LANGUAGES,
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_PRESET_LANGUAGES,
    MAX_QUERY_CHARS,
    MIN_AGE,
    SEXUAL_PREFERENCES,
    SORTS,
)

_ERRORS = {
    400: "Malformed body or parameter, unknown field, or a value out of range",
    401: "Missing, malformed, unknown, expired or revoked token",
    402: "insufficient_credits: the wallet cannot pay the 15-credit TopMember fee",
    403: "forbidden (role), adult_confirmation_required, favourites_lapsed (no purchase for over 30 days), "
         "top_membership_required, private_required, vote_not_eligible (no private of 300 s)",
    404: "No such performer, preset, feed, subscription or rating",
    409: "favourites_full (24; 96 for TopMembers), already_voted (this award period), preset_exists, presets_full",
    413: "Body larger than 64 KiB",
    415: "Body is not application/json",
    429: "rate_limited: one mailing per 24 hours; error.retry_at (UNIX seconds) and Retry-After say when",
    503: "Accounts, billing or the social features are not enabled on this node, or the database is busy",
}


def _responses(ok: dict[int, tuple[str, str | None]], *errors: int) -> dict[str, Any]:
    return responses(_ERRORS, ok, *errors)


USERNAME = {"type": "string", "pattern": "^[A-Za-z0-9_]{3,32}$", "example": "alice"}
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
_NUM_NULL = {"type": "number", "nullable": True}
_STR_NULL = {"type": "string", "nullable": True}
_LANG = {"type": "string", "pattern": "^[a-z]{2}$"}
_MULTI_ENUMS: dict[str, tuple[str, ...]] = {
    "hair_colour": HAIR_COLOURS,
    "build": BUILDS,
    "sexual_preference": SEXUAL_PREFERENCES,
    "ethnicity": ETHNICITIES,
    "camera_quality": CAMERA_QUALITIES,
    "category": CATEGORIES,
}


def _out(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties}


def _attributes() -> dict[str, Any]:
    return {
        "hair_colour": {"type": "string", "enum": list(HAIR_COLOURS)},
        "build": {"type": "string", "enum": list(BUILDS)},
        "age": {"type": "integer", "minimum": MIN_AGE, "maximum": MAX_AGE},
        "sexual_preference": {"type": "string", "enum": list(SEXUAL_PREFERENCES)},
        "ethnicity": {"type": "string", "enum": list(ETHNICITIES)},
        "camera_quality": {"type": "string", "enum": list(CAMERA_QUALITIES)},
        "languages": {"type": "array", "items": _LANG, "maxItems": MAX_LANGUAGES,
                      "description": "ISO 639-1 codes"},
    }


def _attributes_out() -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, schema in _attributes().items():
        props[name] = schema if name == "languages" else {**schema, "nullable": True}
    return _out(props)


def _filters() -> dict[str, Any]:
    """A preset's filters: the search parameters as JSON types (no paging)."""
    props: dict[str, Any] = {
        name: {"type": "array", "items": {"type": "string", "enum": list(values)}, "maxItems": len(values)}
        for name, values in _MULTI_ENUMS.items()
    }
    props["language"] = {"type": "array", "items": _LANG, "maxItems": MAX_PRESET_LANGUAGES}
    props["q"] = _text(MAX_QUERY_CHARS, min_len=1, storable_only=True)
    for name, lo, hi in (("age_min", MIN_AGE, MAX_AGE), ("age_max", MIN_AGE, MAX_AGE),
                         ("price_min", 1, 1_000_000), ("price_max", 1, 1_000_000), ("min_rating", 1, 5)):
        props[name] = {"type": "integer", "minimum": lo, "maximum": hi}
    props["online"] = {"type": "boolean"}
    props["favourites_only"] = {"type": "boolean"}
    props["sort"] = {"type": "string", "enum": list(SORTS)}
    return {"type": "object", "properties": props, "additionalProperties": False,
            "description": "age_min <= age_max and price_min <= price_max (400 otherwise)"}


def social_schemas() -> dict[str, Any]:
    """Component schemas of the social routes."""
    profile_brief = {
        "username": {"type": "string"}, "display_name": {"type": "string"},
        "price_per_minute": {"type": "integer"},
        "categories": {"type": "array", "items": {"type": "string", "enum": list(CATEGORIES)}},
    }
    return {
        "SocialEmpty": _object({}),
        "TopMembership": _out({
            "status": {"type": "string", "enum": ["none", "active", "cancelled", "lapsed", "expired"]},
            "active": {"type": "boolean", "description": "TopMember benefits now"},
            "auto_renew": {"type": "boolean"},
            "started_at": _NUM_NULL,
            "paid_until": {**_NUM_NULL, "description": "End of the paid 14-day period, UNIX seconds"},
            "period": {"type": "integer", "description": "Last paid period number (0 = the first; -1 none)"},
            "fee_credits": {"type": "integer"},
            "period_days": {"type": "integer"},
        }),
        "Favourites": _out({
            "favourites": {"type": "array", "items": _out({
                **profile_brief, "online": {"type": "boolean"}, "added_at": {"type": "number"},
            })},
            "count": {"type": "integer"},
            "limit": {"type": "integer", "description": "24, or 96 for TopMembers"},
        }),
        "FavouriteAdded": _out({"username": {"type": "string"}, "added": {"type": "boolean"}}),
        "Feed": _out({
            "performers": {"type": "array", "items": {"type": "string"}},
            "categories": {"type": "array", "items": {"type": "string", "enum": list(CATEGORIES)}},
            "favourites": {"type": "boolean"},
            "system_messages": {"type": "boolean"},
            "has_token": {"type": "boolean"},
        }),
        "UpdateFeedRequest": _object({
            "performers": {"type": "array", "items": USERNAME, "maxItems": 96},
            "categories": {"type": "array", "items": {"type": "string", "enum": list(CATEGORIES)},
                           "maxItems": len(CATEGORIES)},
            "favourites": {"type": "boolean"},
            "system_messages": {"type": "boolean"},
        }),
        "FeedToken": _out({
            "token": {"type": "string", "description": "Shown once; rotating makes the old URL stop working"},
            "path": {"type": "string"},
            "url": {"type": "string"},
        }),
        "SystemMessageRequest": _object({
            "title": _text(200, min_len=1),
            "body": _text(5000, min_len=1, multiline=True),
        }, ["title", "body"]),
        "SystemMessage": _out({"id": {"type": "string"}, "title": {"type": "string"}, "body": {"type": "string"},
                               "created_at": {"type": "number"}}),
        "MailingSubscription": _out({"performer": {"type": "string"}, "subscribed_at": {"type": "number"},
                                     "unsubscribe_url": {"type": "string"}}),
        "Unsubscribed": _out({"unsubscribed": {"type": "boolean"}, "performer": {"type": "string"}}),
        "MailingRequest": _object({
            "subject": _text(200, min_len=1),
            "body": _text(10000, min_len=1, multiline=True),
        }, ["subject", "body"]),
        "Mailing": _out({"id": {"type": "string"}, "subject": {"type": "string"}, "sent_at": {"type": "number"},
                         "recipients": {"type": "integer"}}),
        "Inbox": _out({"messages": {"type": "array", "items": _out({
            "id": {"type": "string"}, "performer": {"type": "string"}, "subject": {"type": "string"},
            "body": {"type": "string"}, "sent_at": {"type": "number"},
            "unsubscribe_url": {"type": "string", "description": "Works without login: GET shows a confirmation"
                                " page, POST unsubscribes (RFC 8058 one-click)"},
            "headers": _out({
                "List-Unsubscribe": {"type": "string", "description": "<unsubscribe_url> (RFC 2369)"},
                "List-Unsubscribe-Post": {"type": "string", "enum": ["List-Unsubscribe=One-Click"],
                                          "description": "RFC 8058: a mail client POSTs this to the URL"},
            }),
        })}}),
        "Rating": _out({"performer": {"type": "string"},
                        "stars": {"type": "integer", "minimum": 1, "maximum": 5, "nullable": True}}),
        "RatingRequest": _object({"stars": {"type": "integer", "minimum": 1, "maximum": 5}}, ["stars"]),
        "Vote": _out({"performer": {"type": "string"},
                      "period": {"type": "string", "description": "The award period: calendar month, UTC (YYYY-MM)"}}),
        "MessageRequest": _object({"body": _text(2000, min_len=1, multiline=True)}, ["body"]),
        "PerformerMessage": _out({"id": {"type": "string"}, "member": {"type": "string"},
                                  "performer": {"type": "string"}, "body": {"type": "string"},
                                  "created_at": {"type": "number"}}),
        "PerformerMessages": _out({"messages": {"type": "array", "items": _ref("PerformerMessage")}}),
        "PerformerAttributes": {"allOf": [_out({"performer": {"type": "string"}}), _attributes_out()]},
        "UpdateAttributesRequest": _object(_attributes()),
        "SearchResults": _out({
            "results": {"type": "array", "items": _out({
                **profile_brief,
                "attributes": _attributes_out(),
                "online": {"type": "boolean"},
                "my_rating": {"type": "integer", "nullable": True,
                              "description": "The caller's own rating; nobody else's is ever shown"},
                "favourite": {"type": "boolean"},
            })},
            "total": {"type": "integer"},
            "offset": {"type": "integer"},
            "limit": {"type": "integer"},
            "next_offset": {"type": "integer", "nullable": True},
            "filters": {"type": "object", "description": "The filters applied (a preset's, then the parameters)"},
        }),
        "SearchFilters": _filters(),
        "PresetRequest": _object({"name": _text(64, min_len=1),
                                  "query": _ref("SearchFilters")}, ["name", "query"]),
        "Preset": _out({"id": {"type": "string"}, "name": {"type": "string"}, "query": {"type": "object"},
                        "created_at": {"type": "number"}}),
        "Presets": _out({"presets": {"type": "array", "items": _ref("Preset")}}),
    }


def _search_parameters() -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name, values in _MULTI_ENUMS.items():
        params.append({"name": name, "in": "query", "required": False, "style": "form", "explode": True,
                       "schema": {"type": "array", "items": {"type": "string", "enum": list(values)}}})
    params.append({"name": "language", "in": "query", "required": False, "style": "form", "explode": True,
                   "schema": {"type": "array", "items": _LANG}})
    for name, lo, hi in (("age_min", MIN_AGE, MAX_AGE), ("age_max", MIN_AGE, MAX_AGE),
                         ("price_min", 1, 1_000_000), ("price_max", 1, 1_000_000), ("min_rating", 1, 5),
                         ("limit", 1, MAX_LIMIT), ("offset", 0, MAX_OFFSET)):
        params.append({"name": name, "in": "query", "required": False,
                       "schema": {"type": "integer", "minimum": lo, "maximum": hi}})
    params += [
        {"name": "q", "in": "query", "required": False,
         "schema": _text(MAX_QUERY_CHARS, min_len=1, storable_only=True),
         "description": "Part of the username or display name"},
        {"name": "online", "in": "query", "required": False, "schema": {"type": "boolean"}},
        {"name": "favourites_only", "in": "query", "required": False, "schema": {"type": "boolean"}},
        {"name": "sort", "in": "query", "required": False, "schema": {"type": "string", "enum": list(SORTS)}},
        {"name": "preset", "in": "query", "required": False,
         "schema": {"type": "string", "pattern": "^sp_[0-9a-f]{20}$"},
         "description": "Apply a saved search first; the other parameters refine it"},
    ]
    return params


def social_paths() -> dict[str, Any]:
    """Paths of the social routes."""
    user = [{"name": "username", "in": "path", "required": True, "schema": USERNAME}]
    empty = _body("SocialEmpty", required=False)
    return {
        "/api/v1/me/top-membership": {
            "get": {"operationId": "topMembership", "summary": "The caller's TopMembership", "security": BEARER,
                    "responses": _responses({200: ("The membership", "TopMembership")}, 401, 403, 503)},
            "post": {"operationId": "subscribeTopMembership",
                     "summary": "Become a TopMember: 15 credits now and every 14 days (or resume renewal)",
                     "security": BEARER, "requestBody": empty,
                     "responses": _responses({201: ("Subscribed; the first fee was charged", "TopMembership"),
                                              200: ("Already a TopMember (renewal back on)", "TopMembership")},
                                             400, 401, 402, 403, 413, 415, 503)},
            "delete": {"operationId": "cancelTopMembership",
                       "summary": "Stop renewal; the benefits last until paid_until", "security": BEARER,
                       "responses": _responses({200: ("Cancelled", "TopMembership")}, 401, 403, 404, 503)},
        },
        "/api/v1/me/favourites": {
            "get": {"operationId": "favourites", "summary": "The caller's favourites", "security": BEARER,
                    "responses": _responses({200: ("Favourites", "Favourites")}, 401, 403, 503)},
        },
        "/api/v1/me/favourites/{username}": {
            "parameters": user,
            "put": {"operationId": "addFavourite", "summary": "Add a favourite (24; 96 for TopMembers)",
                    "security": BEARER,
                    "responses": _responses({201: ("Added", "FavouriteAdded"), 200: ("Already one", "FavouriteAdded")},
                                            401, 403, 404, 409, 503)},
            "delete": {"operationId": "removeFavourite", "summary": "Remove a favourite", "security": BEARER,
                       "responses": _responses({204: ("Removed", None)}, 401, 403, 404, 503)},
        },
        "/api/v1/me/feed": {
            "get": {"operationId": "feedSettings", "summary": "What the caller's RSS feed carries",
                    "security": BEARER, "responses": _responses({200: ("Settings", "Feed")}, 401, 403, 503)},
            "patch": {"operationId": "updateFeed",
                      "summary": "Choose performers, categories, favourites and system messages",
                      "security": BEARER, "requestBody": _body("UpdateFeedRequest"),
                      "responses": _responses({200: ("Settings", "Feed")}, 400, 401, 403, 404, 413, 415, 503)},
        },
        "/api/v1/me/feed/token": {
            "post": {"operationId": "rotateFeedToken", "summary": "A new private feed URL (the old one stops)",
                     "security": BEARER, "requestBody": empty,
                     "responses": _responses({201: ("The feed URL, shown once", "FeedToken")},
                                             400, 401, 403, 413, 415, 503)},
        },
        "/api/v1/feeds/{feed_token}.rss": {
            "parameters": [{"name": "feed_token", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": "^jasf_[A-Za-z0-9_-]{43}$"}}],
            "get": {"operationId": "readFeed", "summary": "The member's RSS 2.0 feed (no login: the URL is the key)",
                    "responses": {
                        "200": {"description": "RSS 2.0",
                                "content": {"application/rss+xml": {"schema": {"type": "string"}}}},
                        **_responses({}, 404, 503),
                    }},
        },
        "/api/v1/system-messages": {
            "post": {"operationId": "postSystemMessage", "summary": "A site message for the feeds (admins)",
                     "security": BEARER, "requestBody": _body("SystemMessageRequest"),
                     "responses": _responses({201: ("Posted", "SystemMessage")}, 400, 401, 403, 413, 415, 503)},
        },
        "/api/v1/performers/{username}/mailing-list": {
            "parameters": user,
            "put": {"operationId": "subscribeMailingList",
                    "summary": "Join the performer's mailing list (after a private with it)", "security": BEARER,
                    "requestBody": empty,
                    "responses": _responses({201: ("Subscribed", "MailingSubscription"),
                                             200: ("Already subscribed", "MailingSubscription")},
                                            400, 401, 403, 404, 413, 415, 503)},
            "delete": {"operationId": "unsubscribeMailingList", "summary": "Leave the mailing list",
                       "security": BEARER, "responses": _responses({204: ("Left", None)}, 401, 403, 404, 503)},
        },
        "/api/v1/mailing-list/unsubscribe/{unsubscribe_token}": {
            "parameters": [{"name": "unsubscribe_token", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": "^jasu_[A-Za-z0-9_-]{32}$"}}],
            "get": {"operationId": "unsubscribeConfirmationPage",
                    "summary": "The unsubscribe link of every mailing (no login): a confirmation page",
                    "description": "Changes nothing: mail scanners and link previews follow links. The page's"
                                   " button POSTs to the same URL.",
                    "responses": {
                        "200": {"description": "An HTML page with a form that POSTs List-Unsubscribe=One-Click",
                                "content": {"text/html": {"schema": {"type": "string"}}}},
                        **_responses({}, 404, 503),
                    }},
            "post": {"operationId": "unsubscribeByLink",
                     "summary": "Leave the mailing list by the link (no login; RFC 8058 one-click)",
                     "description": "What a mail client sends for the List-Unsubscribe-Post header. The body"
                                    " (List-Unsubscribe=One-Click) may be left out: the token is the key. A second"
                                    " use is 404.",
                     "requestBody": {"required": False, "content": {
                         "application/x-www-form-urlencoded": {"schema": {
                             "type": "object", "properties": {
                                 "List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}}}}}},
                     "responses": _responses({200: ("Unsubscribed", "Unsubscribed")}, 404, 503)},
        },
        "/api/v1/me/mailings": {
            "post": {"operationId": "sendMailing",
                     "summary": "A performer's message to its mailing list: one per 24 hours",
                     "security": BEARER, "requestBody": _body("MailingRequest"),
                     "responses": _responses({201: ("Delivered to every subscriber's inbox", "Mailing")},
                                             400, 401, 403, 413, 415, 429, 503)},
        },
        "/api/v1/me/inbox": {
            "get": {"operationId": "inbox", "summary": "Mailings delivered to the caller, newest first",
                    "security": BEARER, "responses": _responses({200: ("The inbox", "Inbox")}, 401, 403, 503)},
        },
        "/api/v1/performers/{username}/rating": {
            "parameters": user,
            "get": {"operationId": "myRating", "summary": "The caller's own rating of the performer (My Rating)",
                    "security": BEARER,
                    "responses": _responses({200: ("The rating (stars null: none)", "Rating")}, 401, 403, 404, 503)},
            "put": {"operationId": "rate", "summary": "Give 1-5 stars, seen by the caller only",
                    "security": BEARER, "requestBody": _body("RatingRequest"),
                    "responses": _responses({200: ("Rated", "Rating")}, 400, 401, 403, 404, 413, 415, 503)},
            "delete": {"operationId": "deleteRating", "summary": "Take the rating back", "security": BEARER,
                       "responses": _responses({204: ("Deleted", None)}, 401, 403, 404, 503)},
        },
        "/api/v1/performers/{username}/votes": {
            "parameters": user,
            "post": {"operationId": "vote",
                     "summary": "A TopMember Awards vote: after a private of 300 s, once per award period",
                     "security": BEARER, "requestBody": empty,
                     "responses": _responses({201: ("Counted", "Vote")}, 400, 401, 403, 404, 409, 413, 415, 503)},
        },
        "/api/v1/performers/{username}/messages": {
            "parameters": user,
            "post": {"operationId": "messagePerformer",
                     "summary": "A TopMember's message to a performer it had a private with", "security": BEARER,
                     "requestBody": _body("MessageRequest"),
                     "responses": _responses({201: ("Sent", "PerformerMessage")}, 400, 401, 403, 404, 413, 415, 503)},
        },
        "/api/v1/me/messages": {
            "get": {"operationId": "messages",
                    "summary": "A performer's received messages, or a member's sent ones", "security": BEARER,
                    "responses": _responses({200: ("Messages", "PerformerMessages")}, 401, 403, 503)},
        },
        "/api/v1/performers/{username}/attributes": {
            "parameters": user,
            "get": {"operationId": "performerAttributes", "summary": "A performer's search attributes",
                    "security": BEARER,
                    "responses": _responses({200: ("Attributes", "PerformerAttributes")}, 401, 403, 404, 503)},
            "patch": {"operationId": "updatePerformerAttributes",
                      "summary": "Set search attributes (the performer itself, or an admin)", "security": BEARER,
                      "requestBody": _body("UpdateAttributesRequest"),
                      "responses": _responses({200: ("Attributes", "PerformerAttributes")},
                                              400, 401, 403, 404, 413, 415, 503)},
        },
        "/api/v1/search/performers": {
            "get": {"operationId": "searchPerformers",
                    "summary": "Advanced search: attributes, price, category, online, My Rating; sorted, paged",
                    "description": "A minimum above its maximum (age_min > age_max, price_min > price_max) is"
                                   " an empty range: it matches no performer.",
                    "security": BEARER, "parameters": _search_parameters(),
                    "responses": _responses({200: ("A page of performers", "SearchResults")},
                                            400, 401, 403, 404, 503)},
        },
        "/api/v1/me/search-presets": {
            "get": {"operationId": "searchPresets", "summary": "The caller's saved searches", "security": BEARER,
                    "responses": _responses({200: ("Presets", "Presets")}, 401, 403, 503)},
            "post": {"operationId": "createSearchPreset", "summary": "Save a search (e.g. \"petite, 18-22\")",
                     "security": BEARER, "requestBody": _body("PresetRequest"),
                     "responses": _responses({201: ("Saved", "Preset")}, 400, 401, 403, 409, 413, 415, 503)},
        },
        "/api/v1/me/search-presets/{preset_id}": {
            "parameters": [{"name": "preset_id", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": "^sp_[0-9a-f]{20}$"}}],
            "delete": {"operationId": "deleteSearchPreset", "summary": "Delete a saved search", "security": BEARER,
                       "responses": _responses({204: ("Deleted", None)}, 401, 403, 404, 503)},
        },
    }
