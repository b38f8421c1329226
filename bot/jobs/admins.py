"""Who a workspace's Motion admins are: its Slack admins and owners (`users.info`: is_admin,
is_owner, is_primary_owner, asked with the requesting workspace's own client) and the people on
its admin list (`MOTION_ADMINS` or the setting). The same people may change its settings, stop
anyone's job and see everyone's usage (SPEC "Settings in Slack"); every one of those checks
asks here, so they never disagree.

Slack's answer is kept `KEPT_SECONDS` per person and workspace: a Home tab, a usage report and
a click in a row ask Slack once. A person made (or no longer) an admin in Slack is seen so at
most that long after. A failed or late `users.info` is no admin and is not kept: nobody gets
an admin's view by Slack failing, and the next request asks again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from bot.jobs.spend import SpendPolicy
from bot.slack.out import SlackOut

log = logging.getLogger(__name__)
KEPT_SECONDS = 60.0
_KEPT = 10_000  # people kept, across workspaces


class MotionAdmins:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._known: dict[tuple[str, str], tuple[float, bool]] = {}

    async def is_admin(
        self, team_id: str, user_id: str, spend: SpendPolicy, asker: SlackOut,
        *, within: float | None = None,
    ) -> bool:  # fmt: skip
        """On the workspace's admin list (`spend`, its settings as read for this request), or
        one of its Slack admins or owners. `within`: seconds Slack may take to say (an ack's
        budget); later is no admin, this once."""
        return spend.is_admin(user_id) or await self.is_slack_admin(
            team_id, user_id, asker, within=within
        )

    async def is_slack_admin(
        self, team_id: str, user_id: str, asker: SlackOut, *, within: float | None = None
    ) -> bool:
        """`users.info` says an admin or owner of workspace `team_id` (`asker`: its client)."""
        if not team_id or not user_id:
            return False
        kept = self._known.get((team_id, user_id))
        if kept is not None and self.clock() - kept[0] < KEPT_SECONDS:
            return kept[1]
        try:
            async with asyncio.timeout(within):
                answer = await asker.is_workspace_admin(user_id, team_id)
        except TimeoutError:
            log.info(
                "users.info for %s of %s: no answer in %ss; no admin", user_id, team_id, within
            )
            return False
        if answer is None:
            return False
        if len(self._known) >= _KEPT:
            self._known.clear()
        self._known[(team_id, user_id)] = (self.clock(), answer)
        return answer
