"""Slack listeners, grouped by surface; each module's `register(app)` adds its callbacks."""

from slack_bolt.async_app import AsyncApp

from bot.jobs import JobService
from bot.listeners import actions, commands, events, fallback, home, views
from bot.listeners.context import service_middleware


def register(app: AsyncApp, service: JobService) -> None:
    app.use(service_middleware(service))
    commands.register(app)
    actions.register(app)
    views.register(app)
    home.register(app)
    events.register(app)  # its catch-all event listener comes after home's
    fallback.register(app)  # last: it matches everything the others did not
