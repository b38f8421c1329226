"""One Slack workspace as data: users, channels, messages, threads and reactions, with the
ordering and membership rules the Web API methods rely on."""

from __future__ import annotations

import copy
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

WORKSPACE_URL = "https://sandbox-team.slack.com/"
TS_STEP_MICROS = 100
"""A message's ``ts`` is the wall clock, as Slack's is (the app looks up its own posts by
time), and at least this much after the previous one so that string order is time order."""
POST_TEXT_LIMIT = 40_000
UPDATE_TEXT_LIMIT = 4_000
TRIGGER_SECONDS = 3.0
"""A trigger_id opens one view, within this long of the interaction that carried it."""

ChangeKind = Literal[
    "posted", "edited", "ephemeral", "reaction_added", "reaction_removed", "response"
]  # fmt: skip


@dataclass(frozen=True)
class Change:
    """Something a person in the workspace would see change.

    ``message`` is a copy of the message after the change (for ``ephemeral``: what the one
    ``user`` sees; for ``response``: the body sent to a ``response_url``); ``reaction`` names
    the reaction for the ``reaction_*`` kinds. ``channel`` is ``None`` for a response.
    """

    kind: ChangeKind
    channel: str | None
    message: dict[str, Any]
    reaction: str | None = None


class SlackError(Exception):
    """Raised inside a method to answer ``{"ok": false, "error": ...}`` (HTTP 200, like Slack)."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class Channel:
    id: str
    name: str
    private: bool
    im: bool
    bot_member: bool
    archived: bool
    members: set[str] | None
    """Human members; ``None`` means every known user (the default workspace's assumption)."""

    def info(self) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "id": self.id,
            "created": 1_700_000_000,
            "is_channel": not self.private and not self.im,
            "is_group": self.private,
            "is_im": self.im,
            "is_mpim": False,
            "is_private": self.private or self.im,
            "is_archived": self.archived,
            "is_member": self.bot_member,
        }
        if not self.im:
            shape["name"] = self.name
        return shape


def ts_key(ts: str) -> Decimal:
    return Decimal(ts)


