"""What the app says to Slack, by intent; the only module that knows Web API method names.

chat.postMessage has no idempotency key, so each post carries a metadata key. After a crash
mid-post, `find_post` looks for that key in the thread: found means the post went out and must
not be repeated.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

log = logging.getLogger(__name__)
# Ours, not Slack's: the workspace has no installation (many workspaces), so no call is made.
NOT_INSTALLED = "not_installed"
METADATA_EVENT = "motion_bot_post"
# Errors after which a post can never succeed; anything else is retried later.
PERMANENT_ERRORS = {
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "thread_not_found",
    "invalid_blocks",
    "msg_too_long",
    "no_text",
    "restricted_action",
    "invalid_auth",
    "account_inactive",
    "token_revoked",
    "missing_scope",
    "message_not_found",
    "cant_update_message",
    "function_execution_not_found",
    "parameter_validation_failed",
    NOT_INSTALLED,
}
# functions.completeSuccess / completeError: the execution already ended (completed by an
# earlier call whose answer was lost, or failed by Slack): nothing more to do.
STEP_ALREADY_ENDED = "execution_not_in_running_state"


# Slack refuses these for the layout alone: the same words without blocks still go out.
BLOCK_ERRORS = {"invalid_blocks", "msg_blocks_too_long", "invalid_blocks_format"}
# chat.update is Tier 3 (about 50 a minute for a workspace): progress-only edits of cards
# (the elapsed time) share a budget below that, so phase changes and posts are never held up.
PROGRESS_EDITS_PER_MINUTE = 30
PROGRESS_EDIT_BURST = 10


# How a Web API call ended, as told to an observer (bot/metrics.py counts them): "ok", "429",
# "5xx", "error_permanent" (Slack said no for good: PERMANENT_ERRORS), "error_retryable" (any
# other error Slack named), "timeout", or "network" (no answer: the connection failed).
CallObserver = Callable[[str, str], None]


def outcome_of(exc: SlackApiError) -> str:
    """The outcome of a call Slack answered with an error (its code is never a label: a
    class of it is, so the number of series stays small whatever Slack says)."""
    status = exc.response.status_code
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    code = str(exc.response.get("error") or "")
    return "error_permanent" if code in PERMANENT_ERRORS else "error_retryable"


def _failure_outcome(exc: BaseException) -> str:
    return "timeout" if isinstance(exc, TimeoutError) else "network"


class _Told(AsyncRetryHandler):
    """A retry handler of slack_sdk's, telling the observer of each answer it retries (a 429
    waited out, a 5xx or a dropped connection tried again): the call's last answer is told by
    `SlackOut._call`, so every answer Slack gave is counted once."""

    def __init__(self, inner: AsyncRetryHandler, observe: CallObserver) -> None:
        super().__init__(inner.max_retry_count, inner.interval_calculator)
        self.inner, self.observe = inner, observe

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return await self.inner.can_retry_async(
            state=state, request=request, response=response, error=error
        )

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        method = request.url.rsplit("/", 1)[-1].split("?", 1)[0]
        if error is not None or response is None:  # (`response` may be an earlier attempt's)
            self.observe(method, _failure_outcome(error or OSError()))
        else:  # the handlers retry only these two
            self.observe(method, "429" if response.status_code == 429 else "5xx")
        await self.inner.prepare_for_next_attempt_async(
            state=state, request=request, response=response, error=error
        )


def is_direct_message(channel: str) -> bool:
    """A DM's id starts with D: the app cannot join one."""
    return channel.startswith("D")


@dataclass
class TokenBucket:
    """At most `rate` per second on average, `burst` at once."""

    rate: float
    burst: float
    tokens: float = 0.0
    updated: float | None = None

    def take(self, now: float) -> bool:
        if self.updated is None:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(frozen=True)
class _Where:
    """Where a post goes and what its metadata says of it."""

    thread_ts: str | None
    broadcast: bool
    key: str | None
    kind: str | None
    run: int | None


class SlackFailure(Exception):
    def __init__(self, code: str, *, permanent: bool) -> None:
        super().__init__(code)
        self.code = code
        self.permanent = permanent


@dataclass(frozen=True)
class JoinResult:
    member: bool
    can_join: bool


