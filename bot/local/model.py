"""One Slack workspace as data: users, channels, messages, threads and reactions, with the
ordering and membership rules the Web API methods rely on.

`WorkspaceModel` owns that state and the one lock that guards it; the Web API methods
(`bot.local.workspace`, `views`, `files`, `uploads`) are objects given the model, and read and
change it through its public attributes and helpers with `lock` held. Observers (`observe`) hear
of every change a person would see, in order, on the thread that made it, with the lock held.
"""

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
    "posted", "edited", "ephemeral", "reaction_added", "reaction_removed", "response",
    "step_ended",
]  # fmt: skip


@dataclass(frozen=True)
class Change:
    """Something a person in the workspace would see change.

    ``message`` is a copy of the message after the change (for ``ephemeral``: what the one
    ``user`` sees; for ``response``: the body sent to a ``response_url``; for ``step_ended``: a
    workflow step's end, its execution id, state, outputs and error); ``reaction`` names the
    reaction for the ``reaction_*`` kinds. ``channel`` is ``None`` for a response and a step.
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
    `try` script it and look at it. Its Web API is `bot.local.workspace.Workspace`.

    The attributes are the state itself, for the Web API objects that share this model; each
    change to them happens with `lock` held.
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
        """`lock`: one shared with other workspaces served together (a new one by default)."""
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.lock = lock if lock is not None else threading.RLock()
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, Channel] = {}
        self.channel_messages: dict[str, dict[str, dict[str, Any]]] = {}
        """channel → ts → the message as Slack keeps it."""
        self.auto_blocks: set[tuple[str, str]] = set()
        """(channel, ts) of bot messages whose blocks Slack derived from their text."""
        self._last_ts_micros = 0
        self._observers: list[Callable[[Change], None]] = []
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
        with self.lock:
            self._observers.append(callback)

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
        """A person (or bot). As `users.info` shows it: an owner is an admin too, the primary
        owner an owner."""
        owner = owner or primary_owner
        with self.lock:
            self.users[user_id] = {
                "id": user_id,
                "team_id": self.team_id,
                "name": name,
                "real_name": real_name or name,
                "deleted": False,
                "is_bot": is_bot,
                "is_admin": admin or owner,
                "is_owner": owner,
                "is_primary_owner": primary_owner,
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
        with self.lock:
            self.channels[channel_id] = Channel(
                id=channel_id,
                name=name or channel_id.lower(),
                private=private and not im,
                im=im,
                bot_member=bot_member,
                archived=archived,
                members=None if members is None else set(members),
            )
            self.channel_messages.setdefault(channel_id, {})

    def app_dm(self, user: str) -> str:
        """The DM between `user` and the app (its Messages tab), opened on first use."""
        with self.lock:
            channel_id = "D" + user.removeprefix("U").removeprefix("W")
            if channel_id not in self.channels:
                self.add_channel(channel_id, im=True, bot_member=True, members={user})
            return channel_id

    def set_bot_member(self, channel_id: str, member: bool) -> None:
        """Invite the bot to a channel or remove it, as ``/invite`` or a kick would."""
        with self.lock:
            self.channels[channel_id].bot_member = member

    def add_human_message(
        self, channel: str, text: str, *, user: str = "U0ALICE", thread_ts: str | None = None
    ) -> str:
        """Store a message as if ``user`` wrote it, so events can point at it; returns its ts."""
        with self.lock:
            if channel not in self.channels:
                raise KeyError(f"unknown channel {channel!r}; add_channel() it first")
            if thread_ts is not None and thread_ts not in self.channel_messages[channel]:
                raise KeyError(f"no message {thread_ts!r} in {channel} to reply to")
            ts = self.next_ts()
            message: dict[str, Any] = {
                "type": "message",
                "user": user,
                "text": text,
                "ts": ts,
                "team": self.team_id,
                "client_msg_id": str(uuid.uuid4()),
                "blocks": rich_text_for(text),
            }
            self.store(channel, message, thread_ts)
            self.tell("posted", channel, message)
            return ts

    # -- inspection ----------------------------------------------------------------------------

    def messages(
        self, channel: str | None = None, thread_ts: str | None = None
    ) -> list[dict[str, Any]]:
        """Current messages (after updates), in ts order, each with a ``"channel"`` key added.

        With ``thread_ts``: only the replies in that thread, not its parent (conversations.replies
        gives both).
        """
        with self.lock:
            found = []
            for channel_id, stored in self.channel_messages.items():
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
        with self.lock:
            stored = self.channel_messages.get(channel, {}).get(ts)
            return copy.deepcopy(stored) if stored is not None else None

    def reactions(self, channel: str, ts: str) -> list[str]:
        """Names of the reactions on a message (by anyone), in the order first added."""
        with self.lock:
            stored = self.channel_messages.get(channel, {}).get(ts) or {}
            return [r["name"] for r in stored.get("reactions", [])]

    # -- helpers for the Web API methods (lock held) ------------------------------------------

    def tell(
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

    def next_ts(self) -> str:
        micros = max(int(time.time() * 1_000_000), self._last_ts_micros + TS_STEP_MICROS)
        self._last_ts_micros = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def is_member(self, channel: Channel, user: str) -> bool:
        if user == self.bot_user_id:
            return channel.bot_member
        if channel.members is None:
            return user in self.users
        return user in channel.members

    def visible_channel(self, channel_id: Any) -> Channel:
        """The channel as the bot can see it: private channels and DMs it is not in do not exist."""
        if isinstance(channel_id, str) and channel_id.startswith("#"):
            named = [c for c in self.channels.values() if c.name == channel_id[1:] and not c.im]
            channel = named[0] if named else None
        else:
            channel = self.channels.get(channel_id) if isinstance(channel_id, str) else None
        if channel is None or ((channel.private or channel.im) and not channel.bot_member):
            raise SlackError("channel_not_found")
        return channel

    def writable_channel(self, channel_id: Any) -> Channel:
        channel = self.visible_channel(channel_id)
        if channel.archived:
            raise SlackError("is_archived")
        if not channel.bot_member:
            raise SlackError("not_in_channel")
        return channel

    def member_channel(self, channel_id: Any) -> Channel:
        channel = self.visible_channel(channel_id)
        if not channel.bot_member:
            raise SlackError("not_in_channel")
        return channel

    def existing_message(self, channel: Channel, ts: Any) -> dict[str, Any]:
        message = self.channel_messages[channel.id].get(ts) if isinstance(ts, str) else None
        if message is None:
            raise SlackError("message_not_found")
        return message

    def thread_root(self, channel: Channel, thread_ts: Any) -> str:
        """The ts of the thread a reply to `thread_ts` lands in: a reply's ts works too, as
        Slack advises passing the parent's; `thread_not_found` when there is no such message."""
        parent = self.channel_messages[channel.id].get(str(thread_ts))
        if parent is None:
            raise SlackError("thread_not_found")
        root: str = parent.get("thread_ts", parent["ts"])
        return root

    def store(self, channel: str, message: dict[str, Any], thread_ts: str | None) -> None:
        """Store a message; a reply updates its parent's thread summary like Slack does."""
        if thread_ts is not None:
            parent = self.channel_messages[channel][thread_ts]
            message["thread_ts"] = thread_ts
            message["parent_user_id"] = parent.get("user")
            parent["thread_ts"] = thread_ts
            parent["reply_count"] = parent.get("reply_count", 0) + 1
            users = parent.setdefault("reply_users", [])
            if message["user"] not in users:
                users.append(message["user"])
            parent["reply_users_count"] = len(users)
            parent["latest_reply"] = message["ts"]
        self.channel_messages[channel][message["ts"]] = message

    def bot_message(self, text: str, blocks: Any, ts: str) -> dict[str, Any]:
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
                "name": self.users[self.bot_user_id]["name"],
                "team_id": self.team_id,
            },
        }
