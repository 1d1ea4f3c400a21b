"""The REST API under ``/api/v1``: accounts, sessions, the 18+ confirmation, wallet, performers.

Every answer is JSON; every error is ``{"error": {"code", "message"}}`` with a
4xx status (5xx only for an unavailable part, 503, or a real bug, 500). Input
is checked in two layers: here the shape (JSON object, known fields, types,
size), in the services the values. Domain errors become HTTP statuses here,
at the edge, and nowhere else. ``/openapi.json`` describes exactly these routes
(``jasmin_sfu.api.openapi``; a test fuzzes the API against it).

Authentication: ``Authorization: Bearer <token>``, the token from
``POST /api/v1/accounts``, ``/sessions`` or ``/guest-sessions`` (docs/accounts.md).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from jasmin_signaling.text import first_unstorable, unstorable

from jasmin_sfu.api.openapi import openapi_document
from jasmin_sfu.services.accounts import ADMIN, PERFORMER, AccountsService, PerformerProfile, Principal
from jasmin_sfu.services.errors import (
    ErasureError,
    LoginRateLimitedError,
    AccountNotFoundError,
    AccountsError,
    AccountValidationError,
    AdultConfirmationRequiredError,
    InvalidCredentialsError,
    InvalidTokenError,
    NotPermittedError,
    PaymentConflictError,
    PaymentDeclinedError,
    PaymentsUnavailableError,
    StoreBusyError,
    UsernameUnavailableError,
)
from jasmin_sfu.services.ledger import PACKAGES, UNITS_PER_CREDIT
from jasmin_sfu.services.payments import Purchase, Purchases
from jasmin_sfu.store.errors import RetryableStoreError

log = logging.getLogger("jasmin_sfu.api.rest")

PREFIX = "/api/v1"
# Request bodies here are a few hundred bytes; 64 KiB is generous.
MAX_BODY = 65536

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """An error answer: status, code, message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The one error shape."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="jasmin"'}


