"""A fuzzer over every signaling method's fields, on JSON and msgpack frames.

Strings and keys include lone surrogates, NUL and (msgpack, and JSON text
frames) bytes that are not UTF-8. The protocol promise (docs/signaling.md):
every frame is answered with a documented error code, never `internal`, and
the connection stays up, except for the documented close codes (1007 for a
text frame that is not UTF-8). Bounded: a fixed number of derandomized
examples, each on a fresh connection of a performer in a show, so a run
takes seconds and a failure reproduces.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import typing
from typing import Any, Coroutine, Iterator, TypeVar

import aiohttp
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jasmin_signaling.errors import ERROR_CODES
from jasmin_signaling.messages import METHODS
from jasmin_sfu.app import Daemon
from tests.conftest import test_config as loopback_config

T = TypeVar("T")
FIELDS = {m: list(cls.__struct_fields__) for m, cls in METHODS.items()}
DOCUMENTED_CLOSE = {1007}
# Every code but `internal` may answer a fuzzed frame.
ALLOWED = set(ERROR_CODES) - {"internal"}


class Node:
    """A daemon on its own event loop in a thread, so hypothesis can drive it from a plain test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        cfg = loopback_config()
        cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, max_requests_per_s=100000.0))
        self.daemon = Daemon(cfg)
        self.run(self.daemon.start())
        self.url = f"ws://127.0.0.1:{self.daemon.port}/ws"
        self.http: aiohttp.ClientSession = self.run(self._session())
        self.n = 0

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def close(self) -> None:
        self.run(self.http.close())
        self.run(self.daemon.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    n = Node()
    yield n
    n.close()


async def _answer(ws: aiohttp.ClientWebSocketResponse, binary: bool) -> dict[str, Any] | int:
    """The next response or error frame (events skipped), or the close code."""
    while True:
        msg = await ws.receive(timeout=20)
        if msg.type == aiohttp.WSMsgType.TEXT:
            frame = json.loads(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            frame = msgpack.unpackb(msg.data)
        else:
            return ws.close_code if ws.close_code is not None else -1
        if frame.get("type") in ("response", "error"):
            return frame  # type: ignore[no-any-return]


def _encode(frame: Any, binary: bool) -> bytes | str:
    if binary:
        # surrogatepass: a lone surrogate goes out as the bytes ED A0 80, which are not UTF-8.
        return bytes(msgpack.packb(frame, use_bin_type=True, unicode_errors="surrogatepass"))
    return json.dumps(frame)  # ASCII with \\ud800 escapes: valid UTF-8, the server decodes the surrogate


async def _exchange(node: Node, frame: Any, binary: bool, raw_text: bytes | None) -> None:
    node.n += 1
    show = f"fz{node.n}"
    async with node.http.ws_connect(node.url, max_msg_size=0) as ws:
        send = ws.send_bytes if binary else ws.send_str
        await send(_encode({"type": "hello", "protocol": "jasmin/1"}, binary))  # type: ignore[operator]
        assert (await _answer_or_welcome(ws))["type"] == "welcome"
        await send(
            _encode(
                {
                    "type": "request",
                    "id": "j",
                    "method": "join",  # type: ignore[operator]
                    "data": {"show_id": show, "role": "performer", "performer_id": "p" + show},
                },
                binary,
            )
        )
        joined = await _answer(ws, binary)
        assert isinstance(joined, dict) and joined.get("ok"), joined
        if raw_text is not None:
            await ws.send_frame(raw_text, aiohttp.WSMsgType.TEXT)
        else:
            await send(_encode(frame, binary))  # type: ignore[operator]
        got = await _answer(ws, binary)
        if isinstance(got, int):
            assert raw_text is not None and got in DOCUMENTED_CLOSE, (frame, raw_text, got)
            return
        assert got["type"] in ("response", "error"), got
        if not got.get("ok"):
            code = got["error"]["code"]
            assert code in ALLOWED, (frame, got)
            assert isinstance(got["error"]["message"], str) and got["error"]["message"], got
        await send(_encode({"type": "request", "id": "alive", "method": "ping"}, binary))  # type: ignore[operator]
        alive = await _answer(ws, binary)
        assert isinstance(alive, dict) and alive.get("ok") is True and alive.get("id") == "alive", (frame, alive)


async def _answer_or_welcome(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=20)
    if msg.type == aiohttp.WSMsgType.TEXT:
        return json.loads(msg.data)  # type: ignore[no-any-return]
    return msgpack.unpackb(msg.data)  # type: ignore[no-any-return]


NASTY = ["\ud800", "\udfff", "\x00", "a\x00b", "\ud83d", "é", "\U0001f600", "", " ", "\n", "x" * 70]
nasty_text = st.one_of(
    st.sampled_from(NASTY),
    st.text(
        alphabet=st.sampled_from(["a", "Z", "0", "_", ":", "\x00", "\ud800", "\udc00", "é", "\u202e", "/"]), max_size=12
    ),
    st.sampled_from(["v=0\r\n", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\ud800", "abc", "performer", "viewer"]),
)
scalars = st.one_of(
    nasty_text,
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(nasty_text, inner, max_size=3)),
    max_leaves=6,
)


def _typed(hint: Any) -> st.SearchStrategy[Any]:
    """Values of a field's declared type (strings nasty), so requests get past the type check."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Literal:
        return st.one_of(st.sampled_from(args), nasty_text)
    if typing.get_origin(hint) is list:
        return st.lists(_typed(args[0]), max_size=3)
    if args:  # Optional[X] / X | None
        return st.one_of(st.none(), *(_typed(a) for a in args))
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.one_of(st.integers(-3, 300), st.integers(min_value=-(2**63), max_value=2**64 - 1))
    return st.one_of(nasty_text, st.sampled_from(["ok-id", "someone", "m1", "viewer", "performer"]))


TYPED = {m: {name: _typed(h) for name, h in typing.get_type_hints(cls).items()} for m, cls in METHODS.items()}


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    method = draw(st.one_of(st.sampled_from(sorted(METHODS)), st.sampled_from(sorted(METHODS)), nasty_text))
    data: dict[Any, Any] = {}
    for name in FIELDS.get(method, []):
        if draw(st.integers(0, 3)):
            data[name] = draw(TYPED[method][name] if draw(st.integers(0, 4)) else values)
    if not draw(st.integers(0, 3)):
        data.update(draw(st.dictionaries(nasty_text, values, min_size=1, max_size=2)))
    req_id = draw(st.integers(0, 2**53) if draw(st.integers(0, 4)) else st.one_of(nasty_text, st.booleans(), st.none()))
    frame: dict[str, Any] = {"type": "request", "id": req_id, "method": method}
    if draw(st.integers(0, 9)):
        frame["data"] = data if draw(st.integers(0, 9)) else draw(values)
    return frame


FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(frame=requests())
def test_fuzz_json_frames(node: Node, frame: dict[str, Any]) -> None:
    """Protects the protocol promise on JSON text frames (lone surrogates and NUL in every field
    and key of every method): a documented code, never `internal`, the connection kept."""
    node.run(_exchange(node, frame, False, None))


@FUZZ
@given(frame=requests())
def test_fuzz_msgpack_frames(node: Node, frame: dict[str, Any]) -> None:
    """Protects the same promise on msgpack binary frames, whose strings and keys then carry
    bytes that are not UTF-8 (a surrogate's CESU bytes): `bad_frame`, never a drop or `internal`."""
    node.run(_exchange(node, frame, True, None))


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(frame=requests(), junk=st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xc0\xaf", b"\x80"]))
def test_fuzz_text_frames_that_are_not_utf8(node: Node, frame: dict[str, Any], junk: bytes) -> None:
    """Protects the documented close code: a JSON text frame holding bytes that are not UTF-8
    (in a string or a key) closes the websocket with 1007 (RFC 6455), nothing else."""
    text = json.dumps(frame).encode()
    cut = len(text) // 2
    node.run(_exchange(node, None, False, text[:cut] + junk + text[cut:]))
