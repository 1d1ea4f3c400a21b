"""The demo accounts of a node on its embedded defaults: `make run` works on first click.

On a node that keeps its accounts in the embedded SQLite store (no ``accounts.dsn``, no
``billing.ledger_dsn``) and has ``accounts.seed_demo = true`` (the default), ``jasmin-sfu
serve`` makes sure, at every start, that two accounts exist:

* ``demo_performer`` (password ``demo-performer``), a performer whose show is its username;
* ``demo_member`` (password ``demo-member``), an adult-confirmed member whose wallet holds
  at least ``DEMO_CREDITS`` credits.

Idempotent across restarts: existing accounts are kept as they are (never re-created, their
password never reset); the member's wallet is topped up *only when below* ``DEMO_CREDITS``,
and then exactly to it, once per start. The passwords are public by design: they are printed
at start and the demo page offers them (``GET /demo/config``). That is why seeding never runs
with a PostgreSQL DSN, and why a production node on SQLite sets ``accounts.seed_demo = false``.

Credits reach the wallet only through the ledger, as a documented promo transfer
(docs/money.md, "Demo credits"): one linked chain ``demo:<nonce>`` mints the amount from
``world:CREDIT`` into ``promo:demo`` and ``demo:<nonce>:<member>`` pays it to the wallet,
after which the wallet's open private sessions are re-authorised like after any top-up.
``top_up`` is the demo page's "Demo top-up" (10 credits, the demo member only).

With ``server.workers`` other than 1 the first worker seeds (the others find the accounts)
and nothing is printed, since workers listen on private ports: the names above still work.
"""

from __future__ import annotations

import logging
import math
import secrets
from dataclasses import dataclass
from typing import Any

from jasmin_sfu.services.accounts import ADMIN, MEMBER, PERFORMER, AccountsService, Principal, username_key
from jasmin_sfu.services.credit_control import CreditControl
from jasmin_sfu.services.errors import NotPermittedError
from jasmin_sfu.services.ledger import (
    CREDIT,
    WORLD_CREDIT,
    Account,
    AccountFlags,
    Transfer,
    credits_to_units,
    linked,
    units_to_credits,
    wallet_account,
)

log = logging.getLogger(__name__)

DEMO_PERFORMER = "demo_performer"
DEMO_PERFORMER_PASSWORD = "demo-performer"
DEMO_MEMBER = "demo_member"
DEMO_MEMBER_PASSWORD = "demo-member"
# What the demo member's wallet holds at least after a start, and what one demo top-up adds.
DEMO_CREDITS = 30
DEMO_TOP_UP_CREDITS = 10
# The demo performer's price: 1.20 credits a minute (hundredths of a credit per minute).
DEMO_PRICE_PER_MINUTE = 120
PROMO_DEMO = "promo:demo"


def demo_enabled(cfg: Any) -> bool:
    """Whether a node with config ``cfg`` (a ``Config``) seeds the demo accounts.

    Only on the embedded defaults: SQLite accounts and ledger, both enabled, and
    ``accounts.seed_demo`` not turned off.
    """
    a, b = cfg.accounts, cfg.billing
    return bool(a.seed_demo and a.enabled and b.enabled and not a.dsn and not b.ledger_dsn)


@dataclass(frozen=True)
class DemoAccount:
    """One seeded account as the start-up print and the demo page show it."""

    role: str  # performer | member
    username: str
    password: str
    user_id: str


@dataclass(frozen=True)
class DemoAccounts:
    """The seeded pair; ``show_id`` is the performer's show (its username)."""

    performer: DemoAccount
    member: DemoAccount
    member_credits: str  # the member's available credits after seeding, two decimals

    @property
    def show_id(self) -> str:
        return self.performer.username


# The seeding acts as the node itself: performers are created by admins only.
_SEEDER = Principal(ADMIN, "node:demo-seed", "node:demo-seed", None, True, math.inf)


class DemoSeeder:
    """Seeds the demo accounts and grants demo credits through the ledger."""

    def __init__(self, accounts: AccountsService, cc: CreditControl) -> None:
        self.accounts = accounts
        self.cc = cc
        self.ledger = cc.ledger
        self.seeded: DemoAccounts | None = None

    async def _user_id(self, username: str, role: str) -> str | None:
        user = await self.accounts.store.user_by_username(username_key(username))
        if user is None:
            return None
        if user.role != role or user.closed_at is not None:
            raise NotPermittedError(f"{username!r} exists and is not an open {role} account; demo seeding skipped")
        return user.id

    async def seed(self) -> DemoAccounts:
        """Create what is missing, top the member up to ``DEMO_CREDITS`` if below; idempotent."""
        perf_id = await self._user_id(DEMO_PERFORMER, PERFORMER)
        if perf_id is None:
            profile = await self.accounts.create_performer(
                _SEEDER,
                DEMO_PERFORMER,
                DEMO_PERFORMER_PASSWORD,
                display_name="Demo performer",
                price_per_minute=DEMO_PRICE_PER_MINUTE,
                categories=["hot_flirt"],
                bio="Seeded by `make run` (accounts.seed_demo).",
            )
            perf_id = profile.user_id
            log.info("demo performer created", extra={"username": DEMO_PERFORMER})
        member_id = await self._user_id(DEMO_MEMBER, MEMBER)
        if member_id is None:
            member_id = (
                await self.accounts.register(DEMO_MEMBER, DEMO_MEMBER_PASSWORD, adult_confirmed=True)
            ).principal.id
            log.info("demo member created", extra={"username": DEMO_MEMBER})
        await self.ledger.open_performer(perf_id)
        wallet = await self.ledger.open_member(member_id)
        have = (await self.ledger.balance(wallet)).available
        want = credits_to_units(DEMO_CREDITS)
        if have < want:
            await self._grant_units(member_id, want - have)
            have = want
        self.seeded = DemoAccounts(
            DemoAccount("performer", DEMO_PERFORMER, DEMO_PERFORMER_PASSWORD, perf_id),
            DemoAccount("member", DEMO_MEMBER, DEMO_MEMBER_PASSWORD, member_id),
            units_to_credits(have),
        )
        return self.seeded

    async def _grant_units(self, member_id: str, units: int) -> None:
        dmnec = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
        await self.ledger.ensure_accounts([Account(PROMO_DEMO, CREDIT, "promo", dmnec)])
        nonce = f"demo:{secrets.token_hex(8)}"
        await self.ledger.submit(
            linked(
                [
                    Transfer(nonce, WORLD_CREDIT, PROMO_DEMO, units, CREDIT, "demo_budget"),
                    Transfer(
                        f"{nonce}:{member_id}", PROMO_DEMO, wallet_account(member_id), units, CREDIT, "demo_credits"
                    ),
                ]
            )
        )
        log.info("demo credits granted", extra={"member": member_id, "units": units})
        await self.cc.notify_top_up(wallet_account(member_id), "demo_credits")

    async def top_up(self, principal: Principal) -> str:
        """The demo page's "Demo top-up": ``DEMO_TOP_UP_CREDITS`` to the demo member only.

        Returns the wallet's available credits after it; ``NotPermittedError`` for anybody
        else (no other account gets free credits this way).
        """
        if self.seeded is None or principal.kind != MEMBER or principal.id != self.seeded.member.user_id:
            raise NotPermittedError(f"only {DEMO_MEMBER} gets demo credits; others buy credits")
        await self._grant_units(principal.id, credits_to_units(DEMO_TOP_UP_CREDITS))
        return units_to_credits((await self.ledger.balance(wallet_account(principal.id))).available)
