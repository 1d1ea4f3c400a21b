"""The wire shapes of accounts, sessions, the 18+ confirmation, wallet and performer profiles
(``jasmin_sfu.api.rest``), and their rows of the paths table. Written once: validation, the
answers and ``/openapi.json`` come from here (``jasmin_sfu.api.wire`` says how)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from jasmin_sfu.api.wire import (
    UNSET,
    USERNAME_PARAM,
    Body,
    Meta,
    Op,
    UnsetType,
    Username,
    View,
    one_of,
    text,
)
from jasmin_sfu.services.accounts import (
    CATEGORIES,
    MAX_BIO,
    MAX_DISPLAY_NAME,
    MAX_GROUP_MEMBERS,
    MAX_PASSWORD,
    MAX_PRICE,
    MIN_PASSWORD,
    MIN_PRICE,
    NON_NUDE_CATEGORIES,
    NUDE_CATEGORIES,
)
from jasmin_sfu.services.ledger import PACKAGES

if TYPE_CHECKING:  # Literal types at run time (validated), strings to mypy
    Category = str
    PackageCode = str
else:
    Category = one_of(CATEGORIES)
    PackageCode = one_of(tuple(p.code for p in PACKAGES))


def enum(values: tuple[str, ...], **extra: Any) -> Meta:
    """An enum on a response field (documented; responses are built by the node, not decoded)."""
    return Meta(extra_json_schema={"enum": list(values), **extra})


# -- the error shape ---------------------------------------------------------------------


class ErrorDetail(View):
    code: str
    message: str
    retry_at: Annotated[float, Meta(description="When a retry may succeed, UNIX seconds (some 429s)")] | UnsetType = (
        UNSET
    )


class Error(View):
    """Every error answer: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


# -- requests -------------------------------------------------------------------------------

Password = Annotated[
    str,
    text(
        MAX_PASSWORD,
        min_len=MIN_PASSWORD,
        storable_only=True,
        format="password",
        description="Not equal to the username (case-insensitive)",
    ),
]
DisplayName = Annotated[str, text(MAX_DISPLAY_NAME, min_len=1, description="Trimmed; one line")]
Bio = Annotated[str, text(MAX_BIO, multiline=True, description="Trimmed")]
Price = Annotated[
    int, Meta(ge=MIN_PRICE, le=MAX_PRICE, description="Hundredths of a credit per minute, billed per second")
]
# hot_flirt and celebrity (no nudity, even in private) never mix with the nude categories: either
# list holds categories of one kind only (an empty list is both). The anyOf documents it; the
# service enforces it.
CategoryList = Annotated[
    list[Category],
    Meta(
        max_length=len(CATEGORIES),
        description="hot_flirt and celebrity (no nudity) cannot be combined with the nude categories",
        extra_json_schema={
            "uniqueItems": True,
            "anyOf": [
                {"type": "array", "items": {"type": "string", "enum": list(cats)}, "maxItems": len(cats)}
                for cats in (NUDE_CATEGORIES, NON_NUDE_CATEGORIES)
            ],
        },
    ),
]


class GuestSessionRequest(Body):
    adult_confirmed: bool = False


class RegisterRequest(Body):
    username: Username
    password: Password
    adult_confirmed: bool = False


class LoginRequest(Body):
    username: Annotated[str, text(64, storable_only=True)]
    password: Annotated[str, text(MAX_PASSWORD, storable_only=True)]


class AdultConfirmationRequest(Body):
    pass


class PurchaseRequest(Body):
    package: PackageCode
    idempotency_key: Annotated[
        str,
        Meta(
            pattern="^[A-Za-z0-9_-]{8,64}$(?!\n)",
            description="Chosen by the client; a retry with the same key buys once",
        ),
    ]
    card_last4: Annotated[str, Meta(pattern="^[0-9]{4}$(?!\n)")] | UnsetType = UNSET
    card_expiry: (
        Annotated[str, Meta(pattern="^(0[1-9]|1[0-2])/[0-9]{2}$(?!\n)", extra_json_schema={"example": "12/29"})]
        | UnsetType
    ) = UNSET


