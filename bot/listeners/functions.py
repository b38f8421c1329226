"""Workflow Builder's custom step `make_motion_video` (`function_executed`), with Bolt's
`app.function` listener: auto-acknowledged, and answered from the store alone, so the ack
leaves far inside Slack's time.

Bolt hands the listener `complete` and `fail` over the event's `bot_access_token`, which lasts
15 minutes or until the step completes. A video takes longer, and is seen by whichever
instance polls it, so neither is used: the step is ended later through the job's outbox with
the app's own bot token (`bot.jobs.workflow_ends`; docs/choices.md says what that assumes).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from bot.jobs import CALLBACK_ID
from bot.listeners.context import service_of
from bot.listeners.events import team_of

log = logging.getLogger(__name__)


async def make_motion_video(
    event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
) -> None:
    """A step of a running workflow asks for a video: its job starts as `/motion` from the
    requester in the step's channel would start it (once per execution)."""
    execution_id = str(event.get("function_execution_id") or context.function_execution_id or "")
    if not execution_id:
        log.warning("a function_executed event without function_execution_id was ignored")
        return
    inputs = event.get("inputs")
    outcome = await service_of(context).take_step(
        execution_id=execution_id,
        team_id=team_of(event, body),
        inputs=inputs if isinstance(inputs, dict) else {},
    )
    log.info("workflow step %s: %s", execution_id, outcome)


def register(app: AsyncApp) -> None:
    app.function(CALLBACK_ID)(make_motion_video)
