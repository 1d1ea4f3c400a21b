"""The paid private of one show, from request to end: the one home of that flow.

One :class:`Privates` per show (the registry opens it with the show). The edges
(the websocket handler, WHIP/WHEP through it) only map verbs to its methods and
its :class:`~jasmin_sfu.shows.machine.Rejected` to wire codes. The walk of a
``private.accept`` through it is in docs/architecture.md (walk 2).

* **Request / accept.** The machine's own rule (``check_request`` /
  ``check_accept``) is asked first, so a grant is never opened for a private the
  machine would refuse. On a billing node the member's credit is authorised next
  (:meth:`PrivateBilling.authorize`, the first grant held on the wallet), then the
  event is applied to the show. Whatever happens between the two (the member
  withdrew or left, another private started, the performer went offline, an
  error), a grant whose private did not start is released in the same call. An
  auto-accepted request is the same sequence with ``RequestPrivate`` as the event.
* **Meter.** The show tells this object, in the step it happens, that the private
  started or ended (:class:`~jasmin_sfu.shows.show.PrivateListener`), whoever
  ended it; it starts and ends the meter on the very grant it authorised.
* **Warn / run out.** Billing tells it when credit runs low and when it ran out
  (:class:`~jasmin_sfu.shows.billing.BillingListener`): the member and the
  performers are warned, and an exhausted private ends (``EndPrivate("billing")``).
* **Top-up.** A top-up during the private reaches the running grant through credit
  control's re-authorisation (``PrivateBilling`` renews it by its session id): the
  ceiling moves and a pending stop is cancelled, with no break in the media.
* **End, back to free.** The member or the performer ends it, or the member's last
  connection leaves; then the performer returns to free chat.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from jasmin_signaling.events import PrivateCreditExhausted, PrivateCreditWarning

from .billing import BilledPrivate, BillingRefused, PrivateBilling
from .machine import (
    AcceptPrivate,
    DeclinePrivate,
    EndPrivate,
    Event,
    Rejected,
    RequestPrivate,
    ReturnToFree,
    WithdrawRequest,
)
from .show import Show

log = logging.getLogger(__name__)


class Privates:
    """The paid privates of one show. Every refusal is a :class:`Rejected` with a wire code."""

    def __init__(self, show: Show, billing: PrivateBilling | None) -> None:
        self.show = show
        self.billing = billing
        # Members whose grant is being opened: a twin request must not open a second one
        # (that grant would find the wallet held by the first and answer insufficient_credits).
        self._authorizing: set[str] = set()
        # The grant of the private being started right now (between authorize and apply).
        self._starting: BilledPrivate | None = None
        # The grant of the running private, until it ends.
        self.running: BilledPrivate | None = None
        show.private_listener = self

    # -- the verbs ----------------------------------------------------------------

    async def request(self, member_id: str) -> bool:
        """The member asks for a private; True when it started at once (auto-accept)."""
        show = self.show
        if show.machine.auto_accept and self.billing is not None:
            # Auto-accept starts the private in this request: the grant must exist first.
            show.machine.check_request(member_id)
            await self._start(member_id, lambda at: RequestPrivate(member_id, at))
        else:
            show.apply(RequestPrivate(member_id, show.clock()))
        return show.machine.private_member == member_id

    async def accept(self, member_id: str) -> float:
        """The performer accepts; returns the instant every other viewer was paused."""
        show = self.show
        if self.billing is None:
            at = show.clock()
            show.apply(AcceptPrivate(member_id, at))
            return at
        show.machine.check_accept(member_id)
        return await self._start(member_id, lambda at: AcceptPrivate(member_id, at))

    def decline(self, member_id: str) -> None:
        self.show.apply(DeclinePrivate(member_id, self.show.clock()))

    def withdraw(self, member_id: str) -> None:
        self.show.apply(WithdrawRequest(member_id, self.show.clock()))

    def end_by_performer(self) -> float:
        at = self.show.clock()
        self.show.apply(EndPrivate("performer", at))
        return at

    def end_by_member(self, member_id: str) -> float:
        at = self.show.clock()
        self.show.apply(EndPrivate("member", at, member_id=member_id))
        return at

    def back_to_free(self) -> float:
        """The performer leaves member chat (after a private) for free chat."""
        at = self.show.clock()
        self.show.apply(ReturnToFree(at))
        return at

    def member_leaving(self, member_id: str) -> None:
        """A connection of ``member_id`` is leaving the show (it still counts among its sessions).

        The member's last connection ends their private (``disconnect``: billed up to
        now); any connection withdraws their pending request.
        """
        show = self.show
        if show.closed:
            return
        at = show.clock()
        if show.machine.private_member == member_id and len(show.sessions_of(member_id)) == 1:
            show.apply(EndPrivate("disconnect", at, member_id=member_id))
        elif member_id in show.machine.requests:
            show.apply(WithdrawRequest(member_id, at))

    # -- authorise, then apply; release on any failure ---------------------------------

    async def _start(self, member_id: str, event: Callable[[float], Event]) -> float:
        assert self.billing is not None
        grant = await self._authorize(member_id)
        at = self.show.clock()
        self._starting = grant
        try:
            # The machine decides again: the state may have moved while the grant was opened.
            self.show.apply(event(at))
        finally:
            self._starting = None
            if self.running is not grant:
                self.billing.release(grant)
        return at

    async def _authorize(self, member_id: str) -> BilledPrivate:
        assert self.billing is not None
        show = self.show
        if member_id in self._authorizing:
            raise Rejected("already_requested", "a private request from this member is pending")
        if not show.performer_ids:
            raise Rejected("invalid_state", "the show has no performer")
        self._authorizing.add(member_id)
        try:
            return await self.billing.authorize(
                show.id, member_id, show.performer_ids[0], show.price_per_minute, listener=self
            )
        except BillingRefused as exc:
            raise Rejected(exc.code, exc.message) from None
        finally:
            self._authorizing.discard(member_id)

    # -- what the show tells (PrivateListener) ---------------------------------------------

    def private_started(self, member_id: str, at: float) -> None:
        if self.billing is None:
            return
        grant = self._starting
        if grant is None or grant.spec.member_id != member_id:
            # Every start passes through _start on a billing node; this would be unbilled media.
            log.error("private started without a grant", extra={"show_id": self.show.id})
            return
        self.running = grant
        self.billing.start_metering(grant, at)

    def private_ended(self, member_id: str, at: float, reason: str) -> None:
        grant, self.running = self.running, None
        if grant is not None and self.billing is not None:
            self.billing.stop_metering(grant, at, reason)

    # -- what billing tells (BillingListener) ------------------------------------------------

    def credit_warning(self, private: BilledPrivate, seconds_left: int) -> None:
        member = private.spec.member_id
        warning = PrivateCreditWarning(show_id=self.show.id, member_id=member, seconds_left=seconds_left)
        self._notify(private, "private.credit_warning", warning.to_wire())

    def credit_exhausted(self, private: BilledPrivate, at: float) -> None:
        if private is not self.running:
            return
        exhausted = PrivateCreditExhausted(show_id=self.show.id, member_id=private.spec.member_id)
        self._notify(private, "private.credit_exhausted", exhausted.to_wire())
        try:
            self.show.apply(EndPrivate("billing", at, member_id=private.spec.member_id))
        except Rejected:
            pass

    def _notify(self, private: BilledPrivate, event: str, data: dict[str, Any]) -> None:
        """Only the performers and the private's member hear about its credit."""
        if self.show.closed:
            return
        member = private.spec.member_id
        for who in list(self.show.participants.values()):
            if who.role == "performer" or who.member_id == member:
                who.notify(event, data)