class CreatePerformerRequest(Body):
    username: Username
    password: Password
    display_name: DisplayName
    price_per_minute: Price
    categories: CategoryList = []
    bio: Bio = ""
    group_members: (
        Annotated[
            list[Username],
            Meta(
                min_length=1,
                max_length=MAX_GROUP_MEMBERS,
                extra_json_schema={"uniqueItems": True},
                description="Makes a group account: its show is these performers' too. Each name must be an existing"
                " performer that is not a group account (404 not_found otherwise); a name given twice counts"
                " once.",
            ),
        ]
        | UnsetType
    ) = UNSET


class UpdatePerformerRequest(Body):
    display_name: DisplayName | UnsetType = UNSET
    bio: Bio | UnsetType = UNSET
    price_per_minute: Price | UnsetType = UNSET
    categories: CategoryList | UnsetType = UNSET


# -- responses ------------------------------------------------------------------------------


class Principal(View):
    """Who a token speaks for."""

    kind: Annotated[str, enum(("guest", "member", "performer", "admin"))]
    id: Annotated[str, Meta(description="The account id (signaling's member_id / performer_id); a guest's session id")]
    username: str | None
    adult_confirmed: bool
    expires_at: Annotated[float, Meta(description="When the token expires, UNIX seconds")]


class PerformerProfile(View):
    """A performer's public profile."""

    id: str
    username: str
    display_name: str
    bio: str
    price_per_minute: int
    categories: list[Annotated[str, enum(CATEGORIES)]]
    is_group: bool
    group_members: Annotated[list[str], Meta(description="Usernames of the performers of a group account")]


class Me(Principal):
    """The principal; a performer's with its profile."""

    performer: PerformerProfile | UnsetType = UNSET


class Token(View):
    """A new session."""

    token: Annotated[
        str, Meta(description="Shown once; send as Authorization: Bearer <token> and as `token` in the signaling join")
    ]
    token_type: Annotated[str, enum(("Bearer",))]
    expires_at: float
    principal: Principal


class Package(View):
    code: str
    price_cents: int
    currency: str
    credits: int
    vip_points: int


class Packages(View):
    packages: list[Package]


class Wallet(View):
    credits: Annotated[
        str, Meta(pattern="^[0-9]+\\.[0-9]{2}$(?!\n)", description="Available credits, two decimals, rounded down")
    ]
    available_units: Annotated[int, Meta(description="Ledger units (1/6000 credit) a debit may take")]
    held_units: Annotated[int, Meta(description="Units held by running privates")]
    units_per_credit: int
    vip_points: int


class Earnings(View):
    """A performer's earnings from the ledger (docs/money.md, "Accounts")."""

    credits: Annotated[
        str, Meta(pattern="^[0-9]+\\.[0-9]{2}$(?!\n)", description="Earned credits, two decimals, rounded down")
    ]
    units: Annotated[
        int,
        Meta(
            description="Ledger units (1/6000 credit) posted to earnings:<performer>; a running"
            " private's seconds are posted at each grant renewal and at its end"
        ),
    ]
    units_per_credit: int
    performer_share_bp: Annotated[
        int,
        Meta(
            description="The performer's share of what a member pays for a private"
            " or a tip, in basis points (billing.performer_share_bp)"
        ),
    ]


class Purchase(View):
    payment_id: Annotated[str, Meta(description="Also the ledger transfer id of the top-up")]
    package: str
    credits: int
    vip_points: int
    amount_cents: int
    currency: str
    status: Annotated[str, enum(("approved", "credited"))]
    created_at: float
    card_last4: str | None
    card_expiry: str | None
    replayed: Annotated[bool, Meta(description="An earlier request with this key did the purchase")]


# -- the paths table ------------------------------------------------------------------------

