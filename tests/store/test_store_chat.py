"""The chat store on SQLite and on the real PostgreSQL: the same tests on both."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from jasmin_sfu.store.chat_repo import LogRow, MessageRow, ReportRow, SanctionRow, TipRow
from jasmin_sfu.store.postgres_chat import PostgresChatStore
from jasmin_sfu.store.sqlite_chat import SqliteChatStore
from tests.realparts import PG_DSN, open_store


@pytest.fixture(params=["sqlite", "postgres"])
async def chat_store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    async with open_store(
        request.param,
        lambda: SqliteChatStore.open(":memory:"),
        lambda schema: PostgresChatStore.open(PG_DSN, schema=schema),
    ) as s:
        yield s


def msg(
    i: int, author: str = "m1", kind: str = "member", private_to: str | None = None, room: str = "anna"
) -> MessageRow:
    return MessageRow(
        f"{i:016d}-0000000{i % 10}",
        room,
        author,
        author + "-name",
        kind,
        False,
        None,
        f"text {i}",
        (":fire:",) if i % 2 else (),
        private_to,
        i,
    )


async def test_history_pages_hides_deleted_and_private_lines(chat_store: Any) -> None:
    """Protects history: oldest first, paged by id, deleted lines gone, a private's lines only
    for its member and for the performers, and a clear empties the room."""
    s = chat_store
    for i in range(1, 7):
        await s.add_message(msg(i, private_to="m9" if i == 3 else None))
    await s.add_message(msg(7, room="other"))
    assert await s.message(msg(1).id) == msg(1)
    assert [m.id for m in await s.history("anna", before=None, limit=10, viewer_id="m1", see_private=False)] == [
        msg(i).id for i in (1, 2, 4, 5, 6)
    ]
    assert len(await s.history("anna", before=None, limit=10, viewer_id="m9", see_private=False)) == 6
    assert len(await s.history("anna", before=None, limit=10, viewer_id=None, see_private=True)) == 6
    assert [m.id for m in await s.history("anna", before=msg(5).id, limit=2, viewer_id="x", see_private=True)] == [
        msg(3).id,
        msg(4).id,
    ]
    assert await s.delete_message(msg(2).id, 100) is True
    assert await s.delete_message(msg(2).id, 101) is False
    assert msg(2).id not in [
        m.id for m in await s.history("anna", before=None, limit=10, viewer_id="m1", see_private=True)
    ]
    assert await s.clear_room("anna", 200) == 5
    assert await s.history("anna", before=None, limit=10, viewer_id="m1", see_private=True) == []
    assert len(await s.history("other", before=None, limit=10, viewer_id="m1", see_private=False)) == 1


async def test_sanctions_tips_king_reports_log_and_slow_mode(chat_store: Any) -> None:
    """Protects moderation state and King of the Room: sanctions in force until their time,
    replaced and lifted; a tip recorded once per transfer id; the King is the top spender of
    the session (ties to whoever got there first); reports once per reporter; log newest first."""
    s = chat_store
    await s.put_sanction(SanctionRow("anna", "m1", "mute", 1000, "p1", "spam", 10))
    await s.put_sanction(SanctionRow("anna", "m1", "ban", None, "p1", "", 10))
    assert [x.kind for x in await s.sanctions("anna", "m1", 999)] == ["ban", "mute"]
    assert [x.kind for x in await s.sanctions("anna", "m1", 1000)] == ["ban"]
    await s.put_sanction(SanctionRow("anna", "m1", "ban", 50, "p1", "shorter", 20))
    assert [x.kind for x in await s.sanctions("anna", "m1", 60)] == ["mute"]  # the ban ran out at 50
    assert await s.remove_sanction("anna", "m1", "ban") is True
    assert await s.remove_sanction("anna", "m1", "ban") is False
    assert await s.sanctions("other", "m1", 0) == []
    t = TipRow("tip:a", "anna", "sess1", "m1", "mia", "p1", 600, True, 1)
    assert await s.add_tip(t) is True and await s.add_tip(t) is False
    await s.add_tip(TipRow("tip:b", "anna", "sess1", "m2", "bob", "p1", 600, True, 2))
    k = await s.king("anna", "sess1")
    assert k is not None and (k.member_id, k.units) == ("m1", 600)  # a tie: m1 got there first
    await s.add_tip(TipRow("tip:c", "anna", "sess1", "m2", "bob", "p1", 1, True, 3))
    await s.add_tip(TipRow("tip:d", "anna", "sess1", "m3", "eve", "p1", 9999, False, 4))  # a private's tip
    k = await s.king("anna", "sess1")
    assert k is not None and (k.member_id, k.member_username, k.units) == ("m2", "bob", 601)
    assert await s.king("anna", "sess2") is None
    await s.add_message(msg(1))
    r = ReportRow("r1", "anna", msg(1).id, "m2", "m1", "text 1", "rude", 5)
    assert await s.add_report(r) is True
    assert await s.add_report(ReportRow("r2", "anna", msg(1).id, "m2", "m1", "text 1", "again", 6)) is False
    assert await s.reports("anna", 10) == [r] and await s.reports(None, 10) == [r]
    for i in (1, 2):
        await s.add_log(LogRow(f"l{i}", "anna", "p1", "anna", "performer", "mute", "m1", "", '{"seconds": 5}', i))
    assert [x.id for x in await s.moderation_log("anna", 10)] == ["l2", "l1"]
    assert await s.moderation_log("other", 10) == []
    assert await s.slow_s("anna") == 0
    await s.set_slow("anna", 30, 1)
    await s.set_slow("anna", 10, 2)
    assert await s.slow_s("anna") == 10


async def test_export_erase_and_purge(chat_store: Any) -> None:
    """Protects privacy rights on chat rows: the export holds every row naming the member;
    erasure re-keys them to the pseudonym and blanks the texts (rows kept, nothing of the
    member left); retention deletes a member's log once its last purchase is too old and
    guests' lines after their cut-off."""
    s = chat_store
    await s.add_message(msg(1, author="m1"))
    await s.add_message(msg(2, author="m2"))
    await s.add_message(msg(3, author="guest:abc", kind="guest"))
    await s.add_tip(TipRow("tip:a", "anna", "sess1", "m1", "mia", "p1", 600, True, 1))
    await s.put_sanction(SanctionRow("anna", "m1", "mute", 1000, "p1", "", 1))
    await s.add_report(ReportRow("r1", "anna", msg(1).id, "m2", "m1", "text 1", "rude", 5))
    out = await s.export_user("m1")
    assert [len(out[t]) for t in ("chat_messages", "chat_tips", "chat_sanctions", "chat_reports")] == [1, 1, 1, 1]
    assert out["chat_messages"][0]["text"] == "text 1"
    assert await s.erase_user("m1", "erased-1") > 0
    assert all(rows == [] for rows in (await s.export_user("m1")).values())
    m = await s.message(msg(1).id)
    assert m is not None and (m.author_id, m.author_username, m.text) == ("erased-1", "erased-1", "")
    assert (await s.reports(None, 10))[0].message_text == ""
    # m2 bought recently (cut-off 0: keep everything); erased-1 never bought; guests' cut-off 10.
    n = await s.purge({"m2": 0}, default_before=2, guest_before=10, now=2000)
    assert n >= 3  # erased-1's line (ts 1 < 2), the guest's line, the expired mute, the tip
    assert await s.message(msg(2).id) is not None
    assert await s.message(msg(1).id) is None and await s.message(msg(3).id) is None
    assert await s.purge({"m2": 0}, default_before=2, guest_before=10, now=2000) == 0
    assert await s.purge({"m2": 3000}, default_before=2, guest_before=10, now=2000) == 1
