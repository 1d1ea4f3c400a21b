"""The one table from domain error to HTTP status and code (``DOMAIN_ERRORS`` in
jasmin_sfu/api/rest_common.py)."""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

from jasmin_sfu.api.rest_common import DOMAIN_ERRORS, INTERNAL, map_error
from jasmin_sfu.services import errors as service_errors
from jasmin_sfu.services.errors import (
    AccountsError,
    InsufficientFundsError,
    MailingRateLimitedError,
    NotShowOwnerError,
    PaymentDeclinedError,
    SocialConflictError,
)
from jasmin_sfu.store import errors as store_errors
from jasmin_sfu.store.errors import RetryableStoreError


def _error_classes(module: ModuleType) -> list[type[Exception]]:
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__ == module.__name__
    ]


@pytest.mark.parametrize("module", [service_errors, store_errors], ids=lambda m: m.__name__)
def test_every_domain_error_class_is_in_the_table_itself(module: ModuleType) -> None:
    """Protects against a new domain error silently answering 500: every class in
    services/errors.py and store/errors.py is listed in DOMAIN_ERRORS by name (not only
    through an ancestor), so adding one forces a decision on its status and code."""
    classes = _error_classes(module)
    assert len(classes) >= 5  # the modules were read, not an empty import
    missing = sorted(c.__name__ for c in classes if c not in DOMAIN_ERRORS)
    assert missing == []


def test_the_table_is_walked_by_mro_and_the_most_specific_class_wins() -> None:
    """Protects the MRO walk: a subclass the table does not list answers as its nearest
    listed ancestor, a listed subclass by its own row; INTERNAL rows are left to the 500."""

    class LateDecline(PaymentDeclinedError):
        pass

    mapped = map_error(LateDecline("card declined"))
    assert mapped is not None
    assert (mapped.status, mapped.code, mapped.message) == (402, "payment_declined", "card declined")
    conflict = map_error(SocialConflictError("presets_full", "ten presets at most"))
    assert conflict is not None and (conflict.status, conflict.code) == (409, "presets_full")
    owner = map_error(NotShowOwnerError("not yours"))
    assert owner is not None and (owner.status, owner.code) == (403, "forbidden")
    plain = map_error(AccountsError("something about the account"))
    assert plain is not None and (plain.status, plain.code) == (400, "bad_request")
    assert DOMAIN_ERRORS[InsufficientFundsError] == INTERNAL
    assert map_error(InsufficientFundsError("t1", "exceeds_credits")) is None
    assert map_error(ValueError("not a domain error")) is None


def test_rules_with_headers_use_the_given_clock() -> None:
    """Protects the answers that need more than a status: the busy store's Retry-After and
    the mailing limit's Retry-After computed from the injected clock, with retry_at in the body."""
    busy = map_error(RetryableStoreError("deadlock"))
    assert busy is not None and (busy.status, busy.code, busy.headers) == (503, "busy", {"Retry-After": "1"})
    mailing = map_error(MailingRateLimitedError(1000.0), now=900.5)
    assert mailing is not None and (mailing.status, mailing.code) == (429, "rate_limited")
    assert mailing.headers == {"Retry-After": "100"} and mailing.extra == {"retry_at": 1000.0}
