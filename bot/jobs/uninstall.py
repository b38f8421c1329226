"""Uninstall: `app_uninstalled`, and `tokens_revoked` naming the bot token, forget a workspace.

Forgetting happens in the event's own request, in one transaction (bot/store/workspaces.py): the
installation and its tokens, the workspace's settings and Motion key, its jobs, runs, prompts,
posts, previews, usage, stop decisions, Workflow Builder steps and handled deliveries. With its
jobs gone, polling them stops at once: a look already under way on any instance finds its
lease's row gone at its next write (`LeaseLost`) and ends, so nothing more is sent to Motion or
Slack for them.

What may still arrive: a delivery Slack sent before the uninstall, or retries one. Each
request's workspace is checked against the digests of forgotten workspaces
(`is_forgotten`, from memory: a snapshot refreshed every `REFRESH_SECONDS`, so no request waits
on the database for it), and a forgotten workspace's request is answered 2xx with nothing done.
A request that passed that check just before the uninstall may still record a row after it: the
same instance forgets the workspace once more after `SWEEP_AFTER_SECONDS` (well within the
spec's minute), and an instance that starts sweeps any workspace forgotten within the hour.

`tokens_revoked` naming only people's tokens (`oauth`) forgets those people's grants, not the
workspace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot.jobs.context import JobContext
from bot.refresher import Refresher
from bot.store import FORGOTTEN_FOR_SECONDS, DatabaseUnavailable, Forgotten, workspace_digest

log = logging.getLogger(__name__)

REFRESH_SECONDS = 2.0  # how stale another instance's forgetting may be seen here
SWEEP_AFTER_SECONDS = 5.0  # past any request that passed the check before the forgetting


class Uninstalls:
    def __init__(self, ctx: JobContext, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.monotonic = monotonic
        self._digests: frozenset[str] = frozenset()
        self._again: dict[str, float] = {}  # team id → when to forget it once more
        # One workspace (SLACK_BOT_TOKEN): Slack tells the app nothing when the workspace
        # installs it again; the operator then restarts it with the new token. So there a
        # forgetting holds only until a restart (`since` = the start): a late delivery after it
        # is served, and fails harmlessly on the revoked token. Many workspaces: 0, and a new
        # installation lifts it at once (bot/store/workspaces.py `remember_workspace`).
        self.since = 0.0
        self._refresher = Refresher(self.refresh, REFRESH_SECONDS, "forgotten-workspaces")
        ctx.forgotten = self.is_forgotten  # a look under way stops before its next Slack call

    # ------------------------------------------------------------ the events

    async def forget(self, team_id: str, enterprise_id: str | None, why: str) -> Forgotten:
        """Forget the workspace now (idempotent: a second event deletes nothing more)."""
        ctx = self.ctx
        if not team_id:  # an org-wide install: its installation, then each of its workspaces
            await ctx.store.off_loop(ctx.store.forget_installation, enterprise_id, None)
            teams = (
                await ctx.store.off_loop(ctx.store.teams_of_enterprise, enterprise_id)
                if enterprise_id
                else set()
            )
            total: dict[str, int] = {}
            for team in sorted(teams):
                for table, count in (await self.forget(team, enterprise_id, why)).rows.items():
                    total[table] = total.get(table, 0) + count
            log.info(
                "an org-wide installation was forgotten (%s): %d workspace(s)", why, len(teams)
            )
            return Forgotten(total)
        forgotten = await ctx.store.off_loop(ctx.store.forget_workspace, team_id, ctx.clock())
        ctx.routes.forget(team_id)  # its Motion key, kept a few seconds for status calls, too
        ctx.settings.forget_keys()  # and every key opened in memory (the next read opens again)
        ctx.motion.forget_routes()
        self._digests = self._digests | {workspace_digest(team_id)}
        self._again[team_id] = self.monotonic() + SWEEP_AFTER_SECONDS
        log.info(
            "workspace forgotten (%s): %d row(s) deleted", why, forgotten.total,
            extra={"team": team_id},
        )  # fmt: skip
        return forgotten

    async def revoke_grants(
        self, team_id: str, enterprise_id: str | None, user_ids: list[str]
    ) -> None:
        """People's own tokens revoked (not the bot's): only their grants go."""
        store = self.ctx.store
        for user_id in user_ids:
            await store.off_loop(store.delete_installer_grants, enterprise_id, team_id, user_id)
        log.info("%d person's grant(s) revoked", len(user_ids), extra={"team": team_id})

    # ------------------------------------------------------------ late deliveries

    async def installed_again(self, team_id: str) -> None:
        """Many workspaces: a request for a forgotten workspace that Bolt authorized (it has an
        installation again): served from now on, here at once and on every instance."""
        digest = workspace_digest(team_id)
        self._digests = self._digests - {digest}
        self._again.pop(team_id, None)
        store = self.ctx.store
        try:
            await store.off_loop(store.lift_forgotten, team_id)
        except DatabaseUnavailable as away:  # the next authorized request lifts it again
            log.info("workspace %s installed again, not yet recorded: %s", team_id, away)

    def is_forgotten(self, team_id: str | None) -> bool:
        """Whether the workspace was forgotten within the hour (from memory, never waiting)."""
        return bool(team_id) and workspace_digest(str(team_id)) in self._digests

    def start(self) -> None:
        self._refresher.start()

    async def stop(self) -> None:
        await self._refresher.stop()

    async def refresh(self) -> None:
        """Every REFRESH_SECONDS: what every instance forgot, and the second pass of what this
        one forgot. The database away for a moment leaves the last snapshot in place."""
        store = self.ctx.store
        try:
            self._digests = await store.off_loop(
                store.forgotten_digests, self.ctx.clock(), self.since
            )
            now = self.monotonic()
            for team_id in [t for t, when in self._again.items() if when <= now]:
                del self._again[team_id]
                if workspace_digest(team_id) in self._digests:  # not installed again meanwhile
                    await store.off_loop(store.forget_workspace, team_id, self.ctx.clock())
        except DatabaseUnavailable as away:
            log.info("forgotten workspaces not refreshed: %s", away)
        except Exception:  # the refresher must outlive any one failure
            log.exception("forgotten workspaces not refreshed")

    def sweep(self) -> int:
        """At start: a workspace forgotten within the hour that has rows again (an instance
        that died before its second pass) is forgotten again; older digests go. Returns how
        many workspaces were swept."""
        store, now = self.ctx.store, self.ctx.clock()
        store.drop_forgotten_before(now - FORGOTTEN_FOR_SECONDS)
        digests = store.forgotten_digests(now, self.since)
        self._digests = digests
        swept = [t for t in store.teams_with_rows() if workspace_digest(t) in digests]
        for team_id in swept:
            store.forget_workspace(team_id, now)
        return len(swept)
