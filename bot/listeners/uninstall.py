"""`app_uninstalled` and `tokens_revoked`: the workspace is forgotten (bot/jobs/uninstall.py).

Bolt has revocation listeners of its own (`enable_token_revocation_listeners`), which delete
the installation only; these replace them in both modes and do that too (the installation is
one of the workspace's tables), plus everything else of the workspace. Either event may come
first, or alone, or again: each is idempotent. Slack sends both without a usable token, and
Bolt asks for none for them.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from bot.listeners.context import service_of

log = logging.getLogger(__name__)
FORGETTING_EVENTS = ("app_uninstalled", "tokens_revoked")


def _workspace(body: dict[str, Any], context: AsyncBoltContext) -> tuple[str, str | None]:
    """(team, enterprise); an org-wide install's event names no workspace of its own (team
    ""): the whole org is forgotten, each of its workspaces with rows here."""
    enterprise = context.enterprise_id or body.get("enterprise_id") or None
    if context.is_enterprise_install and enterprise:
        return "", enterprise
    return str(context.team_id or body.get("team_id") or ""), enterprise


async def app_uninstalled(body: dict[str, Any], context: AsyncBoltContext) -> None:
    team, enterprise = _workspace(body, context)
    await service_of(context).forget_workspace(team, enterprise, "app_uninstalled")


async def tokens_revoked(
    event: dict[str, Any], body: dict[str, Any], context: AsyncBoltContext
) -> None:
    """The bot's token revoked: the app can do nothing more there, so the workspace is
    forgotten as at uninstall. Only people's tokens: only their grants go."""
    team, enterprise = _workspace(body, context)
    tokens = event.get("tokens") or {}
    service = service_of(context)
    if tokens.get("bot"):
        await service.forget_workspace(team, enterprise, "tokens_revoked")
        return
    people = [str(u) for u in tokens.get("oauth") or [] if u]
    if people:
        await service.revoke_grants(team, enterprise, people)


def register(app: AsyncApp) -> None:
    app.event("app_uninstalled")(app_uninstalled)
    app.event("tokens_revoked")(tokens_revoked)
