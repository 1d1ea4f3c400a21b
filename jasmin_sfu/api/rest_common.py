"""What every ``/api/v1`` route module shares: the error shape, the domain-error mapping, the
JSON middleware, request parsing, the bearer token, and :class:`ApiContext` (what a route module
may ask of the API: the caller's principal, the accounts service).

The route modules (``rest_chat``, ``rest_social``, ``rest_privacy``, ``ice_servers``) import this
module, never ``rest``; ``rest`` imports them and registers their routes from one table, so the
imports run one way.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any, Awaitable, Callable, Protocol, TypeVar

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from jasmin_signaling.text import first_unstorable, unstorable

from jasmin_sfu.api.wire import Body, View, field_message
from jasmin_sfu.services.accounts import AccountsService, Principal
from jasmin_sfu.services.errors import (
    AccountConflictError,
    AccountNotFoundError,
    AccountsError,
    AccountValidationError,
    AdultConfirmationRequiredError,
    AlreadyVotedError,
    ChatBannedError,
    ChatError,
    ChatForbiddenError,
    ChatMutedError,
    ChatRateLimitedError,
    ChatUnavailableError,
    ChatValidationError,
    CreditControlError,
    CreditSessionClosedError,
    CreditSessionNotFoundError,
    ErasureError,
    FavouritesFullError,
    FavouritesLapsedError,
    InsufficientCreditError,
    InsufficientFundsError,
    InvalidCredentialsError,
    InvalidTokenError,
    LedgerError,
    LoginRateLimitedError,
    MailingRateLimitedError,
    NotPermittedError,
    NotShowOwnerError,
    PaymentConflictError,
    PaymentDeclinedError,
    PaymentsUnavailableError,
    PendingTransferError,
    PrivateRequiredError,
    ReplayMismatchError,
    RequestConflictError,
    RequestOutOfOrderError,
    ServiceError,
    SocialConflictError,
    SocialError,
    SocialNotFoundError,
    SocialValidationError,
    StoreBusyError,
    TopMemberFeeUnpaidError,
    TopMembershipRequiredError,
    TransferConflictError,
    TransferRejectedError,
    UnknownChatMessageError,
    UnknownPackageError,
    UsernameUnavailableError,
    VipAwardConflictError,
    VoteNotEligibleError,
)
from jasmin_sfu.store.errors import (
    DuplicateKeyError,
    IntegrityStoreError,
    MigrationError,
    RetryableStoreError,
    StoreError,
)

log = logging.getLogger(__name__)


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
    """An error answer: status, code, message (``extra``: more fields beside them in ``error``)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}

    def response(self) -> web.Response:
        """This error in the one error shape."""
        return error_response(self.status, self.code, self.message, self.headers, self.extra)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None
) -> web.Response:
    """The one error shape."""
    body = {"error": {"code": code, "message": message, **(extra or {})}}
    return web.json_response(body, status=status, headers=headers)


_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="jasmin"'}

# -- domain errors as HTTP errors ------------------------------------------------------
#
# One table, the only place a domain error becomes a status and a code. ``map_error`` walks
# the error's MRO, so the most specific class listed wins. Every class of
# services/errors.py and store/errors.py is listed itself (tests/api/test_error_mapping.py),
# so a new error is a decision here, never a silent 500. ``INTERNAL``: not expected at the
# REST edge; if one arrives it is a bug, logged and answered 500 ``internal``.

# A rule: (status, code) with the error's text as the message, or a function of the error
# and the current time (UNIX seconds) for an answer that needs more.
ErrorRule = tuple[int, str] | Callable[[Any, float], ApiError]
INTERNAL: ErrorRule = (500, "internal")


def _busy(exc: Exception, now: float) -> ApiError:
    return ApiError(503, "busy", "the database is busy; retry", {"Retry-After": "1"})


def _invalid_token(exc: InvalidTokenError, now: float) -> ApiError:
    return ApiError(401, "unauthorized", str(exc), {"WWW-Authenticate": 'Bearer error="invalid_token"'})


def _login_rate_limited(exc: LoginRateLimitedError, now: float) -> ApiError:
    return ApiError(429, "rate_limited", str(exc), {"Retry-After": str(exc.retry_after_s)})


def _social_conflict(exc: SocialConflictError, now: float) -> ApiError:
    return ApiError(409, exc.reason, str(exc))


def _mailing_rate_limited(exc: MailingRateLimitedError, now: float) -> ApiError:
    wait = max(1, math.ceil(exc.retry_at - now))
    return ApiError(
        429,
        "rate_limited",
        f"one mailing per 24 hours; the next at {exc.retry_at:.0f}",
        {"Retry-After": str(wait)},
        {"retry_at": exc.retry_at},
    )


