"""One Slack workspace in memory, answering the Web API methods this app uses.

Users, channels (membership decides ``not_in_channel`` versus ``channel_not_found``), messages
with threads, broadcasts, metadata and reactions, and the limits Slack enforces
(``chat.update`` text 4,000 characters, ``chat.postMessage`` truncated at 40,000). The HTTP side
is `bot.slack_standin`; `python -m bot try` runs the app against the two, and the tests extend
them (`tests/support/slack.py`).

Methods run with `lock` held. Observers (`observe`) hear of every change to what a person would
see, in order, on the thread that made it, with the lock held: hand the change to a queue.
"""

from __future__ import annotations

import base64
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


def _ts_key(ts: str) -> Decimal:
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


class Workspace:
    """The workspace's state and its Web API methods (``call``), without any transport."""

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
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
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
        }
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

    # -- inspection ----------------------------------------------------------------------------

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
            return sorted(found, key=lambda m: _ts_key(m["ts"]))

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self._lock:
            stored = self._messages.get(channel, {}).get(ts)
            return copy.deepcopy(stored) if stored is not None else None

    def reactions(self, channel: str, ts: str) -> list[str]:
        """Names of the reactions on a message (by anyone), in the order first added."""
        with self._lock:
            stored = self._messages.get(channel, {}).get(ts) or {}
            return [r["name"] for r in stored.get("reactions", [])]

    # -- the Web API ---------------------------------------------------------------------------

    def knows(self, method: str) -> bool:
        return method in self._methods

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run one Web API method: its answer without ``ok``, or `SlackError`."""
        with self._lock:
            return self._methods[method](params)

    def block_problems(self, blocks: list[Any]) -> list[str]:
        """Why Slack would refuse these blocks (none here: a subclass may validate them)."""
        return []

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
        metadata = params.get("metadata")
        if metadata is not None:
            if isinstance(metadata, str):
                raise SlackError("invalid_metadata_format")
            if not (
                isinstance(metadata, dict)
                and isinstance(metadata.get("event_type"), str)
                and isinstance(metadata.get("event_payload"), dict)
            ):
                raise SlackError("invalid_metadata_schema")

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

    # -- Web API methods (lock held) -----------------------------------------------------------

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": WORKSPACE_URL,
            "team": "Sandbox",
            "user": self._users[self.bot_user_id]["name"],
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable_channel(params.get("channel"))
        self.check_content(params)
        thread_ts = params.get("thread_ts") or None
        if thread_ts is not None:
            parent = self._messages[channel.id].get(str(thread_ts))
            if parent is None:
                raise SlackError("thread_not_found")
            # A reply's ts lands in its parent's thread; Slack advises passing the parent's.
            thread_ts = parent.get("thread_ts", parent["ts"])
        text = params.get("text") or ""
        extra: dict[str, Any] = {}
        if len(text) > POST_TEXT_LIMIT:
            text = text[:POST_TEXT_LIMIT]
            extra = {
                "warning": "message_truncated",
                "response_metadata": {"warnings": ["message_truncated"]},
            }
        ts = self._next_ts()
        message = self._bot_message(text, params.get("blocks"), ts)
        if not params.get("blocks"):
            self._auto_blocks.add((channel.id, ts))
        if params.get("attachments"):
            message["attachments"] = copy.deepcopy(params["attachments"])
        if params.get("metadata") is not None:
            message["metadata"] = copy.deepcopy(params["metadata"])
        if thread_ts is not None and params.get("reply_broadcast") is True:
            message["subtype"] = "thread_broadcast"
        self._store(channel.id, message, thread_ts)
        self._tell("posted", channel.id, message)
        return {"channel": channel.id, "ts": ts, "message": copy.deepcopy(message), **extra}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._visible_channel(params.get("channel"))
        message = self._existing_message(channel, params.get("ts"))
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
                self._auto_blocks.discard(key)
            else:  # an empty list removes the blocks
                message["blocks"] = rich_text_for(message["text"])
                self._auto_blocks.add(key)
        elif key in self._auto_blocks:
            message["blocks"] = rich_text_for(message["text"])
        if "attachments" in params:
            message["attachments"] = copy.deepcopy(params["attachments"])
        if params.get("metadata") is not None:
            message["metadata"] = copy.deepcopy(params["metadata"])
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        self._tell("edited", channel.id, message)
        return {
            "channel": channel.id,
            "ts": message["ts"],
            "text": message["text"],
            "message": copy.deepcopy(message),
        }

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._writable_channel(params.get("channel"))
        user = params.get("user")
        if not isinstance(user, str) or not self._is_member(channel, user):
            raise SlackError("user_not_in_channel")
        self.check_content(params)
        ts = self._next_ts()
        shown: dict[str, Any] = {
            k: params[k] for k in ("text", "blocks", "thread_ts") if k in params
        }
        self._tell("ephemeral", channel.id, {**shown, "user": user, "ts": ts})
        return {"message_ts": ts}

    def _chat_get_permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._visible_channel(params.get("channel"))
        message = self._existing_message(channel, params.get("message_ts"))
        permalink = f"{WORKSPACE_URL}archives/{channel.id}/p{message['ts'].replace('.', '')}"
        thread_ts = message.get("thread_ts")
        if thread_ts is not None and thread_ts != message["ts"]:
            permalink += f"?thread_ts={thread_ts}&cid={channel.id}"
        return {"channel": channel.id, "permalink": permalink}

    def _reaction_target(self, params: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        channel = self._visible_channel(params.get("channel"))
        message = self._existing_message(channel, params.get("timestamp"))
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
        self._tell("reaction_added", channel, message, name)
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
        self._tell("reaction_removed", channel, message, name)
        return {}

    def _conversations_join(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channels.get(params.get("channel"))  # type: ignore[arg-type]
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
        return {"channel": self._visible_channel(params.get("channel")).info()}

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """Top-level messages (and broadcast replies), newest first, after `oldest` if given."""
        channel = self._member_channel(params.get("channel"))
        oldest = float(params.get("oldest") or 0)
        top = [
            m
            for m in self._messages[channel.id].values()
            if (m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast")
            and float(m["ts"]) > oldest
        ]
        top.sort(key=lambda m: _ts_key(m["ts"]), reverse=True)
        limit = max(1, min(int(params.get("limit") or 100), 1000))
        return {"messages": copy.deepcopy(top[:limit]), "has_more": len(top) > limit}

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._member_channel(params.get("channel"))
        ts = params.get("ts")
        if not isinstance(ts, str) or ts not in self._messages[channel.id]:
            raise SlackError("thread_not_found")
        stored = self._messages[channel.id]
        root = stored[ts].get("thread_ts", ts)
        thread = sorted(
            (m for m in stored.values() if m["ts"] == root or m.get("thread_ts") == root),
            key=lambda m: _ts_key(m["ts"]),
        )
        try:
            limit = max(1, min(int(params.get("limit") or 1000), 1000))
        except ValueError:
            raise SlackError("invalid_limit") from None
        start = 0
        if params.get("cursor"):
            try:
                after = base64.b64decode(params["cursor"]).decode().removeprefix("next_ts:")
                start = next(i for i, m in enumerate(thread) if m["ts"] == after)
            except (ValueError, StopIteration):
                raise SlackError("invalid_cursor") from None
        page = thread[start : start + limit]
        answer: dict[str, Any] = {"messages": copy.deepcopy(page), "has_more": False}
        if start + limit < len(thread):
            next_ts = thread[start + limit]["ts"]
            answer["has_more"] = True
            answer["response_metadata"] = {
                "next_cursor": base64.b64encode(f"next_ts:{next_ts}".encode()).decode()
            }
        return answer

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self._users.get(params.get("user"))  # type: ignore[arg-type]
        if user is None:
            raise SlackError("user_not_found")
        return {"user": copy.deepcopy(user)}
