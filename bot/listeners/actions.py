"""Buttons on the app's messages."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond

from bot import messages
from bot.listeners.context import service_of


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
    if run_id is None or not service.retry_run(run_id, _user(body)):
        await _say_done(
            respond, "This was already sent again (or is no longer needed).", service.sandbox
        )


async def restart_job(
    ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond,
    context: AsyncBoltContext,
) -> None:  # fmt: skip
    """The "Start a new job" button, after Motion refused a followup on a failed job."""
    await ack()
    service = service_of(context)
    team = (body.get("team") or {}).get("id") or ""
    run_id = _run_id(action)
    if run_id is None or service.restart_job(run_id, _user(body), team) is None:
        await _say_done(respond, "A new job was already started from this reply.", service.sandbox)


def register(app: AsyncApp) -> None:
    app.action("download")(download)
    app.action("retry_run")(retry_run)
    app.action("restart_job")(restart_job)


async def _say_done(respond: AsyncRespond, what: str, sandbox: bool) -> None:
    payload = messages.already_done(what, sandbox).payload()
    await respond(**payload, response_type="ephemeral", replace_original=False)


def _run_id(action: dict[str, Any]) -> int | None:
    value = action.get("value")
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _user(body: dict[str, Any]) -> str:
    return str((body.get("user") or {}).get("id") or "")
