"""The REST API under ``/api/v1``: accounts, sessions, the 18+ confirmation, wallet, performers.

Every answer is JSON; every error is ``{"error": {"code", "message"}}`` with a
4xx status (5xx only for an unavailable part, 503, or a real bug, 500). Input
is checked in two layers: here the shape (JSON object, known fields, types,
size), in the services the values. Domain errors become HTTP statuses here,
at the edge, and nowhere else. ``/openapi.json`` describes exactly these routes
(``jasmin_sfu.api.openapi``; a test fuzzes the API against it); ``/signaling-schema.json``
is the JSON Schema of the websocket's requests (``jasmin_signaling.messages``).

Authentication: ``Authorization: Bearer <token>``, the token from
``POST /api/v1/accounts``, ``/sessions`` or ``/guest-sessions`` (docs/accounts.md).
"""

from __future__ import annotations

from typing import Callable

from aiohttp import web
from jasmin_signaling.messages import SCHEMA_ID, json_schema_text

from jasmin_sfu.api import wire_accounts as wire
from jasmin_sfu.api.ice_servers import add_ice_routes
from jasmin_sfu.api.openapi import openapi_json
from jasmin_sfu.api.rest_chat import add_chat_routes
from jasmin_sfu.api.rest_common import (
    MAX_BODY,
    PREFIX,
    ApiContext,
    ApiError,
    answer,
    bearer_token,
    json_errors,
    read_body,
)
from jasmin_sfu.api.rest_privacy import add_privacy_routes
from jasmin_sfu.api.rest_social import install_social
from jasmin_sfu.api.wire import given, sent
from jasmin_sfu.services.accounts import ADMIN, PERFORMER, AccountsService, PerformerProfile, Principal
from jasmin_sfu.services.errors import NotPermittedError
from jasmin_sfu.services.ledger import PACKAGES, UNITS_PER_CREDIT
from jasmin_sfu.services.payments import Earnings, Purchase, Purchases

# The route modules beside this one, each adding its routes to the ``/api/v1`` sub-application.
# They import ``rest_common``, never this module: a new one is one line here.
ROUTE_MODULES: tuple[Callable[[web.UrlDispatcher, ApiContext], None], ...] = (
    add_chat_routes,
    install_social,
    add_privacy_routes,
    add_ice_routes,
)


def principal_view(p: Principal) -> wire.Principal:
    """A principal as the API shows it."""
    return wire.Principal(
        kind=p.kind, id=p.id, username=p.username, adult_confirmed=p.adult_confirmed, expires_at=p.expires_at
    )


def token_view(token: str, p: Principal) -> wire.Token:
    """A new session."""
    return wire.Token(token=token, token_type="Bearer", expires_at=p.expires_at, principal=principal_view(p))


def purchase_view(p: Purchase) -> wire.Purchase:
    """A purchase as the member sees it."""
    return wire.Purchase(
        payment_id=p.payment_id,
        package=p.package_code,
        credits=p.credits,
        vip_points=p.vip_points,
        amount_cents=p.amount_cents,
        currency="USD",
        status=p.status,
        created_at=p.created_at,
        card_last4=p.card_last4,
        card_expiry=p.card_expiry,
        replayed=p.replayed,
    )


def earnings_view(e: Earnings) -> wire.Earnings:
    """A performer's earnings as the API shows them."""
    return wire.Earnings(
        credits=e.credits, units=e.units, units_per_credit=UNITS_PER_CREDIT, performer_share_bp=e.share_bp
    )


