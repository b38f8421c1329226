"""Whatever no other listener takes still gets its 2xx: Bolt answers 404 to an unmatched
request, which makes Slack retry it or show the person an error ("dispatch_failed")."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

log = logging.getLogger(__name__)
ANY = re.compile(".*")


async def acknowledge(ack: AsyncAck, body: dict[str, Any]) -> None:
    log.info("acknowledged a %s the app does not handle", body.get("type") or "command")
    await ack()


def register(app: AsyncApp) -> None:
    app.command(ANY)(acknowledge)
    app.action(ANY)(acknowledge)
    app.shortcut(ANY)(acknowledge)
    app.view_submission(ANY)(acknowledge)
    app.view_closed(ANY)(acknowledge)
    app.options(ANY)(acknowledge)
