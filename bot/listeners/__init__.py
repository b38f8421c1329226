"""Slack listeners, grouped by surface, and the one table of the interactions they answer.

Every button, shortcut and form the app answers is a row of `INTERACTIONS`: its kind, its id
(from `bot.slack.ids`, the same value the builders put on it) and its callback. `register`
adds the rows to the Bolt app; tests/test_slack_ids.py reads them to check that every id the
app builds is answered and every answered id is built (a typo would otherwise pass silently:
the fallback acknowledges whatever nothing else takes).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.jobs import JobService
from bot.jobs.bounds import OtherWorkspace
from bot.listeners import (
    actions,
    commands,
    events,
    fallback,
    functions,
    home,
    settings,
    uninstall,
    views,
)  # fmt: skip
from bot.listeners.context import service_middleware, service_of, team_of_body
from bot.slack import messages
from bot.slack.ids import NEW_VIDEO_SHORTCUT, ActionId, BlockId, CallbackId

log = logging.getLogger(__name__)


class Kind(StrEnum):
    """Which kind of Slack request an interaction is (Bolt has one decorator for each)."""

    ACTION = "block_actions"
    SHORTCUT = "shortcut"
    VIEW_SUBMISSION = "view_submission"


@dataclass(frozen=True)
class Interaction:
    kind: Kind
    id: str  # the action_id, the shortcut's callback_id or the view's callback_id
    callback: Callable[..., Awaitable[None]]


INTERACTIONS: tuple[Interaction, ...] = (
    Interaction(Kind.ACTION, ActionId.FRESH_LINK, actions.fresh_link),
    Interaction(Kind.ACTION, ActionId.DOWNLOAD, actions.download),
    Interaction(Kind.ACTION, ActionId.RETRY_RUN, actions.retry_run),
    Interaction(Kind.ACTION, ActionId.RESTART_JOB, actions.restart_job),
    Interaction(Kind.ACTION, ActionId.CONFIRM_START, actions.confirm_start),
    Interaction(Kind.ACTION, ActionId.CONFIRM_CANCEL, actions.confirm_cancel),
    Interaction(Kind.ACTION, ActionId.NEW_VARIATION, actions.new_variation),
    Interaction(Kind.ACTION, ActionId.STOP_TRACKING, actions.stop_tracking),
    Interaction(Kind.ACTION, ActionId.KEEP_WAITING, actions.keep_waiting),
    Interaction(Kind.SHORTCUT, NEW_VIDEO_SHORTCUT, views.new_video_shortcut),
    Interaction(Kind.ACTION, ActionId.HOME_NEW_VIDEO, views.home_new_video),
    Interaction(Kind.ACTION, ActionId.REFINE, views.refine),
    Interaction(Kind.VIEW_SUBMISSION, CallbackId.NEW_FORM, views.submit_new_form),
    Interaction(Kind.VIEW_SUBMISSION, CallbackId.REFINE_FORM, views.submit_refine),
    Interaction(Kind.ACTION, ActionId.HOME_SETTINGS, settings.home_settings),
    Interaction(Kind.VIEW_SUBMISSION, CallbackId.SETTINGS_FORM, settings.submit_settings),
)


def register(app: AsyncApp, service: JobService) -> None:
    app.use(service_middleware(service))
    commands.register(app)
    for interaction in INTERACTIONS:
        _decorator(app, interaction)(within_workspace(interaction))
    home.register(app)
    uninstall.register(app)  # events too: before the catch-all
    functions.register(app)  # `function_executed` is an event too: before the catch-all
    events.register(app)  # its catch-all event listener comes after home's
    fallback.register(app)  # last: it matches everything the others did not


def within_workspace(interaction: Interaction) -> Callable[..., Awaitable[None]]:
    """The interaction's callback, with the one answer to a button or form that names another
    workspace's job, run or preview (`OtherWorkspace`, raised by the lookups in
    bot/jobs/bounds.py before anything is read or changed): its author alone is told, a
    button's through its response_url, a form's on its field, and the attempt is logged by ids
    only. Bolt passes the callback's own arguments (it reads them through `functools.wraps`)."""
    callback = interaction.callback

    @functools.wraps(callback)
    async def guarded(**kwargs: Any) -> None:
        try:
            await callback(**kwargs)
        except OtherWorkspace as refused:
            body = kwargs.get("body") or {}
            user = (body.get("user") or {}).get("id")
            log.warning(
                "%s from %s: refused, %s", interaction.id, user, refused,
                extra={"team": team_of_body(body)},
            )  # fmt: skip
            said = messages.other_workspace(service_of(kwargs["context"]).sandbox_here())
            if interaction.kind is Kind.VIEW_SUBMISSION:
                error = messages.field_error(messages.OTHER_WORKSPACE)
                await kwargs["ack"](response_action="errors", errors={BlockId.PROMPT: error})
            elif "respond" in kwargs:
                await kwargs["respond"](
                    **said.payload(), response_type="ephemeral", replace_original=False
                )

    return guarded


def _decorator(app: AsyncApp, interaction: Interaction) -> Callable[..., Any]:
    if interaction.kind is Kind.ACTION:
        return app.action(interaction.id)
    if interaction.kind is Kind.SHORTCUT:
        return app.shortcut(interaction.id)
    return app.view_submission(interaction.id)
