"""docs/signaling.md against the code: every verb, event and error code documented, and nothing more.

The doc's convention (stated at its top): each method, event and error code is
written in backticks in the first cell of a row of a table whose first column
header is ``method``, ``event`` or ``code``. The code's side:

* verbs: the methods of the generated JSON Schema (``jasmin_signaling.messages.json_schema``,
  served at ``/signaling-schema.json``), each with the struct of its ``data``: the same
  table (``METHODS``) every request goes through (``parse_request``); each one must also
  have a handler, and the struct of its answer (``jasmin_signaling.responses``, the schema's
  ``x-responses``);
* error codes: ``jasmin_signaling.errors.ERROR_CODES`` (``SignalingError``
  refuses any other), and every code the code raises must be one of them;
* events: the structs of ``jasmin_signaling.events.EVENTS`` (each event's ``data``, in the
  generated schema's ``x-events``), and the names the server passes, as literals, to the
  functions that push events (``notify``, ``send_event``, the show machine's ``Emit``,
  billing's ``_notify``, chat's ``_publish``), found by reading the source (AST).

A verb, event or code added on one side only fails here, naming it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from jasmin_signaling.chat_messages import CHAT_METHODS
from jasmin_signaling.errors import ERROR_CODES
from jasmin_signaling.events import EVENTS
from jasmin_signaling.messages import METHODS, json_schema
from jasmin_signaling.responses import RESPONSES

from jasmin_sfu.api.signaling_handler import SessionHandler

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "signaling.md"
# Where the server's signaling code lives (the installable protocol package and the daemon).
SOURCES = [REPO / "signaling" / "jasmin_signaling", REPO / "jasmin_sfu"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_EVENT = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
# Functions whose positional string literals are event names pushed to clients.
_EMITTERS = {"notify", "_notify", "send_event", "Emit", "_publish"}
# Exceptions whose first positional argument is a wire error code.
_RAISERS = {"SignalingError", "ChatRefusal", "Rejected", "BillingRefused"}
# Verbs answered outside ``SessionHandler._m_*``: by the session itself, or delegated.
_DELEGATED = {"ping", "notifications.subscribe"}


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def doc_names(first_header: str) -> list[str]:
    """Backticked names in the first cell of every row of the tables headed ``first_header``."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    names: list[str] = []
    i = 0
    while i < len(lines) - 1:
        line, sep = lines[i], lines[i + 1]
        is_table = line.lstrip().startswith("|") and re.match(r"^\s*\|(\s*:?-{3,}:?\s*\|)+\s*$", sep)
        if not is_table or _cells(line)[0].strip("`") != first_header:
            i += 1
            continue
        i += 2
        while i < len(lines) and lines[i].lstrip().startswith("|"):
            first = _cells(lines[i])[0]
            found = re.findall(r"`([^`]+)`", first)
            assert found, f"docs/signaling.md: a {first_header!r} row without a backticked name: {lines[i]!r}"
            for name in found:
                assert _NAME.match(name), f"docs/signaling.md: {name!r} in a {first_header!r} table is not a name"
                names.append(name)
            i += 1
    return names


def _call_name(node: ast.Call) -> str | None:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return None


def _calls() -> list[tuple[str, ast.Call, Path]]:
    out = []
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    name = _call_name(node)
                    if name is not None:
                        out.append((name, node, path))
    return out


def code_events() -> dict[str, str]:
    """Event name -> the first file pushing it."""
    events: dict[str, str] = {}
    for name, call, path in _calls():
        if name not in _EMITTERS:
            continue
        for arg in call.args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _EVENT.match(arg.value):
                events.setdefault(arg.value, str(path.relative_to(REPO)))
    return events


def raised_codes() -> dict[str, str]:
    """Error code literal -> the first file raising it."""
    codes: dict[str, str] = {}
    for name, call, path in _calls():
        if name in _RAISERS and call.args:
            arg = call.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                codes.setdefault(arg.value, str(path.relative_to(REPO)))
    return codes


