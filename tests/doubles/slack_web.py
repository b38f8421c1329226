"""A local HTTP server that answers like Slack's Web API, for tests that use the real clients.

Modelled on bolt-python's ``tests/mock_web_api_server`` (a real server reached by the real
``WebClient(base_url=...)``), but with a small workspace behind it so that the answers carry
Slack's real shapes and errors: membership decides ``not_in_channel`` versus
``channel_not_found``, ``chat.update`` enforces its 4,000-character limit, blocks are checked
against Block Kit's limits, threads and reactions exist, and ``response_url`` stops after five
uses. A test that passes here should not fail against Slack for a reason this double could
have known.

Socket Mode is served too: ``apps.connections.open`` (with the app-level ``xapp-`` token) hands
out a ``ws://`` URL to a WebSocket server that speaks Slack's Socket Mode protocol (``hello``,
envelopes, acks, ``disconnect``, ping/pong); tests deliver envelopes with ``socket_send`` and
read the acks with ``socket_ack_async``.

The server runs in its own daemon thread because the app under test runs its own event loop;
every scripting and inspection method takes one lock, so tests may call them from any thread.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

WORKSPACE_URL = "https://sandbox-team.slack.com/"
FIRST_TS_MICROS = 1_763_860_000_000_100
"""The first ``ts`` handed out; later ones grow by 100 µs so that string order is time order."""


def signed_headers(
    body: str, secret: str, content_type: str, timestamp: int | None = None
) -> dict[str, str]:
    """The headers Slack sends with a request to an app: `v0=` HMAC-SHA256 of `v0:ts:body`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }


POST_TEXT_LIMIT = 40_000
UPDATE_TEXT_LIMIT = 4_000
RESPONSE_URL_USES = 5
MAX_BLOCKS = 50
SOCKET_MODE_HOST = "applink-double-1"
"""What the double reports as ``debug_info.host`` in ``hello`` and ``disconnect`` messages."""

_BOOLEAN_PARAMS = frozenset(
    {
        "reply_broadcast",
        "unfurl_links",
        "unfurl_media",
        "mrkdwn",
        "as_user",
        "link_names",
        "include_all_metadata",
        "inclusive",
        "replace_original",
        "delete_original",
    }
)
_JSON_STRING_PARAMS = ("blocks", "attachments", "metadata")

_BLOCK_TYPES = frozenset(
    {
        "actions",
        "context",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "video",
    }
)
_ELEMENT_TYPES = frozenset(
    {
        "button",
        "channels_select",
        "checkboxes",
        "conversations_select",
        "datepicker",
        "datetimepicker",
        "email_text_input",
        "external_select",
        "file_input",
        "image",
        "multi_channels_select",
        "multi_conversations_select",
        "multi_external_select",
        "multi_static_select",
        "multi_users_select",
        "number_input",
        "overflow",
        "plain_text_input",
        "radio_buttons",
        "rich_text_input",
        "static_select",
        "timepicker",
        "url_text_input",
        "users_select",
        "workflow_button",
    }
)


@dataclass(frozen=True)
class SlackCall:
    """One Web API request as the double saw it.

    ``params`` merges the query string and the body, with ``blocks``, ``attachments`` and
    ``metadata`` decoded from JSON strings and known boolean flags turned into ``bool``, so a
    test reads the same thing whether the client sent a form or JSON. ``at`` is
    ``time.monotonic()`` when the request arrived.
    """

    method: str
    params: dict[str, Any]
    at: float
    ok: bool
    error: str | None
    response: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class _Channel:
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


@dataclass
class _Fault:
    status: int
    error: str | None
    retry_after: int | None
    delay: float
    drop: Literal["before", "after"] | None
    remaining: int


@dataclass
class _ResponseUrl:
    tag: str
    uses: int = 0


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


@dataclass(frozen=True)
class SocketAck:
    """One message the app sent back over a Socket Mode connection that names an envelope.

    ``payload`` is ``None`` for a bare ack (``{"envelope_id": ...}``); ``known`` says whether the
    double ever sent that envelope; ``at`` is ``time.monotonic()`` when it arrived.
    """

    envelope_id: str
    payload: dict[str, Any] | None
    at: float
    known: bool
    connection: int


