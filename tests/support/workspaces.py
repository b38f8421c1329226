"""What Slack sends the app from one workspace of the stand-in, for tests with several
workspaces: `FromWorkspace(harness, workspace)` builds each payload with that workspace's team
(and enterprise), user names, response_urls and trigger ids, signs it with the tests' secret and
posts it to the app, as `Harness` does for the default workspace.

    beta = harness.slack.add_workspace("T0002", name="Beta")
    from_beta = FromWorkspace(harness, beta)
    await from_beta.command("a fox in the snow")
    await from_beta.event(beta.app_uninstalled())   # or from_beta.uninstalled()
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import httpx

from bot.app import MotionBot
from bot.local import payloads
from bot.local.payloads import FORM, JSON
from bot.local.workspaces import HostedWorkspace
from tests.support.harness import Harness


class FromWorkspace:
    """Slack's requests to the app about one workspace (see the module docstring); `to`: the
    app instance Slack delivers to (the harness's latest by default)."""

    def __init__(self, harness: Harness, workspace: HostedWorkspace) -> None:
        self.harness = harness
        self.workspace = workspace

    async def command(
        self, text: str, *, channel: str = "C0PUBLIC", user: str = "U0ALICE",
        to: MotionBot | None = None,
    ) -> httpx.Response:  # fmt: skip
        """`/motion text` typed by `user` in `channel` of this workspace."""
        fields = self.workspace.slash_command("/motion", text, channel=channel, user=user)
        return await self.harness.post(urlencode(fields), FORM, to=to)

    async def event(self, event: dict[str, Any], *, to: MotionBot | None = None) -> httpx.Response:
        """An Events API delivery: `event` wrapped in this workspace's envelope (an envelope
        already built, such as `app_uninstalled()`, is sent as it is)."""
        envelope = event if event.get("type") == "event_callback" else (
            self.workspace.event_callback(event)
        )  # fmt: skip
        return await self.harness.post(json.dumps(envelope), JSON, to=to)

    async def uninstalled(self, *, to: MotionBot | None = None) -> httpx.Response:
        """`app_uninstalled` for this workspace."""
        return await self.event(self.workspace.app_uninstalled(), to=to)

    async def tokens_revoked(
        self, *, bot: list[str] | None = None, oauth: list[str] | tuple[str, ...] = (),
        to: MotionBot | None = None,
    ) -> httpx.Response:  # fmt: skip
        """`tokens_revoked` for this workspace (by default: the bot token)."""
        return await self.event(self.workspace.tokens_revoked(bot=bot, oauth=oauth), to=to)

    async def interaction(
        self, payload: dict[str, Any], *, to: MotionBot | None = None
    ) -> httpx.Response:
        """Any interactivity payload, form-encoded and signed as Slack sends it."""
        return await self.harness.post(payloads.form_body(payload), FORM, to=to)

    async def action(
        self, action_id: str, value: str, *, channel: str = "C0PUBLIC", message_ts: str = "",
        user: str = "U0ALICE", to: MotionBot | None = None,
    ) -> httpx.Response:  # fmt: skip
        """A button pressed on a message in this workspace."""
        payload = self.workspace.button(
            action_id, value, channel=channel, message_ts=message_ts, user=user
        )
        return await self.interaction(payload, to=to)

    async def home_action(self, action_id: str, *, user: str = "U0ALICE") -> httpx.Response:
        """A button on `user`'s Home tab in this workspace."""
        return await self.interaction(self.workspace.home_button(action_id, user=user))

    async def shortcut(self, callback_id: str, *, user: str = "U0ALICE") -> httpx.Response:
        return await self.interaction(self.workspace.shortcut(callback_id, user=user))

    async def submit_view(
        self, view: dict[str, Any], answers: dict[str, str | None], *, user: str = "U0ALICE"
    ) -> httpx.Response:
        """Submit a modal opened in this workspace (`workspace.view(id)`) with `answers`."""
        return await self.interaction(self.workspace.view_submission(view, answers, user=user))

    async def home_opened(self, *, user: str = "U0ALICE", tab: str = "home") -> httpx.Response:
        """`app_home_opened` for `user` in this workspace."""
        return await self.event(self.workspace.home_opened(user=user, tab=tab))
