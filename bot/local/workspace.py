"""One Slack workspace in memory, answering the Web API methods this app uses.

Users, channels (membership decides ``not_in_channel`` versus ``channel_not_found``), messages
with threads, broadcasts, metadata and reactions, and the limits Slack enforces
(``chat.update`` text 4,000 characters, ``chat.postMessage`` truncated at 40,000). The HTTP side
is `bot.local.server`; `python -m bot try` runs the app against the two, and the tests extend
them (`tests/support/slack.py`).

`Workspace` owns the model (`bot.local.model`) and the objects that answer the rest of the Web
API over it (views, files); it answers the chat, reaction, conversation and user methods itself,
and is how tests and `try` script the workspace and look at it. Methods run with `lock` held.
Observers (`observe`) hear of every change to what a person would see, in order, on the thread
that made it, with the lock held: hand the change to a queue.
"""

from __future__ import annotations

import base64
import copy
import threading
from collections.abc import Callable, Iterable
from typing import Any

from bot.local.files import FileMethods
from bot.local.model import (
    POST_TEXT_LIMIT,
    TS_STEP_MICROS,
    UPDATE_TEXT_LIMIT,
    WORKSPACE_URL,
    Change,
    Channel,
    SlackError,
    WorkspaceModel,
    rich_text_for,
    ts_key,
)
from bot.local.views import ViewMethods

__all__ = [
    "POST_TEXT_LIMIT", "TS_STEP_MICROS", "UPDATE_TEXT_LIMIT", "WORKSPACE_URL", "Change",
    "Channel", "Method", "SlackError", "Workspace", "rich_text_for",
]  # fmt: skip

Method = Callable[[dict[str, Any]], dict[str, Any]]
"""One Web API method: its answer without ``ok``, or `SlackError`."""


