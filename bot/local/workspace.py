"""One Slack workspace in memory, answering the Web API methods this app uses.

Users, channels (membership decides ``not_in_channel`` versus ``channel_not_found``), messages
with threads, broadcasts, metadata and reactions, and the limits Slack enforces
(``chat.update`` text 4,000 characters, ``chat.postMessage`` truncated at 40,000). The HTTP side
is `bot.local.server`; `python -m bot try` runs the app against the two, and the tests extend
them (`tests/support/slack.py`).

Methods run with `lock` held. Observers (`observe`) hear of every change to what a person would
see, in order, on the thread that made it, with the lock held: hand the change to a queue.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
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
    rich_text_for,
    ts_key,
)
from bot.local.views import ViewMethods

__all__ = [
    "POST_TEXT_LIMIT", "TS_STEP_MICROS", "UPDATE_TEXT_LIMIT", "WORKSPACE_URL", "Change",
    "Channel", "SlackError", "Workspace", "rich_text_for",
]  # fmt: skip


class Workspace(FileMethods, ViewMethods):
    """The workspace with the Web API methods the app uses (``call``), without any transport."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
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
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "files.info": self._files_info,
        }

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
        top.sort(key=lambda m: ts_key(m["ts"]), reverse=True)
        limit = max(1, min(int(params.get("limit") or 100), 1000))
        start = 0
        if params.get("cursor"):  # Slack's cursor: the next (older) page starts at this ts
            try:
                after = base64.b64decode(params["cursor"]).decode().removeprefix("next_ts:")
                start = next(i for i, m in enumerate(top) if m["ts"] == after)
            except (ValueError, StopIteration):
                raise SlackError("invalid_cursor") from None
        page = top[start : start + limit]
        answer: dict[str, Any] = {"messages": copy.deepcopy(page), "has_more": False}
        if start + limit < len(top):  # as Slack: has_more comes with the cursor to go on
            next_ts = top[start + limit]["ts"]
            answer["has_more"] = True
            answer["response_metadata"] = {
                "next_cursor": base64.b64encode(f"next_ts:{next_ts}".encode()).decode()
            }
        return answer

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._member_channel(params.get("channel"))
        ts = params.get("ts")
        if not isinstance(ts, str) or ts not in self._messages[channel.id]:
            raise SlackError("thread_not_found")
        stored = self._messages[channel.id]
        root = stored[ts].get("thread_ts", ts)
        thread = sorted(
            (m for m in stored.values() if m["ts"] == root or m.get("thread_ts") == root),
            key=lambda m: ts_key(m["ts"]),
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
