"""The suite's loop-block guard (tests/loop_guard.py) catches a blocked loop and says where."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests import loop_guard


@pytest.mark.blocks_loop
async def test_a_callback_that_holds_the_loop_past_the_limit_is_reported_with_its_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Protects the guard: with the limit at 0.2 s, a callback sleeping 0.5 s on the loop is
    recorded with its duration and the stack the watchdog took while it held the loop (naming
    this file's blocking function); a callback under the limit is not. Marked blocks_loop, so
    its own block does not fail it at teardown."""
    monkeypatch.setattr(loop_guard, "LIMIT_S", 0.2)
    loop_guard.take()

    def stuck_on_the_loop() -> None:
        time.sleep(0.5)

    loop = asyncio.get_running_loop()
    loop.call_soon(time.sleep, 0.01)
    loop.call_soon(stuck_on_the_loop)
    await asyncio.sleep(0.05)
    held = loop_guard.take()
    assert len(held) == 1, held
    seconds, what = held[0]
    assert seconds >= 0.5
    assert "stuck_on_the_loop" in what and "test_loop_guard.py" in what
    assert loop_guard.take() == []