def profile_view(p: PerformerProfile) -> wire.PerformerProfile:
    """A performer's public profile."""
    return wire.PerformerProfile(
        id=p.user_id,
        username=p.username,
        display_name=p.display_name,
        bio=p.bio,
        price_per_minute=p.price_per_minute,
        categories=list(p.categories),
        is_group=p.is_group,
        group_members=list(p.group_members),
    )


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
        r.add_get("/performers/{username}/earnings", self.earnings)
        for add_routes in ROUTE_MODULES:
            add_routes(r, self)
        return app

    def install(self, app: web.Application) -> None:
        """Mount the API, its OpenAPI document and the signaling protocol's JSON Schema on the daemon's app."""
        app.add_subapp(PREFIX, self.app())
        app.router.add_get("/openapi.json", self.openapi)
        app.router.add_get(SCHEMA_ID, self.signaling_schema)
        openapi_json()  # built now, not on the event loop of the first request
        json_schema_text()

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
        return web.Response(text=openapi_json(), content_type="application/json")

    async def signaling_schema(self, request: web.Request) -> web.Response:
        return web.Response(text=json_schema_text(), content_type="application/json")

    async def start_guest(self, request: web.Request) -> web.Response:
        body = await read_body(request, wire.GuestSessionRequest, required=False)
        issued = await self.accounts().start_guest(adult_confirmed=body.adult_confirmed)
        return answer(token_view(issued.token, issued.principal), status=201)

    async def register(self, request: web.Request) -> web.Response:
        body = await read_body(request, wire.RegisterRequest)
        issued = await self.accounts().register(body.username, body.password, adult_confirmed=body.adult_confirmed)
        return answer(token_view(issued.token, issued.principal), status=201)

    async def login(self, request: web.Request) -> web.Response:
        body = await read_body(request, wire.LoginRequest)
        issued = await self.accounts().login(body.username, body.password, client=request.remote)
        return answer(token_view(issued.token, issued.principal), status=201)

    async def logout(self, request: web.Request) -> web.Response:
        p = await self.principal(request)
        await self.accounts().logout(p)
        return web.Response(status=204)

    async def me(self, request: web.Request) -> web.Response:
        p = await self.principal(request)
        out = wire.Me(
            kind=p.kind, id=p.id, username=p.username, adult_confirmed=p.adult_confirmed, expires_at=p.expires_at
        )
        if p.kind == PERFORMER:
            out.performer = profile_view(await self.accounts().performer_profile(p.username))
        return answer(out)

    async def confirm_adult(self, request: web.Request) -> web.Response:
        p = await self.principal(request)
        await read_body(request, wire.AdultConfirmationRequest, required=False)
        return answer(principal_view(await self.accounts().confirm_adult(p)))

    async def packages(self, request: web.Request) -> web.Response:
        return answer(
            wire.Packages(
                packages=[
                    wire.Package(
                        code=p.code,
                        price_cents=p.price_cents,
                        currency="USD",
                        credits=p.credits,
                        vip_points=p.vip_points,
                    )
                    for p in PACKAGES
                ]
            )
        )

    async def wallet(self, request: web.Request) -> web.Response:
        p = await self.principal(request)
        w = await self.purchases().wallet(p)
        return answer(
            wire.Wallet(
                credits=w.credits,
                available_units=w.available_units,
                held_units=w.held_units,
                units_per_credit=UNITS_PER_CREDIT,
                vip_points=w.vip_points,
            )
        )

    async def purchase(self, request: web.Request) -> web.Response:
        p = await self.principal(request)
        body = await read_body(request, wire.PurchaseRequest)
        bought = await self.purchases().buy(
            p,
            body.package,
            body.idempotency_key,
            card_last4=given(body.card_last4),
            card_expiry=given(body.card_expiry),
        )
        return answer(purchase_view(bought), status=200 if bought.replayed else 201)

    async def create_performer(self, request: web.Request) -> web.Response:
        p = await self.principal(request)
        if p.kind != ADMIN:
            raise NotPermittedError("only admin accounts may create performers")
        body = await read_body(request, wire.CreatePerformerRequest)
        profile = await self.accounts().create_performer(
            p,
            body.username,
            body.password,
            display_name=body.display_name,
            price_per_minute=body.price_per_minute,
            categories=body.categories,
            bio=body.bio,
            group_members=given(body.group_members),
        )
        return answer(profile_view(profile), status=201)

    async def performer(self, request: web.Request) -> web.Response:
        p = await self.principal(request)
        # Profiles are content: docs/product.md asks for the 18+ confirmation before any.
        self.accounts().require_adult(p)
        profile = await self.accounts().performer_profile(request.match_info["username"])
        return answer(profile_view(profile))

    async def update_performer(self, request: web.Request) -> web.Response:
        p = await self.principal(request)
        if p.kind not in (PERFORMER, ADMIN):
            raise NotPermittedError("only the performer itself or an admin may change a profile")
        body = await read_body(request, wire.UpdatePerformerRequest)
        profile = await self.accounts().update_performer_profile(p, request.match_info["username"], **sent(body))
        return answer(profile_view(profile))

    async def earnings(self, request: web.Request) -> web.Response:
        p = await self.principal(request)
        if p.kind not in (PERFORMER, ADMIN):  # said before the lookup: a member learns no usernames here
            raise NotPermittedError("only the performer itself or an admin may see its earnings")
        profile = await self.accounts().performer_profile(request.match_info["username"])
        return answer(earnings_view(await self.purchases().earnings(p, profile.user_id)))
