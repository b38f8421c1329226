"""Slack's installation store and OAuth state store, on the project's own store.

Bolt's OAuth flow and its per-request authorize speak to an `AsyncInstallationStore` and an
`AsyncOAuthStateStore` (slack_sdk's interfaces). These two keep their rows beside the jobs, in
SQLite or PostgreSQL through one code path (bot/store/installations.py), so installations
survive restarts and are shared by every instance; each store call runs off the event loop
(`Store.off_loop`). Tokens cross into the store only sealed (bot/workspaces/secrets.py) and are
opened on the way out.

The semantics are slack_sdk's own stores': a workspace is found by (enterprise_id, team_id),
an org-wide install (`is_enterprise_install`) by its enterprise alone; installing again
replaces the installation (the latest wins); `find_installation` without a user is the latest
person's install with the workspace's latest bot, with a user that person's own. Where they
differ, on purpose: deleting the bot deletes its token everywhere (slack_sdk's SQL stores keep
a copy in their installations table), and a stored token that no key opens is logged by
workspace and read as "not installed" rather than raising into a request.
"""

from __future__ import annotations

import logging
import secrets as random
import time
from collections.abc import Callable
from logging import Logger
from typing import Any

from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from bot.store import InstalledBot, InstallerGrant, Store
from bot.workspaces.secrets import Secrets, SecretUnreadable

logger = logging.getLogger(__name__)

OAUTH_STATE_SECONDS = 600.0  # Bolt's default, and the spec's 10 minutes


def workspace_label(enterprise_id: str | None, team_id: str | None) -> str:
    """A workspace as a log line or a report names it (ids only: no name, no secret)."""
    if team_id and enterprise_id:
        return f"workspace {team_id} (enterprise {enterprise_id})"
    if team_id:
        return f"workspace {team_id}"
    if enterprise_id:
        return f"enterprise {enterprise_id} (org-wide install)"
    return "an installation with no workspace id"


def _scopes(scopes: Any) -> str | None:
    if not scopes:
        return None
    return scopes if isinstance(scopes, str) else ",".join(scopes)


