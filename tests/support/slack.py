"""The tests' Slack: the app's stand-in (`bot.local.server`) plus what only tests need.

A test that passes here should not fail against Slack for a reason this double could have
known. On top of the stand-in's workspace it adds fault injection (`fail_next`: errors, 429s,
delays, dropped connections), call recording (`calls`, `reset_calls`, `all_text`), waiting
(`wait_for`, `wait_for_async`), Block Kit checks on everything posted (`blockkit`), and Slack's
side of Socket Mode (`socket_mode`).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.local.files import WorkspaceFile
from bot.local.model import POST_TEXT_LIMIT, UPDATE_TEXT_LIMIT, WORKSPACE_URL
from bot.local.payloads import signed_headers
from bot.local.server import RESPONSE_URL_USES, ApiRequest, Reply, Route, SlackStandIn
from tests.support.blockkit import MAX_BLOCKS, MAX_VIEW_BLOCKS, block_errors
from tests.support.socket_mode import SOCKET_MODE_HOST, SocketAck, SocketModeSide

__all__ = [
    "MAX_BLOCKS",
    "POST_TEXT_LIMIT",
    "RESPONSE_URL_USES",
    "SOCKET_MODE_HOST",
    "UPDATE_TEXT_LIMIT",
    "WORKSPACE_URL",
    "SlackCall",
    "SlackDouble",
    "SocketAck",
    "block_errors",
    "signed_headers",
]

_TEXT_METHODS = frozenset({"chat.postMessage", "chat.update", "chat.postEphemeral"})


@dataclass(frozen=True)
class SlackCall:
    """One Web API request as the double saw it.

    ``params`` merges the query string and the body, with ``blocks``, ``attachments`` and
    ``metadata`` decoded from JSON strings and known boolean flags turned into ``bool``, so a
    test reads the same thing whether the client sent a form or JSON. ``at`` is
    ``time.monotonic()`` when the request arrived. ``token`` is the token it was sent with
    (None: none), ``team_id`` the workspace the stand-in served it for (None: none, the token
    did not work), so a test can assert that no call about one workspace used another's token.
    """

    method: str
    params: dict[str, Any]
    at: float
    ok: bool
    error: str | None
    response: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    token: str | None = None
    team_id: str | None = None


@dataclass
class _Fault:
    status: int
    error: str | None
    retry_after: int | None
    delay: float
    drop: Literal["before", "after"] | None
    remaining: int
    answer_delay: float = 0.0


def _string_leaves(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _string_leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _string_leaves(item)


class SlackDouble(SocketModeSide, SlackStandIn):
    """The stand-in with faults, recording and Block Kit checks; see the module docstring.

    Use it as a context manager; point the client at ``base_url`` and ``response_url()``::

        with SlackDouble() as slack:
            client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url)
    """

    def __init__(self, *, app_token: str = "xapp-test", **standin: Any) -> None:
        super().__init__(**standin)
        self._stopping = threading.Event()
        self._calls: list[SlackCall] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._sent_text: list[str] = []
        self._init_socket_mode(app_token)

    def start(self) -> SlackDouble:
        super().start()
        return self

    def __enter__(self) -> SlackDouble:
        return self.start()

    def close(self) -> None:
        self._stopping.set()  # wakes injected delays so shutdown does not wait for them
        if self._socket_server is not None:
            self._socket_server.stop()
            self._socket_server = None
        super().close()

    # -- scripting -----------------------------------------------------------------------------

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
        answer_delay: float = 0.0,
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
        - ``answer_delay``: do the work at once (a posted message is in the channel for
          everyone to see and reply to), then wait that long before answering (a slow answer).

        Faults queue in order; each lasts ``times`` calls.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        with self.lock:
            self._faults.setdefault(method, []).append(
                _Fault(status, error, retry_after, delay, drop, times, answer_delay)
            )

    # -- inspection ----------------------------------------------------------------------------

    def calls(self, method: str | None = None, *, team_id: str | None = None) -> list[SlackCall]:
        """The Web API calls so far (of one method; served for one workspace), oldest first."""
        with self.lock:
            return [
                c
                for c in self._calls
                if (method is None or c.method == method)
                and (team_id is None or c.team_id == team_id)
            ]

    def reset_calls(self) -> None:
        with self.lock:
            self._calls.clear()

    def all_text(self) -> str:
        """Everything ever sent as text: ``text``, every string in ``blocks`` and ``attachments``.

        Covers posts, updates, ephemerals and ``response_url`` bodies, including calls that
        failed (a rejected message still left the app). Metadata is not shown to people and is
        left out.
        """
        with self.lock:
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

    @property
    def _triggers(self) -> dict[str, tuple[float, str, bool]]:
        """The trigger ids handed out (id → issued, user, used), for a test that ages one."""
        return self.view_methods.triggers

    @property
    def _files(self) -> dict[str, WorkspaceFile]:
        """The files people shared, by id, for a test that changes one in place."""
        return self.file_methods.stored

    # -- the stand-in's hooks --------------------------------------------------------------------

    def block_problems(self, blocks: list[Any]) -> list[str]:
        return block_errors(blocks)

    def view_block_problems(self, blocks: list[Any]) -> list[str]:
        return block_errors(blocks, max_blocks=MAX_VIEW_BLOCKS)

    def response_problem(self, payload: dict[str, Any]) -> str | None:
        self._remember_text(payload)
        return super().response_problem(payload)

    def respond(self, request: ApiRequest) -> Reply:
        fault = self._take_fault(request.method)
        if fault is not None:
            if fault.delay:
                self._stopping.wait(fault.delay)
            if fault.drop == "before":
                self._record(
                    request.method,
                    request.params,
                    request.arrived,
                    {"ok": False, "error": "connection_dropped"},
                )
                return Reply(0, b"", drop=True)
            if fault.status != 200 or fault.error is not None:
                return self._faulted(request, fault)
        drop_answer = fault is not None and fault.drop == "after"
        if request.method == "apps.connections.open":
            return self._serve_connections_open(request, drop_answer=drop_answer)
        if request.method in _TEXT_METHODS:  # the text left the app, whatever Slack answers
            with self.lock:
                self._remember_text(request.params)
        reply = super().respond(request)
        if fault is not None and fault.answer_delay:
            self._stopping.wait(fault.answer_delay)
        if drop_answer and reply.status != 500:
            return Reply(0, b"", drop=True)
        return reply

    def answered(self, request: ApiRequest, answer: dict[str, Any], route: Route | None) -> None:
        team_id = route.workspace.team_id if route is not None else None
        self._record(
            request.method, request.params, request.arrived, answer,
            token=request.token, team_id=team_id,
        )  # fmt: skip

    def _take_fault(self, method: str) -> _Fault | None:
        with self.lock:
            for key in (method, "*"):
                queue = self._faults.get(key)
                if queue:
                    fault = queue[0]
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        queue.pop(0)
                    return fault
        return None

    def _faulted(self, request: ApiRequest, fault: _Fault) -> Reply:
        headers: dict[str, str] = {}
        if fault.status == 429:
            error = fault.error or "ratelimited"
            headers["Retry-After"] = str(fault.retry_after if fault.retry_after is not None else 1)
        else:
            error = fault.error or "fatal_error"
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
        answer = {"ok": False, "error": error}
        self._record(request.method, request.params, request.arrived, answer, token=request.token)
        return Reply(fault.status, json.dumps(answer).encode(), headers=headers)

    def _record(
        self, method: str, params: dict[str, Any], at: float, answer: dict[str, Any],
        *, token: str | None = None, team_id: str | None = None,
    ) -> None:  # fmt: skip
        with self.lock:
            self._calls.append(
                SlackCall(
                    method=method, params=params, at=at, ok=bool(answer.get("ok")),
                    error=answer.get("error"), response=answer, token=token, team_id=team_id,
                )
            )  # fmt: skip

    def _remember_text(self, payload: dict[str, Any]) -> None:
        if isinstance(payload.get("text"), str):
            self._sent_text.append(payload["text"])
        for name in ("blocks", "attachments"):
            self._sent_text.extend(_string_leaves(payload.get(name)))