ERRORS = {
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
BODY_ERRORS = (400, 413, 415)


def _op(*args: Any, **kw: Any) -> Op:
    return Op(*args, **kw).described(ERRORS)


OPS: tuple[Op, ...] = (
    _op(
        "post",
        "/api/v1/guest-sessions",
        "startGuest",
        "A guest session; the token carries the 18+ confirmation",
        {201: ("A guest token", Token)},
        (*BODY_ERRORS, 503),
        body=GuestSessionRequest,
        body_required=False,
    ),
    _op(
        "post",
        "/api/v1/accounts",
        "register",
        "Register a member (signed in at once)",
        {201: ("A member token", Token)},
        (*BODY_ERRORS, 409, 503),
        body=RegisterRequest,
    ),
    _op(
        "post",
        "/api/v1/sessions",
        "login",
        "Log in with username and password",
        {201: ("A new token", Token)},
        (*BODY_ERRORS, 401, 429, 503),
        body=LoginRequest,
    ),
    _op(
        "delete",
        "/api/v1/sessions/current",
        "logout",
        "Revoke the token of this request",
        {204: ("Revoked", None)},
        (401, 503),
        bearer=True,
    ),
    _op(
        "get",
        "/api/v1/me",
        "me",
        "Who the token speaks for (performers: with their profile)",
        {200: ("The principal", Me)},
        (401, 503),
        bearer=True,
    ),
    _op(
        "post",
        "/api/v1/me/adult-confirmation",
        "confirmAdult",
        "Confirm being 18 or older (a guest's token, or a member's account for a year)",
        {200: ("The principal, confirmed", Principal)},
        (*BODY_ERRORS, 401, 503),
        bearer=True,
        body=AdultConfirmationRequest,
        body_required=False,
    ),
    _op("get", "/api/v1/packages", "packages", "The credit packages", {200: ("Packages", Packages)}),
    _op(
        "get",
        "/api/v1/wallet",
        "wallet",
        "The member's credits and VIP points",
        {200: ("The wallet", Wallet)},
        (401, 403, 503),
        bearer=True,
    ),
    _op(
        "post",
        "/api/v1/wallet/purchases",
        "purchase",
        "Buy a credit package (idempotent by idempotency_key); credits are usable at once",
        {201: ("Bought now", Purchase), 200: ("Bought earlier with this key", Purchase)},
        (*BODY_ERRORS, 401, 402, 403, 409, 503),
        bearer=True,
        body=PurchaseRequest,
    ),
    _op(
        "post",
        "/api/v1/performers",
        "createPerformer",
        "Create a performer or group account (admins)",
        {201: ("The profile", PerformerProfile)},
        (*BODY_ERRORS, 401, 403, 404, 409, 503),
        bearer=True,
        body=CreatePerformerRequest,
    ),
    _op(
        "get",
        "/api/v1/performers/{username}",
        "performer",
        "A performer's profile (needs the 18+ confirmation)",
        {200: ("The profile", PerformerProfile)},
        (401, 403, 404, 503),
        bearer=True,
        parameters=(USERNAME_PARAM,),
    ),
    _op(
        "patch",
        "/api/v1/performers/{username}",
        "updatePerformer",
        "Change a profile (the performer itself, or an admin)",
        {200: ("The profile", PerformerProfile)},
        (*BODY_ERRORS, 401, 403, 404, 503),
        bearer=True,
        body=UpdatePerformerRequest,
        parameters=(USERNAME_PARAM,),
    ),
    _op(
        "get",
        "/api/v1/performers/{username}/earnings",
        "performerEarnings",
        "A performer's earnings, from the ledger (the performer itself, or an admin)",
        {200: ("The earnings", Earnings)},
        (401, 403, 404, 503),
        bearer=True,
        parameters=(USERNAME_PARAM,),
    ),
    _op(
        "get",
        "/openapi.json",
        "openapi",
        "This document",
        {200: ("OpenAPI 3", {"content": {"application/json": {"schema": {"type": "object"}}}})},
    ),
    _op(
        "get",
        "/signaling-schema.json",
        "signalingSchema",
        "The JSON Schema of a /ws request frame, generated from the signaling structs (docs/signaling.md)",
        {200: ("JSON Schema 2020-12", {"content": {"application/json": {"schema": {"type": "object"}}}})},
    ),
)

# Examples of every request body, checked against the document and the structs
# (tests/api/test_wire.py); the document carries them for clients and for schemathesis.
EXAMPLES: dict[type[Body], dict[str, Any]] = {
    GuestSessionRequest: {"adult_confirmed": True},
    RegisterRequest: {"username": "member1", "password": "member-password", "adult_confirmed": True},
    LoginRequest: {"username": "member1", "password": "member-password"},
    AdultConfirmationRequest: {},
    PurchaseRequest: {
        "package": "p2999",
        "idempotency_key": "order-00000001",
        "card_last4": "4242",
        "card_expiry": "12/29",
    },
    CreatePerformerRequest: {
        "username": "carla",
        "password": "carla-password",
        "display_name": "Carla",
        "price_per_minute": 300,
        "categories": ["girl"],
        "bio": "Hi!",
    },
    UpdatePerformerRequest: {"display_name": "Alice", "price_per_minute": 250, "categories": ["girl", "fetish"]},
}
