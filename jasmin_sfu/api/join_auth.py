"""Who is joining: a signaling ``join`` turned into a role and an identity, server-side.

The rules (docs/signaling.md, "Who you are"):

* With a ``token`` the server derives everything from it. ``role: performer``
  needs a performer account that owns the show (show id = its username, or a
  group account listing it); the show's price becomes the owner's profile
  price. ``role: viewer`` needs the 18+ confirmation in force; a member token
  joins as that member, a guest token as a guest, a performer or admin token
  as a viewer without member rights.
* Without a token, when ``accounts.trust_client_ids`` is false (production):
  ``member_id`` / ``performer_id`` are refused (``bad_request``) and the join
  itself is ``unauthorized``: an anonymous visitor first gets a guest token
  (``POST /api/v1/guest-sessions``), which is where the 18+ confirmation is
  recorded.
* Without a token, when ``accounts.trust_client_ids`` is true (the old tests,
  the load tool): the legacy behaviour, fields trusted as given, no 18+ check.
"""

from __future__ import annotations

from dataclasses import dataclass

from jasmin_signaling.errors import SignalingError
from jasmin_signaling.messages import Join

from jasmin_sfu.services.accounts import MEMBER, AccountsService, Principal
from jasmin_sfu.services.errors import (
    AccountsError,
    AdultConfirmationRequiredError,
    InvalidTokenError,
    NotPermittedError,
)


@dataclass(frozen=True)
class JoinIdentity:
    """What a join may be: the participant's role and ids, and the show price for performers."""

    role: str
    member_id: str | None = None
    performer_id: str | None = None
    price_per_minute: int | None = None
    principal: Principal | None = None


def map_accounts_error(exc: AccountsError) -> SignalingError:
    """Accounts errors as wire codes (the edge)."""
    if isinstance(exc, InvalidTokenError):
        return SignalingError("unauthorized", str(exc))
    if isinstance(exc, AdultConfirmationRequiredError):
        return SignalingError("adult_confirmation_required", str(exc))
    if isinstance(exc, NotPermittedError):
        return SignalingError("forbidden", str(exc))
    return SignalingError("bad_request", str(exc))


class JoinAuthenticator:
    """Resolves joins against the accounts service (``None``: accounts disabled on this node)."""

    def __init__(self, accounts: AccountsService | None, *, trust_client_ids: bool) -> None:
        self.accounts = accounts
        self.trust_client_ids = trust_client_ids

    async def resolve(self, body: Join) -> JoinIdentity:
        """The identity of a join, or a ``SignalingError``."""
        if body.token is None:
            if self.trust_client_ids:
                return JoinIdentity(body.role, body.member_id, body.performer_id)
            if body.member_id is not None or body.performer_id is not None:
                field = "member_id" if body.member_id is not None else "performer_id"
                raise SignalingError("bad_request", f"{field}: not accepted by this server; join with a token")
            raise SignalingError(
                "unauthorized", "a token is required: log in, or get a guest token (POST /api/v1/guest-sessions)"
            )
        if self.accounts is None:
            raise SignalingError("unauthorized", "accounts are not enabled on this node")
        try:
            principal = await self.accounts.authenticate(body.token)
            if body.role == "performer":
                profile = await self.accounts.performer_for_show(principal, body.show_id)
                return JoinIdentity("performer", None, principal.id, profile.price_per_minute, principal)
            self.accounts.require_adult(principal)
        except AccountsError as exc:
            raise map_accounts_error(exc) from None
        member = principal.id if principal.kind == MEMBER else None
        return JoinIdentity("viewer", member, None, None, principal)
