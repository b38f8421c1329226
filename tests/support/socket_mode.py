"""Slack's side of Socket Mode, for tests: ``apps.connections.open`` and a WebSocket server.

``apps.connections.open`` (with the app-level ``xapp-`` token) hands out a ``ws://`` URL to a
WebSocket server that speaks Slack's Socket Mode protocol (``hello``, envelopes, acks,
``disconnect``, ping/pong); tests deliver envelopes with ``socket_send`` and read the acks with
``socket_ack_async``. `SocketModeSide` is mixed into `tests.support.slack.SlackDouble`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import WSCloseCode, WSMsgType, web

from bot.local.payloads import socket_envelope
from bot.local.server import ApiRequest, Reply

SOCKET_MODE_HOST = "applink-double-1"
"""What the double reports as ``debug_info.host`` in ``hello`` and ``disconnect`` messages."""


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


class SocketModeSide:
    """The Socket Mode half of the Slack double (needs its lock, ids, app token and recorder)."""

    lock: threading.RLock
    _stopping: threading.Event
    app_id: str
    app_token: str

    def _init_socket_mode(self, app_token: str) -> None:
        self.app_token = app_token
        """The app-level token ``apps.connections.open`` accepts (Socket Mode)."""
        self._socket_server: _SocketModeServer | None = None
        self._socket_start_lock = threading.Lock()
        self._socket_envelopes: list[dict[str, Any]] = []
        self._socket_acks: list[SocketAck] = []
        self._socket_other: list[Any] = []

    def _record(self, method: str, params: dict[str, Any], at: float, answer: dict) -> None:
        """Provided by the double: remember one Web API answer."""
        raise NotImplementedError

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
        envelope = socket_envelope(
            type,
            payload,
            envelope_id=envelope_id or str(uuid.uuid4()),
            accepts_response_payload=accepts_response_payload,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
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
            with self.lock:
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
        with self.lock:
            return copy.deepcopy(self._socket_envelopes)

    def socket_acks(self, envelope_id: str | None = None) -> list[SocketAck]:
        """Acks received so far (for one envelope if given), in arrival order."""
        with self.lock:
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
        with self.lock:
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

    def _serve_connections_open(self, request: ApiRequest, *, drop_answer: bool) -> Reply:
        """apps.connections.open: only the app-level token opens a connection URL."""
        token = request.token
        if token is None:
            answer: dict[str, Any] = {"ok": False, "error": "not_authed"}
        elif token.startswith(("xoxb-", "xoxp-")):
            answer = {"ok": False, "error": "not_allowed_token_type"}
        elif token != self.app_token:
            answer = {"ok": False, "error": "invalid_auth"}
        elif request.parse_error is not None:
            answer = {"ok": False, "error": request.parse_error}
        else:
            answer = {"ok": True, "url": self._socket().issue_url(self.app_id)}
        self._record("apps.connections.open", request.params, request.arrived, answer)
        if drop_answer:
            return Reply(0, b"", drop=True)
        return Reply(200, json.dumps(answer).encode())


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

    def __init__(self, double: SocketModeSide) -> None:
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
        with self.double.lock:
            self._tickets.add(ticket)
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={app_id}"

    def open_connections(self) -> list[_SocketConnection]:
        with self.double.lock:
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
        with self.double.lock:
            valid = ticket in self._tickets
            self._tickets.discard(ticket)  # a URL opens one connection
        if not valid:
            return web.Response(status=401, text="invalid_ticket")
        ws = web.WebSocketResponse(autoping=False, timeout=self.CLOSE_TIMEOUT)
        await ws.prepare(request)
        with self.double.lock:
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
            with self.double.lock:
                self._open.append(connection)
            async for message in ws:
                if message.type == WSMsgType.PING:
                    with self.double.lock:
                        self.pings += 1
                    await ws.pong(message.data)
                elif message.type == WSMsgType.TEXT:
                    self.double._socket_received(connection.number, message.data)
        finally:
            with self.double.lock:
                if connection in self._open:
                    self._open.remove(connection)
        return ws