def _diff(documented: set[str], in_code: set[str], what: str) -> str:
    return (
        f"{what}: in the code but not in docs/signaling.md: {sorted(in_code - documented)}; "
        f"in docs/signaling.md but not in the code: {sorted(documented - in_code)}"
    )


def test_the_doc_lists_each_name_once() -> None:
    """Protects the parse itself: the three kinds of table are found, and no name is listed twice."""
    for header in ("method", "event", "code"):
        names = doc_names(header)
        assert names, f"docs/signaling.md: no table headed {header!r} found"
        dupes = sorted({n for n in names if names.count(n) > 1})
        assert not dupes, f"docs/signaling.md lists these {header}s twice: {dupes}"


def test_documented_verbs_are_the_verbs_of_the_schema() -> None:
    """Protects the reference: every method of docs/signaling.md's method tables has a struct in
    the generated schema, and every struct-described method of the schema is documented (a verb
    registered in METHODS but undocumented, or the reverse, fails)."""
    schema = json_schema()
    documented, described = set(doc_names("method")), set(schema["x-methods"])
    assert documented == described, _diff(documented, described, "verbs")
    assert all(name in schema["$defs"] for name in schema["x-methods"].values())
    assert described == set(METHODS)


def test_documented_verbs_have_an_answer_struct() -> None:
    """Protects the one definition of each answer: every method of docs/signaling.md's method
    tables has the struct of its answer's data in jasmin_signaling.responses, named by the
    schema's x-responses and defined in its $defs (a verb added with a hand-written answer, or an
    answer struct for a verb that does not exist, fails)."""
    schema = json_schema()
    documented, answered = set(doc_names("method")), set(schema["x-responses"])
    assert documented == answered == set(RESPONSES), _diff(documented, answered, "verbs with an answer struct")
    assert all(name in schema["$defs"] for name in schema["x-responses"].values())


def test_every_registered_verb_has_a_handler() -> None:
    """Protects the dispatch: each verb of METHODS is answered by SessionHandler or its chat connection."""
    missing = [
        v
        for v in METHODS
        if v not in _DELEGATED and v not in CHAT_METHODS and not hasattr(SessionHandler, "_m_" + v.replace(".", "_"))
    ]
    assert not missing, f"verbs in METHODS without a SessionHandler._m_* method: {missing}"
    source = (REPO / "jasmin_sfu" / "api" / "chat_handler.py").read_text(encoding="utf-8")
    handled = {
        n.value
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and n.value.startswith("chat.")
        and n.value in METHODS
    }
    assert handled == set(CHAT_METHODS), _diff(handled, set(CHAT_METHODS), "chat verbs handled in chat_handler.py")


def test_documented_error_codes_are_the_registered_codes() -> None:
    """Protects the reference: a code added to ERROR_CODES without documentation (or the reverse) fails."""
    documented, registered = set(doc_names("code")), set(ERROR_CODES)
    assert documented == registered, _diff(documented, registered, "error codes")


def test_raised_error_codes_are_registered_and_registered_codes_are_raised() -> None:
    """Protects the registry: every code the server raises is in ERROR_CODES, and none there is dead."""
    raised = raised_codes()
    unknown = sorted(set(raised) - set(ERROR_CODES))
    assert not unknown, f"raised but not in ERROR_CODES: {[(c, raised[c]) for c in unknown]}"
    dead = sorted(set(ERROR_CODES) - set(raised))
    assert not dead, f"in ERROR_CODES but raised nowhere: {dead}"


def test_documented_events_are_the_events_the_server_sends() -> None:
    """Protects the reference: an event pushed by the code but undocumented (or the reverse) fails."""
    documented, sent = set(doc_names("event")), set(code_events())
    assert documented == sent, _diff(documented, sent, "events")


def test_documented_events_are_the_events_with_a_struct() -> None:
    """Protects the one definition of each event: every event of docs/signaling.md's event
    tables has a struct in jasmin_signaling.events (and in the schema's x-events), and every
    struct-described event is documented."""
    documented, described = set(doc_names("event")), set(json_schema()["x-events"])
    assert documented == described == set(EVENTS), _diff(documented, set(EVENTS), "events with a struct")