DOMAIN_ERRORS: dict[type[Exception], ErrorRule] = {
    # services/errors.py
    ServiceError: INTERNAL,
    LedgerError: INTERNAL,
    StoreBusyError: _busy,
    AccountConflictError: INTERNAL,
    TransferRejectedError: INTERNAL,
    TransferConflictError: INTERNAL,
    InsufficientFundsError: INTERNAL,
    PendingTransferError: INTERNAL,
    UnknownPackageError: INTERNAL,
    ReplayMismatchError: INTERNAL,
    VipAwardConflictError: INTERNAL,
    CreditControlError: INTERNAL,
    InsufficientCreditError: INTERNAL,
    CreditSessionNotFoundError: INTERNAL,
    CreditSessionClosedError: INTERNAL,
    RequestOutOfOrderError: INTERNAL,
    RequestConflictError: INTERNAL,
    AccountsError: (400, "bad_request"),
    AccountValidationError: (400, "bad_request"),
    UsernameUnavailableError: (409, "username_unavailable"),
    InvalidCredentialsError: (401, "invalid_credentials"),
    InvalidTokenError: _invalid_token,
    AdultConfirmationRequiredError: (403, "adult_confirmation_required"),
    NotPermittedError: (403, "forbidden"),
    NotShowOwnerError: (403, "forbidden"),
    AccountNotFoundError: (404, "not_found"),
    PaymentsUnavailableError: (503, "payments_unavailable"),
    PaymentDeclinedError: (402, "payment_declined"),
    PaymentConflictError: (409, "idempotency_conflict"),
    ChatError: INTERNAL,
    ChatValidationError: INTERNAL,
    ChatForbiddenError: INTERNAL,
    ChatBannedError: INTERNAL,
    ChatMutedError: INTERNAL,
    ChatRateLimitedError: INTERNAL,
    UnknownChatMessageError: INTERNAL,
    ChatUnavailableError: INTERNAL,
    LoginRateLimitedError: _login_rate_limited,
    ErasureError: (403, "forbidden"),
    SocialError: (400, "bad_request"),
    SocialValidationError: (400, "bad_request"),
    SocialNotFoundError: (404, "not_found"),
    SocialConflictError: _social_conflict,
    FavouritesFullError: (409, "favourites_full"),
    FavouritesLapsedError: (403, "favourites_lapsed"),
    TopMembershipRequiredError: (403, "top_membership_required"),
    PrivateRequiredError: (403, "private_required"),
    VoteNotEligibleError: (403, "vote_not_eligible"),
    AlreadyVotedError: (409, "already_voted"),
    MailingRateLimitedError: _mailing_rate_limited,
    TopMemberFeeUnpaidError: (402, "insufficient_credits"),
    # store/errors.py
    StoreError: INTERNAL,
    RetryableStoreError: _busy,
    IntegrityStoreError: INTERNAL,
    MigrationError: INTERNAL,
    DuplicateKeyError: INTERNAL,
}


def error_rule(exc: BaseException) -> ErrorRule | None:
    """The table's rule for ``exc``: its class's, else its nearest listed ancestor's (None: none)."""
    for cls in type(exc).__mro__:
        rule = DOMAIN_ERRORS.get(cls)
        if rule is not None:
            return rule
    return None


def map_error(exc: Exception, now: float | None = None) -> ApiError | None:
    """A domain error as an HTTP error (None: not one, or ``INTERNAL``: a bug, the caller's 500).

    ``now`` is the clock for a ``Retry-After`` computed from a deadline (default: the wall clock).
    """
    rule = error_rule(exc)
    if rule is None or rule == INTERNAL:
        return None
    if isinstance(rule, tuple):
        return ApiError(rule[0], rule[1], str(exc))
    return rule(exc, time.time() if now is None else now)


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
        return e.response()
    except web.HTTPException as e:  # aiohttp's own: unknown route, method, body too large
        if e.status < 400:
            raise
        headers = {k: v for k, v in e.headers.items() if k == "Allow"}
        return error_response(e.status, _HTTP_CODES.get(e.status, "bad_request"), e.reason, headers)
    except Exception as e:  # noqa: BLE001 - the edge: log it, answer 500
        known = map_error(e)
        if known is not None:
            return known.response()
        where = {"method": request.method, "path": request.path}
        log.exception("%s %s failed", request.method, request.path, extra=where)
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


async def json_object(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object: size (413), media type (415), syntax, shape and storable
    text (400). Its fields are the wire struct's (:func:`read_body`).

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
    return data


B = TypeVar("B", bound=Body)


async def read_body(request: web.Request, shape: type[B], *, required: bool = True) -> B:
    """The request's JSON object as the wire struct ``shape`` (``jasmin_sfu.api.wire``): the
    checks of :func:`json_object`, then the struct's fields, types and constraints, each
    refusal a 400 ``bad_request`` naming the field. A body that is not ``required`` may be
    absent (zero bytes: ``{}``)."""
    data = await json_object(request, required=required)
    try:
        return msgspec.convert(data, shape)
    except msgspec.ValidationError as e:
        raise ApiError(400, "bad_request", field_message(e)) from None


def answer(view: View, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A wire struct as the JSON answer."""
    return web.Response(
        text=msgspec.json.encode(view).decode(), status=status, headers=headers, content_type="application/json"
    )


def bearer_token(request: web.Request) -> str:
    """The token of ``Authorization: Bearer <token>``, or 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>", _BEARER_CHALLENGE)
    return token.strip()


# -- views ----------------------------------------------------------------------------


class ApiContext(Protocol):
    """What a route module needs of the API (``RestApi`` is one)."""

    def accounts(self) -> AccountsService: ...

    async def principal(self, request: web.Request) -> Principal: ...
