"""The events the server sends: one struct each (``jasmin_signaling.events``), described by the
published schema (``/signaling-schema.json``: ``$defs/EventFrame``, ``x-events``); and so the
answers of the methods (``jasmin_signaling.responses``, ``x-responses``).

The unit tests hold the structs to the wire's null/absent rules; the end-to-end test runs a real
session (aiortc peers over loopback, billing on) and validates every event the server actually
sent, and every answer it got, against the document the node serves, with an
independent validator (jsonschema_rs).
docs/signaling.md's event tables against the structs: tests/signaling/test_protocol_reference.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema_rs
import msgspec
import pytest

from bench.peers import publish
from jasmin_sfu.api.signaling_handler import SessionHandler
from jasmin_sfu.config import BillingConfig
from jasmin_signaling import events as ev
from jasmin_signaling.client import SignalingClient
from jasmin_signaling.events import EVENTS, event_body
from jasmin_signaling.messages import METHODS, SCHEMA_ID, json_schema
from jasmin_signaling.responses import RESPONSES
from jasmin_signaling.session import SignalingSession
from tests.support import performer, watch


def event_validator(schema: dict[str, Any], definition: str = "EventFrame") -> Any:
    """A validator of one event frame (or of another of the document's definitions), from a
    copy of the published document."""
    return jsonschema_rs.validator_for(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": f"#/$defs/{definition}",
            "$defs": schema["$defs"],
        }
    )


def test_the_schema_describes_every_event_by_its_struct() -> None:
    """Protects the generated document: one EventFrame branch per event of EVENTS, its data the
    event's struct, and x-events naming the same structs (an event added without a struct, or a
    struct without its branch, fails)."""
    doc = json_schema()
    branches = doc["$defs"]["EventFrame"]["oneOf"]
    named = {b["properties"]["event"]["const"]: b["properties"]["data"]["$ref"] for b in branches}
    assert named == {name: f"#/$defs/{cls.__name__}" for name, cls in EVENTS.items()}
    assert doc["x-events"] == {name: cls.__name__ for name, cls in EVENTS.items()}
    assert all(doc["$defs"][cls.__name__]["additionalProperties"] is False for cls in EVENTS.values())
    assert doc["x-responses"] == {method: cls.__name__ for method, cls in RESPONSES.items()}
    assert set(RESPONSES) <= set(METHODS)


@pytest.mark.parametrize(
    ("name", "fields", "wire"),
    [
        # A field without a default is always sent; null stays null.
        (
            "consumer.layer",
            {"producer_id": "p", "consumer_id": "c", "spatial": None, "temporal": None, "rid": None},
            {"producer_id": "p", "consumer_id": "c", "spatial": None, "temporal": None, "rid": None},
        ),
        ("chat.removed", {"room": "r", "action": "ban", "until": None}, {"room": "r", "action": "ban", "until": None}),
        # A ban for ever says until: null; a kick has no until at all.
        (
            "chat.moderation",
            {"room": "r", "action": "ban", "target": "u", "until": None},
            {"room": "r", "action": "ban", "target": "u", "until": None},
        ),
        (
            "chat.moderation",
            {"room": "r", "action": "kick", "target": "u"},
            {"room": "r", "action": "kick", "target": "u"},
        ),
        ("chat.king", {"room": "r", "king": None}, {"room": "r", "king": None}),
        (
            "private.ended",
            {"show_id": "s", "member_id": "m", "at": 1.5, "reason": "billing"},
            {"show_id": "s", "member_id": "m", "at": 1.5, "reason": "billing"},
        ),
    ],
)
def test_null_and_absent_stay_apart(name: str, fields: dict[str, Any], wire: dict[str, Any]) -> None:
    """Protects the wire's content: an event built from its struct carries exactly the keys and
    values it was given (null where null, nothing where nothing), and the schema takes it."""
    body = event_body(name, **fields)
    assert body == wire
    event_validator(json_schema()).validate({"type": "event", "event": name, "data": body})


def test_an_audio_producer_has_no_layers_and_a_video_one_keeps_them() -> None:
    """Protects producer objects through the struct: audio has no simulcast/layers keys; video's
    layers keep every field (rid null without simulcast)."""
    audio = {"producer_id": "a", "kind": "audio", "codec": "opus", "app_data": {"session_id": "s", "mid": "0"}}
    layer = {"spatial": 0, "rid": None, "active": True, "bitrate_bps": 0, "width": 0, "height": 0, "temporal_layers": 1}
    video = {
        "producer_id": "v",
        "kind": "video",
        "codec": "VP8",
        "app_data": {"session_id": "s", "mid": "1"},
        "simulcast": False,
        "layers": [layer],
    }
    for described in (audio, video):
        wire = ev.ProducerAdded(show_id="s", producer=msgspec.convert(described, ev.Producer)).to_wire()
        assert wire == {"show_id": "s", "producer": described}


def test_a_struct_refuses_a_field_it_does_not_declare() -> None:
    """Protects the one definition: a sender adding a key its event's struct lacks fails at once
    (a bug, found by the tests that send it), instead of growing the wire unseen."""
    with pytest.raises(TypeError):
        event_body("show.ended", show_id="s", at=1.0)
    with pytest.raises(KeyError):
        event_body("show.exploded", show_id="s")


# -- every event of a real session against the published schema ----------------------------

PRICE = 30000  # hundredths of a credit per minute: 5 credits a second, so the private is short


@pytest.mark.slow
async def test_every_event_of_a_real_session_validates_against_the_published_schema(
    make_daemon: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Protects the contract other backends integrate against: a performer publishes (aiortc over
    loopback), a guest and two members watch, chat (message, tip, king, delete, mute, slow,
    clear), private requests (withdrawn, declined as busy, started), credit warnings until the
    credits run out and the private ends, a ban, an unpublish and republish, and the performer
    leaving: every event any connection was sent, and every answer (media, show, private and
    chat verbs), is valid against the schema the node serves at
    /signaling-schema.json, and the flow did send the events it is meant to exercise."""
    sent: list[dict[str, Any]] = []
    original = SignalingSession.send_event

    async def capture(self: SignalingSession, event: str, data: dict[str, Any]) -> None:
        # As the frame goes out (JSON text: what a browser reads).
        sent.append(json.loads(json.dumps({"type": "event", "event": event, "data": data})))
        await original(self, event, data)

    monkeypatch.setattr(SignalingSession, "send_event", capture)
    answers: list[tuple[str, dict[str, Any]]] = []
    handle = SessionHandler.handle

    async def capture_answer(self: SessionHandler, method: str, body: Any) -> dict[str, Any]:
        result = await handle(self, method, body)
        if method in RESPONSES:
            answers.append((method, json.loads(json.dumps(result))))
        return result

    monkeypatch.setattr(SessionHandler, "handle", capture_answer)
    d = await make_daemon(billing=BillingConfig(data_dir=str(tmp_path), grant_seconds=10, node_id="t1"))
    stack = d.daemon.billing
    for m in ("m1", "m2"):
        await stack.ledger.open_member(m)
    await stack.cc.top_up("pay-1", "m1", "p2999")  # 30 credits

    show = "ev-show"
    pub = await performer(d.url, show)
    await pub.client.request("show.settings", price_per_minute=PRICE)
    guest = await watch(d.url, show)
    m1 = await watch(d.url, show, member_id="m1")
    video = next(c["consumer_id"] for c in guest.consumers if c["kind"] == "video")
    await guest.client.request("consumer.set_layers", consumer_id=video, max_spatial=0)
    m2 = await SignalingClient.connect(d.url)
    joined = await m2.request("join", show_id=show, role="viewer", member_id="m2")
    m2_chat_id = joined["chat"]["you"]["id"]

    said = await m1.client.request("chat.send", text="hello")
    await m1.client.request("chat.tip", credits=1, tip_id="tip-1")
    await m1.client.request("chat.tip", credits=1, tip_id="tip-1")  # replayed: nothing charged again
    await m2.request("chat.history", limit=10)
    await m2.request("chat.report", message_id=said["message"]["id"], reason="spam")
    await pub.client.request("chat.delete", message_id=said["message"]["id"])
    await pub.client.request("chat.mute", user=m2_chat_id, seconds=60, reason="calm down")
    await pub.client.request("chat.slow", seconds=5)
    await pub.client.request("chat.slow", seconds=0)
    await pub.client.request("chat.clear")

    await m2.request("private.request")
    await m2.request("private.withdraw")
    await m2.request("private.request")
    await m1.client.request("private.request")
    await pub.client.request("private.accept", member_id="m1")
    ended = await pub.client.next_event("private.ended", timeout=60)
    assert ended["data"]["reason"] == "billing"

    await pub.client.request("chat.ban", user=m2_chat_id)
    await m2.next_event("chat.removed")
    await pub.client.request("unpublish")
    await guest.client.next_event("producer.removed")
    await pub.pc.close()
    again = await publish(d.url, show, client=pub.client)  # the same connection publishes anew
    await guest.client.next_event("producer.added")
    await pub.client.request("leave")
    await guest.client.next_event("show.ended")

    async with aiohttp.ClientSession() as s:
        async with s.get(d.http + SCHEMA_ID) as r:
            validator = event_validator(await r.json())
    bad = [(e["event"], e["data"], str(err)[:300]) for e in sent for err in validator.iter_errors(e)]
    assert not bad, f"events the schema refuses: {bad[:3]}"
    names = {e["event"] for e in sent}
    expected = {
        "producer.added",
        "producer.removed",
        "show.ended",
        "show.state",
        "private.requested",
        "private.withdrawn",
        "private.started",
        "private.declined",
        "private.ended",
        "private.credit_warning",
        "private.credit_exhausted",
        "chat.message",
        "chat.tip",
        "chat.king",
        "chat.deleted",
        "chat.moderation",
        "chat.cleared",
        "chat.removed",
    }
    assert expected <= names, f"the flow did not send: {sorted(expected - names)}"
    doc = json_schema()
    for method, result in answers:
        errors = [str(err)[:300] for err in event_validator(doc, doc["x-responses"][method]).iter_errors(result)]
        assert not errors, (method, result, errors)
    answered = {m for m, _ in answers}
    assert answered == {
        "join",
        "publish",
        "subscribe",
        "answer",
        "consumer.set_layers",
        "unpublish",
        "leave",
        "show.settings",
        "private.request",
        "private.withdraw",
        "private.accept",
        "chat.send",
        "chat.tip",
        "chat.history",
        "chat.report",
        "chat.delete",
        "chat.mute",
        "chat.ban",
        "chat.slow",
        "chat.clear",
    }, f"the flow did not answer: {sorted(set(RESPONSES) - answered)}"
    for c in (guest, m1):
        await c.close()
    await m2.close()
    await again.close()
