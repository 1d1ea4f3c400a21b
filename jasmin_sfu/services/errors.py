"""Domain errors of the services (ledger, credit control).

Mapped to signaling error codes only at the edge (``jasmin_sfu.api``).
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base class of service errors."""


class LedgerError(ServiceError):
    """Base class of ledger errors."""


class StoreBusyError(LedgerError):
    """A transaction kept hitting deadlocks or races and gave up after its retries."""


class AccountConflictError(LedgerError):
    """An account id exists with different fields."""


class TransferRejectedError(LedgerError):
    """A transfer (or its linked chain) was refused; ``result`` is the ledger's reason code."""

    def __init__(self, transfer_id: str, result: Any) -> None:
        super().__init__(f"transfer {transfer_id}: {getattr(result, 'value', result)}")
        self.transfer_id = transfer_id
        self.result = result


class TransferConflictError(TransferRejectedError):
    """Same transfer id, different body: never applied twice, never silently replaced."""


class InsufficientFundsError(TransferRejectedError):
    """The debit would exceed the account's credits (debits_must_not_exceed_credits)."""


class PendingTransferError(TransferRejectedError):
    """The pending transfer is unknown, already posted/voided, or expired."""


class UnknownPackageError(LedgerError):
    """No credit package with that code."""


class ReplayMismatchError(LedgerError):
    """Replaying the journal did not reproduce the stored balances."""


class VipAwardConflictError(LedgerError):
    """A VIP award period was already paid to another list of members (the ranking changed)."""


class CreditControlError(ServiceError):
    """Base class of credit-control errors."""


class InsufficientCreditError(CreditControlError):
    """Not even one second can be granted: the session must not start (or must stop)."""


class CreditSessionNotFoundError(CreditControlError):
    """No credit-control session with that id."""


class CreditSessionClosedError(CreditControlError):
    """The session was terminated: no more grants, no more charges."""


class RequestOutOfOrderError(CreditControlError):
    """A request number skipped ahead of the next expected one."""


class RequestConflictError(CreditControlError):
    """A request number was reused with different content."""


class AccountsError(ServiceError):
    """Base class of accounts and payments errors."""


class AccountValidationError(AccountsError):
    """A field of an accounts request is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UsernameUnavailableError(AccountsError):
    """The username is taken, reserved or blacklisted (the three are not told apart)."""


class InvalidCredentialsError(AccountsError):
    """Unknown username, wrong password or closed account (the three are not told apart)."""


class InvalidTokenError(AccountsError):
    """The session token is malformed, unknown, expired or revoked."""


class AdultConfirmationRequiredError(AccountsError):
    """The caller has not confirmed being 18 or older (or the confirmation lapsed)."""


class NotPermittedError(AccountsError):
    """The caller's role may not do this."""


class NotShowOwnerError(NotPermittedError):
    """A performer tried to perform in a show that is neither its own nor its group's."""


class AccountNotFoundError(AccountsError):
    """No such account (or performer profile)."""


class PaymentsUnavailableError(AccountsError):
    """No payment provider (or no billing) is configured on this node."""


class PaymentDeclinedError(AccountsError):
    """The payment processor declined the charge."""


class PaymentConflictError(AccountsError):
    """An idempotency key was reused with a different purchase."""


class ChatError(ServiceError):
    """Base class of free-chat errors (jasmin_sfu.services.chat)."""


class ChatValidationError(ChatError):
    """A chat field is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ChatForbiddenError(ChatError):
    """The caller's role may not do this in this room (moderate, tip, use colours or emoticons)."""


class ChatBannedError(ChatError):
    """The user is banned from the room; ``until`` in epoch seconds (None: for ever)."""

    def __init__(self, message: str, until: float | None) -> None:
        super().__init__(message)
        self.until = until


class ChatMutedError(ChatError):
    """The user is timed out in the room until ``until`` (epoch seconds)."""

    def __init__(self, message: str, until: float | None) -> None:
        super().__init__(message)
        self.until = until


class ChatRateLimitedError(ChatError):
    """Too many messages (or slow mode): retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnknownChatMessageError(ChatError):
    """No such message in this room."""


class ChatUnavailableError(ChatError):
    """A chat feature needs a part this node does not run (tips need billing)."""


class LoginRateLimitedError(AccountsError):
    """Too many attempts (failed logins); retry after ``retry_after_s`` seconds."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ErasureError(AccountsError):
    """A "forget my data" request cannot be taken (e.g. not a member account)."""


class SocialError(ServiceError):
    """Base class of the social features' errors (docs/social.md); mapped in ``api/rest_social.py``."""


class SocialValidationError(SocialError):
    """A field of a social request is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class SocialNotFoundError(SocialError):
    """No such preset, subscription token, feed or record."""


class SocialConflictError(SocialError):
    """A uniqueness or capacity rule: ``reason`` is the wire code (``preset_exists``, ``presets_full``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class FavouritesFullError(SocialError):
    """The member has its limit of favourites (24; 96 for TopMembers)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} favourites")
        self.limit = limit


class FavouritesLapsedError(SocialError):
    """No purchase for over 30 days: the favourites list is kept but not accessible."""


class TopMembershipRequiredError(SocialError):
    """Only TopMembers may do this (messages to performers)."""


class PrivateRequiredError(SocialError):
    """Needs a completed private with that performer (mailing list, messages)."""


class VoteNotEligibleError(SocialError):
    """Voting needs a private of at least 5 minutes with the performer."""


class AlreadyVotedError(SocialError):
    """One vote per performer per award period."""


class MailingRateLimitedError(SocialError):
    """A performer's second mailing within 24 hours; ``retry_at`` is when the next is allowed (UNIX s)."""

    def __init__(self, retry_at: float) -> None:
        super().__init__("one mailing per 24 hours")
        self.retry_at = retry_at


class TopMemberFeeUnpaidError(SocialError):
    """The wallet cannot pay the TopMember fee."""
