"""``favourite.online`` over signaling: which member a websocket is, for the online notifier.

A connection is told when a favourite performer comes online once it is known
to be a member's: after a ``join`` with a member token, or, without joining
any show (a member browsing the site), after ``notifications.subscribe
{token}`` (docs/signaling.md). The registration ends with the connection.
"""

from __future__ import annotations

from typing import Any, Callable

from jasmin_signaling import responses as rs
from jasmin_signaling.errors import SignalingError

from jasmin_sfu.api.join_auth import JoinAuthenticator, map_accounts_error
from jasmin_sfu.services.accounts import MEMBER, Principal
from jasmin_sfu.services.errors import AccountsError
from jasmin_sfu.services.social_notify import OnlineNotifier, Send


class NotificationSubscription:
    """One connection's registration with the notifier (at most one member at a time)."""

    def __init__(self, notifier: OnlineNotifier | None, auth: JoinAuthenticator | None, send: Send) -> None:
        self.notifier = notifier
        self.auth = auth
        self.send = send
        self.member_id: str | None = None
        # Who the registration speaks for: revoking its token ends the connection
        # (retention.end_revoked_sessions), like a join's token.
        self.principal: Principal | None = None
        self._detach: Callable[[], None] | None = None

    def watch(self, principal: Principal | None) -> None:
        """Register the connection for ``principal`` when it is a member's (joins call this)."""
        if self.notifier is None or principal is None or principal.kind != MEMBER:
            return
        if self.member_id == principal.id:
            self.principal = principal
            return
        self.close()
        self.member_id = principal.id
        self.principal = principal
        self._detach = self.notifier.attach(principal.id, self.send)

    async def subscribe(self, token: str | None, joined: Principal | None) -> dict[str, Any]:
        """The ``notifications.subscribe`` verb: a member token, or the member this connection joined as."""
        if self.notifier is None:
            raise SignalingError("invalid_state", "notifications are not enabled on this node")
        principal = joined
        if token is not None:
            if self.auth is None or self.auth.accounts is None:
                raise SignalingError("unauthorized", "accounts are not enabled on this node")
            try:
                principal = await self.auth.accounts.authenticate(token)
            except AccountsError as exc:
                raise map_accounts_error(exc) from None
        if principal is None:
            raise SignalingError("unauthorized", "send a member token (or join with one first)")
        if principal.kind != MEMBER:
            raise SignalingError("forbidden", "favourite notifications are for members")
        self.watch(principal)
        return rs.NotificationsSubscribed(member_id=principal.id, events=["favourite.online"]).to_wire()

    def close(self) -> None:
        """Unregister (the connection closed, or another member subscribed on it)."""
        if self._detach is not None:
            self._detach()
        self._detach = None
        self.member_id = None
        self.principal = None
