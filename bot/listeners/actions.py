"""Buttons on the app's messages."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot import messages
from bot.jobs import JobService

log = logging.getLogger(__name__)


def register(app: AsyncApp, service: JobService) -> None:
    @app.action("download")
    async def download(ack: AsyncAck) -> None:
        """A link button still sends an interaction payload; it only needs an ack."""
        await ack()

    @app.action("retry_run")
    async def retry_run(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        user = (body.get("user") or {}).get("id") or ""
        if not _int(action.get("value")) or not service.retry_run(int(action["value"]), user):
            await respond(
                **messages.already_done(
                    "This was already sent again (or is no longer needed).", service.sandbox
                ).payload(),
                response_type="ephemeral",
                replace_original=False,
            )

    @app.action("restart_job")
    async def restart_job(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        await ack()
        user = (body.get("user") or {}).get("id") or ""
        team = (body.get("team") or {}).get("id") or ""
        value = action.get("value")
        if not _int(value) or service.restart_job(int(value), user, team) is None:
            await respond(
                **messages.already_done(
                    "A new job was already started from this reply.", service.sandbox
                ).payload(),
                response_type="ephemeral",
                replace_original=False,
            )


def _int(value: Any) -> bool:
    return isinstance(value, str) and value.isdigit()
