"""How listeners reach the service: a middleware puts it in Bolt's context for every request,
so listener callbacks are plain module-level functions that tests can call directly.

It also names the workspace the request comes from (`begin_request_workspace`: Bolt's team and
enterprise), whose token the request's own Slack calls use and whose enterprise a job it
starts records.

The same middleware starts the request's budget for the database (`begin_request_budget`):
every store call the request makes finishes, or fails with `DatabaseUnavailable`, within 2 s of
here, so its answer leaves within Slack's 3 s. Bolt runs a request's middleware and then its
listener in the task that handles that one request (HTTP mode sets the budget earlier, on
arrival, and this keeps it), so the budget ends with the request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncBoltContext

from bot.jobs import JobService, begin_request_budget, begin_request_workspace

SERVICE_KEY = "motion_service"


def service_middleware(
    service: JobService,
) -> Callable[[AsyncBoltContext, Callable[[], Awaitable[Any]]], Awaitable[Any]]:
    async def with_service(context: AsyncBoltContext, next: Callable[[], Awaitable[Any]]) -> Any:
        begin_request_budget()
        begin_request_workspace(context.team_id or "", context.enterprise_id)
        context[SERVICE_KEY] = service
        return await next()

    return with_service


def service_of(context: AsyncBoltContext) -> JobService:
    service = context.get(SERVICE_KEY)
    assert isinstance(service, JobService), "listeners.register() puts the service in context"
    return service