class Workspace:
    """The workspace with the Web API methods the app uses (``call``), without any transport.

    A subclass may override `block_problems` and `view_block_problems` (Slack's Block Kit
    rules) and `file_host_url` (where downloads are served).
    """

    def __init__(
        self,
        *,
        team_id: str = "T0001",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        app_id: str = "A0APP",
        populate: bool = True,
        lock: threading.RLock | None = None,
    ) -> None:
        """`populate`: the default users (alice, bob, carol) and channels the tests rely on;
        `lock`: shared with the other workspaces of one stand-in (see `WorkspaceModel`)."""
        self.model = WorkspaceModel(
            team_id=team_id, bot_user_id=bot_user_id, bot_id=bot_id, app_id=app_id,
            populate=populate, lock=lock,
        )  # fmt: skip
        self.view_methods = ViewMethods(self.model, self.view_block_problems)
        self.file_methods = FileMethods(self.model, lambda: self.file_host_url)
        self._methods: dict[str, Method] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "conversations.join": self._conversations_join,
            "conversations.info": self._conversations_info,
            "conversations.replies": self._conversations_replies,
            "conversations.history": self._conversations_history,
            "users.info": self._users_info,
            **self.view_methods.methods(),
            **self.file_methods.methods(),
        }

    # -- the Web API ---------------------------------------------------------------------------

    def add_methods(self, methods: dict[str, Method]) -> None:
        """Answer these Web API methods too (a name already answered is taken over)."""
        with self.lock:
            self._methods.update(methods)

    def knows(self, method: str) -> bool:
        return method in self._methods

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run one Web API method: its answer without ``ok``, or `SlackError`."""
        with self.lock:
            return self._methods[method](params)

    def block_problems(self, blocks: list[Any]) -> list[str]:
        """Why Slack would refuse these blocks (none here: a subclass may validate them)."""
        return []

    def view_block_problems(self, blocks: list[Any]) -> list[str]:
        """Why Slack would refuse a view's blocks (none here: a subclass may validate them)."""
        return []

    @property
    def file_host_url(self) -> str:
        """Where downloads are served (a subclass serving them over HTTP says its own)."""
        return "https://files.slack.com"

    def check_content(self, params: dict[str, Any]) -> None:
        """Slack's checks on what a message says: no_text, invalid_blocks, metadata shape."""
        blocks = params.get("blocks")
        attachments = params.get("attachments")
        if isinstance(blocks, str):
            raise SlackError("invalid_blocks_format")
        if isinstance(attachments, str) or (
            attachments is not None and not isinstance(attachments, list)
        ):
            raise SlackError("invalid_attachments")
        if not params.get("text") and not blocks and not attachments:
            raise SlackError("no_text")
        if blocks is not None:
            errors = self.block_problems(blocks)
            if errors:
                raise SlackError(
                    "invalid_blocks",
                    errors=errors,
                    response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
                )
        _check_metadata(params.get("metadata"))

    # -- the workspace's identity and lock -----------------------------------------------------

    @property
    def lock(self) -> threading.RLock:
        """The one lock over the whole workspace; every method here takes it."""
        return self.model.lock

    @property
    def team_id(self) -> str:
        return self.model.team_id

    @property
    def bot_user_id(self) -> str:
        return self.model.bot_user_id

    @property
    def bot_id(self) -> str:
        return self.model.bot_id

    @property
    def app_id(self) -> str:
        return self.model.app_id

    # -- scripting (any thread) ----------------------------------------------------------------

    def observe(self, callback: Callable[[Change], None]) -> None:
        """Call ``callback(change)`` for every later change (see the module docstring)."""
        self.model.observe(callback)

    def add_user(
        self,
        user_id: str,
        *,
        name: str,
        real_name: str | None = None,
        display_name: str | None = None,
        is_bot: bool = False,
        admin: bool = False,
        owner: bool = False,
        primary_owner: bool = False,
    ) -> None:
        """A person (or bot); `admin`, `owner`, `primary_owner` as `users.info` reports them."""
        self.model.add_user(
            user_id, name=name, real_name=real_name, display_name=display_name, is_bot=is_bot,
            admin=admin, owner=owner, primary_owner=primary_owner,
        )  # fmt: skip

    def add_channel(
        self,
        channel_id: str,
        *,
        private: bool = False,
        bot_member: bool = True,
        name: str | None = None,
        im: bool = False,
        archived: bool = False,
        members: Iterable[str] | None = None,
    ) -> None:
        """Add (or replace) a conversation (see `WorkspaceModel.add_channel`)."""
        self.model.add_channel(
            channel_id, private=private, bot_member=bot_member, name=name, im=im,
            archived=archived, members=members,
        )  # fmt: skip

    def set_bot_member(self, channel_id: str, member: bool) -> None:
        """Invite the bot to a channel or remove it, as ``/invite`` or a kick would."""
        self.model.set_bot_member(channel_id, member)

    def add_human_message(
        self, channel: str, text: str, *, user: str = "U0ALICE", thread_ts: str | None = None
    ) -> str:
        """Store a message as if ``user`` wrote it, so events can point at it; returns its ts."""
        return self.model.add_human_message(channel, text, user=user, thread_ts=thread_ts)

    def issue_trigger(self, user: str = "") -> str:
        """A fresh trigger_id, as Slack puts in `user`'s command, shortcut or button payload."""
        return self.view_methods.issue_trigger(user)

    def add_file(
        self,
        *,
        title: str,
        mimetype: str,
        content: bytes = b"",
        size: int | None = None,
        name: str | None = None,
        user: str = "U0ALICE",
        channel: str | None = "C0PUBLIC",
        for_app: bool = False,
        redirect_to: str | None = None,
        file_id: str | None = None,
    ) -> str:
        """A file a person uploaded (shared in `channel`, or only through the app's form when
        `for_app`); returns its id."""
        return self.file_methods.add_file(
            title=title, mimetype=mimetype, content=content, size=size, name=name, user=user,
            channel=channel, for_app=for_app, redirect_to=redirect_to, file_id=file_id,
        )  # fmt: skip

    def delete_file(self, file_id: str) -> None:
        """The person deleted the file (the message that shared it may still be delivered)."""
        self.file_methods.delete_file(file_id)

    def cut_download(self, file_id: str, *, after: int) -> None:
        """Downloads of the file announce its whole length, send `after` bytes and hang up."""
        self.file_methods.cut_download(file_id, after=after)

    @property
    def files_read_scope(self) -> bool:
        """False: files.info answers missing_scope (the app was installed without files:read)."""
        return self.file_methods.files_read_scope

    @files_read_scope.setter
    def files_read_scope(self, granted: bool) -> None:
        self.file_methods.files_read_scope = granted

    @property
    def compress_downloads(self) -> bool:
        """True: a download is gzip-encoded when the client accepts it, as a CDN may do."""
        return self.file_methods.compress_downloads

    @compress_downloads.setter
    def compress_downloads(self, compress: bool) -> None:
        self.file_methods.compress_downloads = compress

    # -- inspection (any thread) ---------------------------------------------------------------

    def messages(
        self, channel: str | None = None, thread_ts: str | None = None
    ) -> list[dict[str, Any]]:
        """Current messages (after updates), in ts order, each with a ``"channel"`` key added;
        with ``thread_ts``, only the replies in that thread, not its parent."""
        return self.model.messages(channel, thread_ts)

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        return self.model.message(channel, ts)

    def reactions(self, channel: str, ts: str) -> list[str]:
        """Names of the reactions on a message (by anyone), in the order first added."""
        return self.model.reactions(channel, ts)

    def view(self, view_id: str) -> dict[str, Any] | None:
        """A view opened, pushed, updated or published, as it is now."""
        return self.view_methods.view(view_id)

    def views(self, user: str | None = None) -> list[dict[str, Any]]:
        """Every modal opened or pushed (oldest first), for one user when given."""
        return self.view_methods.views(user)

    def home(self, user: str) -> dict[str, Any] | None:
        """The Home tab `user` sees, as last published."""
        return self.view_methods.home(user)

    def file_object(self, file_id: str) -> dict[str, Any]:
        """The file as Slack shows it in `files.info` and in a message's `files`."""
        return self.file_methods.file_object(file_id)

    def download_url(self, file_id: str) -> str:
        return self.file_methods.download_url(file_id)

    @property
    def downloads(self) -> list[tuple[str, bool]]:
        """(file id, had the bot token) for each download asked for, in order."""
        return self.file_methods.downloads

    # -- Web API methods (lock held) -----------------------------------------------------------

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": WORKSPACE_URL,
            "team": "Sandbox",
            "user": self.model.users[self.bot_user_id]["name"],
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self.model.writable_channel(params.get("channel"))
        self.check_content(params)
        thread_ts = params.get("thread_ts") or None
        if thread_ts is not None:
            thread_ts = self.model.thread_root(channel, thread_ts)
        text = params.get("text") or ""
        extra: dict[str, Any] = {}
        if len(text) > POST_TEXT_LIMIT:
            text = text[:POST_TEXT_LIMIT]
            extra = {
                "warning": "message_truncated",
                "response_metadata": {"warnings": ["message_truncated"]},
            }
        ts = self.model.next_ts()
        message = self.model.bot_message(text, params.get("blocks"), ts)
        if not params.get("blocks"):
            self.model.auto_blocks.add((channel.id, ts))
        if params.get("attachments"):
            message["attachments"] = copy.deepcopy(params["attachments"])
        if params.get("metadata") is not None:
            message["metadata"] = copy.deepcopy(params["metadata"])
        if thread_ts is not None and params.get("reply_broadcast") is True:
            message["subtype"] = "thread_broadcast"
        self.model.store(channel.id, message, thread_ts)
        self.model.tell("posted", channel.id, message)
        return {"channel": channel.id, "ts": ts, "message": copy.deepcopy(message), **extra}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self.model.visible_channel(params.get("channel"))
        message = self.model.existing_message(channel, params.get("ts"))
        if message.get("bot_id") != self.bot_id:
            raise SlackError("cant_update_message")
        if channel.archived:
            raise SlackError("is_archived")
        text = params.get("text")
        if isinstance(text, str) and len(text) > UPDATE_TEXT_LIMIT:
            raise SlackError("msg_too_long")
        self.check_content(params)
        key = (channel.id, message["ts"])
        if text is not None:
            message["text"] = text
        if "blocks" in params:
            if params["blocks"]:
                message["blocks"] = copy.deepcopy(params["blocks"])
                self.model.auto_blocks.discard(key)
            else:  # an empty list removes the blocks
                message["blocks"] = rich_text_for(message["text"])
                self.model.auto_blocks.add(key)
        elif key in self.model.auto_blocks:
            message["blocks"] = rich_text_for(message["text"])
        if "attachments" in params:
            message["attachments"] = copy.deepcopy(params["attachments"])
        if params.get("metadata") is not None:
            message["metadata"] = copy.deepcopy(params["metadata"])
        message["edited"] = {"user": self.bot_user_id, "ts": self.model.next_ts()}
        self.model.tell("edited", channel.id, message)
        return {
            "channel": channel.id,
            "ts": message["ts"],
            "text": message["text"],
            "message": copy.deepcopy(message),
        }

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self.model.writable_channel(params.get("channel"))
        user = params.get("user")
        if not isinstance(user, str) or not self.model.is_member(channel, user):
            raise SlackError("user_not_in_channel")
        self.check_content(params)
        ts = self.model.next_ts()
        shown: dict[str, Any] = {
            k: params[k] for k in ("text", "blocks", "thread_ts") if k in params
        }
        self.model.tell("ephemeral", channel.id, {**shown, "user": user, "ts": ts})
        return {"message_ts": ts}

    def _chat_get_permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self.model.visible_channel(params.get("channel"))
        message = self.model.existing_message(channel, params.get("message_ts"))
        permalink = f"{WORKSPACE_URL}archives/{channel.id}/p{message['ts'].replace('.', '')}"
        thread_ts = message.get("thread_ts")
        if thread_ts is not None and thread_ts != message["ts"]:
            permalink += f"?thread_ts={thread_ts}&cid={channel.id}"
        return {"channel": channel.id, "permalink": permalink}

    def _reaction_target(self, params: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        channel = self.model.visible_channel(params.get("channel"))
        message = self.model.existing_message(channel, params.get("timestamp"))
        name = params.get("name")
        if not isinstance(name, str) or not name or name.startswith(":") or name.endswith(":"):
            # Slack wants the bare name ("eyes"), not ":eyes:".
            raise SlackError("invalid_name")
        if any(c.isspace() for c in name):
            raise SlackError("invalid_name")
        return channel.id, message, name

    def _reactions_add(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, message, name = self._reaction_target(params)
        reactions = message.setdefault("reactions", [])
        reaction = next((r for r in reactions if r["name"] == name), None)
        if reaction is None:
            reaction = {"name": name, "users": [], "count": 0}
            reactions.append(reaction)
        if self.bot_user_id in reaction["users"]:
            raise SlackError("already_reacted")
        reaction["users"].append(self.bot_user_id)
        reaction["count"] = len(reaction["users"])
        self.model.tell("reaction_added", channel, message, name)
        return {}

    def _reactions_remove(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, message, name = self._reaction_target(params)
        reactions = message.get("reactions", [])
        reaction = next((r for r in reactions if r["name"] == name), None)
        if reaction is None or self.bot_user_id not in reaction["users"]:
            raise SlackError("no_reaction")
        reaction["users"].remove(self.bot_user_id)
        reaction["count"] = len(reaction["users"])
        if not reaction["users"]:
            reactions.remove(reaction)
        if not reactions:
            message.pop("reactions", None)
        self.model.tell("reaction_removed", channel, message, name)
        return {}

    def _conversations_join(self, params: dict[str, Any]) -> dict[str, Any]:
        channel_id = params.get("channel")
        channel = self.model.channels.get(channel_id) if isinstance(channel_id, str) else None
        if channel is None:
            raise SlackError("channel_not_found")
        if channel.private or channel.im:
            raise SlackError("method_not_supported_for_channel_type")
        if channel.archived:
            raise SlackError("is_archived")
        extra: dict[str, Any] = {}
        if channel.bot_member:
            extra = {
                "warning": "already_in_channel",
                "response_metadata": {"warnings": ["already_in_channel"]},
            }
        channel.bot_member = True
        return {"channel": channel.info(), **extra}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"channel": self.model.visible_channel(params.get("channel")).info()}

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """Top-level messages (and broadcast replies), newest first, after `oldest` if given."""
        channel = self.model.member_channel(params.get("channel"))
        oldest = float(params.get("oldest") or 0)
        top = [
            m
            for m in self.model.channel_messages[channel.id].values()
            if (m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast")
            and float(m["ts"]) > oldest
        ]
        top.sort(key=lambda m: ts_key(m["ts"]), reverse=True)
        limit = max(1, min(int(params.get("limit") or 100), 1000))
        return _page(top, params.get("cursor"), limit)

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self.model.member_channel(params.get("channel"))
        ts = params.get("ts")
        if not isinstance(ts, str) or ts not in self.model.channel_messages[channel.id]:
            raise SlackError("thread_not_found")
        stored = self.model.channel_messages[channel.id]
        root = stored[ts].get("thread_ts", ts)
        thread = sorted(
            (m for m in stored.values() if m["ts"] == root or m.get("thread_ts") == root),
            key=lambda m: ts_key(m["ts"]),
        )
        try:
            limit = max(1, min(int(params.get("limit") or 1000), 1000))
        except ValueError:
            raise SlackError("invalid_limit") from None
        return _page(thread, params.get("cursor"), limit)

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = params.get("user")
        user = self.model.users.get(user_id) if isinstance(user_id, str) else None
        if user is None:
            raise SlackError("user_not_found")
        return {"user": copy.deepcopy(user)}


def _check_metadata(metadata: Any) -> None:
    """Slack's checks on a message's metadata: an object with an event_type and a payload."""
    if metadata is None:
        return
    if isinstance(metadata, str):
        raise SlackError("invalid_metadata_format")
    if not (
        isinstance(metadata, dict)
        and isinstance(metadata.get("event_type"), str)
        and isinstance(metadata.get("event_payload"), dict)
    ):
        raise SlackError("invalid_metadata_schema")


def _page(messages: list[dict[str, Any]], cursor: Any, limit: int) -> dict[str, Any]:
    """One page of a conversation's messages, as Slack pages them: the cursor names the ts the
    next page starts at, and has_more comes with the cursor to go on."""
    start = 0
    if cursor:
        try:
            after = base64.b64decode(cursor).decode().removeprefix("next_ts:")
            start = next(i for i, m in enumerate(messages) if m["ts"] == after)
        except (ValueError, StopIteration):
            raise SlackError("invalid_cursor") from None
    page = messages[start : start + limit]
    answer: dict[str, Any] = {"messages": copy.deepcopy(page), "has_more": False}
    if start + limit < len(messages):
        next_ts = messages[start + limit]["ts"]
        answer["has_more"] = True
        answer["response_metadata"] = {
            "next_cursor": base64.b64encode(f"next_ts:{next_ts}".encode()).decode()
        }
    return answer
