"""Property-based fuzzing of the REST API from its own /openapi.json (schemathesis + Hypothesis).

The daemon runs in a thread with its own event loop on 127.0.0.1 (schemathesis calls are
synchronous). Schemathesis loads the document the daemon serves, generates valid and
invalid requests for every operation (examples, boundary values, random data), and each
answer must be: never a 5xx, a documented status code and content type, and a body that
matches the documented schema, with the documented headers; a valid request is accepted
(positive generation: never a 400), and an operation that needs a token refuses the same call
without one or with a wrong one. Each case gets a fresh token of a role chosen from the
case's content (member, guest, performer, admin, or none), so the authorised paths are
fuzzed as well as the refusals, and a fuzzed logout never spoils the next case. A case with
no input at all (GET /me/data ...) is the same every time, so it is sent once per role.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from jasmin_sfu.api.openapi import openapi_document
from tests.api.fuzz_support import LiveDaemon, accept_documented_refusals, call_and_check


@pytest.fixture
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDaemon]:
    d = LiveDaemon(tmp_path_factory.mktemp("fuzz"))
    d.start()
    with urllib.request.urlopen(d.base + "/openapi.json", timeout=10) as r:
        assert json.load(r) == openapi_document(), "/openapi.json is not the document fuzzed here"
    yield d
    d.stop()


# Loaded at import (schemathesis's lazy fixture loader does not run on pytest 9); the `live`
# fixture checks that the daemon serves exactly this document.
schema = schemathesis.openapi.from_dict(openapi_document())


schema = accept_documented_refusals(schema)


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_fails_and_answers_as_documented(case: Any, live: LiveDaemon) -> None:
    """Protects the REST contract under arbitrary input: no 5xx, only documented statuses,
    content types, bodies and headers; input the document allows is accepted (issue 11.16: no
    400 for a schema-valid request), a route that needs a token refuses the call without one
    or with a wrong one, and invalid input (per the document) is refused with a 4xx."""
    call_and_check(case, live)
