"""The chat service refuses text no store can keep, on SQLite and on the real PostgreSQL.

The signaling edge already refuses a lone surrogate (jasmin_signaling/text.py); these
tests call the service directly, as any other caller of it would.
"""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest

from jasmin_sfu.services.chat import ChatService, ChatUser
from jasmin_sfu.services.errors import ChatValidationError
from tests.realparts import FakeClock
from tests.support import service_stores

ROOM = "anna"
MEMBER = ChatUser("u_m1", "mia", "member")
PERFORMER = ChatUser("u_p1", "anna", "performer")
LONE = "\ud800"  # a JSON "\ud800": decodes to a str, has no UTF-8


@pytest.fixture(params=["sqlite", "postgres"])
async def chat(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ChatService]:
    async with service_stores(request.param, tmp_path, "chat") as (store,):
        svc = ChatService(store, FakeClock())
        await svc.start()
        try:
            yield svc
        finally:
            await svc.close()


async def history(chat: ChatService) -> list[str]:
    return [m["text"] for m in await chat.history(ROOM, PERFORMER, sees_private=True, before=None, limit=None)]


@pytest.mark.parametrize("text", [f"hi {LONE}", "\udfff", f"a{LONE}b"])
async def test_send_refuses_a_lone_surrogate(chat: ChatService, text: str) -> None:
    """Protects the chat store from text it cannot keep: a message holding an unpaired
    surrogate is a validation error naming ``text`` (never a store crash), and nothing is
    stored; a character outside the BMP written properly is kept as sent."""
    with pytest.raises(ChatValidationError) as e:
        await chat.send(ROOM, MEMBER, text)
    assert e.value.field == "text"
    assert await history(chat) == []
    await chat.send(ROOM, MEMBER, "hi \U0001f600")
    assert await history(chat) == ["hi \U0001f600"]


async def test_reasons_refuse_a_lone_surrogate(chat: ChatService) -> None:
    """Protects the moderation log and reports, which store the reason given: a reason
    holding an unpaired surrogate is a validation error naming ``reason``, nothing is
    logged or filed."""
    sent = await chat.send(ROOM, MEMBER, "hello")
    with pytest.raises(ChatValidationError) as e:
        await chat.report(ROOM, PERFORMER, sent["id"], f"spam {LONE}")
    assert e.value.field == "reason"
    with pytest.raises(ChatValidationError) as e:
        await chat.sanction(ROOM, PERFORMER, "mute", MEMBER.id, moderator=True, seconds=60, reason=f"rude {LONE}")
    assert e.value.field == "reason"
    assert await chat.reports(ROOM) == [] and await chat.moderation_log(ROOM) == []
