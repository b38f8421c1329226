"""Each workspace's bot token, for everything the app does in it, fresh and never another's.

Requests are authorized by Bolt (its installation-store authorize, over `StoreInstallations`);
work outside a request (the poller, the outbox, uploads, file links) asks `WorkspaceTokens`
with the job's or the link's workspace. Both refresh a rotating token the same way, through
`SerializedRotator`: Bolt's own rotation (`AsyncTokenRotator`), given the app's Web API client
(so `oauth.v2.access` goes to SLACK_API_URL like every call), and serialized across instances.

Why a lease in the database: a refresh token works once. Two instances refreshing one
installation at the same moment would both spend it, and the second would get an error and
lose the installation. So an instance first takes the installation's refresh lease
(`Store.take_refresh_lease`, only while the stored refresh token is still the one it read and
nobody else holds an unexpired lease), spends the refresh token, and stores the new tokens while
letting the lease go, in one statement. An instance that finds the lease taken waits and reads
the row again: by then the new token is there and it refreshes nothing. A lease rather than a
row lock: the refresh is a call to Slack, and no transaction should stay open across one (on
SQLite it would hold every writer up).

Tokens are kept in memory briefly (`CACHE_SECONDS`), never past the moment a refresh is due,
so a token refreshed or revoked by another instance is seen within seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError, SlackTokenRotationError
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.out import CallObserver, SlackOut
from bot.workspaces.installations import StoreInstallations, workspace_label

log = logging.getLogger(__name__)

REFRESH_MINUTES = 2  # a rotating token is refreshed this long before it expires
CACHE_SECONDS = 30.0  # how long a token read from the database is used without reading again
LEASE_SECONDS = 30.0  # a refresh's lease: the holder's call to Slack has 15 s, twice over
WAIT_SECONDS = 20.0  # how long a caller waits for another instance's refresh
WAIT_STEP_SECONDS = 0.05


class _RefreshNotDone(SlackApiError):
    """Why a refresh could not be done, shaped as Slack's own refusals are."""

    def __init__(self, words: str) -> None:
        Exception.__init__(self, words)
        self.response = {"ok": False, "error": words}


def _failed(words: str) -> SlackTokenRotationError:
    """Bolt's error for a refresh that could not be done (its authorize logs it and answers
    nothing; `WorkspaceTokens` logs it and reads the workspace as not installed)."""
    return SlackTokenRotationError(_RefreshNotDone(words))


def _stored_key(bot: Bot) -> tuple[str | None, str | None]:
    """Where a bot's installation is stored: an org-wide one by its enterprise alone."""
    return bot.enterprise_id, None if bot.is_enterprise_install else bot.team_id


def _due(bot: Bot, minutes: float, now: float) -> bool:
    expires_at = bot.bot_token_expires_at
    return expires_at is not None and expires_at <= now + minutes * 60


