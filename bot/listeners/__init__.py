"""Slack listeners, grouped by surface; each module has a `register(app, service)`."""

from slack_bolt.async_app import AsyncApp

from bot.jobs import JobService
from bot.listeners import actions, commands, events


def register(app: AsyncApp, service: JobService) -> None:
    commands.register(app, service)
    actions.register(app, service)
    events.register(app, service)  # last: it holds the catch-all listeners
