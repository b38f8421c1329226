"""Slack listeners, grouped by surface; each module's `register(app)` adds its callbacks."""

from slack_bolt.async_app import AsyncApp

from bot.jobs import JobService
from bot.listeners import actions, commands, events, fallback
from bot.listeners.context import service_middleware


def register(app: AsyncApp, service: JobService) -> None:
    app.use(service_middleware(service))
    commands.register(app)
    actions.register(app)
    events.register(app)
    fallback.register(app)  # last: it matches everything the others did not