class SerializedRotator(AsyncTokenRotator):
    """Bolt's token rotation with the app's client, one refresh per installation at a time
    across every instance sharing the database (see the module's docstring). Bolt's authorize
    calls it for requests; `WorkspaceTokens` for everything else. Only bot tokens rotate here:
    the app asks for no user scopes."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        client: AsyncWebClient,
        installations: StoreInstallations,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(client_id=client_id, client_secret=client_secret, client=client)
        self.installations = installations
        self.clock = clock
        self.sleep = sleep
        self.refreshes = 0  # refreshes this instance made (the others' are read, not made)

    async def perform_bot_token_rotation(
        self, *, bot: Bot, minutes_before_expiration: int = REFRESH_MINUTES
    ) -> Bot | None:
        """None when the token is not due; else the installation's bot with a fresh token,
        refreshed here or by whoever held the lease. SlackTokenRotationError when neither."""
        if bot.bot_refresh_token is None or not _due(bot, minutes_before_expiration, self.clock()):
            return None
        return await self._refresh_once(bot, minutes_before_expiration)

    async def _refresh_once(self, bot: Bot, minutes: int) -> Bot:
        store = self.installations.store
        enterprise_id, team_id = _stored_key(bot)
        label = workspace_label(enterprise_id, team_id)
        deadline = self.clock() + WAIT_SECONDS
        while True:
            row = await store.read_off_loop(store.installed_bot, enterprise_id, team_id)
            current = self.installations.bot_from(row) if row is not None else None
            if row is None or current is None:
                raise _failed(f"{label} has no installation any more")
            now = self.clock()
            if current.bot_refresh_token != bot.bot_refresh_token or not _due(
                current, minutes, now
            ):
                return current  # refreshed meanwhile (by another instance, or another task)
            if row.sealed_bot_refresh_token is not None and await store.off_loop(
                store.take_refresh_lease, enterprise_id, team_id,
                refresh_token_read=row.sealed_bot_refresh_token, owner=store.owner, now=now,
                until=now + LEASE_SECONDS,
            ):  # fmt: skip
                return await self._refresh_holding_lease(current, minutes, label)
            if now > deadline:
                raise _failed(f"{label}: another instance's token refresh did not finish")
            await self.sleep(WAIT_STEP_SECONDS)

    async def _refresh_holding_lease(self, current: Bot, minutes: int, label: str) -> Bot:
        store = self.installations.store
        enterprise_id, team_id = _stored_key(current)
        try:
            refreshed = await super().perform_bot_token_rotation(
                bot=current, minutes_before_expiration=minutes
            )
            if refreshed is None or not refreshed.bot_token:
                raise _failed(f"{label}: Slack's refresh answer held no bot token")
            seal = self.installations.secrets.seal
            saved = await store.off_loop(
                store.save_refreshed_bot, enterprise_id, team_id, owner=store.owner,
                sealed_token=seal(refreshed.bot_token),
                sealed_refresh_token=(
                    seal(refreshed.bot_refresh_token) if refreshed.bot_refresh_token else None
                ),
                expires_at=refreshed.bot_token_expires_at,
            )  # fmt: skip
        except BaseException:
            await store.off_loop(store.release_refresh_lease, enterprise_id, team_id, store.owner)
            raise
        self.refreshes += 1
        if not saved:
            raise _failed(f"{label} was uninstalled while its token was being refreshed")
        log.info("%s: bot token refreshed (expires at %s)", label, refreshed.bot_token_expires_at)
        return refreshed


@dataclass(frozen=True)
class _Cached:
    token: str
    good_until: float


class WorkspaceTokens:
    """The bot token of a workspace, for work outside a request: None when the workspace has no
    installation (uninstalled, never installed, or its token unreadable), which the caller
    treats as a permanent failure. Never another workspace's token: a lookup is by the exact
    (enterprise, team) stored, or the enterprise's org-wide installation."""

    def __init__(
        self,
        installations: StoreInstallations,
        rotator: SerializedRotator,
        *,
        refresh_minutes: int = REFRESH_MINUTES,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.installations = installations
        self.rotator = rotator
        self.refresh_minutes = refresh_minutes
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache: dict[tuple[str, str], _Cached] = {}

    async def bot_token(self, team_id: str, enterprise_id: str | None = None) -> str | None:
        key = (enterprise_id or "", team_id or "")
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None and now < cached.good_until:
            return cached.token
        self._cache.pop(key, None)
        bot = await self._find(team_id, enterprise_id)
        label = workspace_label(enterprise_id, team_id)
        if bot is None or not bot.bot_token:
            log.warning("%s has no installation: its Slack calls are refused", label)
            return None
        try:
            refreshed = await self.rotator.perform_bot_token_rotation(
                bot=bot, minutes_before_expiration=self.refresh_minutes
            )
        except SlackTokenRotationError as exc:
            log.error("%s: its token could not be refreshed: %s", label, _reason(exc))
            return None
        bot = refreshed or bot
        token = bot.bot_token
        if token is None:
            return None
        good_until = now + self.cache_seconds
        if bot.bot_token_expires_at is not None:
            good_until = min(good_until, bot.bot_token_expires_at - self.refresh_minutes * 60)
        if good_until > now:
            self._cache[key] = _Cached(token, good_until)
        return token

    def forget(self, team_id: str, enterprise_id: str | None = None) -> None:
        """Drop a workspace's cached token at once (it was uninstalled or revoked here)."""
        self._cache.pop((enterprise_id or "", team_id or ""), None)

    async def _find(self, team_id: str, enterprise_id: str | None) -> Bot | None:
        """The workspace's own installation, or its enterprise's org-wide one."""
        found = self.installations
        bot = await found.async_find_bot(enterprise_id=enterprise_id, team_id=team_id)
        if bot is None and enterprise_id:
            bot = await found.async_find_bot(
                enterprise_id=enterprise_id, team_id=None, is_enterprise_install=True
            )
        return bot


def _reason(exc: SlackTokenRotationError) -> str:
    response = exc.api_error.response
    error = response.get("error") if hasattr(response, "get") else None
    return str(error or "unknown")


class WorkspaceSlack:
    """`SlackOut` for one workspace at a time, each calling with that workspace's token (from
    `WorkspaceTokens`, asked at each call) over the app's one client and connection pool. One
    `SlackOut` per workspace is kept, so its rationing of progress edits is the workspace's."""

    MAX_KEPT = 10_000

    def __init__(
        self, tokens: WorkspaceTokens, client: AsyncWebClient, observe: CallObserver | None
    ) -> None:
        self.tokens = tokens
        self.client = client
        self.observe = observe
        self._outs: dict[tuple[str, str], SlackOut] = {}

    def __call__(self, team_id: str, enterprise_id: str | None = None) -> SlackOut:
        key = (enterprise_id or "", team_id or "")
        out = self._outs.get(key)
        if out is None:
            if len(self._outs) >= self.MAX_KEPT:
                self._outs.pop(next(iter(self._outs)))

            async def token() -> str | None:
                return await self.tokens.bot_token(team_id, enterprise_id)

            label = workspace_label(enterprise_id, team_id)
            out = SlackOut(self.client, observe=self.observe, token=token, workspace=label)
            self._outs[key] = out
        return out
