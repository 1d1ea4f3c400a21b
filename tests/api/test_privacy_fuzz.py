"""Schemathesis over the privacy routes alone (profile, visibility, member views, data download,
"forget my data"), with more examples per operation than the whole-API run in
test_openapi_fuzz.py, whose harness (a live daemon in a thread, a fresh token of a role chosen
from the case) this reuses. Besides the seeded accounts, the member has a purchase, a paid
private with the performer and a full profile, so the member views (the documented example
username is "member1") and the download answer with real content, not only with refusals."""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from jasmin_sfu.api.openapi import openapi_document
from jasmin_sfu.services.ledger import wallet_account
from tests.api.fuzz_support import LiveDaemon, accept_documented_refusals, call_and_check

PRIVACY_PATHS = r"^/api/v1/(me/(profile|privacy|data|erasure)|members/)"


class PrivacyLiveDaemon(LiveDaemon):
    async def _seed(self) -> None:
        await super()._seed()
        d = self.daemon
        assert d is not None and d.accounts is not None and d.billing is not None and d.privacy is not None
        member = (await d.accounts.login("member1", "member-password")).principal
        performer = await d.accounts.store.user_by_username("alice")
        assert performer is not None
        await d.billing.ledger.open_member(member.id)
        await d.billing.ledger.top_up("fuzz-pay-1", member.id, "p2999")
        await d.billing.ledger.open_performer(performer.id)
        sid = f"api1-{uuid.uuid4().hex}"
        await d.billing.cc.authorize(sid, wallet_account(member.id), 300, performer_id=performer.id)
        await d.billing.cc.terminate(sid, 1, 20)
        await d.privacy.service.update_profile(
            member, {"display_name": "Member One", "country": "DE", "languages": ["en"], "about": "fuzzed"}
        )
        await d.privacy.service.update_settings(
            member, profile_visibility="performers_with_private", mask_visibility="public"
        )


@pytest.fixture
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivacyLiveDaemon]:
    d = PrivacyLiveDaemon(tmp_path_factory.mktemp("fuzz-privacy"))
    d.start()
    with urllib.request.urlopen(d.base + "/openapi.json", timeout=10) as r:
        assert json.load(r) == openapi_document(), "/openapi.json is not the document fuzzed here"
    yield d
    d.stop()


schema = accept_documented_refusals(
    schemathesis.openapi.from_dict(openapi_document()).include(path_regex=PRIVACY_PATHS)
)


def test_the_filter_selects_every_privacy_route() -> None:
    """Protects this file's coverage: every route of wire_privacy's table is fuzzed here (a new
    privacy route outside the filter would be fuzzed only lightly by the whole-API run)."""
    from jasmin_sfu.api.wire_privacy import OPS

    fuzzed = {op.path for op in (r.ok() for r in schema.get_all_operations())}
    assert fuzzed == {op.path for op in OPS}


@schema.parametrize()
@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
def test_privacy_routes_never_fail_and_answer_as_documented(case: Any, live: PrivacyLiveDaemon) -> None:
    """Protects the privacy routes under arbitrary input: no 5xx, only documented statuses, content
    types, bodies and headers (the download's Content-Disposition), valid input accepted, the token
    enforced, invalid input refused with a 4xx, for every role."""
    call_and_check(case, live)
