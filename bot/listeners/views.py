"""The form and Refine: the shortcut and buttons that open them, and their submissions.

A trigger_id is good for 3 seconds, once: each opener acks at once and opens the view right
after, before anything slow. A submission is answered in its ack: `response_action: "errors"`
keeps the form open with each problem on its field; a plain ack closes it. With the database
away, nothing of a submission is recorded and the form stays open saying so."""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond

from bot.jobs import DatabaseUnavailable, FormAnswers, SubmitOutcome
from bot.jobs.files import file_ids_of
from bot.listeners.actions import say_database_away
from bot.listeners.context import service_of, team_of_body
from bot.slack import messages
from bot.slack.ids import INPUT_ACTION, BlockId

log = logging.getLogger(__name__)


async def new_video_shortcut(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext
) -> None:
    """The global shortcut "New Motion video": no channel to default to, so one must be picked."""
    await ack()
    service_of(context).open_new_form(str(body.get("trigger_id") or ""), None)


async def home_new_video(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
    """The "New video" button on the Home tab."""
    await ack()
    service_of(context).open_new_form(str(body.get("trigger_id") or ""), None)


async def refine(
    ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
    context: AsyncBoltContext,
) -> None:  # fmt: skip
    """The "Refine" button on a result: the form of a thread reply."""
    await ack()
    service = service_of(context)
    value = action.get("value")
    run_id = int(value) if isinstance(value, str) and value.isdigit() else None
    trigger = str(body.get("trigger_id") or "")
    try:
        opened = run_id is not None and await service.store.off_loop(
            service.open_refine_form, team_of_body(body), trigger, run_id
        )
    except DatabaseUnavailable as away:
        await say_database_away(respond, service, away, "Refine")
        return
    if not opened:
        payload = messages.already_done(messages.REFINE_GONE, service.sandbox_here()).payload()
        await respond(**payload, response_type="ephemeral", replace_original=False)


async def submit_new_form(
    ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
) -> None:
    service = service_of(context)
    try:
        outcome = await service.submit_new_form_with_files(
            team_id=team_of_body(body), user_id=_user(body), view_id=str(view.get("id") or ""),
            answers=answers_of(view, body.get("response_urls")),
        )  # fmt: skip
    except DatabaseUnavailable as away:
        await _database_away(ack, away, "form")
        return
    await _answer(ack, outcome, "form")


async def submit_refine(
    ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], context: AsyncBoltContext
) -> None:
    service = service_of(context)
    job_id = _metadata(view).get("job")
    try:
        outcome = await service.store.off_loop(
            service.submit_refine, team_id=team_of_body(body),
            job_id=job_id if isinstance(job_id, int) else 0,
            user_id=_user(body), view_id=str(view.get("id") or ""), answers=answers_of(view),
        )  # fmt: skip
    except DatabaseUnavailable as away:
        await _database_away(ack, away, "refine")
        return
    await _answer(ack, outcome, "refine")


async def _database_away(ack: AsyncAck, away: DatabaseUnavailable, what: str) -> None:
    """Nothing of the submission was recorded: the form stays open saying so, to submit again."""
    log.info("%s submitted: %s; its author is asked to submit again", what, away)
    said = messages.field_error(messages.DATABASE_AWAY)
    await ack(response_action="errors", errors={str(BlockId.PROMPT): said})


def answers_of(view: dict[str, Any], response_urls: Any = None) -> FormAnswers:
    """The fields from `view.state.values` (block_id → action_id → the element's state), and
    the response_url Slack made for the picked channel (`response_urls`)."""
    values = (view.get("state") or {}).get("values") or {}

    def state(block_id: str) -> dict[str, Any]:
        element = (values.get(block_id) or {}).get(INPUT_ACTION)
        return element if isinstance(element, dict) else {}

    def text(block_id: str) -> str | None:
        value = state(block_id).get("value")
        return value if isinstance(value, str) else None

    def selected(block_id: str) -> str | None:
        option = state(block_id).get("selected_option")
        value = option.get("value") if isinstance(option, dict) else None
        return value if isinstance(value, str) else None

    channel = state(BlockId.CHANNEL).get("selected_conversation")
    response_url = next(
        (
            str(r["response_url"])
            for r in response_urls or []
            if isinstance(r, dict) and r.get("block_id") == BlockId.CHANNEL
            and r.get("channel_id") == channel and r.get("response_url")
        ),
        None,
    )  # fmt: skip
    return FormAnswers(
        prompt=text(BlockId.PROMPT) or "",
        style=text(BlockId.STYLE),
        aspect=selected(BlockId.ASPECT),
        duration=selected(BlockId.DURATION),
        channel=channel if isinstance(channel, str) and channel else None,
        response_url=response_url,
        file_ids=tuple(file_ids_of(state(BlockId.FILES).get("files"))),
    )


async def _answer(ack: AsyncAck, outcome: SubmitOutcome, what: str) -> None:
    log.info("%s submitted: %s", what, outcome.kind or "invalid")
    if outcome.errors:
        await ack(response_action="errors", errors=outcome.errors)
    else:
        await ack()


def _metadata(view: dict[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _user(body: dict[str, Any]) -> str:
    return str((body.get("user") or {}).get("id") or "")