def map_error(exc: Exception) -> ApiError | None:
    """Domain errors as HTTP errors (None: not a domain error)."""
    if isinstance(exc, AccountValidationError):
        return ApiError(400, "bad_request", str(exc))
    if isinstance(exc, InvalidTokenError):
        return ApiError(401, "unauthorized", str(exc), {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if isinstance(exc, InvalidCredentialsError):
        return ApiError(401, "invalid_credentials", str(exc))
    if isinstance(exc, AdultConfirmationRequiredError):
        return ApiError(403, "adult_confirmation_required", str(exc))
    if isinstance(exc, NotPermittedError):
        return ApiError(403, "forbidden", str(exc))
    if isinstance(exc, AccountNotFoundError):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, UsernameUnavailableError):
        return ApiError(409, "username_unavailable", str(exc))
    if isinstance(exc, PaymentConflictError):
        return ApiError(409, "idempotency_conflict", str(exc))
    if isinstance(exc, PaymentDeclinedError):
        return ApiError(402, "payment_declined", str(exc))
    if isinstance(exc, PaymentsUnavailableError):
        return ApiError(503, "payments_unavailable", str(exc))
    if isinstance(exc, LoginRateLimitedError):
        return ApiError(429, "rate_limited", str(exc), {"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, ErasureError):
        return ApiError(403, "forbidden", str(exc))
    if isinstance(exc, (StoreBusyError, RetryableStoreError)):
        return ApiError(503, "busy", "the database is busy; retry", {"Retry-After": "1"})
    return None


def refuse_unstorable(data: Any) -> None:
    """400 for a JSON body holding text no store can keep (never a store's 500)."""
    where = first_unstorable(data)
    if where is not None:
        raise ApiError(400, "bad_request", f"{where[:64] or 'body'}: NUL or unpaired surrogate in text")


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure of the API as the JSON error shape; a bug is a logged 500, never a stack trace."""
    try:
        if unstorable(request.path) or any(unstorable(k) or unstorable(v) for k, v in request.query.items()):
            raise ApiError(400, "bad_request", "the path or query holds a NUL or an unpaired surrogate")
        return await handler(request)
    except ApiError as e:
        return error_response(e.status, e.code, e.message, e.headers)
    except web.HTTPException as e:  # aiohttp's own: unknown route, method, body too large
        if e.status < 400:
            raise
        headers = {k: v for k, v in e.headers.items() if k == "Allow"}
        return error_response(e.status, _HTTP_CODES.get(e.status, "bad_request"), e.reason, headers)
    except AccountsError as e:
        mapped = map_error(e) or ApiError(400, "bad_request", str(e))
        return error_response(mapped.status, mapped.code, mapped.message, mapped.headers)
    except Exception as e:  # noqa: BLE001 - the edge: log it, answer 500
        known = map_error(e)
        if known is not None:
            return error_response(known.status, known.code, known.message, known.headers)
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal", "unexpected server error")


class ClientHttpErrors(logging.Filter):
    """aiohttp's server logs a malformed request (a NUL in a header, a line too long) at error
    level with a traceback, after answering it 400 itself. It is the client's fault, not ours:
    the record becomes one info line naming the error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500:
            first = (exc.message or "").strip().splitlines()[:1]
            record.msg = f"{record.getMessage()}: {exc.code} {type(exc).__name__}: {first[0] if first else ''}"
            record.args = None
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


_CLIENT_HTTP_ERRORS = ClientHttpErrors()


def quiet_client_http_errors() -> None:
    """Install :class:`ClientHttpErrors` on aiohttp's server logger (idempotent; the daemon's start)."""
    logging.getLogger("aiohttp.server").addFilter(_CLIENT_HTTP_ERRORS)


# -- request parsing ----------------------------------------------------------------


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "list[str]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    raise AssertionError(kind)  # pragma: no cover


async def json_object(request: web.Request, fields: Iterable[str], *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object, refused unless every key is one of ``fields``: size (413),
    media type (415), syntax, shape and storable text (400). Field types are the caller's.

    A body that is not ``required`` may be absent (zero bytes: ``{}``).
    """
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "payload_too_large", f"the body is larger than {MAX_BODY} bytes")
    raw = await request.read()  # capped by the daemon's client_max_size (413 above it)
    if len(raw) > MAX_BODY:
        raise ApiError(413, "payload_too_large", f"the body is larger than {MAX_BODY} bytes")
    ctype = request.headers.get("Content-Type")
    if raw and ctype is not None:
        mime = ctype.split(";", 1)[0].strip().lower()
        if mime != "application/json" and not mime.endswith("+json"):
            raise ApiError(415, "unsupported_media_type", "send application/json")
    data: Any = {}
    if raw:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise ApiError(400, "bad_request", "the body is not valid JSON") from None
    elif required:
        raise ApiError(400, "bad_request", "a JSON object body is required")
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    refuse_unstorable(data)
    for key in data:
        if key not in fields:
            raise ApiError(400, "bad_request", f"{key[:64]}: unknown field")
    return data


async def json_body(
    request: web.Request, fields: dict[str, tuple[str, bool]], *, required: bool = True
) -> dict[str, Any]:
    """The request's JSON object, checked against ``fields``: name -> (type, required).

    A body that is not ``required`` may be absent (zero bytes: ``{}``). Unknown
    fields are refused, so a typo (or a card number) never passes silently.
    """
    data = await json_object(request, fields, required=required)
    for name, (kind, required) in fields.items():
        if name not in data:
            if required:
                raise ApiError(400, "bad_request", f"{name}: required")
            continue
        if not _type_ok(data[name], kind):  # null included: leave a field out instead
            raise ApiError(400, "bad_request", f"{name}: expected {kind}")
    return data


def bearer_token(request: web.Request) -> str:
    """The token of ``Authorization: Bearer <token>``, or 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>", _BEARER_CHALLENGE)
    return token.strip()


# -- views ----------------------------------------------------------------------------


def principal_view(p: Principal) -> dict[str, Any]:
    """A principal as the API shows it."""
    return {
        "kind": p.kind,
        "id": p.id,
        "username": p.username,
        "adult_confirmed": p.adult_confirmed,
        "expires_at": p.expires_at,
    }


def token_view(token: str, p: Principal) -> dict[str, Any]:
    """A new session."""
    return {"token": token, "token_type": "Bearer", "expires_at": p.expires_at, "principal": principal_view(p)}


def purchase_view(p: Purchase) -> dict[str, Any]:
    """A purchase as the member sees it."""
    return {
        "payment_id": p.payment_id,
        "package": p.package_code,
        "credits": p.credits,
        "vip_points": p.vip_points,
        "amount_cents": p.amount_cents,
        "currency": "USD",
        "status": p.status,
        "created_at": p.created_at,
        "card_last4": p.card_last4,
        "card_expiry": p.card_expiry,
        "replayed": p.replayed,
    }


def profile_view(p: PerformerProfile) -> dict[str, Any]:
    """A performer's public profile."""
    return {
        "id": p.user_id,
        "username": p.username,
        "display_name": p.display_name,
        "bio": p.bio,
        "price_per_minute": p.price_per_minute,
        "categories": list(p.categories),
        "is_group": p.is_group,
        "group_members": list(p.group_members),
    }


class RestApi:
    """The handlers; the services are looked up per request (the daemon opens them in ``start``)."""

    def __init__(
        self,
        accounts: Callable[[], AccountsService | None],
        purchases: Callable[[], Purchases | None],
    ) -> None:
        self._accounts = accounts
        self._purchases = purchases

    def app(self) -> web.Application:
        """The ``/api/v1`` sub-application (mount it with ``add_subapp(PREFIX, ...)``)."""
        app = web.Application(middlewares=[json_errors], client_max_size=MAX_BODY)
        r = app.router
        r.add_post("/guest-sessions", self.start_guest)
        r.add_post("/accounts", self.register)
        r.add_post("/sessions", self.login)
        r.add_delete("/sessions/current", self.logout)
        r.add_get("/me", self.me)
        r.add_post("/me/adult-confirmation", self.confirm_adult)
        r.add_get("/packages", self.packages)
        r.add_get("/wallet", self.wallet)
        r.add_post("/wallet/purchases", self.purchase)
        r.add_post("/performers", self.create_performer)
        r.add_get("/performers/{username}", self.performer)
        r.add_patch("/performers/{username}", self.update_performer)
        from jasmin_sfu.api.rest_chat import add_chat_routes  # here: rest_chat imports this module

        add_chat_routes(r, self)
        from jasmin_sfu.api.rest_social import install_social  # here: rest_social imports this module

        install_social(r, self)
        from jasmin_sfu.api.rest_privacy import add_privacy_routes  # here: rest_privacy imports this module

        add_privacy_routes(r, self)
        from jasmin_sfu.api.ice_servers import add_ice_routes

        add_ice_routes(r, self)
        return app

    def install(self, app: web.Application) -> None:
        """Mount the API and its OpenAPI document on the daemon's app."""
        app.add_subapp(PREFIX, self.app())
        app.router.add_get("/openapi.json", self.openapi)

    # -- helpers -----------------------------------------------------------------------

    def accounts(self) -> AccountsService:
        a = self._accounts()
        if a is None:
            raise ApiError(503, "accounts_unavailable", "accounts are not enabled on this node")
        return a

    def purchases(self) -> Purchases:
        p = self._purchases()
        if p is None:
            raise ApiError(503, "billing_unavailable", "billing is not enabled on this node")
        return p

    async def principal(self, request: web.Request) -> Principal:
        return await self.accounts().authenticate(bearer_token(request))

    # -- handlers ----------------------------------------------------------------------

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document())

    async def start_guest(self, request: web.Request) -> web.Response:
        body = await json_body(request, {"adult_confirmed": ("bool", False)}, required=False)
        issued = await self.accounts().start_guest(adult_confirmed=body.get("adult_confirmed", False))
        return web.json_response(token_view(issued.token, issued.principal), status=201)

    async def register(self, request: web.Request) -> web.Response:
        body = await json_body(
            request, {"username": ("str", True), "password": ("str", True), "adult_confirmed": ("bool", False)}
        )
        issued = await self.accounts().register(
            body["username"], body["password"], adult_confirmed=body.get("adult_confirmed", False)
        )
        return web.json_response(token_view(issued.token, issued.principal), status=201)

    async def login(self, request: web.Request) -> web.Response:
        body = await json_body(request, {"username": ("str", True), "password": ("str", True)})
        issued = await self.accounts().login(body["username"], body["password"], client=request.remote)
        return web.json_response(token_view(issued.token, issued.principal), status=201)

    async def logout(self, request: web.Request) -> web.Response:
        p = await self.principal(request)
        await self.accounts().logout(p)
        return web.Response(status=204)

    async def me(self, request: web.Request) -> web.Response:
        p = await self.principal(request)
        out = principal_view(p)
        if p.kind == PERFORMER:
            out["performer"] = profile_view(await self.accounts().performer_profile(p.username))
        return web.json_response(out)

    async def confirm_adult(self, request: web.Request) -> web.Response:
        p = await self.principal(request)
        await json_body(request, {}, required=False)
        return web.json_response(principal_view(await self.accounts().confirm_adult(p)))

    async def packages(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "packages": [
                    {"code": p.code, "price_cents": p.price_cents, "currency": "USD", "credits": p.credits,
                     "vip_points": p.vip_points}
                    for p in PACKAGES
                ]
            }
        )

    async def wallet(self, request: web.Request) -> web.Response:
        p = await self.principal(request)
        w = await self.purchases().wallet(p)
        return web.json_response(
            {
                "credits": w.credits,
                "available_units": w.available_units,
                "held_units": w.held_units,
                "units_per_credit": UNITS_PER_CREDIT,
                "vip_points": w.vip_points,
            }
        )

    async def purchase(self, request: web.Request) -> web.Response:
        p = await self.principal(request)
        body = await json_body(
            request,
            {
                "package": ("str", True),
                "idempotency_key": ("str", True),
                "card_last4": ("str", False),
                "card_expiry": ("str", False),
            },
        )
        bought = await self.purchases().buy(
            p, body["package"], body["idempotency_key"],
            card_last4=body.get("card_last4"), card_expiry=body.get("card_expiry"),
        )
        return web.json_response(purchase_view(bought), status=200 if bought.replayed else 201)

    async def create_performer(self, request: web.Request) -> web.Response:
        p = await self.principal(request)
        if p.kind != ADMIN:
            raise NotPermittedError("only admin accounts may create performers")
        body = await json_body(
            request,
            {
                "username": ("str", True),
                "password": ("str", True),
                "display_name": ("str", True),
                "price_per_minute": ("int", True),
                "categories": ("list[str]", False),
                "bio": ("str", False),
                "group_members": ("list[str]", False),
            },
        )
        profile = await self.accounts().create_performer(
            p, body["username"], body["password"], display_name=body["display_name"],
            price_per_minute=body["price_per_minute"], categories=body.get("categories", []),
            bio=body.get("bio", ""), group_members=body.get("group_members"),
        )
        return web.json_response(profile_view(profile), status=201)

    async def performer(self, request: web.Request) -> web.Response:
        p = await self.principal(request)
        # Profiles are content: docs/product.md asks for the 18+ confirmation before any.
        self.accounts().require_adult(p)
        profile = await self.accounts().performer_profile(request.match_info["username"])
        return web.json_response(profile_view(profile))

    async def update_performer(self, request: web.Request) -> web.Response:
        p = await self.principal(request)
        if p.kind not in (PERFORMER, ADMIN):
            raise NotPermittedError("only the performer itself or an admin may change a profile")
        body = await json_body(
            request,
            {
                "display_name": ("str", False),
                "bio": ("str", False),
                "price_per_minute": ("int", False),
                "categories": ("list[str]", False),
            },
        )
        profile = await self.accounts().update_performer_profile(p, request.match_info["username"], **body)
        return web.json_response(profile_view(profile))

