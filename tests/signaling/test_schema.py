"""The request bodies' one schema: the structs of ``jasmin_signaling.messages`` validate each
request (``parse_request``) and generate the JSON Schema served at ``/signaling-schema.json``.

These tests hold the two readings of one struct together: a body the validator takes is one the
published schema takes (checked with an independent validator, jsonschema_rs, which reads the
patterns as ECMA-262 does), a bad one is refused by both with ``bad_request`` naming the field,
and the server serves exactly the generated document. docs/signaling.md's method table against
the schema's methods: tests/signaling/test_protocol_reference.py.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import jsonschema_rs
import msgspec
import pytest

from jasmin_signaling.errors import SignalingError
from jasmin_signaling.events import EVENTS
from jasmin_signaling.responses import RESPONSES
from jasmin_signaling.messages import METHODS, SCHEMA_ID, json_schema, json_schema_text, parse_request

SDP = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
TOKEN = "jas_" + "A" * 43

# (method, data, the code parse_request answers (None: accepted), the schema takes it too).
# The last column is True only where the schema cannot say the rule (``__post_init__``).
CORPUS: list[tuple[str, Any, str | None, bool]] = [
    ("join", {"show_id": "alice", "role": "viewer", "token": TOKEN}, None, True),
    ("join", {"show_id": "alice", "role": "viewer", "token": None, "member_id": None}, None, True),  # null: absent
    ("join", {"show_id": "a.b:c_d-9", "role": "performer", "performer_id": "p1"}, None, True),
    ("join", {"show_id": "alice\n", "role": "viewer"}, "bad_request", False),  # not alice's show
    ("join", {"show_id": "", "role": "viewer"}, "bad_request", False),
    ("join", {"show_id": "x" * 65, "role": "viewer"}, "bad_request", False),
    ("join", {"show_id": 5, "role": "viewer"}, "bad_request", False),
    ("join", {"show_id": "a", "role": "king"}, "bad_request", False),
    ("join", {"show_id": "a"}, "bad_request", False),
    ("join", {"show_id": "a", "role": "viewer", "extra": 1}, "bad_request", False),
    ("join", {"show_id": "a", "role": "viewer", "token": "not a token!"}, "bad_request", False),
    ("join", {"show_id": "a", "role": "viewer", "token": "t\n"}, "bad_request", False),
    ("join", {"show_id": "a", "role": "viewer", "token": TOKEN, "member_id": "m1"}, "bad_request", True),
    ("join", {"show_id": "a", "role": "performer", "member_id": "m1"}, "bad_request", True),
    ("join", {"show_id": "a", "role": "viewer", "performer_id": "p1"}, "bad_request", True),
    ("publish", {"sdp": SDP}, None, True),
    ("publish", {"sdp": "hello"}, "bad_sdp", True),
    ("publish", {"sdp": "v=0" + "x" * 65536}, "bad_request", False),
    ("publish", {"sdp": 12}, "bad_request", False),
    ("answer", {"transport_id": "t1", "sdp": SDP}, None, True),
    ("answer", {"sdp": SDP}, "bad_request", False),
    ("subscribe", {}, None, True),
    ("subscribe", {"producer_ids": ["p1", "p2"], "paused": True}, None, True),
    ("subscribe", {"producer_ids": "p1"}, "bad_request", False),
    ("subscribe", {"producer_ids": ["bad id"]}, "bad_request", False),
    ("subscribe", {"paused": None}, "bad_request", False),
    ("subscribe", {"paused": 1}, "bad_request", False),
    ("consumer.set_layers", {"consumer_id": "c1", "max_spatial": 2, "max_temporal": None}, None, True),
    ("consumer.set_layers", {"consumer_id": "c1", "max_spatial": 3}, "bad_request", False),
    ("consumer.set_layers", {"consumer_id": "c1", "max_temporal": -1}, "bad_request", False),
    ("consumer.set_layers", {"consumer_id": "c1", "max_spatial": True}, "bad_request", False),
    ("show.settings", {"auto_accept": True, "price_per_minute": 1_000_000}, None, True),
    ("show.settings", {"price_per_minute": 0}, "bad_request", False),
    ("show.settings", {"price_per_minute": 1.5}, "bad_request", False),
    ("private.accept", {"member_id": "m1"}, None, True),
    ("private.accept", {}, "bad_request", False),
    ("ping", None, None, True),
    ("ping", {"x": 1}, "bad_request", False),
    ("notifications.subscribe", {"token": TOKEN}, None, True),
    ("chat.send", {"text": "hi", "emoticons": [":fire:"], "color": "#16a085"}, None, True),
    ("chat.send", {"text": "x" * 2001}, "bad_request", False),
    ("chat.send", {"text": "hi", "emoticons": ["e"] * 21}, "bad_request", False),
    ("chat.send", {"text": "hi", "emoticons": ["e" * 33]}, "bad_request", False),
    ("chat.tip", {"credits": 5, "tip_id": "t1"}, None, True),
    ("chat.tip", {"credits": "5", "tip_id": "t1"}, "bad_request", False),
    ("chat.mute", {"user": "u1", "seconds": 60, "reason": "r" * 1000}, None, True),
    ("chat.mute", {"user": "u1", "seconds": 60, "reason": "r" * 1001}, "bad_request", False),
    ("chat.report", {"message_id": "m1"}, "bad_request", False),
]


def _code(method: str, data: Any) -> str | None:
    try:
        parse_request(method, data)
    except SignalingError as exc:
        return exc.code
    return None


@pytest.mark.parametrize("method,data,code,schema_takes", CORPUS, ids=[f"{c[0]}-{i}" for i, c in enumerate(CORPUS)])
def test_the_validator_and_the_published_schema_agree(
    method: str, data: Any, code: str | None, schema_takes: bool
) -> None:
    """Protects the one-schema promise: the JSON Schema a client validates against takes exactly
    the bodies the server takes, but for the few rules it cannot say (a token excludes the legacy
    ids; an SDP starts with v=0), and a pattern means the same in both dialects (a trailing
    newline passes Python's ``$`` but not the server)."""
    assert _code(method, data) == code
    frame: dict[str, Any] = {"type": "request", "id": 1, "method": method}
    if data is not None:
        frame["data"] = data
    assert jsonschema_rs.validator_for(json_schema()).is_valid(frame) == schema_takes


@pytest.mark.parametrize(
    "method,data,message",
    [
        ("join", {"show_id": 5, "role": "viewer"}, "show_id: expected `str`, got `int`"),
        ("join", {"show_id": "a b", "role": "viewer"}, "show_id: 1-64 characters of A-Z a-z 0-9 _ . : -"),
        ("join", {"show_id": "a", "role": "king"}, "role: must be 'performer' or 'viewer'"),
        ("join", {"show_id": "a"}, "role: required"),
        ("join", {"show_id": "a", "role": "viewer", "colour": 1}, "colour: unknown field"),
        ("join", {"show_id": "a", "role": "viewer", "token": "no!"}, "token: 1-256 characters of A-Z a-z 0-9 _ -"),
        (
            "join",
            {"show_id": "a", "role": "viewer", "token": TOKEN, "member_id": "m"},
            "member_id, performer_id: not allowed with a token",
        ),
        ("join", "x", "data: must be an object"),
        ("subscribe", {"producer_ids": ["ok", "b d"]}, "producer_ids[]: 1-64 characters of A-Z a-z 0-9 _ . : -"),
        ("show.settings", {"price_per_minute": 0}, "price_per_minute: 1..1000000 hundredths of a credit"),
        (
            "consumer.set_layers",
            {"consumer_id": "c", "max_spatial": 3},
            "max_spatial: 0..2 (0 = the lowest layer) or null",
        ),
        ("chat.send", {"text": "x" * 2001}, "text: at most 2000 characters"),
        ("chat.send", {"text": "hi", "emoticons": ["\udfff"]}, "emoticons[]: NUL or unpaired surrogate in text"),
        ("leave", {b"k": 1}, "data: keys must be text"),  # a msgpack bin key
        ("join", {"k" * 5000: 1}, "k" * 64 + ": unknown field"),
        ("join", {"show_id": "a", "role": "k" * 5000}, "role: must be 'performer' or 'viewer'"),  # never echoed whole
    ],
)
def test_bad_bodies_are_bad_request_naming_the_field(method: str, data: Any, message: str) -> None:
    """Protects the wire error of a bad body: `bad_request` with `<field>: <the rule>`, the rule's
    words being the ones the schema prints (its description), never the client's value mirrored."""
    with pytest.raises(SignalingError) as e:
        parse_request(method, data)
    assert (e.value.code, e.value.message) == ("bad_request", message)


def test_the_schema_has_a_struct_for_every_method() -> None:
    """Protects the generated document: one branch per method, each naming its method and the
    struct of its data in $defs (and nothing else), so a verb added to METHODS is described."""
    doc = json_schema()
    consts = [b["properties"]["method"]["const"] for b in doc["oneOf"]]
    assert sorted(consts) == sorted(METHODS) == sorted(doc["x-methods"])
    for branch in doc["oneOf"]:
        method = branch["properties"]["method"]["const"]
        ref = json.dumps(branch["properties"]["data"])
        assert f'"#/$defs/{METHODS[method].__name__}"' in ref, (method, ref)
        assert ("data" in branch["required"]) == any(f.required for f in msgspec.structs.fields(METHODS[method])), (
            method
        )
    # Besides the requests' structs: the events' and the answers' (jasmin_signaling.events,
    # .responses, with the structs they nest) and the event frame; tests/signaling/test_events.py
    # checks those.
    _, event_defs = msgspec.json.schema_components([*EVENTS.values(), *RESPONSES.values()])
    assert {c.__name__ for c in METHODS.values()} | set(event_defs) | {"RequestId", "EventFrame"} == set(doc["$defs"])
    assert not {c.__name__ for c in METHODS.values()} & set(event_defs), "a request and an event share a struct name"


async def test_the_node_serves_the_generated_schema(daemon: Any) -> None:
    """Protects the published contract: GET /signaling-schema.json is the document generated
    from the structs, as JSON."""
    async with aiohttp.ClientSession() as s:
        async with s.get(daemon.http + SCHEMA_ID) as r:
            assert r.status == 200 and r.content_type == "application/json"
            assert await r.json() == json.loads(json_schema_text()) == json_schema()