class _SlackError(Exception):
    """Raised inside a method to answer ``{"ok": false, "error": ...}`` (HTTP 200, like Slack)."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


# ---------------------------------------------------------------------------------------------
# Block Kit checks (pure; the messages imitate Slack's "[json-pointer:...]" error details)
# ---------------------------------------------------------------------------------------------


class _BlockChecker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, message: str, pointer: str) -> None:
        self.errors.append(f"{message} [json-pointer:{pointer}]")

    def string(self, value: Any, pointer: str, limit: int, *, required: bool = False) -> None:
        if value is None:
            if required:
                self.fail("missing required field", pointer)
            return
        if not isinstance(value, str):
            self.fail("must be a string", pointer)
        elif len(value) > limit:
            self.fail(f"must be less than {limit + 1} characters", pointer)

    def text_object(
        self, value: Any, pointer: str, limit: int, *, plain_only: bool = False
    ) -> None:
        if not isinstance(value, dict):
            self.fail("must be a text object", pointer)
            return
        allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
        if value.get("type") not in allowed:
            self.fail("must be a valid enum value", f"{pointer}/type")
        text = value.get("text")
        if not isinstance(text, str):
            self.fail("missing required field", f"{pointer}/text")
        elif not text:
            self.fail("must be more than 0 characters", f"{pointer}/text")
        elif len(text) > limit:
            self.fail(f"must be less than {limit + 1} characters", f"{pointer}/text")

    def items(self, value: Any, pointer: str, limit: int) -> list[Any]:
        if not isinstance(value, list) or not value:
            self.fail("must be a non-empty array", pointer)
            return []
        if len(value) > limit:
            self.fail(f"no more than {limit} items allowed", pointer)
        return value

    def element(self, element: Any, pointer: str, action_ids: set[str]) -> None:
        if not isinstance(element, dict):
            self.fail("must be an object", pointer)
            return
        kind = element.get("type")
        if kind not in _ELEMENT_TYPES:
            self.fail(f"unsupported type: {kind}", f"{pointer}/type")
            return
        action_id = element.get("action_id")
        self.string(action_id, f"{pointer}/action_id", 255)
        if isinstance(action_id, str):
            if action_id in action_ids:
                self.fail("action_id already exists in this block", f"{pointer}/action_id")
            action_ids.add(action_id)
        if kind == "button":
            if "text" not in element:
                self.fail("missing required field", f"{pointer}/text")
            else:
                self.text_object(element["text"], f"{pointer}/text", 75, plain_only=True)
            self.string(element.get("url"), f"{pointer}/url", 3000)
            self.string(element.get("value"), f"{pointer}/value", 2000)
            if element.get("style") not in (None, "primary", "danger"):
                self.fail("must be a valid enum value", f"{pointer}/style")
        elif kind == "image":
            self.image(element, pointer)

    def image(self, image: dict[str, Any], pointer: str) -> None:
        if "image_url" not in image and "slack_file" not in image:
            self.fail("must provide either image_url or slack_file", pointer)
        self.string(image.get("image_url"), f"{pointer}/image_url", 3000)
        self.string(image.get("alt_text"), f"{pointer}/alt_text", 2000, required=True)

    def block(self, block: dict[str, Any], pointer: str) -> None:
        kind = block["type"]
        action_ids: set[str] = set()
        if kind == "section":
            if "text" not in block and "fields" not in block:
                self.fail("must provide either text or fields", pointer)
            if "text" in block:
                self.text_object(block["text"], f"{pointer}/text", 3000)
            if "fields" in block:
                for i, item in enumerate(self.items(block["fields"], f"{pointer}/fields", 10)):
                    self.text_object(item, f"{pointer}/fields/{i}", 2000)
            if "accessory" in block:
                self.element(block["accessory"], f"{pointer}/accessory", action_ids)
        elif kind == "header":
            self.text_object(block.get("text"), f"{pointer}/text", 150, plain_only=True)
        elif kind == "context":
            for i, item in enumerate(self.items(block.get("elements"), f"{pointer}/elements", 10)):
                item_pointer = f"{pointer}/elements/{i}"
                if isinstance(item, dict) and item.get("type") == "image":
                    self.image(item, item_pointer)
                else:
                    self.text_object(item, item_pointer, 3000)
        elif kind == "actions":
            for i, item in enumerate(self.items(block.get("elements"), f"{pointer}/elements", 25)):
                self.element(item, f"{pointer}/elements/{i}", action_ids)
        elif kind == "image":
            self.image(block, pointer)
            if "title" in block:
                self.text_object(block["title"], f"{pointer}/title", 2000, plain_only=True)
        elif kind == "markdown":
            self.string(block.get("text"), f"{pointer}/text", 12_000, required=True)
        elif kind == "rich_text":
            self.items(block.get("elements"), f"{pointer}/elements", 1_000)


def block_errors(blocks: Any) -> list[str]:
    """Return Slack-style error details for ``blocks`` (an empty list when Slack would accept).

    Checks the limits a message is most likely to break: 50 blocks, section text 3,000,
    header 150, button text 75 and url 3,000, 10 context elements, 25 actions elements,
    ``block_id``/``action_id`` 255, duplicate ids, unknown block or element types.
    """
    checker = _BlockChecker()
    if not isinstance(blocks, list):
        checker.fail("must be an array", "/blocks")
        return checker.errors
    if len(blocks) > MAX_BLOCKS:
        checker.fail(f"no more than {MAX_BLOCKS} items allowed", "/blocks")
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        pointer = f"/blocks/{i}"
        if not isinstance(block, dict):
            checker.fail("must be an object", pointer)
            continue
        if block.get("type") not in _BLOCK_TYPES:
            checker.fail(f"unsupported type: {block.get('type')}", f"{pointer}/type")
            continue
        block_id = block.get("block_id")
        checker.string(block_id, f"{pointer}/block_id", 255)
        if isinstance(block_id, str):
            if block_id in block_ids:
                checker.fail("duplicate block_id", f"{pointer}/block_id")
            block_ids.add(block_id)
        checker.block(block, pointer)
    return checker.errors


def _string_leaves(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _string_leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _string_leaves(item)


def _as_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0", ""):
        return value.lower() in ("true", "1")
    return value


def _ts_key(ts: str) -> Decimal:
    return Decimal(ts)


def _rich_text_for(text: str) -> list[dict[str, Any]]:
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


def _parse_params(query: str, body: bytes, content_type: str) -> dict[str, Any]:
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    mime = content_type.split(";", 1)[0].strip().lower()
    if body:
        if mime == "application/json":
            try:
                decoded = json.loads(body)
            except ValueError:
                raise _SlackError("invalid_json") from None
            if not isinstance(decoded, dict):
                raise _SlackError("invalid_json")
            params.update(decoded)
        elif mime in ("application/x-www-form-urlencoded", ""):
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        else:
            raise _SlackError("invalid_form_data")
    for name in _JSON_STRING_PARAMS:
        if isinstance(params.get(name), str) and params[name]:
            # An undecodable value stays a string: the method answers invalid_*_format.
            with contextlib.suppress(ValueError):
                params[name] = json.loads(params[name])
    for name in _BOOLEAN_PARAMS & params.keys():
        params[name] = _as_bool(params[name])
    return params


# ---------------------------------------------------------------------------------------------
# The double
# ---------------------------------------------------------------------------------------------


class SlackDouble:
    """A Slack workspace behind a local Web API server; see the module docstring.

    Use it as a context manager; point the client at ``base_url`` and ``response_url()``::

        with SlackDouble() as slack:
            client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url)
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        team_id: str = "T0001",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        app_id: str = "A0APP",
        populate: bool = True,
        app_token: str = "xapp-test",
    ) -> None:
        self.bot_token = bot_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._users: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, _Channel] = {}
        self._messages: dict[str, dict[str, dict[str, Any]]] = {}
        self._auto_blocks: set[tuple[str, str]] = set()
        self._calls: list[SlackCall] = []
        self._responses: list[dict[str, Any]] = []
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._sent_text: list[str] = []
        self._ts_counter = 0
        self.app_token = app_token
        """The app-level token ``apps.connections.open`` accepts (Socket Mode)."""
        self._socket_server: _SocketModeServer | None = None
        self._socket_start_lock = threading.Lock()
        self._socket_envelopes: list[dict[str, Any]] = []
        self._socket_acks: list[SocketAck] = []
        self._socket_other: list[Any] = []
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

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> SlackDouble:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.double = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.name = f"SlackDouble:{self.port}"
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopping.set()  # wakes injected delays so shutdown does not wait for them
        if self._socket_server is not None:
            self._socket_server.stop()
            self._socket_server = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> SlackDouble:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SlackDouble is not running; use it as a context manager")
        return self._server.server_address[1]

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The Web API base; the trailing slash matters because slack_sdk urljoins onto it."""
        return f"{self.root_url}/api/"

    # -- workspace scripting -------------------------------------------------------------------

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
            self._channels[channel_id] = _Channel(
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
                "blocks": _rich_text_for(text),
            }
            self._store(channel, message, thread_ts)
            return ts

    def fail_next(
        self,
        method: str,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
        delay: float = 0.0,
        drop: Literal["before", "after"] | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (``"*"``: any method) misbehave.

        - ``status=429``: HTTP 429, ``Retry-After: retry_after`` (1 when not given), body
          ``{"ok": false, "error": "ratelimited"}``; nothing happens.
        - ``error="..."`` with ``status=200``: Slack's usual failure; nothing happens.
        - other statuses: that status with ``{"ok": false, "error": error or "fatal_error"}``.
        - ``delay``: wait that long first; alone, the call then succeeds normally (slow Slack).
        - ``drop="before"``: close the connection without doing anything; ``drop="after"``: do
          the work (the message is posted) and close the connection without answering, as a
          reset would, so a client that retries posts twice.

        Faults queue in order; each lasts ``times`` calls.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.setdefault(method, []).append(
                _Fault(status, error, retry_after, delay, drop, times)
            )

    def response_url(self, tag: str = "") -> str:
        """A fresh ``response_url`` on this server, as Slack puts in a command payload."""
        with self._lock:
            number = len(self._response_urls) + 1
            url = f"{self.root_url}/commands/{self.team_id}/{number}/{secrets.token_urlsafe(12)}"
            self._response_urls[url] = _ResponseUrl(tag=tag)
            return url

    # -- inspection ----------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[SlackCall]:
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    @property
    def responses(self) -> list[dict[str, Any]]:
        """Each accepted JSON body sent to a ``response_url``, plus its ``"url"`` and ``"tag"``."""
        with self._lock:
            return copy.deepcopy(self._responses)

    def messages(self, channel: str | None = None, thread_ts: str | None = None) -> list[dict]:
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

    def all_text(self) -> str:
        """Everything ever sent as text: ``text``, every string in ``blocks`` and ``attachments``.

        Covers posts, updates, ephemerals and ``response_url`` bodies, including calls that
        failed (a rejected message still left the app). Metadata is not shown to people and is
        left out.
        """
        with self._lock:
            return "\n".join(self._sent_text)

    def wait_for(self, predicate: Callable[[SlackDouble], bool], timeout: float = 10.0) -> None:
        """Poll ``predicate(self)`` until true; on timeout fail with the last calls listed.

        Blocks the calling thread: from a coroutine whose loop also runs the app, use
        ``await wait_for_async(...)`` instead.
        """
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_report(timeout))
            time.sleep(0.01)

    async def wait_for_async(
        self,
        predicate: Callable[[SlackDouble], bool],
        timeout: float = 10.0,
    ) -> None:
        """``wait_for`` for a coroutine: sleeps with asyncio so the app's loop keeps running."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() >= deadline:
                raise AssertionError(self._timeout_report(timeout))
            await asyncio.sleep(0.01)

    def _timeout_report(self, timeout: float) -> str:
        lines = [f"Slack double: condition not met within {timeout}s. Last calls:"]
        for call in self.calls()[-20:]:
            outcome = "ok" if call.ok else f"error={call.error}"
            params = json.dumps(call.params, default=str)
            if len(params) > 300:
                params = params[:300] + "…"
            lines.append(f"  {call.method} {outcome} {params}")
        for response in self.responses[-5:]:
            lines.append(f"  response_url {json.dumps(response, default=str)[:300]}")
        if len(lines) == 1:
            lines.append("  (none)")
        return "\n".join(lines)

    # -- Socket Mode ---------------------------------------------------------------------------
    #
    # Slack's side of https://docs.slack.dev/apis/events-api/using-socket-mode/: the app calls
    # apps.connections.open with its xapp- token, opens the returned URL, gets a ``hello``, then
    # receives envelopes and answers each with ``{"envelope_id": ..., "payload"?: ...}``.

    def socket_connected(self) -> bool:
        """True while at least one Socket Mode connection is open and has had its ``hello``."""
        server = self._socket_server
        return server is not None and bool(server.open_connections())

    def socket_connections(self) -> int:
        """How many Socket Mode connections were ever accepted (each reconnect adds one)."""
        server = self._socket_server
        return 0 if server is None else server.accepted

    def socket_pings(self) -> int:
        """How many WebSocket pings the app's client sent (each was answered with a pong)."""
        server = self._socket_server
        return 0 if server is None else server.pings

    def socket_send(
        self,
        type: Literal["slash_commands", "events_api", "interactive"],
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        retry_reason: str | None = None,
        accepts_response_payload: bool | None = None,
        envelope_id: str | None = None,
        timeout: float = 5.0,
    ) -> str:
        """Deliver one envelope on the newest open connection, as Slack does; returns its id.

        ``payload`` is what Slack would have POSTed in HTTP mode, as a dict: the command's form
        fields, the ``event_callback`` body, or the interaction payload. Like Slack, events carry
        ``retry_attempt`` / ``retry_reason`` (``"timeout"`` by default for a retry) and slash
        commands accept a response payload; other types say so only when asked.
        """
        if accepts_response_payload is None:
            accepts_response_payload = type == "slash_commands" or (
                type == "interactive"
                and payload.get("type") in ("view_submission", "block_suggestion")
            )
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id or str(uuid.uuid4()),
            "payload": copy.deepcopy(payload),
            "type": type,
            "accepts_response_payload": accepts_response_payload,
        }
        if type == "events_api" or retry_attempt:
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = (
                retry_reason if retry_reason is not None else ("timeout" if retry_attempt else "")
            )
        self.socket_send_raw(envelope, timeout=timeout)
        return envelope["envelope_id"]

    def socket_send_raw(self, message: dict[str, Any], *, timeout: float = 5.0) -> None:
        """Send any JSON message on the newest open connection (recorded if it has an id)."""
        server = self._socket_server
        if server is None or not server.open_connections():
            raise AssertionError(
                "no open Socket Mode connection: start the app with SLACK_APP_TOKEN and wait "
                "for socket_connected() first"
            )
        if "envelope_id" in message:
            with self._lock:
                self._socket_envelopes.append(copy.deepcopy(message))
        server.send(json.dumps(message), timeout=timeout)

    def socket_disconnect(self, reason: str = "refresh_requested", *, timeout: float = 5.0) -> None:
        """Send Slack's ``disconnect`` message on every open connection.

        Slack does this before it rotates a connection (``refresh_requested``, every few hours)
        or when Socket Mode is turned off (``link_disabled``); the client should open a new one.
        """
        server = self._socket_server
        if server is None:
            raise AssertionError("no Socket Mode connection was ever opened")
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": SOCKET_MODE_HOST}}
        server.send(json.dumps(message), timeout=timeout, everyone=True)

    def socket_close(self, code: int = WSCloseCode.GOING_AWAY, *, timeout: float = 5.0) -> None:
        """Close every open connection from Slack's side, as a network drop or restart would."""
        server = self._socket_server
        if server is not None:
            server.close_all(code, timeout=timeout)

    def socket_envelopes(self) -> list[dict[str, Any]]:
        """Every envelope sent so far, in order, exactly as sent."""
        with self._lock:
            return copy.deepcopy(self._socket_envelopes)

    def socket_acks(self, envelope_id: str | None = None) -> list[SocketAck]:
        """Acks received so far (for one envelope if given), in arrival order."""
        with self._lock:
            return [a for a in self._socket_acks if envelope_id in (None, a.envelope_id)]

    def socket_ack(self, envelope_id: str, timeout: float = 3.0) -> dict[str, Any] | None:
        """Wait for the app's ack of ``envelope_id``; its payload, ``{}`` for a bare ack, or
        ``None`` if no ack came within ``timeout``.

        Blocks the calling thread, so it refuses to run on a thread with a running event loop
        (the app on that loop could never ack): from a coroutine use ``socket_ack_async``.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("socket_ack blocks: from a coroutine await socket_ack_async()")
        deadline = time.monotonic() + timeout
        while True:
            acks = self.socket_acks(envelope_id)
            if acks:
                return copy.deepcopy(acks[0].payload) if acks[0].payload is not None else {}
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.005)

    async def socket_ack_async(
        self, envelope_id: str, timeout: float = 3.0
    ) -> dict[str, Any] | None:
        """``socket_ack`` for a coroutine: sleeps with asyncio so the app's loop keeps running."""
        deadline = time.monotonic() + timeout
        while True:
            acks = self.socket_acks(envelope_id)
            if acks:
                return copy.deepcopy(acks[0].payload) if acks[0].payload is not None else {}
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.005)

    def _socket_received(self, connection: int, data: str) -> None:
        """A text frame from the app: an ack if it names an envelope, else kept for inspection."""
        arrived = time.monotonic()
        try:
            message = json.loads(data)
        except ValueError:
            message = None
        with self._lock:
            if isinstance(message, dict) and isinstance(message.get("envelope_id"), str):
                envelope_id = message["envelope_id"]
                payload = message.get("payload")
                self._socket_acks.append(
                    SocketAck(
                        envelope_id=envelope_id,
                        payload=copy.deepcopy(payload) if isinstance(payload, dict) else None,
                        at=arrived,
                        known=any(e["envelope_id"] == envelope_id for e in self._socket_envelopes),
                        connection=connection,
                    )
                )
            else:
                self._socket_other.append(message if message is not None else data)

    def _socket(self) -> _SocketModeServer:
        """The WebSocket server, started on first use so tests without Socket Mode pay nothing."""
        with self._socket_start_lock:
            if self._socket_server is None:
                if self._stopping.is_set():
                    raise RuntimeError("SlackDouble is closing")
                self._socket_server = _SocketModeServer(self).start()
            return self._socket_server

    def _serve_connections_open(
        self,
        params: dict[str, Any],
        arrived: float,
        token: str | None,
        parse_error: str | None,
        fault: _Fault | None,
    ) -> _Reply:
        """apps.connections.open: only the app-level token opens a connection URL."""
        if token is None:
            answer: dict[str, Any] = {"ok": False, "error": "not_authed"}
        elif token.startswith(("xoxb-", "xoxp-")):
            answer = {"ok": False, "error": "not_allowed_token_type"}
        elif token != self.app_token:
            answer = {"ok": False, "error": "invalid_auth"}
        elif parse_error is not None:
            answer = {"ok": False, "error": parse_error}
        else:
            answer = {"ok": True, "url": self._socket().issue_url(self.app_id)}
        self._record("apps.connections.open", params, arrived, answer)
        if fault is not None and fault.drop == "after":
            return _Reply(0, b"", drop=True)
        return _Reply(200, json.dumps(answer).encode())

    # -- HTTP entry points (server threads) -----------------------------------------------------

    def _serve(self, verb: str, path: str, query: str, headers: Any, body: bytes) -> _Reply:
        if path.startswith("/api/"):
            return self._serve_api(path[len("/api/") :], query, headers, body)
        if path.startswith("/commands/"):
            return self._serve_response_url(verb, f"{self.root_url}{path}", body)
        return _Reply(404, b"not found", "text/plain")

    def _serve_api(self, method: str, query: str, headers: Any, body: bytes) -> _Reply:
        arrived = time.monotonic()
        try:
            params = _parse_params(query, body, headers.get("Content-Type", ""))
        except _SlackError as failure:
            params, parse_error = {}, failure.error
        else:
            parse_error = None
        token = self._token(headers.get("Authorization"), params)

        fault = self._take_fault(method)
        if fault is not None:
            if fault.delay:
                self._stopping.wait(fault.delay)
            if fault.drop == "before":
                self._record(method, params, arrived, {"ok": False, "error": "connection_dropped"})
                return _Reply(0, b"", drop=True)
            if fault.status != 200 or fault.error is not None:
                return self._faulted(method, params, arrived, fault)

        if method == "apps.connections.open":
            return self._serve_connections_open(params, arrived, token, parse_error, fault)

        if method not in self._methods:
            answer = {"ok": False, "error": "unknown_method", "req_method": method}
        elif token is None:
            answer = {"ok": False, "error": "not_authed"}
        elif token != self.bot_token:
            answer = {"ok": False, "error": "invalid_auth"}
        elif parse_error is not None:
            answer = {"ok": False, "error": parse_error}
        else:
            with self._lock:
                try:
                    answer = {"ok": True, **self._methods[method](params)}
                except _SlackError as failure:
                    answer = {"ok": False, "error": failure.error, **failure.extra}
                except Exception as exc:  # a bug in the double: make it loud, not a hang
                    answer = {"ok": False, "error": "fatal_error", "double_bug": repr(exc)}
                    self._record(method, params, arrived, answer)
                    return _Reply(500, json.dumps(answer).encode())
        self._record(method, params, arrived, answer)
        if fault is not None and fault.drop == "after":
            return _Reply(0, b"", drop=True)
        return _Reply(200, json.dumps(answer).encode())

    def _token(self, authorization: str | None, params: dict[str, Any]) -> str | None:
        body_token = params.pop("token", None)
        if authorization:
            scheme, _, value = authorization.partition(" ")
            return value.strip() if scheme.lower() == "bearer" else ""
        return body_token

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            for key in (method, "*"):
                queue = self._faults.get(key)
                if queue:
                    fault = queue[0]
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        queue.pop(0)
                    return fault
        return None

    def _faulted(
        self, method: str, params: dict[str, Any], arrived: float, fault: _Fault
    ) -> _Reply:
        headers: dict[str, str] = {}
        if fault.status == 429:
            error = fault.error or "ratelimited"
            headers["Retry-After"] = str(fault.retry_after if fault.retry_after is not None else 1)
        else:
            error = fault.error or "fatal_error"
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
        answer = {"ok": False, "error": error}
        self._record(method, params, arrived, answer)
        return _Reply(fault.status, json.dumps(answer).encode(), headers=headers)

    def _record(self, method: str, params: dict[str, Any], at: float, answer: dict) -> None:
        with self._lock:
            self._calls.append(
                SlackCall(
                    method=method,
                    params=params,
                    at=at,
                    ok=bool(answer.get("ok")),
                    error=answer.get("error"),
                    response=answer,
                )
            )

    def _serve_response_url(self, verb: str, url: str, body: bytes) -> _Reply:
        def plain(status: int, text: str) -> _Reply:
            return _Reply(status, text.encode(), "text/plain; charset=utf-8")

        if verb != "POST":
            return plain(405, "invalid_method")
        with self._lock:
            entry = self._response_urls.get(url)
            if entry is None:
                return plain(404, "no_service")
            if entry.uses >= RESPONSE_URL_USES:
                return plain(404, "used_url")
            try:
                payload = json.loads(body or b"null")
            except ValueError:
                return plain(400, "invalid_payload")
            if not isinstance(payload, dict):
                return plain(400, "invalid_payload")
            self._remember_text(payload)
            if not (
                payload.get("text")
                or payload.get("blocks")
                or payload.get("attachments")
                or payload.get("delete_original")
            ):
                return plain(400, "no_text")
            if "blocks" in payload and block_errors(payload["blocks"]):
                return plain(400, "invalid_blocks")
            entry.uses += 1
            self._responses.append({**payload, "url": url, "tag": entry.tag})
            return plain(200, "ok")

    # -- workspace model -----------------------------------------------------------------------

    def _next_ts(self) -> str:
        micros = FIRST_TS_MICROS + 100 * self._ts_counter
        self._ts_counter += 1
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _is_member(self, channel: _Channel, user: str) -> bool:
        if user == self.bot_user_id:
            return channel.bot_member
        if channel.members is None:
            return user in self._users
        return user in channel.members

    def _visible_channel(self, channel_id: Any) -> _Channel:
        """The channel as the bot can see it: private channels and DMs it is not in do not exist."""
        if isinstance(channel_id, str) and channel_id.startswith("#"):
            named = [c for c in self._channels.values() if c.name == channel_id[1:] and not c.im]
            channel = named[0] if named else None
        else:
            channel = self._channels.get(channel_id) if isinstance(channel_id, str) else None
        if channel is None or ((channel.private or channel.im) and not channel.bot_member):
            raise _SlackError("channel_not_found")
        return channel

    def _writable_channel(self, channel_id: Any) -> _Channel:
        channel = self._visible_channel(channel_id)
        if channel.archived:
            raise _SlackError("is_archived")
        if not channel.bot_member:
            raise _SlackError("not_in_channel")
        return channel

    def _existing_message(self, channel: _Channel, ts: Any) -> dict[str, Any]:
        message = self._messages[channel.id].get(ts) if isinstance(ts, str) else None
        if message is None:
            raise _SlackError("message_not_found")
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

    def _remember_text(self, payload: dict[str, Any]) -> None:
        if isinstance(payload.get("text"), str):
            self._sent_text.append(payload["text"])
        for name in ("blocks", "attachments"):
            self._sent_text.extend(_string_leaves(payload.get(name)))

    def _check_content(self, params: dict[str, Any]) -> None:
        """Slack's checks on what a message says: no_text, invalid_blocks, metadata shape."""
        blocks = params.get("blocks")
        attachments = params.get("attachments")
        if isinstance(blocks, str):
            raise _SlackError("invalid_blocks_format")
        if isinstance(attachments, str) or (
            attachments is not None and not isinstance(attachments, list)
        ):
            raise _SlackError("invalid_attachments")
        if not params.get("text") and not blocks and not attachments:
            raise _SlackError("no_text")
        if blocks is not None:
            errors = block_errors(blocks)
            if errors:
                raise _SlackError(
                    "invalid_blocks",
                    errors=errors,
                    response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
                )
        metadata = params.get("metadata")
        if metadata is not None:
            if isinstance(metadata, str):
                raise _SlackError("invalid_metadata_format")
            if not (
                isinstance(metadata, dict)
                and isinstance(metadata.get("event_type"), str)
                and isinstance(metadata.get("event_payload"), dict)
            ):
                raise _SlackError("invalid_metadata_schema")

    def _bot_message(self, text: str, blocks: Any, ts: str) -> dict[str, Any]:
        return {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "text": text,
            "ts": ts,
            "blocks": copy.deepcopy(blocks) if blocks else _rich_text_for(text),
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": self._users[self.bot_user_id]["name"],
                "team_id": self.team_id,
            },
        }

    # -- Web API methods (called with the lock held) --------------------------------------------

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
        self._remember_text(params)
        channel = self._writable_channel(params.get("channel"))
        self._check_content(params)
        thread_ts = params.get("thread_ts") or None
        if thread_ts is not None:
            parent = self._messages[channel.id].get(str(thread_ts))
            if parent is None:
                raise _SlackError("thread_not_found")
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
        return {"channel": channel.id, "ts": ts, "message": copy.deepcopy(message), **extra}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        self._remember_text(params)
        channel = self._visible_channel(params.get("channel"))
        message = self._existing_message(channel, params.get("ts"))
        if message.get("bot_id") != self.bot_id:
            raise _SlackError("cant_update_message")
        if channel.archived:
            raise _SlackError("is_archived")
        text = params.get("text")
        if isinstance(text, str) and len(text) > UPDATE_TEXT_LIMIT:
            raise _SlackError("msg_too_long")
        self._check_content(params)
        key = (channel.id, message["ts"])
        if text is not None:
            message["text"] = text
        if "blocks" in params:
            if params["blocks"]:
                message["blocks"] = copy.deepcopy(params["blocks"])
                self._auto_blocks.discard(key)
            else:  # an empty list removes the blocks
                message["blocks"] = _rich_text_for(message["text"])
                self._auto_blocks.add(key)
        elif key in self._auto_blocks:
            message["blocks"] = _rich_text_for(message["text"])
        if "attachments" in params:
            message["attachments"] = copy.deepcopy(params["attachments"])
        if params.get("metadata") is not None:
            message["metadata"] = copy.deepcopy(params["metadata"])
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {
            "channel": channel.id,
            "ts": message["ts"],
            "text": message["text"],
            "message": copy.deepcopy(message),
        }

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        self._remember_text(params)
        channel = self._writable_channel(params.get("channel"))
        user = params.get("user")
        if not isinstance(user, str) or not self._is_member(channel, user):
            raise _SlackError("user_not_in_channel")
        self._check_content(params)
        return {"message_ts": self._next_ts()}

    def _chat_get_permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._visible_channel(params.get("channel"))
        message = self._existing_message(channel, params.get("message_ts"))
        permalink = f"{WORKSPACE_URL}archives/{channel.id}/p{message['ts'].replace('.', '')}"
        thread_ts = message.get("thread_ts")
        if thread_ts is not None and thread_ts != message["ts"]:
            permalink += f"?thread_ts={thread_ts}&cid={channel.id}"
        return {"channel": channel.id, "permalink": permalink}

    def _reaction_target(self, params: dict[str, Any]) -> tuple[dict[str, Any], str]:
        channel = self._visible_channel(params.get("channel"))
        message = self._existing_message(channel, params.get("timestamp"))
        name = params.get("name")
        if not isinstance(name, str) or not name or name.startswith(":") or name.endswith(":"):
            # Slack wants the bare name ("eyes"), not ":eyes:".
            raise _SlackError("invalid_name")
        if any(c.isspace() for c in name):
            raise _SlackError("invalid_name")
        return message, name

    def _reactions_add(self, params: dict[str, Any]) -> dict[str, Any]:
        message, name = self._reaction_target(params)
        reactions = message.setdefault("reactions", [])
        reaction = next((r for r in reactions if r["name"] == name), None)
        if reaction is None:
            reaction = {"name": name, "users": [], "count": 0}
            reactions.append(reaction)
        if self.bot_user_id in reaction["users"]:
            raise _SlackError("already_reacted")
        reaction["users"].append(self.bot_user_id)
        reaction["count"] = len(reaction["users"])
        return {}

    def _reactions_remove(self, params: dict[str, Any]) -> dict[str, Any]:
        message, name = self._reaction_target(params)
        reactions = message.get("reactions", [])
        reaction = next((r for r in reactions if r["name"] == name), None)
        if reaction is None or self.bot_user_id not in reaction["users"]:
            raise _SlackError("no_reaction")
        reaction["users"].remove(self.bot_user_id)
        reaction["count"] = len(reaction["users"])
        if not reaction["users"]:
            reactions.remove(reaction)
        if not reactions:
            message.pop("reactions", None)
        return {}

    def _conversations_join(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channels.get(params.get("channel"))  # type: ignore[arg-type]
        if channel is None:
            raise _SlackError("channel_not_found")
        if channel.private or channel.im:
            raise _SlackError("method_not_supported_for_channel_type")
        if channel.archived:
            raise _SlackError("is_archived")
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
        channel = self._visible_channel(params.get("channel"))
        if not channel.bot_member:
            raise _SlackError("not_in_channel")
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
        channel = self._visible_channel(params.get("channel"))
        if not channel.bot_member:
            raise _SlackError("not_in_channel")
        ts = params.get("ts")
        if not isinstance(ts, str) or ts not in self._messages[channel.id]:
            raise _SlackError("thread_not_found")
        stored = self._messages[channel.id]
        root = stored[ts].get("thread_ts", ts)
        thread = sorted(
            (m for m in stored.values() if m["ts"] == root or m.get("thread_ts") == root),
            key=lambda m: _ts_key(m["ts"]),
        )
        try:
            limit = max(1, min(int(params.get("limit") or 1000), 1000))
        except ValueError:
            raise _SlackError("invalid_limit") from None
        start = 0
        if params.get("cursor"):
            try:
                after = base64.b64decode(params["cursor"]).decode().removeprefix("next_ts:")
                start = next(i for i, m in enumerate(thread) if m["ts"] == after)
            except (ValueError, StopIteration):
                raise _SlackError("invalid_cursor") from None
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
            raise _SlackError("user_not_found")
        return {"user": copy.deepcopy(user)}


class _Handler(BaseHTTPRequestHandler):
    server_version = "SlackDouble/1.0"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        double: SlackDouble = self.server.double  # type: ignore[attr-defined]
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = double._serve(self.command, split.path, split.query, self.headers, body)
        if reply.drop:
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr line; the double records calls instead."""


@dataclass
class _SocketConnection:
    number: int
    ws: web.WebSocketResponse


class _SocketModeServer:
    """Slack's Socket Mode end: an aiohttp WebSocket server on its own thread and event loop.

    Connection URLs carry a one-time ticket issued by apps.connections.open; a connection gets
    ``hello`` first, then whatever the double sends; text frames back are handed to the double,
    pings are answered with pongs.
    """

    CLOSE_TIMEOUT = 2.0

    def __init__(self, double: SlackDouble) -> None:
        self.double = double
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.accepted = 0
        self.pings = 0
        self._runner: web.AppRunner | None = None
        self._tickets: set[str] = set()
        self._open: list[_SocketConnection] = []
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="SlackDouble:socket", daemon=True)

    # -- called from any thread -------------------------------------------------------------

    def start(self) -> _SocketModeServer:
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("the Socket Mode server did not start within 5 s")
        if self._failure is not None:
            raise RuntimeError("the Socket Mode server failed to start") from self._failure
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)

    def issue_url(self, app_id: str) -> str:
        ticket = secrets.token_urlsafe(18)
        with self.double._lock:
            self._tickets.add(ticket)
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={app_id}"

    def open_connections(self) -> list[_SocketConnection]:
        with self.double._lock:
            return [c for c in self._open if not c.ws.closed]

    def send(self, text: str, *, timeout: float, everyone: bool = False) -> None:
        connections = self.open_connections()
        if not connections:
            raise AssertionError("no open Socket Mode connection")
        targets = connections if everyone else connections[-1:]
        for connection in targets:
            future = asyncio.run_coroutine_threadsafe(connection.ws.send_str(text), self.loop)
            future.result(timeout)

    def close_all(self, code: int, *, timeout: float) -> None:
        future = asyncio.run_coroutine_threadsafe(self._close_all(code), self.loop)
        future.result(timeout)

    # -- the server's own loop ----------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            try:
                self.loop.run_until_complete(self._listen())
            except BaseException as exc:
                self._failure = exc
                return
            finally:
                self._ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self._shutdown())
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def _listen(self) -> None:
        app = web.Application()
        app.router.add_get("/link/", self._link)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        await self._close_all(WSCloseCode.GOING_AWAY)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _close_all(self, code: int) -> None:
        for connection in self.open_connections():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    connection.ws.close(code=code, message=b"closed by the Slack double"),
                    self.CLOSE_TIMEOUT + 1,
                )

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self.double._lock:
            valid = ticket in self._tickets
            self._tickets.discard(ticket)  # a URL opens one connection
        if not valid:
            return web.Response(status=401, text="invalid_ticket")
        ws = web.WebSocketResponse(autoping=False, timeout=self.CLOSE_TIMEOUT)
        await ws.prepare(request)
        with self.double._lock:
            self.accepted += 1
            connection = _SocketConnection(self.accepted, ws)
            live = len([c for c in self._open if not c.ws.closed]) + 1
        hello = {
            "type": "hello",
            "num_connections": live,
            "debug_info": {
                "host": SOCKET_MODE_HOST,
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.double.app_id},
        }
        try:
            await ws.send_str(json.dumps(hello))
            with self.double._lock:
                self._open.append(connection)
            async for message in ws:
                if message.type == WSMsgType.PING:
                    with self.double._lock:
                        self.pings += 1
                    await ws.pong(message.data)
                elif message.type == WSMsgType.TEXT:
                    self.double._socket_received(connection.number, message.data)
        finally:
            with self.double._lock:
                if connection in self._open:
                    self._open.remove(connection)
        return ws
