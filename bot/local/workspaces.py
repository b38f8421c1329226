"""A workspace as the stand-in serves it, and the set of workspaces one stand-in serves.

`HostedWorkspace` is a `Workspace` reachable over the stand-in's HTTP server: its bot token,
its response_urls, the app's external uploads and workflow steps in it, and what Slack sends
the app about it (slash commands, events, interactions, uninstall events), signed fields and
all, with its own team id and, in Enterprise Grid, its enterprise. The stand-in itself is the
default workspace (`bot.local.server.SlackStandIn`); `SlackStandIn.add_workspace` adds others,
`SiblingWorkspace`s, which share its server, its lock and its checks (Block Kit, response_url
bodies). `Workspaces` finds a workspace by team id, by enterprise, or by what a request names.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from bot.local import payloads
from bot.local.functions import FunctionMethods
from bot.local.payloads import Enterprise
from bot.local.uploads import ExternalUploads, UploadedFile
from bot.local.workspace import Workspace

RESPONSE_URL_USES = 5
STEP_CALLBACK_ID = "make_motion_video"  # manifest.yml's custom step
STEP_OUTPUTS = {STEP_CALLBACK_ID: ["video_url", "thread_permalink", "job_id"]}
DEFAULT_TEAM_NAME = "Sandbox"


class _ResponseUrl:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.uses = 0


class HostedWorkspace(Workspace):
    """A workspace behind the stand-in's server (see the module docstring).

    `bot_token` is the app's token here, as if the app were installed already (OAuth issues
    others, `bot.local.oauth`); `installed` is False once the app is uninstalled, and that token
    stops working. `org_install`: the app is installed org-wide in this workspace's enterprise
    (payloads then say so).
    """

    def __init__(
        self,
        *,
        root_url: Callable[[], str],
        bot_token: str,
        team_id: str,
        name: str = DEFAULT_TEAM_NAME,
        enterprise_id: str | None = None,
        enterprise_name: str | None = None,
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        app_id: str = "A0APP",
        populate: bool = True,
        lock: threading.RLock | None = None,
        url: str | None = None,
    ) -> None:
        """`root_url`: where the stand-in serves, asked each time an address is handed out;
        `url`: the workspace's own address, as `auth.test` gives it."""
        super().__init__(
            team_id=team_id, bot_user_id=bot_user_id, bot_id=bot_id, app_id=app_id,
            populate=populate, lock=lock,
        )  # fmt: skip
        self.bot_token = bot_token
        self.name = name
        self.url = url or f"https://{team_id.lower()}.slack.com/"
        self.enterprise_id = enterprise_id
        self.enterprise_name = enterprise_name or (enterprise_id and f"{enterprise_id} org")
        self.installed = True
        self.org_install = False
        self._root_url = root_url
        self.uploads = ExternalUploads(self.model, self.file_methods, root_url)
        self.add_methods(self.uploads.methods())
        self.functions = FunctionMethods(self.model, STEP_OUTPUTS)
        self.add_methods(self.functions.methods())
        self._responses: list[dict[str, Any]] = []
        self._response_urls: dict[str, _ResponseUrl] = {}

    @property
    def root_url(self) -> str:
        return self._root_url()

    @property
    def file_host_url(self) -> str:
        """Private download links are served by the stand-in, as files.slack.com serves them."""
        return self.root_url

    @property
    def enterprise(self) -> Enterprise | None:
        """The Enterprise Grid org this workspace belongs to, as payloads name it."""
        if self.enterprise_id is None:
            return None
        name = self.enterprise_name or self.enterprise_id
        return Enterprise(self.enterprise_id, name, org_install=self.org_install)

    def auth_test(self, *, org_wide: bool = False) -> dict[str, Any]:
        """What `auth.test` answers for the app's token here (`org_wide`: an org-wide token,
        which names the enterprise and no team)."""
        with self.lock:
            answer: dict[str, Any] = {
                "url": self.url,
                "team": self.name,
                "user": self.model.users[self.bot_user_id]["name"],
                "team_id": self.team_id,
                "user_id": self.bot_user_id,
                "bot_id": self.bot_id,
            }
        if self.enterprise_id is not None:
            answer["enterprise_id"] = self.enterprise_id
        if org_wide:
            answer.update(team=self.enterprise_name, team_id=None)
        answer["is_enterprise_install"] = org_wide
        return answer

    # -- the app's uploads ---------------------------------------------------------------------

    @property
    def files(self) -> dict[str, UploadedFile]:
        """The app's external uploads by file id, as the stand-in keeps them."""
        return self.uploads.uploaded

    def fail_next_upload(self, status: int = 500, *, times: int = 1) -> None:
        """The next `times` POSTs to an upload URL answer `status` (0: drop the connection)."""
        self.uploads.fail_next_upload(status, times=times)

    def shared_files(self, channel: str, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """The file_share messages in a channel (or one thread of it), oldest first."""
        return self.uploads.shared_files(channel, thread_ts)

    # -- response_url --------------------------------------------------------------------------

    def response_url(self, tag: str = "") -> str:
        """A fresh ``response_url`` on the stand-in, as Slack puts in a command payload."""
        with self.lock:
            number = len(self._response_urls) + 1
            url = f"{self.root_url}/commands/{self.team_id}/{number}/{secrets.token_urlsafe(12)}"
            self._response_urls[url] = _ResponseUrl(tag)
            return url

    @property
    def responses(self) -> list[dict[str, Any]]:
        """Each accepted JSON body sent to a ``response_url``, plus its ``"url"`` and ``"tag"``."""
        with self.lock:
            return copy.deepcopy(self._responses)

    def response_problem(self, payload: dict[str, Any]) -> str | None:
        """Why Slack would refuse a response_url body (``no_text``, ``invalid_blocks``), if so."""
        if not (
            payload.get("text")
            or payload.get("blocks")
            or payload.get("attachments")
            or payload.get("delete_original")
        ):
            return "no_text"
        if "blocks" in payload and self.block_problems(payload["blocks"]):
            return "invalid_blocks"
        return None

    def serve_response_url(self, verb: str, url: str, body: bytes) -> tuple[int, str]:
        """(status, text) for a request to one of this workspace's response_urls."""
        if verb != "POST":
            return 405, "invalid_method"
        with self.lock:
            entry = self._response_urls.get(url)
            if entry is None:
                return 404, "no_service"
            if entry.uses >= RESPONSE_URL_USES:
                return 404, "used_url"
            try:
                payload = json.loads(body or b"null")
            except ValueError:
                return 400, "invalid_payload"
            if not isinstance(payload, dict):
                return 400, "invalid_payload"
            problem = self.response_problem(payload)
            if problem is not None:
                return 400, problem
            entry.uses += 1
            self._responses.append({**payload, "url": url, "tag": entry.tag})
            self.model.tell("response", None, payload)
            return 200, "ok"

    # -- what Slack sends to the app ----------------------------------------------------------

    def slash_command(self, command: str, text: str, *, channel: str, user: str) -> dict[str, str]:
        """Every field of a slash command's form, ``response_url`` (on this server) included."""
        with self.lock:
            channel_name = self.model.channels[channel].name
            user_name = self.model.users[user]["name"]
        return payloads.slash_command(
            command=command, text=text, team_id=self.team_id, channel_id=channel,
            channel_name=channel_name, user_id=user, user_name=user_name, app_id=self.app_id,
            response_url=self.response_url(f"{command}-{user}"),
            trigger_id=self.issue_trigger(user), enterprise=self.enterprise,
        )  # fmt: skip

    def thread_reply(self, channel: str, text: str, *, user: str, thread_ts: str) -> dict[str, Any]:
        """Post a person's reply in a thread; returns the ``message`` event Slack delivers."""
        return self._human_message(channel, text, user=user, thread_ts=thread_ts)

    def file_reply(
        self, channel: str, text: str, *, user: str, thread_ts: str, file_ids: list[str]
    ) -> dict[str, Any]:
        """A person's thread reply with files; returns the `message` event (subtype
        `file_share`, the files in Slack's shape) Slack delivers."""
        event = self.thread_reply(channel, text, user=user, thread_ts=thread_ts)
        return self._with_files(channel, event, file_ids)

    def mention(
        self, channel: str, text: str, *, user: str, thread_ts: str | None = None,
        file_ids: list[str] | tuple[str, ...] = (),
    ) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
        """A person's message that @mentions the app (`text` holds `<@BOT>`): the
        `app_mention` event and its `message` twin, both of which Slack delivers."""
        message = self._human_message(channel, text, user=user, thread_ts=thread_ts)
        if file_ids:
            message = self._with_files(channel, message, list(file_ids))
        mention = {k: v for k, v in message.items() if k not in ("channel_type", "subtype")}
        mention["type"] = "app_mention"
        return mention, message

    def direct_message(
        self, text: str, *, user: str, file_ids: list[str] | tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """A person's message to the app in its Messages tab: the `message` event (channel_type
        "im"; subtype `file_share` with files) Slack delivers for it."""
        channel = self.model.app_dm(user)
        ts = self.add_human_message(channel, text, user=user)
        with self.lock:
            stored = self.model.channel_messages[channel][ts]
            event = payloads.message_event(
                stored, channel=channel, team_id=self.team_id, thread_ts=None, channel_type="im"
            )
        return self._with_files(channel, event, list(file_ids)) if file_ids else event

    def dm_reply(self, text: str, *, user: str, thread_ts: str) -> dict[str, Any]:
        """A person's reply in a thread of their DM with the app (`message.im`)."""
        channel = self.model.app_dm(user)
        return {**self.thread_reply(channel, text, user=user, thread_ts=thread_ts),
                "channel_type": "im"}  # fmt: skip

    def workflow_step(
        self, inputs: dict[str, Any], *, callback_id: str = STEP_CALLBACK_ID
    ) -> dict[str, Any]:
        """A workflow reaches the app's step with `inputs`: the `function_executed` event
        Slack sends (see `bot.local.functions`)."""
        return self.functions.start(callback_id, inputs)

    def event_callback(
        self, event: dict[str, Any], *, event_id: str | None = None
    ) -> dict[str, Any]:
        """The Events API envelope around ``event``, as Slack POSTs it to the app."""
        return payloads.event_callback(
            event, team_id=self.team_id, app_id=self.app_id, bot_user_id=self.bot_user_id,
            event_id=event_id or f"Ev{secrets.token_hex(5).upper()}", enterprise=self.enterprise,
        )  # fmt: skip

    def app_uninstalled(self) -> dict[str, Any]:
        """The `app_uninstalled` envelope Slack sends when the app is removed from here."""
        return self.event_callback(payloads.app_uninstalled())

    def tokens_revoked(
        self, *, bot: list[str] | None = None, oauth: list[str] | tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """The `tokens_revoked` envelope: by default the bot token went (`bot`: the bot user);
        `oauth` lists the users whose user tokens went."""
        revoked = payloads.tokens_revoked(
            bot=[self.bot_user_id] if bot is None else bot, oauth=list(oauth)
        )
        return self.event_callback(revoked)

    def button(
        self, action_id: str, value: str, *, channel: str = "C0PUBLIC", message_ts: str = "",
        user: str = "U0ALICE",
    ) -> dict[str, Any]:  # fmt: skip
        """The `block_actions` payload of a button pressed on a message here."""
        with self.lock:
            channel_name = self.model.channels[channel].name
            user_name = self.model.users[user]["name"]
        return payloads.block_actions(
            team_id=self.team_id, user_id=user, user_name=user_name, app_id=self.app_id,
            container={"type": "message", "message_ts": message_ts, "channel_id": channel},
            trigger_id=self.issue_trigger(user),
            source={
                "channel": {"id": channel, "name": channel_name},
                "message": {"ts": message_ts, "type": "message"},
                "response_url": self.response_url(f"action-{user}"),
            },
            actions=[payloads.button(action_id, block_id="b1", value=value)],
            enterprise=self.enterprise,
        )  # fmt: skip

    def home_button(self, action_id: str, *, user: str = "U0ALICE") -> dict[str, Any]:
        """The `block_actions` payload of a button on `user`'s Home tab here."""
        home = self.home(user) or {}
        return payloads.block_actions(
            team_id=self.team_id, user_id=user, user_name=self._user_name(user),
            app_id=self.app_id, container={"type": "view", "view_id": home.get("id", "")},
            trigger_id=self.issue_trigger(user), source={"view": home},
            actions=[payloads.button(action_id, block_id="home_actions")],
            enterprise=self.enterprise,
        )  # fmt: skip

    def shortcut(self, callback_id: str, *, user: str = "U0ALICE") -> dict[str, Any]:
        """A global shortcut (the lightning menu) run by `user` here."""
        return payloads.shortcut(
            callback_id, team_id=self.team_id, user_id=user, user_name=self._user_name(user),
            trigger_id=self.issue_trigger(user), enterprise=self.enterprise,
        )  # fmt: skip

    def view_submission(
        self, view: dict[str, Any], answers: dict[str, str | None], *, user: str = "U0ALICE"
    ) -> dict[str, Any]:
        """The `view_submission` of a modal opened here (`view(id)`), with `answers` by
        block_id, as Slack fills its state (and a response_url per picked conversation whose
        input asks for one)."""
        values = payloads.view_state(view, answers, self.file_object)
        response_urls = [
            {
                "block_id": block["block_id"],
                "action_id": block["element"]["action_id"],
                "channel_id": answers[block["block_id"]],
                "response_url": self.response_url(f"form-{user}"),
            }
            for block in view.get("blocks") or []
            if block.get("type") == "input"
            and block["element"].get("response_url_enabled")
            and answers.get(block["block_id"])
        ]
        return payloads.view_submission(
            {**view, "state": {"values": values}}, team_id=self.team_id, user_id=user,
            user_name=self._user_name(user), app_id=self.app_id,
            trigger_id=self.issue_trigger(user), response_urls=response_urls,
            enterprise=self.enterprise,
        )  # fmt: skip

    def home_opened(self, *, user: str = "U0ALICE", tab: str = "home") -> dict[str, Any]:
        """The `app_home_opened` envelope, as Slack sends it each time `user` opens the tab."""
        return self.event_callback(payloads.app_home_opened(user, tab=tab, view=self.home(user)))

    def _user_name(self, user: str) -> str:
        with self.lock:
            return str(self.model.users[user]["name"])

    def _human_message(
        self, channel: str, text: str, *, user: str, thread_ts: str | None
    ) -> dict[str, Any]:
        """Store a person's message and return the `message` event Slack delivers for it."""
        ts = self.add_human_message(channel, text, user=user, thread_ts=thread_ts)
        with self.lock:
            stored = self.model.channel_messages[channel][ts]
            return payloads.message_event(
                stored, channel=channel, team_id=self.team_id, thread_ts=thread_ts
            )

    def _with_files(
        self, channel: str, event: dict[str, Any], file_ids: list[str]
    ) -> dict[str, Any]:
        with self.lock:
            for file_id in file_ids:  # shared here now, so the app may read it
                self.file_methods.share_in(file_id, channel)
            files = [self.file_object(file_id) for file_id in file_ids]
            stored = self.model.channel_messages[channel][event["ts"]]
            stored.update(subtype="file_share", upload=True, files=copy.deepcopy(files))
        return {**event, "subtype": "file_share", "upload": True, "files": files}


class Checks(Protocol):
    """What a sibling workspace borrows from the stand-in: Slack's checks on what the app
    sends (a test double's are stricter than the stand-in's)."""

    def block_problems(self, blocks: list[Any]) -> list[str]: ...

    def view_block_problems(self, blocks: list[Any]) -> list[str]: ...

    def response_problem(self, payload: dict[str, Any]) -> str | None: ...


class SiblingWorkspace(HostedWorkspace):
    """A workspace added to a running stand-in: its checks are the stand-in's."""

    def __init__(self, checks: Checks, **hosted: Any) -> None:
        super().__init__(**hosted)
        self.checks = checks

    def block_problems(self, blocks: list[Any]) -> list[str]:
        return self.checks.block_problems(blocks)

    def view_block_problems(self, blocks: list[Any]) -> list[str]:
        return self.checks.view_block_problems(blocks)

    def response_problem(self, payload: dict[str, Any]) -> str | None:
        return self.checks.response_problem(payload)


class Workspaces:
    """The workspaces one stand-in serves, by team id (the default one first)."""

    def __init__(self, default: HostedWorkspace) -> None:
        self.default = default
        self._by_team: dict[str, HostedWorkspace] = {default.team_id: default}

    def add(self, workspace: HostedWorkspace) -> None:
        if workspace.team_id in self._by_team:
            raise ValueError(f"the stand-in already has a workspace {workspace.team_id}")
        self._by_team[workspace.team_id] = workspace

    def __iter__(self) -> Iterator[HostedWorkspace]:
        return iter(list(self._by_team.values()))

    def get(self, team_id: str | None) -> HostedWorkspace | None:
        return self._by_team.get(team_id) if team_id is not None else None

    def __getitem__(self, team_id: str) -> HostedWorkspace:
        return self._by_team[team_id]

    def in_enterprise(self, enterprise_id: str) -> list[HostedWorkspace]:
        return [w for w in self._by_team.values() if w.enterprise_id == enterprise_id]

    def with_bot_token(self, token: str) -> HostedWorkspace | None:
        """The workspace whose installed app has this (pre-issued) bot token, or whose running
        workflow step has it."""
        for workspace in self._by_team.values():
            if workspace.installed and token == workspace.bot_token:
                return workspace
        for workspace in self._by_team.values():
            if workspace.functions.accepts(token):
                return workspace
        return None

    def for_org_call(self, enterprise_id: str, params: dict[str, Any]) -> HostedWorkspace | None:
        """Which of the enterprise's workspaces an org-wide token's call is about: the one
        named by `team_id`, else the one holding the channel, user or trigger it names, else
        the first (Slack resolves an org token's call by what it names)."""
        members = self.in_enterprise(enterprise_id)
        named = params.get("team_id")
        for workspace in members:
            if workspace.team_id == named:
                return workspace
        channel = params.get("channel")
        user = params.get("user") or params.get("user_id")
        trigger = params.get("trigger_id")
        for workspace in members:
            with workspace.lock:
                if (
                    channel in workspace.model.channels
                    or user in workspace.model.users
                    or trigger in workspace.view_methods.triggers
                ):
                    return workspace
        return members[0] if members else None
