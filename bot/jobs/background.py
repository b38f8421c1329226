"""Work that must not hold up an acknowledgement or a job's step: reactions and late answers."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from bot.slack_out import SlackOut


class Background:
    def __init__(self, slack: SlackOut) -> None:
        self.slack = slack
        self._tasks: set[asyncio.Task[None]] = set()
        self._reacting: dict[str, asyncio.Task[None]] = {}  # message ts → its latest reaction

    def run(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def react(self, channel: str, ts: str, name: str) -> None:
        """React without holding anything up; one message's reactions land in order (⏳ first)."""
        previous = self._reacting.get(ts)

        async def react() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            await self.slack.react(channel, ts, name)

        task = self.run(react())
        self._reacting[ts] = task
        task.add_done_callback(
            lambda done: self._reacting.pop(ts, None) if self._reacting.get(ts) is done else None
        )

    async def drain(self, timeout: float = 5.0) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