def make_client(
    token: str | None,
    base_url: str,
    *,
    retry_writes: bool = True,
    session: aiohttp.ClientSession | None = None,
    observe: CallObserver | None = None,
) -> AsyncWebClient:
    """A client that waits out 429s (Retry-After: nothing was done, so waiting is safe).

    With `retry_writes` it also retries dropped connections and 5xx, which suits reads and
    Bolt's own calls. The outbox's client must not: a connection that drops after Slack posted
    would post again, and chat.postMessage has no idempotency key. Its failures go back to the
    outbox, which looks for the post in the thread before sending it again.

    `observe(method, outcome)` hears each answer a retry handler retried (give the same one
    to the `SlackOut` over this client, which tells the last answer of each call).
    """
    handlers: list[AsyncRetryHandler] = [AsyncRateLimitErrorRetryHandler(max_retry_count=3)]
    if retry_writes:
        handlers += [
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncServerErrorRetryHandler(max_retry_count=2),
        ]
    if observe is not None:
        handlers = [_Told(handler, observe) for handler in handlers]
    return AsyncWebClient(
        token=token, base_url=base_url, timeout=15, retry_handlers=handlers, session=session
    )


# A workspace's bot token, asked at each call (it may have been refreshed); None: the workspace
# has no installation any more.
TokenSource = Callable[[], Awaitable[str | None]]