class StoreInstallations(AsyncInstallationStore):
    """`AsyncInstallationStore` over `Store`, every token sealed with `Secrets`."""

    def __init__(self, store: Store, secrets: Secrets) -> None:
        self.store = store
        self.secrets = secrets

    def __repr__(self) -> str:
        return f"StoreInstallations({self.store.description})"

    @property
    def logger(self) -> Logger:
        return logger

    # ------------------------------------------------------------ saving

    async def async_save(self, installation: Installation) -> None:
        await self.store.off_loop(self._save, installation)

    async def async_save_bot(self, bot: Bot) -> None:
        await self.store.off_loop(self._save_bot, bot)

    def _seal(self, text: str | None) -> str | None:
        return None if text is None else self.secrets.seal(text)

    def _save(self, installation: Installation) -> None:
        org_wide = bool(installation.is_enterprise_install)
        team_id = None if org_wide else installation.team_id
        bot = InstalledBot(
            enterprise_id=installation.enterprise_id,
            team_id=team_id,
            installed_at=float(installation.installed_at),
            is_enterprise_install=org_wide,
            app_id=installation.app_id,
            enterprise_name=installation.enterprise_name,
            enterprise_url=installation.enterprise_url,
            team_name=installation.team_name,
            installer=installation.user_id,
            token_type=installation.token_type,
            bot_id=installation.bot_id,
            bot_user_id=installation.bot_user_id,
            bot_scopes=_scopes(installation.bot_scopes),
            sealed_bot_token=self._seal(installation.bot_token),
            sealed_bot_refresh_token=self._seal(installation.bot_refresh_token),
            bot_token_expires_at=installation.bot_token_expires_at,
        )
        grant = InstallerGrant(
            enterprise_id=installation.enterprise_id,
            team_id=team_id,
            user_id=installation.user_id,
            installed_at=float(installation.installed_at),
            user_scopes=_scopes(installation.user_scopes),
            sealed_user_token=self._seal(installation.user_token),
            sealed_user_refresh_token=self._seal(installation.user_refresh_token),
            user_token_expires_at=installation.user_token_expires_at,
            sealed_incoming_webhook_url=self._seal(installation.incoming_webhook_url),
            incoming_webhook_channel=installation.incoming_webhook_channel,
            incoming_webhook_channel_id=installation.incoming_webhook_channel_id,
            incoming_webhook_configuration_url=installation.incoming_webhook_configuration_url,
        )
        self.store.save_installation(bot, grant)

    def _save_bot(self, bot: Bot) -> None:
        if bot.bot_token is None:
            return  # nothing to keep: a bot without its token authorizes nothing
        org_wide = bool(bot.is_enterprise_install)
        self.store.save_installed_bot(
            InstalledBot(
                enterprise_id=bot.enterprise_id,
                team_id=None if org_wide else bot.team_id,
                installed_at=float(bot.installed_at),
                is_enterprise_install=org_wide,
                app_id=bot.app_id,
                enterprise_name=bot.enterprise_name,
                team_name=bot.team_name,
                bot_id=bot.bot_id,
                bot_user_id=bot.bot_user_id,
                bot_scopes=_scopes(bot.bot_scopes),
                sealed_bot_token=self._seal(bot.bot_token),
                sealed_bot_refresh_token=self._seal(bot.bot_refresh_token),
                bot_token_expires_at=bot.bot_token_expires_at,
            )
        )

    # ------------------------------------------------------------ finding

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        team = None if is_enterprise_install else team_id
        return await self.store.read_off_loop(self._find_bot, enterprise_id, team)

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        team = None if is_enterprise_install else team_id
        return await self.store.read_off_loop(self._find_installation, enterprise_id, team, user_id)

    def _open(self, sealed: str | None, what: str, where: InstalledBot) -> str | None:
        """The opened secret; an unreadable one is logged by workspace and read as absent."""
        if sealed is None:
            return None
        label = f"the {what} of {workspace_label(where.enterprise_id, where.team_id)}"
        try:
            return self.secrets.open(sealed, label)
        except SecretUnreadable as exc:
            logger.error("%s", exc)
            return None

    def _find_bot(self, enterprise_id: str | None, team_id: str | None) -> Bot | None:
        row = self.store.installed_bot(enterprise_id, team_id)
        return None if row is None else self.bot_from(row)

    def bot_from(self, row: InstalledBot) -> Bot | None:
        """The stored installation's bot, its tokens opened; None without a readable token."""
        token = self._open(row.sealed_bot_token, "bot token", row)
        if token is None:
            return None
        return Bot(
            app_id=row.app_id,
            enterprise_id=row.enterprise_id,
            enterprise_name=row.enterprise_name,
            team_id=row.team_id,
            team_name=row.team_name,
            bot_token=token,
            bot_id=row.bot_id or "",
            bot_user_id=row.bot_user_id or "",
            bot_scopes=row.bot_scopes or "",
            bot_refresh_token=self._open(row.sealed_bot_refresh_token, "bot refresh token", row),
            bot_token_expires_at=row.bot_token_expires_at,
            is_enterprise_install=row.is_enterprise_install,
            installed_at=row.installed_at,
        )

    def _find_installation(
        self, enterprise_id: str | None, team_id: str | None, user_id: str | None
    ) -> Installation | None:
        row = self.store.installed_bot(enterprise_id, team_id)
        grant = self.store.installer_grant(enterprise_id, team_id, user_id)
        if row is None or grant is None:
            return None
        return Installation(
            app_id=row.app_id,
            enterprise_id=row.enterprise_id,
            enterprise_name=row.enterprise_name,
            enterprise_url=row.enterprise_url,
            team_id=row.team_id,
            team_name=row.team_name,
            bot_token=self._open(row.sealed_bot_token, "bot token", row),
            bot_id=row.bot_id,
            bot_user_id=row.bot_user_id,
            bot_scopes=row.bot_scopes or "",
            bot_refresh_token=self._open(row.sealed_bot_refresh_token, "bot refresh token", row),
            bot_token_expires_at=row.bot_token_expires_at,
            user_id=grant.user_id,
            user_token=self._open(grant.sealed_user_token, f"user token of {grant.user_id}", row),
            user_scopes=grant.user_scopes or "",
            user_refresh_token=self._open(
                grant.sealed_user_refresh_token, f"user refresh token of {grant.user_id}", row
            ),
            user_token_expires_at=grant.user_token_expires_at,
            incoming_webhook_url=self._open(
                grant.sealed_incoming_webhook_url, "incoming webhook URL", row
            ),
            incoming_webhook_channel=grant.incoming_webhook_channel,
            incoming_webhook_channel_id=grant.incoming_webhook_channel_id,
            incoming_webhook_configuration_url=grant.incoming_webhook_configuration_url,
            is_enterprise_install=row.is_enterprise_install,
            token_type=row.token_type,
            installed_at=grant.installed_at,
        )

    # ------------------------------------------------------------ deleting

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self._delete(self.store.delete_installed_bot, enterprise_id, team_id)

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        await self.store.off_loop(self._delete_grants, enterprise_id, team_id, user_id)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        """Both at once, in one transaction (the app was uninstalled)."""
        await self._delete(self.store.forget_installation, enterprise_id, team_id)

    async def _delete(
        self,
        delete: Callable[[str | None, str | None], None],
        enterprise_id: str | None,
        team_id: str | None,
    ) -> None:
        def run() -> None:
            delete(*self._stored_key(enterprise_id, team_id))

        await self.store.off_loop(run)

    def _delete_grants(
        self, enterprise_id: str | None, team_id: str | None, user_id: str | None
    ) -> None:
        self.store.delete_installer_grants(*self._stored_key(enterprise_id, team_id), user_id)

    def _stored_key(
        self, enterprise_id: str | None, team_id: str | None
    ) -> tuple[str | None, str | None]:
        """The installation a revocation from (enterprise, team) is about. Bolt's revocation
        listeners name the event's team even for an org-wide install, which is keyed by its
        enterprise alone: with no installation of that very team, an org-wide one is it."""
        if (
            enterprise_id
            and team_id
            and self.store.installed_bot(enterprise_id, team_id) is None
            and self.store.installed_bot(enterprise_id, None) is not None
        ):
            return enterprise_id, None
        return enterprise_id, team_id


class StoreOAuthStates(AsyncOAuthStateStore):
    """`AsyncOAuthStateStore` over `Store`: a random state per install, good for one use within
    `expiration_seconds` (10 minutes); `clock` is passed in so tests need not wait."""

    def __init__(
        self,
        store: Store,
        *,
        expiration_seconds: float = OAUTH_STATE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.expiration_seconds = expiration_seconds
        self.clock = clock

    @property
    def logger(self) -> Logger:
        return logger

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = random.token_urlsafe(24)
        now = self.clock()
        await self.store.off_loop(
            self.store.issue_oauth_state, state, now + self.expiration_seconds, now
        )
        return state

    async def async_consume(self, state: str) -> bool:
        return await self.store.off_loop(self.store.consume_oauth_state, state, self.clock())
