"""Thread replies become followups; every other event is acknowledged and dropped.

Slack retries any delivery that gets no 2xx, and Bolt answers 404 to events no listener
matches, so the catch-all listeners here are registered last and match everything else.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from bot.jobs import ReplyKind
from bot.listeners.context import service_of

log = logging.getLogger(__name__)

# A human "also send to channel" reply is still a reply; every other subtype is not a followup.
FOLLOWUP_SUBTYPES = (None, "thread_broadcast")


def is_human_reply(event: dict[str, Any]) -> bool:
    """A reply in a thread, written by a person, not an edit, deletion, join or bot post."""
    thread_ts = event.get("thread_ts")
    return (
        event.get("subtype") in FOLLOWUP_SUBTYPES
        and not event.get("bot_id")
        and not event.get("bot_profile")
        and bool(event.get("user"))
        and bool(thread_ts)
        and thread_ts != event.get("ts")
        and isinstance(event.get("text"), str)
    )


async def on_reply(event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext) -> None:
    """A `message` or `app_mention` event: a human reply in a job thread becomes a followup.
    Both keys are claimed: the same reply arrives as both events when it mentions the app."""
    if not is_human_reply(event):
        return
    channel, ts = event.get("channel") or "", event.get("ts") or ""
    keys = [f"msg:{channel}:{ts}"]
    if body.get("event_id"):
        keys.insert(0, f"event:{body['event_id']}")
    outcome = await service_of(context).take_reply_off_loop(
        event_keys=keys,
        channel_id=channel,
        thread_ts=event["thread_ts"],
        ts=ts,
        user_id=event["user"],
        text=event["text"],
        bot_user_id=context.bot_user_id,
    )
    if outcome.kind != ReplyKind.IGNORED:
        log.info("reply %s in %s: %s", ts, channel, outcome.kind)


async def anything_else(event: dict[str, Any]) -> None:
    log.debug("ignored event %s", event.get("type"))


def register(app: AsyncApp) -> None:
    app.event("app_mention")(on_reply)
    app.event("message")(on_reply)
    app.event(re.compile(".*"))(anything_else)  # last: every delivery gets its 2xx