class SlackOut:
    def __init__(
        self,
        client: AsyncWebClient,
        *,
        observe: CallObserver | None = None,
        token: TokenSource | None = None,
        workspace: str = "the workspace",
    ) -> None:
        """`observe(method, outcome)` hears how each Web API call ended (see `CallObserver`).
        `token`: the workspace's token for each call (many workspaces), instead of the
        client's own (one workspace); `workspace` names it in the log."""
        self.client = client
        self._observe = observe
        self._token = token
        self.workspace = workspace
        self._progress_edits = TokenBucket(PROGRESS_EDITS_PER_MINUTE / 60, PROGRESS_EDIT_BURST)

    async def _authorization(self) -> dict[str, str] | None:
        """The Authorization header of this workspace's token (None: the client's own)."""
        if self._token is None:
            return None
        token = await self._token()
        if token is None:
            log.warning("%s has no installation: its Slack call is not made", self.workspace)
            raise SlackFailure(NOT_INSTALLED, permanent=True)
        return {"Authorization": f"Bearer {token}"}

    def may_edit_progress(self, now: float) -> bool:
        """Whether a progress-only edit fits in the workspace's chat.update budget now."""
        return self._progress_edits.take(now)

    async def _call(self, method: str, _form: bool = False, **params: Any) -> dict[str, Any]:
        """`_form`: send the arguments as a form, for the methods that take no JSON body
        (the file upload's, as slack_sdk sends them)."""
        observe = self._observe
        headers = await self._authorization()
        try:
            if _form:
                response = await self.client.api_call(method, params=params, headers=headers)
            else:
                response = await self.client.api_call(method, json=params, headers=headers)
        except SlackApiError as exc:
            if observe is not None:
                observe(method, outcome_of(exc))
            code = str(exc.response.get("error") or exc.response.status_code)
            raise SlackFailure(code, permanent=code in PERMANENT_ERRORS) from exc
        except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            if observe is not None:
                observe(method, _failure_outcome(exc))
            raise SlackFailure(type(exc).__name__, permanent=False) from exc
        if observe is not None:
            observe(method, "ok")
        return response.data if isinstance(response.data, dict) else {}

    async def post(
        self,
        channel: str,
        payload: dict[str, Any],
        *,
        thread_ts: str | None = None,
        broadcast: bool = False,
        key: str | None = None,
        kind: str | None = None,
        run: int | None = None,
    ) -> str:
        """Post; if Slack refuses the layout, the words (which carry every link) still go out."""
        where = _Where(thread_ts, broadcast, key, kind, run)
        try:
            return await self._post(channel, payload, where)
        except SlackFailure as exc:
            if exc.code not in BLOCK_ERRORS or not payload.get("blocks"):
                raise
            log.warning("Slack refused a layout (%s); posting it as plain text", exc.code)
            return await self._post(channel, {"text": payload.get("text") or ""}, where)

    async def _post(self, channel: str, payload: dict[str, Any], where: _Where) -> str:
        """Post a message tagged with metadata: `key` finds it again after a lost answer;
        `kind` and `run` say what it is to anyone reading the thread later."""
        params: dict[str, Any] = {
            "channel": channel,
            "text": payload.get("text") or " ",
            "blocks": payload.get("blocks") or None,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if where.thread_ts:
            params["thread_ts"] = where.thread_ts
            if where.broadcast:
                params["reply_broadcast"] = True
        if where.key:
            about: dict[str, Any] = {"key": where.key}
            if where.kind:
                about["kind"] = where.kind
            if where.run is not None:
                about["run"] = where.run
            params["metadata"] = {"event_type": METADATA_EVENT, "event_payload": about}
        data = await self._call(
            "chat.postMessage", **{k: v for k, v in params.items() if v is not None}
        )
        return str(data.get("ts"))

    async def update(self, channel: str, ts: str, payload: dict[str, Any]) -> None:
        await self._call(
            "chat.update",
            channel=channel,
            ts=ts,
            text=payload.get("text") or " ",
            blocks=payload.get("blocks") or [],
        )

    async def find_post(
        self, channel: str, thread_ts: str | None, key: str, since: float | None = None
    ) -> str | None:
        """The ts of the bot's earlier post carrying `key`, if it reached Slack."""
        params: dict[str, Any] = {"channel": channel, "include_all_metadata": True}
        if thread_ts:
            method, params["ts"], params["limit"] = "conversations.replies", thread_ts, 200
        else:
            method, params["limit"] = "conversations.history", 100
            if since is not None:
                params["oldest"] = f"{since - 60:.6f}"
        for _ in range(20):  # pages; a thread of thousands of messages is not a job thread
            data = await self._call(method, **params)
            for message in data.get("messages") or []:
                metadata = message.get("metadata") or {}
                if (
                    metadata.get("event_type") == METADATA_EVENT
                    and (metadata.get("event_payload") or {}).get("key") == key
                ):
                    return str(message.get("ts"))
            cursor = (data.get("response_metadata") or {}).get("next_cursor")
            if not data.get("has_more") or not cursor:
                break
            params["cursor"] = cursor
        return None

    async def join(self, channel: str) -> JoinResult:
        """Join a public channel so its thread replies reach the app (posting rights do not)."""
        if is_direct_message(channel):
            return JoinResult(member=False, can_join=False)
        try:
            await self._call("conversations.join", channel=channel)
        except SlackFailure as exc:
            if exc.code in (
                "method_not_supported_for_channel_type",
                "channel_not_found",
                "is_archived",
                "missing_scope",
            ):
                return JoinResult(member=False, can_join=False)
            raise
        return JoinResult(member=True, can_join=True)

    async def permalink(self, channel: str, ts: str) -> str | None:
        try:
            data = await self._call("chat.getPermalink", channel=channel, message_ts=ts)
        except SlackFailure as exc:
            log.warning("chat.getPermalink failed: %s", exc.code)
            return None
        link = data.get("permalink")
        return link if isinstance(link, str) else None

    async def thread_permalink(self, channel: str, ts: str) -> str:
        """The thread's link, or SlackFailure (`permalink` logs and answers None instead)."""
        data = await self._call("chat.getPermalink", channel=channel, message_ts=ts)
        link = data.get("permalink")
        if not isinstance(link, str):
            raise SlackFailure("invalid_response", permanent=False)
        return link

    # ------------------------------------------------------------ Workflow Builder steps

    async def complete_step(
        self, execution_id: str, *, outputs: dict[str, str] | None = None, error: str | None = None
    ) -> bool:
        """End a workflow step: with `outputs` (functions.completeSuccess) or with the words of
        `error` (functions.completeError). Called with the app's own bot token (this client's):
        the event's `bot_access_token` expires long before a video is ready (docs/choices.md).
        False when the execution had already ended (a repeat after a lost answer)."""
        try:
            if error is not None:
                await self._call(
                    "functions.completeError", function_execution_id=execution_id, error=error
                )
            else:
                await self._call(
                    "functions.completeSuccess",
                    function_execution_id=execution_id,
                    outputs=outputs or {},
                )
        except SlackFailure as exc:
            if exc.code == STEP_ALREADY_ENDED:
                return False
            raise
        return True

    async def react(self, channel: str, ts: str, name: str) -> None:
        try:
            await self._call("reactions.add", channel=channel, timestamp=ts, name=name)
        except SlackFailure as exc:
            if exc.code != "already_reacted":
                log.warning("reactions.add %s failed: %s", name, exc.code)

    async def tell_privately(
        self, channel: str, user: str, payload: dict[str, Any], *, thread_ts: str | None = None
    ) -> str | None:
        """An ephemeral message only `user` sees (in the thread when given); nothing is kept.
        Returns Slack's error when it could not be shown (logged), else None."""
        params: dict[str, Any] = {
            "channel": channel,
            "user": user,
            "text": payload.get("text") or " ",
            "blocks": payload.get("blocks") or None,
        }
        if thread_ts:
            params["thread_ts"] = thread_ts
        try:
            await self._call(
                "chat.postEphemeral", **{k: v for k, v in params.items() if v is not None}
            )
        except SlackFailure as exc:
            log.warning("chat.postEphemeral failed: %s", exc.code)
            return exc.code
        return None

    async def respond(self, response_url: str, payload: dict[str, Any]) -> None:
        """Answer a slash command after its ack, where the app may not be able to post."""
        try:
            response = await AsyncWebhookClient(response_url, timeout=10).send_dict(
                {"response_type": "ephemeral", "replace_original": False, **payload}
            )
        except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("response_url failed: %s", type(exc).__name__)
            return
        if response.status_code != 200:
            log.warning("response_url answered %s", response.status_code)

    # ------------------------------------------------------------ people

    async def is_workspace_admin(self, user_id: str, team_id: str | None = None) -> bool | None:
        """users.info: whether the person is an admin or owner of the workspace `team_id` (one
        of its Motion admins): never a guest or a person of another organisation (Slack
        Connect: their flags are their own org's), nor someone whose home workspace is another
        unless Enterprise Grid lists this one as theirs. None when Slack cannot say: the caller
        takes it as no admin, and does not keep it."""
        try:
            data = await self._call("users.info", True, user=user_id)  # a form: no JSON
        except SlackFailure as exc:
            log.warning("users.info failed: %s", exc.code)
            return None
        user = data.get("user") or {}
        if not isinstance(user, dict):
            return False
        if any(
            user.get(k) is True for k in ("is_stranger", "is_restricted", "is_ultra_restricted")
        ):
            return False
        home = user.get("team_id")
        if team_id and isinstance(home, str) and home and home != team_id:
            grid = user.get("enterprise_user") or {}
            teams = grid.get("teams") if isinstance(grid, dict) else None
            if not isinstance(teams, list) or team_id not in teams:
                return False
        roles = ("is_admin", "is_owner", "is_primary_owner")
        return any(user.get(role) is True for role in roles)

    # ------------------------------------------------------------ views (modals, App Home)

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> str | None:
        """Open a modal with a trigger (valid 3 s, once); the view's id, or None if Slack said no."""
        try:
            data = await self._call("views.open", trigger_id=trigger_id, view=view)
        except SlackFailure as exc:
            log.warning("views.open failed: %s", exc.code)
            return None
        opened = data.get("view") or {}
        return str(opened.get("id")) if opened.get("id") else None

    async def publish_home(self, user_id: str, view: dict[str, Any]) -> None:
        """Replace what `user_id` sees on the app's Home tab."""
        try:
            await self._call("views.publish", user_id=user_id, view=view)
        except SlackFailure as exc:
            log.warning("views.publish failed: %s", exc.code)

    # ------------------------------------------------------------ files (the video in the thread)

    async def upload_file(
        self,
        channel: str,
        thread_ts: str,
        *,
        filename: str,
        title: str,
        length: int,
        chunks: AsyncIterator[bytes],
        on_file_id: Callable[[str], None],
    ) -> str:
        """Share a file in a thread with Slack's external upload: reserve it (filename,
        length), stream the bytes to the upload URL as they come, complete it into the thread.
        `on_file_id` hears the file's id before the completion, so whoever records it can
        check afterwards whether a completion whose answer was lost took effect (see
        `find_shared_file`). Returns the file's id; SlackFailure otherwise."""
        reserved = await self._call(
            "files.getUploadURLExternal", _form=True, filename=filename, length=str(length)
        )
        upload_url, file_id = reserved.get("upload_url"), reserved.get("file_id")
        if not isinstance(upload_url, str) or not isinstance(file_id, str):
            raise SlackFailure("invalid_response", permanent=False)
        on_file_id(file_id)
        await self._send_bytes(upload_url, length, chunks)
        await self.complete_file(channel, thread_ts, file_id, title)
        return file_id

    async def complete_file(self, channel: str, thread_ts: str, file_id: str, title: str) -> None:
        files = json.dumps([{"id": file_id, "title": title}])
        await self._call(
            "files.completeUploadExternal",
            _form=True,
            files=files,
            channel_id=channel,
            thread_ts=thread_ts,
        )

    async def _send_bytes(self, url: str, length: int, chunks: AsyncIterator[bytes]) -> None:
        """POST the bytes to the upload URL as they arrive (never held whole)."""
        session = self.client.session
        own = session is None
        if session is None:
            session = aiohttp.ClientSession()
        try:
            async with session.post(
                url,
                data=chunks,
                headers={"Content-Length": str(length), "Content-Type": "application/octet-stream"},
                timeout=aiohttp.ClientTimeout(total=None, sock_read=60, sock_connect=10),
            ) as response:
                await response.read()
                if response.status != 200:
                    raise SlackFailure(f"upload_http_{response.status}", permanent=False)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SlackFailure(type(exc).__name__, permanent=False) from exc
        finally:
            if own:
                await session.close()

    async def find_shared_file(self, channel: str, file_id: str) -> bool | None:
        """Whether a file was shared in the channel: True, False (it exists, unshared), or
        None (Slack knows no completed file by that id: its upload never completed)."""
        try:
            data = await self._call("files.info", _form=True, file=file_id)
        except SlackFailure as exc:
            if exc.code == "file_not_found":
                return None
            raise
        file = data.get("file") or {}
        shares = file.get("shares") or {}
        where = {**(shares.get("public") or {}), **(shares.get("private") or {})}
        return channel in where or channel in (file.get("channels") or [])
