"""Buttons on the app's messages; `bot.listeners.INTERACTIONS` says which id each one answers.

A click's work runs on the store's workers within the request's budget (`Store.off_loop`); with
the database away, nothing of it is recorded and the clicker is told privately to try again
(Slack never sends a click twice), the buttons left as they were."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncBoltContext, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.jobs import Admission, AskKind, DatabaseUnavailable, JobService, RestartAsk, RetryAsk
from bot.jobs.admission import ALREADY_RESTARTED, ALREADY_RETRIED, ALREADY_VARIED
from bot.listeners.context import service_of, team_of_body
from bot.slack import messages
from bot.slack.out import SlackOut

log = logging.getLogger(__name__)


async def download(ack: AsyncAck) -> None:
    """A link button still sends an interaction payload; it only needs an ack."""
    await ack()


async def retry_run(
    ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
    context: AsyncBoltContext,
) -> None:  # fmt: skip
    """The "Send it again" and "Try again" buttons: one new run per button, however often pressed."""
    await ack()
    service = service_of(context)
    run_id = _run_id(action)
    if run_id is None:
        await _say_done(respond, ALREADY_RETRIED, service.sandbox_here())
        return
    try:
        ask = RetryAsk(run_id, _user(body), team_of_body(body))
        admission = await service.ask_for_run_off_loop(ask)
    except DatabaseUnavailable as away:
        await say_database_away(respond, service, away, "a retry")
        return
    await _answer(respond, admission)


async def restart_job(
    ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
    context: AsyncBoltContext,
) -> None:  # fmt: skip
    """The "Start a new job" button, after Motion refused a followup on a failed job."""
    await ack()
    service = service_of(context)
    team = team_of_body(body)
    run_id = _run_id(action)
    if run_id is None:
        await _say_done(respond, ALREADY_RESTARTED, service.sandbox_here())
        return
    try:
        admission = await service.ask_for_run_off_loop(RestartAsk(run_id, _user(body), team))
    except DatabaseUnavailable as away:
        await say_database_away(respond, service, away, "a restart")
        return
    await _answer(respond, admission)


async def confirm_start(
    ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
    context: AsyncBoltContext,
) -> None:  # fmt: skip
    """Start on a MOTION_CONFIRM preview: records the run once, however often it is pressed."""
    await ack()
    service = service_of(context)
    token, url = str(action.get("value") or ""), body.get("response_url")
    try:
        admission = await service.store.off_loop(
            service.confirm, team_of_body(body), token, _user(body), url
        )
    except DatabaseUnavailable as away:  # the preview keeps its buttons, to press again
        await say_database_away(respond, service, away, "a Start")
        return
    await _replace_preview(respond, admission)


async def confirm_cancel(
    ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
    context: AsyncBoltContext,
) -> None:  # fmt: skip
    """Cancel on a preview: nothing recorded, nothing spent."""
    await ack()
    service = service_of(context)
    token = str(action.get("value") or "")
    try:
        admission = await service.store.off_loop(
            service.cancel, team_of_body(body), token, _user(body)
        )
    except DatabaseUnavailable as away:
        await say_database_away(respond, service, away, "a Cancel")
        return
    await _replace_preview(respond, admission)


async def new_variation(
    ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
    context: AsyncBoltContext,
) -> None:  # fmt: skip
    """The "New variation" button on a result: a new job with the same request, once per result."""
    await ack()
    service = service_of(context)
    run_id = _run_id(action)
    try:
        ask = (
            await service.store.off_loop(
                service.variation_of,
                team_of_body(body),
                run_id,
                _user(body),
                body.get("response_url"),
            )
            if run_id
            else None
        )
        if ask is None:
            await _say_done(respond, messages.RESULT_GONE, service.sandbox_here())
            return
        admission = await service.ask_for_run_off_loop(ask)
    except DatabaseUnavailable as away:
        await say_database_away(respond, service, away, "a new variation")
        return
    if admission.kind == AskKind.ACCEPTED:
        said = messages.variation_started(sandbox=admission.sandbox)
        admission = Admission(admission.kind, said)
    elif admission.kind == AskKind.DUPLICATE and admission.message is None:
        # With MOTION_CONFIRM the claim is on the first press's preview: say so too.
        await _say_done(respond, ALREADY_VARIED, service.sandbox_here())
        return
    await _answer(respond, admission)


async def fresh_link(
    ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], context: AsyncBoltContext
) -> None:
    """ "Fresh link" on a result (no PUBLIC_URL): the current URL, privately, after the ack."""
    await ack()
    run_id = _run_id(action)
    if run_id is not None:
        service_of(context).send_fresh_link(
            team_of_body(body), run_id, _user(body), _message_place(body)[0],
            body.get("response_url"),
        )  # fmt: skip


async def stop_tracking(
    ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
    client: AsyncWebClient, context: AsyncBoltContext,
) -> None:  # fmt: skip
    """ "Stop tracking" on the card or a stuck notice: the requester or one of the workspace's
    Motion admins (its admin list, its Slack admins: `users.info` with this request's client,
    after the ack) stops it once; anyone else, and a repeated click, is answered privately."""
    await ack()
    service = service_of(context)
    channel, ts = _message_place(body)
    value = str(action.get("value") or "")
    try:
        said = await service.stop_clicked(
            team_of_body(body), value, _user(body), channel, ts, SlackOut(client)
        )
    except DatabaseUnavailable as away:
        await say_database_away(respond, service, away, "Stop tracking")
        return
    await _tell_clicker(respond, said)


async def keep_waiting(
    ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
    context: AsyncBoltContext,
) -> None:  # fmt: skip
    """ "Keep waiting" on a stuck notice: ask again after as long again; once per notice."""
    await ack()
    service = service_of(context)
    channel, ts = _message_place(body)
    value = str(action.get("value") or "")
    try:
        said = await service.store.off_loop(
            service.keep_waiting, team_of_body(body), value, _user(body), channel, ts
        )
    except DatabaseUnavailable as away:
        await say_database_away(respond, service, away, "Keep waiting")
        return
    await _tell_clicker(respond, said)


async def say_database_away(
    respond: AsyncRespond, service: JobService, away: DatabaseUnavailable, what: str
) -> None:
    """Nothing of the click was recorded: its author alone is told to try again."""
    log.info("%s: %s; the clicker is asked to try again", what, away)
    payload = messages.database_away(service.sandbox_here()).payload()
    await respond(**payload, response_type="ephemeral", replace_original=False)


async def _answer(respond: AsyncRespond, admission: Admission) -> None:
    """A refusal, a preview or "already done", privately to whoever pressed the button."""
    if admission.message is not None:
        await respond(
            **admission.message.payload(), response_type="ephemeral", replace_original=False
        )


async def _replace_preview(respond: AsyncRespond, admission: Admission) -> None:
    """The preview's buttons are replaced by what became of it, so it cannot be pressed again."""
    if admission.message is not None:
        await respond(
            **admission.message.payload(), response_type="ephemeral", replace_original=True
        )


async def _say_done(respond: AsyncRespond, what: str, sandbox: bool) -> None:
    payload = messages.already_done(what, sandbox).payload()
    await respond(**payload, response_type="ephemeral", replace_original=False)


def _run_id(action: dict[str, Any]) -> int | None:
    value = action.get("value")
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _user(body: dict[str, Any]) -> str:
    return str((body.get("user") or {}).get("id") or "")


async def _tell_clicker(respond: AsyncRespond, message: messages.Message | None) -> None:
    if message is not None:
        await respond(**message.payload(), response_type="ephemeral", replace_original=False)


def _message_place(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """The channel and ts of the message whose button was pressed."""
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
    return (str(channel) if channel else None), (str(ts) if ts else None)
