"""The app under test and what Slack sends it: `Harness`, the credentials the doubles expect, and
`until`, for what the app does in the background. Shared by the fixtures (tests/conftest.py),
the end-to-end helpers and the soak (tests/support/soak.py). The payloads themselves are built
by `bot.local.payloads`, as the stand-in builds them for `python -m bot try`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from bot.app import MotionBot
from bot.config import Settings
from bot.local import payloads
from bot.local.payloads import FORM, JSON, signed_headers
from bot.sandbox import JobPlan
from tests.support.motion import ScriptedSandbox
from tests.support.slack import SlackDouble

SIGNING_SECRET = "test-signing-secret-1234"
BOT_TOKEN = "xoxb-test-token-123456"
MOTION_KEY = "motion_test_key_abcdef"
ROOT_DIR = Path(__file__).resolve().parents[2]
FAST_PLAN = JobPlan(queued_s=0.05, created_s=0.05, running_s=0.3, render_s=0.2)
# Who sends what: the tests' workspace, with every payload from alice in #general.
TOKEN = "legacy-verification-token"
TEAM, APP, BOT_USER, USER_NAME, CHANNEL_NAME = "T0001", "A0APP", "U0BOT", "alice", "general"
EVENT_CONTEXT = "4-eyJldCI6Im1lc3NhZ2UiLCJ0aWQiOiJUMDAwMSJ9"


class Harness:
    """Starts app instances and sends them what Slack would send."""

    def __init__(self, env: dict[str, str], slack: SlackDouble, sandbox: ScriptedSandbox) -> None:
        self.env = env
        self.slack = slack
        self.sandbox = sandbox
        self.bots: list[MotionBot] = []
        self.http = httpx.AsyncClient(timeout=10)
        self._event_seq = 0

    async def start(self, **overrides: str) -> MotionBot:
        settings = Settings.from_env({**self.env, **overrides})
        bot = MotionBot.build(settings)
        await bot.start()
        self.bots.append(bot)
        return bot

    @property
    def bot(self) -> MotionBot:
        return self.bots[-1]

    async def stop(self, bot: MotionBot | None = None) -> None:
        bot = bot or self.bot
        if bot in self.bots:
            self.bots.remove(bot)
            await bot.stop(timeout=5)

    async def aclose(self) -> None:
        for bot in list(self.bots):
            await self.stop(bot)
        await self.http.aclose()

    # ------------------------------------------------------------ what Slack sends

    async def post(
        self,
        body: str,
        content_type: str,
        *,
        headers: dict[str, str] | None = None,
        timestamp: int | None = None,
        secret: str = SIGNING_SECRET,
        to: MotionBot | None = None,
    ) -> httpx.Response:
        all_headers = {**signed_headers(body, secret, content_type, timestamp), **(headers or {})}
        url = f"http://127.0.0.1:{to.port}/slack/events" if to else self.events_url
        return await self.http.post(url, content=body, headers=all_headers)

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.bot.port}/slack/events"

    def command_fields(
        self, text: str, *, channel: str = "C0PUBLIC", user: str = "U0ALICE"
    ) -> dict[str, str]:
        """Every field Slack sends with a slash command (form-encoded over HTTP, JSON in Socket
        Mode), `response_url` included."""
        return payloads.slash_command(
            command="/motion",
            text=text,
            team_id=TEAM,
            channel_id=channel,
            channel_name=CHANNEL_NAME,
            user_id=user,
            user_name=USER_NAME,
            app_id=APP,
            response_url=self.slack.response_url(f"cmd-{user}"),
            trigger_id=self.slack.issue_trigger(user),
            token=TOKEN,
        )

    async def command(
        self, text: str, *, channel: str = "C0PUBLIC", user: str = "U0ALICE", **kwargs: Any
    ) -> httpx.Response:
        body = urlencode(self.command_fields(text, channel=channel, user=user))
        return await self.post(body, FORM, **kwargs)

    def envelope(self, event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
        self._event_seq += 1
        return payloads.event_callback(
            event,
            team_id=TEAM,
            app_id=APP,
            bot_user_id=BOT_USER,
            event_id=event_id or f"Ev{self._event_seq:08d}",
            token=TOKEN,
            event_context=EVENT_CONTEXT,
        )

    async def event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry: int | None = None,
        to: MotionBot | None = None,
    ) -> httpx.Response:  # fmt: skip
        headers = {}
        if retry:
            headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        body = json.dumps(self.envelope(event, event_id=event_id))
        return await self.post(body, JSON, headers=headers, to=to)

    async def workflow_step(
        self, inputs: dict[str, Any], *, to: MotionBot | None = None
    ) -> tuple[dict[str, Any], httpx.Response]:
        """A workflow reaches the app's step "Make a Motion video" with `inputs`: the
        `function_executed` event (the stand-in keeps the execution) and the app's answer."""
        event = self.slack.workflow_step(inputs)
        return event, await self.event(event, to=to)

    def step_inputs(self, prompt: str = "a fox in the snow", **more: str) -> dict[str, Any]:
        """The step's inputs as Workflow Builder fills them (channel and requester by id)."""
        return {"prompt": prompt, "channel": "C0PUBLIC", "requester": "U0ALICE", **more}

    def reply_event(
        self,
        thread_ts: str,
        text: str,
        *,
        channel: str = "C0PUBLIC",
        user: str = "U0ALICE",
        **extra: Any,
    ) -> dict[str, Any]:
        """A human reply as Slack delivers it: the message exists in the double too."""
        event = self.slack.thread_reply(channel, text, user=user, thread_ts=thread_ts)
        return {**event, **extra}

    async def action(
        self,
        action_id: str,
        value: str,
        *,
        channel: str = "C0PUBLIC",
        message_ts: str = "",
        user: str = "U0ALICE",
        to: MotionBot | None = None,
    ) -> httpx.Response:
        """A button pressed on a message (`to`: the instance Slack delivers it to)."""
        payload = payloads.block_actions(
            team_id=TEAM,
            user_id=user,
            user_name=USER_NAME,
            app_id=APP,
            container={"type": "message", "message_ts": message_ts, "channel_id": channel},
            trigger_id=self.slack.issue_trigger(user),
            source={
                "channel": {"id": channel, "name": CHANNEL_NAME},
                "message": {"ts": message_ts, "type": "message"},
                "response_url": self.slack.response_url(f"action-{user}"),
            },
            actions=[payloads.button(action_id, block_id="b1", value=value)],
            token=TOKEN,
        )
        body = payloads.form_body(payload)
        if to is None:  # (the soak's SlackSide has its own `post`, to its one app)
            return await self.post(body, FORM)
        return await self.post(body, FORM, to=to)

    async def interaction(self, payload: dict[str, Any]) -> httpx.Response:
        """Any interactivity payload, form-encoded and signed as Slack sends it."""
        return await self.post(payloads.form_body(payload), FORM)

    async def shortcut(
        self, callback_id: str, *, user: str = "U0ALICE", trigger_id: str | None = None
    ) -> httpx.Response:
        """A global shortcut (the lightning menu): no channel, a fresh trigger_id."""
        return await self.interaction(
            payloads.shortcut(
                callback_id,
                team_id=TEAM,
                user_id=user,
                user_name=USER_NAME,
                trigger_id=trigger_id or self.slack.issue_trigger(user),
                token=TOKEN,
            )
        )

    async def home_action(self, action_id: str, *, user: str = "U0ALICE") -> httpx.Response:
        """A button on the Home tab: the container is the view, there is no response_url."""
        home = self.slack.home(user) or {}
        return await self.interaction(
            payloads.block_actions(
                team_id=TEAM,
                user_id=user,
                user_name=USER_NAME,
                app_id=APP,
                container={"type": "view", "view_id": home.get("id", "")},
                trigger_id=self.slack.issue_trigger(user),
                source={"view": home},
                actions=[payloads.button(action_id, block_id="home_actions")],
                token=TOKEN,
            )
        )

    @staticmethod
    def view_state(
        view: dict[str, Any],
        answers: dict[str, str | None],
        file_object: Callable[[str], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """`view.state.values` as Slack builds it from the inputs: every input block, each
        element's state by its type (an untouched field has no value)."""
        return payloads.view_state(view, answers, file_object)

    async def submit_view(
        self, view: dict[str, Any], answers: dict[str, str | None], *, user: str = "U0ALICE"
    ) -> httpx.Response:
        """Submit an opened modal (`slack.view(id)`) with `answers` by block_id, as a
        `view_submission`; sending the same view twice is a replayed submission."""
        values = self.view_state(view, answers, self.slack.file_object)
        submitted = {**view, "state": {"values": values}}
        response_urls = [  # Slack adds one per picked conversation whose input asks for it
            {
                "block_id": block["block_id"],
                "action_id": block["element"]["action_id"],
                "channel_id": answers[block["block_id"]],
                "response_url": self.slack.response_url(f"form-{user}"),
            }
            for block in view.get("blocks") or []
            if block.get("type") == "input"
            and block["element"].get("response_url_enabled")
            and answers.get(block["block_id"])
        ]
        return await self.interaction(
            payloads.view_submission(
                submitted,
                team_id=TEAM,
                user_id=user,
                user_name=USER_NAME,
                app_id=APP,
                trigger_id=self.slack.issue_trigger(user),
                response_urls=response_urls,
                token=TOKEN,
            )
        )

    async def home_opened(self, *, user: str = "U0ALICE", tab: str = "home") -> httpx.Response:
        """`app_home_opened`, as Slack sends it each time someone opens the app's tab."""
        event = payloads.app_home_opened(user, tab=tab, view=self.slack.home(user))
        return await self.event(event)

    # ------------------------------------------------------------ what the app did

    def cards(self, channel: str = "C0PUBLIC") -> list[dict[str, Any]]:
        return [
            m
            for m in self.slack.messages(channel)
            if not m.get("thread_ts") or m.get("thread_ts") == m["ts"]
        ]

    def thread(self, thread_ts: str, channel: str = "C0PUBLIC") -> list[dict[str, Any]]:
        return [m for m in self.slack.messages(channel, thread_ts) if m["ts"] != thread_ts]

    def bot_replies(self, thread_ts: str, channel: str = "C0PUBLIC") -> list[dict[str, Any]]:
        return [m for m in self.thread(thread_ts, channel) if m.get("bot_id")]

    def posts(self, method: str = "chat.postMessage") -> list[Any]:
        return [c for c in self.slack.calls(method) if c.ok]


async def until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Wait for something the app does in the background; fail with what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)