def rich_text_for(text: str) -> list[dict[str, Any]]:
    """The block Slack derives from a text-only message; it returns one in every message."""
    return [
        {
            "type": "rich_text",
            "block_id": secrets.token_hex(3),
            "elements": [
                {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
            ],
        }
    ]


class WorkspaceModel:
    """The workspace's state: users, channels, messages in threads, reactions; how tests and
    `try` script it and look at it. Its Web API is `bot.local.workspace.Workspace`."""

    def __init__(
        self,
        *,
        team_id: str = "T0001",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        app_id: str = "A0APP",
        populate: bool = True,
    ) -> None:
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self._lock = threading.RLock()
        self._users: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, Channel] = {}
        self._messages: dict[str, dict[str, dict[str, Any]]] = {}
        self._auto_blocks: set[tuple[str, str]] = set()
        self._last_ts_micros = 0
        self._observers: list[Callable[[Change], None]] = []
        # trigger id → (issued, monotonic; whose interaction; used)
        self._triggers: dict[str, tuple[float, str, bool]] = {}
        self._views: dict[str, dict[str, Any]] = {}  # view id → the view as Slack keeps it
        self._homes: dict[str, str] = {}  # user → the id of their published Home view
        self.add_user(bot_user_id, name="motion", real_name="Motion", is_bot=True)
        if populate:
            self.add_user("U0ALICE", name="alice", real_name="Alice Archer")
            self.add_user("U0BOB", name="bob", real_name="Bob Baker")
            self.add_user("U0CAROL", name="carol", real_name="Carol Chen")
            self.add_channel("C0PUBLIC", name="general")
            self.add_channel("C0NOTIN", name="random", bot_member=False)
            self.add_channel("G0PRIVATE", name="secret-plans", private=True, bot_member=False)
            self.add_channel("G0MEMBER", name="video-team", private=True)
            self.add_channel("D0DM", im=True, bot_member=False, members={"U0ALICE", "U0BOB"})

    # -- scripting -----------------------------------------------------------------------------

    def observe(self, callback: Callable[[Change], None]) -> None:
        """Call ``callback(change)`` for every later change (see the module docstring)."""
        with self._lock:
            self._observers.append(callback)

    def add_user(
        self,
        user_id: str,
        *,
        name: str,
        real_name: str | None = None,
        display_name: str | None = None,
        is_bot: bool = False,
    ) -> None:
        with self._lock:
            self._users[user_id] = {
                "id": user_id,
                "team_id": self.team_id,
                "name": name,
                "real_name": real_name or name,
                "deleted": False,
                "is_bot": is_bot,
                "profile": {
                    "display_name": display_name if display_name is not None else name,
                    "real_name": real_name or name,
                },
            }

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
        """Add (or replace) a conversation.

        ``members`` lists the human members; ``None`` makes every known user a member. An ``im``
        is a DM: nobody can join it, and the bot sees it only when ``bot_member``.
        """
        with self._lock:
            self._channels[channel_id] = Channel(
                id=channel_id,
                name=name or channel_id.lower(),
                private=private and not im,
                im=im,
                bot_member=bot_member,
                archived=archived,
                members=None if members is None else set(members),
            )
            self._messages.setdefault(channel_id, {})

    def set_bot_member(self, channel_id: str, member: bool) -> None:
        """Invite the bot to a channel or remove it, as ``/invite`` or a kick would."""
        with self._lock:
            self._channels[channel_id].bot_member = member

    def add_human_message(
        self, channel: str, text: str, *, user: str = "U0ALICE", thread_ts: str | None = None
    ) -> str:
        """Store a message as if ``user`` wrote it, so events can point at it; returns its ts."""
        with self._lock:
            if channel not in self._channels:
                raise KeyError(f"unknown channel {channel!r}; add_channel() it first")
            if thread_ts is not None and thread_ts not in self._messages[channel]:
                raise KeyError(f"no message {thread_ts!r} in {channel} to reply to")
            ts = self._next_ts()
            message: dict[str, Any] = {
                "type": "message",
                "user": user,
                "text": text,
                "ts": ts,
                "team": self.team_id,
                "client_msg_id": str(uuid.uuid4()),
                "blocks": rich_text_for(text),
            }
            self._store(channel, message, thread_ts)
            self._tell("posted", channel, message)
            return ts

    def issue_trigger(self, user: str = "") -> str:
        """A fresh trigger_id, as Slack puts in `user`'s command, shortcut or button payload."""
        with self._lock:
            trigger = (
                f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**9)}.{secrets.token_hex(16)}"
            )
            self._triggers[trigger] = (time.monotonic(), user, False)
            return trigger

    # -- inspection ----------------------------------------------------------------------------

    def view(self, view_id: str) -> dict[str, Any] | None:
        """A view opened, pushed, updated or published, as it is now."""
        with self._lock:
            found = self._views.get(view_id)
            return copy.deepcopy(found) if found is not None else None

    def views(self, user: str | None = None) -> list[dict[str, Any]]:
        """Every modal opened or pushed (oldest first), for one user when given."""
        with self._lock:
            return [
                copy.deepcopy(v)
                for v in self._views.values()
                if v["type"] == "modal" and (user is None or v["user"] == user)
            ]

    def home(self, user: str) -> dict[str, Any] | None:
        """The Home tab `user` sees, as last published."""
        with self._lock:
            view_id = self._homes.get(user)
            return copy.deepcopy(self._views[view_id]) if view_id else None

    def messages(
        self, channel: str | None = None, thread_ts: str | None = None
    ) -> list[dict[str, Any]]:
        """Current messages (after updates), in ts order, each with a ``"channel"`` key added.

        With ``thread_ts``: only the replies in that thread, not its parent (conversations.replies
        gives both).
        """
        with self._lock:
            found = []
            for channel_id, stored in self._messages.items():
                if channel is not None and channel_id != channel:
                    continue
                for message in stored.values():
                    if thread_ts is not None and (
                        message.get("thread_ts") != thread_ts or message["ts"] == thread_ts
                    ):
                        continue
                    found.append({**copy.deepcopy(message), "channel": channel_id})
            return sorted(found, key=lambda m: ts_key(m["ts"]))

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self._lock:
            stored = self._messages.get(channel, {}).get(ts)
            return copy.deepcopy(stored) if stored is not None else None

    def reactions(self, channel: str, ts: str) -> list[str]:
        """Names of the reactions on a message (by anyone), in the order first added."""
        with self._lock:
            stored = self._messages.get(channel, {}).get(ts) or {}
            return [r["name"] for r in stored.get("reactions", [])]

    # -- the model (lock held) -----------------------------------------------------------------

    def _tell(
        self,
        kind: ChangeKind,
        channel: str | None,
        message: dict[str, Any],
        reaction: str | None = None,
    ) -> None:
        if self._observers:
            change = Change(kind, channel, copy.deepcopy(message), reaction)
            for observer in self._observers:
                observer(change)

    def _next_ts(self) -> str:
        micros = max(int(time.time() * 1_000_000), self._last_ts_micros + TS_STEP_MICROS)
        self._last_ts_micros = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _is_member(self, channel: Channel, user: str) -> bool:
        if user == self.bot_user_id:
            return channel.bot_member
        if channel.members is None:
            return user in self._users
        return user in channel.members

    def _visible_channel(self, channel_id: Any) -> Channel:
        """The channel as the bot can see it: private channels and DMs it is not in do not exist."""
        if isinstance(channel_id, str) and channel_id.startswith("#"):
            named = [c for c in self._channels.values() if c.name == channel_id[1:] and not c.im]
            channel = named[0] if named else None
        else:
            channel = self._channels.get(channel_id) if isinstance(channel_id, str) else None
        if channel is None or ((channel.private or channel.im) and not channel.bot_member):
            raise SlackError("channel_not_found")
        return channel

    def _writable_channel(self, channel_id: Any) -> Channel:
        channel = self._visible_channel(channel_id)
        if channel.archived:
            raise SlackError("is_archived")
        if not channel.bot_member:
            raise SlackError("not_in_channel")
        return channel

    def _member_channel(self, channel_id: Any) -> Channel:
        channel = self._visible_channel(channel_id)
        if not channel.bot_member:
            raise SlackError("not_in_channel")
        return channel

    def _existing_message(self, channel: Channel, ts: Any) -> dict[str, Any]:
        message = self._messages[channel.id].get(ts) if isinstance(ts, str) else None
        if message is None:
            raise SlackError("message_not_found")
        return message

    def _store(self, channel: str, message: dict[str, Any], thread_ts: str | None) -> None:
        """Store a message; a reply updates its parent's thread summary like Slack does."""
        if thread_ts is not None:
            parent = self._messages[channel][thread_ts]
            message["thread_ts"] = thread_ts
            message["parent_user_id"] = parent.get("user")
            parent["thread_ts"] = thread_ts
            parent["reply_count"] = parent.get("reply_count", 0) + 1
            users = parent.setdefault("reply_users", [])
            if message["user"] not in users:
                users.append(message["user"])
            parent["reply_users_count"] = len(users)
            parent["latest_reply"] = message["ts"]
        self._messages[channel][message["ts"]] = message

    def _bot_message(self, text: str, blocks: Any, ts: str) -> dict[str, Any]:
        return {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "text": text,
            "ts": ts,
            "blocks": copy.deepcopy(blocks) if blocks else rich_text_for(text),
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": self._users[self.bot_user_id]["name"],
                "team_id": self.team_id,
            },
        }
