"""Settings in Slack: the Home tab's "Settings" button and the form's submission. Who may see
and change the settings is decided by the service from the request (bot/jobs/settings_form.py),
with the client Bolt hands the listener (the requesting workspace's token) for `users.info`."""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.jobs import DatabaseUnavailable
from bot.jobs.settings_form import SettingsAnswers
from bot.listeners.context import service_of
from bot.slack import messages
from bot.slack.ids import INPUT_ACTION, BlockId
from bot.slack.out import SlackOut

log = logging.getLogger(__name__)


async def home_settings(
    ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
) -> None:
    """ "Settings" on the Home tab: the form, for the workspace's Motion admins only."""
    await ack()
    forms = service_of(context).settings_forms
    team, user = _team(body), str((body.get("user") or {}).get("id") or "")
    if forms is None or not team or not user:
        return
    try:
        await forms.open(str(body.get("trigger_id") or ""), team, user, SlackOut(client))
    except DatabaseUnavailable as away:
        log.info("settings for %s not opened: %s", user, away)


async def submit_settings(
    ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient,
    context: AsyncBoltContext,
) -> None:  # fmt: skip
    """Saved (the form closes), or each problem under its field (it stays open). A submission
    the service refuses (not an admin, another workspace) closes having changed nothing."""
    forms = service_of(context).settings_forms
    if forms is None:
        await ack()
        return
    user = str((body.get("user") or {}).get("id") or "")
    enterprise = (body.get("enterprise") or {}).get("id")
    try:
        saved = await forms.submit(
            team_id=_team(body), enterprise_id=str(enterprise) if enterprise else None,
            user_id=user, answers=settings_answers_of(view), asker=SlackOut(client),
        )  # fmt: skip
    except DatabaseUnavailable as away:
        log.info("settings submitted by %s: %s; asked to save again", user, away)
        said = messages.field_error(messages.DATABASE_AWAY)
        await ack(response_action="errors", errors={str(BlockId.SETTING_ADMINS): said})
        return
    if saved.refused:
        log.warning("settings submitted by %s changed nothing: %s", user, saved.refused)
    elif saved.errors:
        log.info("settings submitted by %s: problems with %s", user, sorted(saved.errors))
        await ack(response_action="errors", errors=saved.errors)
        return
    else:
        log.info("settings saved by %s: %s", user, [c.setting for c in saved.changes])
    await ack()


def settings_answers_of(view: dict[str, Any]) -> SettingsAnswers:
    """Each field on the submitted form by setting name, read by the element's type."""
    values = (view.get("state") or {}).get("values") or {}

    def state(block_id: str) -> dict[str, Any] | None:
        element = (values.get(block_id) or {}).get(INPUT_ACTION)
        return element if isinstance(element, dict) else None

    given: dict[str, tuple[str, ...] | str | bool | None] = {}
    for name, setting in messages.SETTING_FIELDS.items():
        element = state(setting.block_id)
        if element is not None:
            given[name] = _field_value(element)
    key = state(BlockId.SETTING_KEY) or {}
    remove = state(BlockId.SETTING_REMOVE_KEY) or {}
    try:
        metadata = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        metadata = {}
    team = metadata.get("team") if isinstance(metadata, dict) else None
    return SettingsAnswers(
        form_team_id=team if isinstance(team, str) else "",
        values=given,
        key=key.get("value") if isinstance(key.get("value"), str) else None,
        remove_key=_field_value(remove) is True,
    )


def _field_value(element: dict[str, Any]) -> tuple[str, ...] | str | bool | None:
    for many in ("selected_conversations", "selected_users"):
        if many in element:
            picked = element.get(many)
            return tuple(str(i) for i in picked) if isinstance(picked, list) else ()
    if "selected_options" in element:
        options = element.get("selected_options")
        return isinstance(options, list) and any(
            isinstance(o, dict) and o.get("value") == messages.FLAG_ON for o in options
        )
    if "selected_conversation" in element:
        value = element.get("selected_conversation")
        return value if isinstance(value, str) else None
    value = element.get("value")
    return value if isinstance(value, str) else None


def _team(body: dict[str, Any]) -> str:
    return str((body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id") or "")
