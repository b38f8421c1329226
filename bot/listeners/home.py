"""The app's Home tab, published afresh every time a person opens it."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_sdk.web.async_client import AsyncWebClient

from bot.listeners.context import service_of
from bot.slack.out import SlackOut


async def home_opened(
    event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
) -> None:
    """`app_home_opened` comes for the Messages tab too; only the Home tab is published. The
    request's own client asks whether the viewer is a workspace admin (who sees Settings)."""
    if event.get("tab") != "home" or not event.get("user"):
        return
    team = str(body.get("team_id") or context.team_id or "")
    service_of(context).refresh_home(team, str(event["user"]), SlackOut(client))


def register(app: AsyncApp) -> None:
    app.event("app_home_opened")(home_opened)
