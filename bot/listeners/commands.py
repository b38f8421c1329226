"""`/motion`: parse, record, acknowledge. The Motion call happens later, in the poller.

The app runs with process_before_response, so the ack goes out when this returns: everything
here is local (parsing, one database insert), which keeps the ack far inside Slack's 3 seconds
and means an acknowledged command is already in the database. The insert runs on the store's
workers (`Store.off_loop`), so other requests are served while it waits on the database.
With the database away for longer than the request's budget, nothing is recorded and the ack
says so privately: try again in a moment.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext

from bot.command_line import Help, ListJobs, NewForm, ShowUsage, UsageError, parse_command
from bot.jobs import AskKind, DatabaseUnavailable, NewJobAsk
from bot.listeners.context import service_of
from bot.slack import messages
from bot.slack.out import SlackOut

log = logging.getLogger(__name__)


async def motion_command(ack: AsyncAck, command: dict[str, Any], context: AsyncBoltContext) -> None:
    service = service_of(context)
    user, channel = command.get("user_id"), command.get("channel_id")
    if not user or not channel:  # HTTP mode refuses these with a 400 before Bolt sees them
        log.warning("a /motion command without user_id or channel_id was ignored")
        await ack(
            **messages.usage_error(messages.MALFORMED_COMMAND, service.sandbox_here()).payload()
        )
        return
    try:
        parsed = parse_command(command.get("text") or "")
    except UsageError as exc:
        await ack(**messages.usage_error(str(exc), service.sandbox_here()).payload())
        return
    if isinstance(parsed, NewForm):
        await ack()  # the form opens right after, in the trigger's 3 seconds
        service.open_new_form(command.get("trigger_id") or "", channel)
        return
    if isinstance(parsed, Help):
        await ack(**messages.help_message(service.sandbox_here()).payload())
        return
    if isinstance(parsed, ListJobs):
        await ack()
        service.send_job_list(
            team_id=command.get("team_id") or "",
            user_id=user,
            response_url=command.get("response_url"),
        )
        return
    team = command.get("team_id") or ""
    try:
        if isinstance(parsed, ShowUsage):
            client = context.client  # the requesting workspace's (None: no Slack to ask)
            asker = SlackOut(client) if client is not None else None
            report = await service.usage_answer(team, user, asker)
            await ack(**report.payload())
            return
        admission = await service.ask_for_run_off_loop(
            NewJobAsk(team, channel, user, command.get("response_url"), parsed.request)
        )
    except DatabaseUnavailable as away:  # nothing was recorded: the person asks again
        log.info("/motion from %s in %s: %s; asked to try again", user, channel, away)
        said = messages.database_away(service.sandbox_here(), lookup=isinstance(parsed, ShowUsage))
        await ack(**said.payload())
        return
    if admission.kind == AskKind.ACCEPTED:
        log.info(
            "job %s: accepted from %s in %s", admission.job_id, user, channel,
            extra={"job": admission.job_id, "team": team},
        )  # fmt: skip
        await ack(**messages.accepted(admission.sandbox).payload())
        return
    log.info("/motion from %s in %s: %s", user, channel, admission.kind, extra={"team": team})
    await ack(**(admission.message or messages.accepted(service.sandbox_here())).payload())


def register(app: AsyncApp) -> None:
    app.command("/motion")(motion_command)
