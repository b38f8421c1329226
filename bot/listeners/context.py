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

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncBoltContext
from slack_bolt.response import BoltResponse

from bot.jobs import JobService, begin_request_budget, begin_request_workspace

log = logging.getLogger(__name__)

SERVICE_KEY = "motion_service"


def service_middleware(
    service: JobService,
) -> Callable[..., Awaitable[Any]]:
    async def with_service(
        context: AsyncBoltContext, body: dict[str, Any], next: Callable[[], Awaitable[Any]]
    ) -> Any:
        begin_request_budget()
        begin_request_workspace(context.team_id or "", context.enterprise_id)
        context[SERVICE_KEY] = service
        if service.workspace_forgotten(context.team_id) and not _forgetting(body):
            if _installed_again(service, context):
                await service.uninstalls.installed_again(context.team_id or "")
                return await next()
            # Late for a workspace that uninstalled the app: a 2xx, so Slack stops sending
            # it, and nothing else (no job, no Slack call with a token).
            log.info("a late %s for a forgotten workspace: answered, nothing done", _kind(body))
            return BoltResponse(status=200, body="")
        return await next()

    return with_service


def _installed_again(service: JobService, context: AsyncBoltContext) -> bool:
    """Many workspaces: Bolt found an installation for the request (it authorizes before any
    middleware of ours), so the workspace installed the app again since it was forgotten — an
    org-wide reinstall lifts no digest of its member workspaces, this does."""
    result = context.authorize_result
    return service.many_workspaces and result is not None and bool(result.bot_token)


def _forgetting(body: dict[str, Any]) -> bool:
    """`app_uninstalled` or `tokens_revoked` (again): still taken, they are idempotent."""
    event = body.get("event") or {}
    return isinstance(event, dict) and event.get("type") in ("app_uninstalled", "tokens_revoked")


def _kind(body: dict[str, Any]) -> str:
    event = body.get("event")
    if isinstance(event, dict):
        return f"{event.get('type')} event"
    return str(body.get("type") or "command")


def team_of_body(body: dict[str, Any]) -> str:
    """The workspace an interaction comes from: the payload's `team`, or, where Slack leaves
    it null (an org-wide app's surfaces on Enterprise Grid), the person's own `user.team_id`.
    Every id the interaction names is looked up within this workspace (bot/jobs/bounds.py)."""
    team = body.get("team") or {}
    person = body.get("user") or {}
    found = team.get("id") if isinstance(team, dict) else None
    if not found and isinstance(person, dict):
        found = person.get("team_id")
    return str(found or "")


def service_of(context: AsyncBoltContext) -> JobService:
    service = context.get(SERVICE_KEY)
    assert isinstance(service, JobService), "listeners.register() puts the service in context"
    return service
