"""The REST fuzz harness shared by test_openapi_fuzz.py and test_privacy_fuzz.py: a daemon with
accounts, billing and the test payment provider in its own thread, a fresh token per case of a role
chosen from the case's content, and every schemathesis check on each answer."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Coroutine, TypeVar

from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from jasmin_sfu.app import Daemon
from tests.api.conftest import start_api

T = TypeVar("T")
ROLES = ("member", "guest", "performer", "admin", "none")


class LiveDaemon:
    """A daemon with accounts, billing and the test payment provider, in its own thread."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzzed-daemon", daemon=True)
        self.daemon: Daemon | None = None
        self.base = ""

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def start(self) -> None:
        self.thread.start()
        self.daemon, _clock = self.run(start_api(self.data_dir))
        self.base = f"http://127.0.0.1:{self.daemon.port}"
        self.run(self._seed())

    async def _seed(self) -> None:
        assert self.daemon is not None and self.daemon.accounts is not None
        a = self.daemon.accounts
        await a.create_admin("boss", "boss-password")
        boss = (await a.login("boss", "boss-password")).principal
        # "alice" is the documented example username: the example phase hits a real profile.
        await a.create_performer(
            boss, "alice", "alice-password", display_name="Alice", price_per_minute=300, categories=["girl"]
        )
        await a.create_performer(boss, "bella", "bella-password", display_name="Bella", price_per_minute=200)
        await a.register("member1", "member-password", adult_confirmed=True)

    async def _token(self, role: str) -> str | None:
        assert self.daemon is not None and self.daemon.accounts is not None
        a = self.daemon.accounts
        if role == "guest":
            return (await a.start_guest(adult_confirmed=True)).token
        name, pw = {
            "member": ("member1", "member-password"),
            "performer": ("alice", "alice-password"),
            "admin": ("boss", "boss-password"),
        }.get(role, ("", ""))
        return (await a.login(name, pw)).token if name else None

    def token(self, role: str) -> str | None:
        return self.run(self._token(role))

    def stop(self) -> None:
        if self.daemon is not None:
            self.run(self.daemon.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def accept_documented_refusals(s: Any) -> Any:
    """A negative case may be refused with any 4xx the document lists: schemathesis's
    default list lacks 413, the daemon's documented answer to an oversized body. A positive
    case may meet a refusal of state, not of input: 402 (the wallet lacks the credits), like
    the 409 schemathesis already allows; 400 stays a failure."""
    rejection = s.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    acceptance = s.config.checks.positive_data_acceptance
    acceptance.expected_statuses = [*acceptance.expected_statuses, "402"]
    return s


def role_for(case: Any) -> str:
    """A role chosen from the case's content: stable for a case, spread over all roles."""
    seed = repr((case.operation.label, case.path_parameters, case.query, case.body)).encode()
    return ROLES[hashlib.sha256(seed).digest()[0] % len(ROLES)]


def roles_for(case: Any) -> tuple[str, ...]:
    """Every role for a case without any input (its content cannot spread the roles), else one."""
    body = None if isinstance(case.body, NotSet) else case.body
    if not (case.path_parameters or case.query or body):
        return ROLES
    return (role_for(case),)


def negation_lost_on_the_wire(case: Any, response: Any) -> bool:
    """Whether what made a negative case invalid never reached the daemon, so the
    daemon cannot be blamed for accepting it: the harness sets the Authorization
    header itself (a "missing Authorization" mutation is undone), and the HTTP client
    drops a query parameter whose value is None or an empty list (an "additional
    property" mutation disappears)."""
    meta = getattr(case, "meta", None)
    data = getattr(getattr(meta, "phase", None), "data", None)
    mutations = getattr(data, "mutations", ()) or ()
    if any(m.parameter_location == ParameterLocation.HEADER for m in mutations):
        return True
    sent = urllib.parse.parse_qs(urllib.parse.urlsplit(response.request.url).query, keep_blank_values=True)
    return bool(set((case.query or {}).keys()) - set(sent))


def documented_cross_field_refusal(case: Any, response: Any) -> bool:
    """Whether a schema-valid request broke the one rule across fields the document states in
    words because JSON Schema cannot compare two fields: a password equal to the username
    (docs/accounts.md; the PASSWORD schema's description). Every other 400 on valid input fails."""
    body = case.body if isinstance(case.body, dict) else {}
    user, pw = body.get("username"), body.get("password")
    return (
        response.status_code == 400
        and isinstance(user, str)
        and isinstance(pw, str)
        and user.casefold() == pw.casefold()
    )


def call_and_check(case: Any, live: LiveDaemon) -> None:
    """Send one generated case with a token of the role it picks, and run every check on the
    answer: no 5xx; documented status, content type, body and headers; valid input (positive
    generation) accepted, never 400; auth enforced where the document asks for it (schemathesis
    repeats a successful authorised call without the token and with a wrong one, and both must be
    refused); invalid input refused (only where the negation reached the daemon)."""
    for role in roles_for(case):
        headers: dict[str, str] = {}
        token = live.token(role)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        response = case.call(base_url=live.base, headers=headers)
        checks = [
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            response_headers_conformance,
            ignored_auth,
        ]
        if not documented_cross_field_refusal(case, response):
            checks.append(positive_data_acceptance)
        if not negation_lost_on_the_wire(case, response):
            checks.append(negative_data_rejection)
        case.validate_response(response, checks=checks, headers=headers)
