"""Work that must not hold up an acknowledgement or a job's step: reactions and late answers.

Both may be asked for from inside `Store.off_loop` (an ack's intake runs on a store worker):
the task is then started on the loop as soon as that call returns (`on_loop`). A task goes on
after the request's answer, so it does not inherit the request's budget for the database."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any

from bot.slack.out import SlackOut
from bot.store import leave_request_budget
from bot.store.offloop import on_loop


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._reacting: dict[str, asyncio.Task[None]] = {}  # message ts → its latest reaction

    def run(self, coro: Coroutine[Any, Any, None]) -> None:
        on_loop(lambda: self._start(coro))

    def start(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """`run` for a caller on the loop that needs the task (to know when it ends)."""
        return self._start(coro)

    def _start(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        context = contextvars.copy_context()
        context.run(leave_request_budget)
        task = asyncio.get_running_loop().create_task(coro, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def react(self, slack: SlackOut, channel: str, ts: str, name: str) -> None:
        """React (with `slack`: its workspace's) without holding anything up; one message's
        reactions land in order (⏳ first)."""
        on_loop(lambda: self._react(slack, channel, ts, name))

    def _react(self, slack: SlackOut, channel: str, ts: str, name: str) -> None:
        previous = self._reacting.get(ts)

        async def react() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            await slack.react(channel, ts, name)

        task = self._start(react())
        self._reacting[ts] = task
        task.add_done_callback(
            lambda done: self._reacting.pop(ts, None) if self._reacting.get(ts) is done else None
        )

    async def drain(self, timeout: float = 5.0) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
