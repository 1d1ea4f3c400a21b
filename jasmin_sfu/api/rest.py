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

from typing import Any, Callable

from aiohttp import web

from jasmin_sfu.api.ice_servers import add_ice_routes
from jasmin_sfu.api.openapi import openapi_document
from jasmin_sfu.api.rest_chat import add_chat_routes
from jasmin_sfu.api.rest_common import (
    PREFIX,
    MAX_BODY,
    ApiContext,
    ApiError,
    bearer_token,
    json_body,
    json_errors,
)
from jasmin_sfu.api.rest_privacy import add_privacy_routes
from jasmin_sfu.api.rest_social import install_social
from jasmin_sfu.services.accounts import ADMIN, PERFORMER, AccountsService, PerformerProfile, Principal
from jasmin_sfu.services.errors import NotPermittedError
from jasmin_sfu.services.ledger import PACKAGES, UNITS_PER_CREDIT
from jasmin_sfu.services.payments import Purchase, Purchases

# The route modules beside this one, each adding its routes to the ``/api/v1`` sub-application.
# They import ``rest_common``, never this module: a new one is one line here.
ROUTE_MODULES: tuple[Callable[[web.UrlDispatcher, ApiContext], None], ...] = (
    add_chat_routes,
    install_social,
    add_privacy_routes,
    add_ice_routes,
)



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
        for add_routes in ROUTE_MODULES:
            add_routes(r, self)
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

