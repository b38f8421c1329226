"""Thread replies become followups, an @mention elsewhere a new job, and so does a message to
the app in its Messages tab (a DM); every other event is acknowledged and dropped.

Slack retries any delivery that gets no 2xx, and Bolt answers 404 to events no listener
matches, so the catch-all listeners here are registered last and match everything else.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from bot.jobs import ReplyKind
from bot.jobs.files import file_ids_of
from bot.listeners.context import service_of

log = logging.getLogger(__name__)

# A human "also send to channel" reply is still a reply, and so is one with files
# (`file_share`); every other subtype is not a followup.
FOLLOWUP_SUBTYPES = (None, "thread_broadcast", "file_share")


def is_human_message(event: dict[str, Any]) -> bool:
    """Written by a person: not an edit, deletion, join or bot post."""
    return (
        event.get("subtype") in FOLLOWUP_SUBTYPES
        and not event.get("bot_id")
        and not event.get("bot_profile")
        and bool(event.get("user"))
        and isinstance(event.get("text"), str)
    )


def is_human_reply(event: dict[str, Any]) -> bool:
    """A reply in a thread, written by a person, not an edit, deletion, join or bot post."""
    thread_ts = event.get("thread_ts")
    return is_human_message(event) and bool(thread_ts) and thread_ts != event.get("ts")


def delivery_keys(event: dict[str, Any], body: dict[str, Any]) -> list[str]:
    """The delivery (event_id) and the message (its workspace, channel and ts: the same message
    arrives as both `message` and `app_mention`); claimed together, so either makes one thing.
    Two workspaces can see one message (a Slack Connect channel): each claims its own."""
    keys = [f"msg:{team_of(event, body)}:{event.get('channel') or ''}:{event.get('ts') or ''}"]
    if body.get("event_id"):
        keys.insert(0, f"event:{body['event_id']}")
    return keys


def team_of(event: dict[str, Any], body: dict[str, Any]) -> str:
    return str(body.get("team_id") or event.get("team") or "")


def is_direct_message(event: dict[str, Any]) -> bool:
    """A person's message to the app in its Messages tab, not a reply in a thread there."""
    thread_ts = event.get("thread_ts")
    kind = event.get("channel_type") or (
        "im" if str(event.get("channel", "")).startswith("D") else ""
    )
    return (
        kind == "im" and is_human_message(event) and (not thread_ts or thread_ts == event.get("ts"))
    )


async def on_reply(event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext) -> None:
    """A `message` event: a human reply in a job thread (files and all) becomes a followup;
    a DM to the app, a new job in that message's thread."""
    if is_direct_message(event):
        await on_direct_message(event, body, context)
        return
    if not is_human_reply(event):
        return
    channel, ts = event.get("channel") or "", event.get("ts") or ""
    outcome = await service_of(context).take_file_reply(
        event_keys=delivery_keys(event, body),
        team_id=team_of(event, body),
        channel_id=channel,
        thread_ts=event["thread_ts"],
        ts=ts,
        user_id=event["user"],
        text=event["text"],
        bot_user_id=context.bot_user_id,
        file_ids=file_ids_of(event.get("files")),
    )
    if outcome.kind != ReplyKind.IGNORED:
        log.info("reply %s in %s: %s", ts, channel, outcome.kind)


async def on_mention(
    event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
) -> None:
    """An `app_mention`: a followup in a job thread, a new job anywhere else."""
    if not is_human_message(event):
        return
    channel, ts = event.get("channel") or "", event.get("ts") or ""
    outcome = await service_of(context).take_mention(
        event_keys=delivery_keys(event, body),
        team_id=team_of(event, body),
        channel_id=channel,
        ts=ts,
        thread_ts=event.get("thread_ts"),
        user_id=event["user"],
        text=event["text"],
        bot_user_id=context.bot_user_id,
        file_ids=file_ids_of(event.get("files")),
    )
    log.info("mention %s in %s: %s", ts, channel, outcome.kind)


async def on_direct_message(
    event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
) -> None:
    """A DM to the app is a prompt (options and files as in a reply): a new job whose card is
    the app's reply in the message's thread, unless the workspace turned DMs off."""
    channel, ts = event.get("channel") or "", event.get("ts") or ""
    outcome = await service_of(context).take_direct_message(
        event_keys=delivery_keys(event, body),
        team_id=team_of(event, body),
        channel_id=channel,
        ts=ts,
        user_id=event["user"],
        text=event["text"],
        bot_user_id=context.bot_user_id,
        file_ids=file_ids_of(event.get("files")),
    )
    log.info("direct message %s in %s: %s", ts, channel, outcome.kind)


async def anything_else(event: dict[str, Any]) -> None:
    log.debug("ignored event %s", event.get("type"))


def register(app: AsyncApp) -> None:
    app.event("app_mention")(on_mention)
    app.event("message")(on_reply)
    app.event(re.compile(".*"))(anything_else)  # last: every delivery gets its 2xx
