"""The demo page's own endpoints, beside the page (``server.demo_page``), outside ``/api/v1``.

* ``GET /demo/config``: what the page needs to know of this node, without a token::

      {"trust_client_ids": false, "simulcast": false,
       "demo": {"show_id": "demo_performer", "top_up_credits": 10,
                "accounts": [{"role": "performer", "username": "demo_performer", "password": "demo-performer"},
                             {"role": "member", "username": "demo_member", "password": "demo-member"}]}}

  ``demo`` is ``null`` unless this node seeded the demo accounts (jasmin_sfu/services/demo.py:
  embedded defaults, ``accounts.seed_demo``). ``trust_client_ids`` shows the page's "Member id"
  field (the legacy token-less join); otherwise it stays hidden. ``simulcast`` says the node
  takes simulcast publishers (the media settings' ``simulcast``): the performer page then sends
  three layers (RIDs ``q``, ``h``, ``f``, scaled down 4, 2 and 1 times).
* ``POST /demo/top-up`` with ``Authorization: Bearer <demo member's token>``: 10 demo credits
  through the ledger (a promo transfer, docs/money.md) and a re-auth of its running private.
  Answers ``{"credits": "40.00"}``; ``404 demo_off`` on a node without demo accounts,
  ``401 unauthorized`` without a valid token, ``403 forbidden`` for any other account.
"""

from __future__ import annotations

from typing import Any, Callable

from aiohttp import web

from jasmin_sfu.api.rest_common import ApiError, bearer_token, json_errors
from jasmin_sfu.services.accounts import AccountsService
from jasmin_sfu.services.demo import DEMO_TOP_UP_CREDITS, DemoSeeder


def demo_config(seeder: DemoSeeder | None, trust_client_ids: bool, simulcast: bool = False) -> dict[str, Any]:
    """The body of ``GET /demo/config``."""
    seeded = seeder.seeded if seeder is not None else None
    demo = None
    if seeded is not None:
        demo = {
            "show_id": seeded.show_id,
            "top_up_credits": DEMO_TOP_UP_CREDITS,
            "accounts": [
                {"role": a.role, "username": a.username, "password": a.password}
                for a in (seeded.performer, seeded.member)
            ],
        }
    return {"trust_client_ids": trust_client_ids, "simulcast": simulcast, "demo": demo}


def add_demo_routes(
    app: web.Application,
    seeder: Callable[[], DemoSeeder | None],
    accounts: Callable[[], AccountsService | None],
    trust_client_ids: bool,
    simulcast: bool = False,
) -> None:
    """Add ``/demo/config`` and ``/demo/top-up`` to the daemon's app, next to the page
    (not a sub-application: those are the ``/api/v1`` contract of /openapi.json)."""

    async def config(request: web.Request) -> web.Response:
        return web.json_response(
            demo_config(seeder(), trust_client_ids, simulcast), headers={"Cache-Control": "no-store"}
        )

    async def top_up(request: web.Request) -> web.Response:
        s, a = seeder(), accounts()
        if s is None or s.seeded is None or a is None:
            raise ApiError(404, "demo_off", "this node has no demo accounts (accounts.seed_demo, embedded defaults)")
        principal = await a.authenticate(bearer_token(request))
        return web.json_response({"credits": await s.top_up(principal)})

    async def top_up_or_error(request: web.Request) -> web.StreamResponse:
        return await json_errors(request, top_up)  # the API's one error shape

    app.router.add_get("/demo/config", config)
    app.router.add_post("/demo/top-up", top_up_or_error)
