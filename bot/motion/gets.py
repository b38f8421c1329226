"""Motion's status GETs on a lighter path than httpx: a few keep-alive HTTP/1.1 connections
driven by asyncio protocols, each request's bytes built once per job.

Why: with 10,000 live jobs the poller makes ~340 status calls a second, and httpx/httpcore
spent about 1 ms of CPU on each (bench/poller.py under a sampling profiler: two thirds of the
poller's CPU, in `Request`/`Response` objects, the pool's bookkeeping under anyio locks, h11's
events, the cookie jar). A status call is the simplest HTTP there is — one GET, no body, a
JSON answer of a few KB — so here it is one write and one parse of what comes back.

Same on the wire as httpx: the request line httpx would send (the URL it builds), the client's
headers in the same order, HTTP/1.1 keep-alive with httpx's idle expiry, the TLS context httpx
built (its certificates, `SSL_CERT_FILE`). What it does not do, and so when `MotionClient`
keeps httpx for a call: proxies, a transport given by a test, cookies (Motion sets none; if it
ever does, every call goes through httpx from then on). Creates and followups (rare, billed
writes) stay on httpx.

An answer is framed by Content-Length, chunked encoding or the connection's end; its body goes
piece by piece as it arrives to the caller's `Sink`, which may refuse the rest (an answer over
the client's cap): the connection is then dropped unread. A reused connection the server
closed without answering (its keep-alive ran out as the request went out) is tried once more
on a new connection: a GET changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

MAX_HEAD_BYTES = 64 * 1024  # an answer's status line and headers (httpcore's h11 allows as much)
KEEPALIVE_SECONDS = 5.0  # httpx's default: an idle connection older than this is not reused


class GetFailed(Exception):
    """No usable answer: the request went out (or may have)."""


class ConnectFailed(GetFailed):
    """No connection: nothing was sent."""


class ConnectTimeout(ConnectFailed, TimeoutError):
    """No connection within the connect timeout: nothing was sent."""


class ReadTimeout(GetFailed, TimeoutError):
    """The answer did not come (whole) within the read timeout."""


class _ClosedUnanswered(GetFailed):
    """The server closed the connection before a byte of the answer."""


class Sink(Protocol):
    def feed(self, data: bytes) -> bool:
        """Take the next piece of the body; False refuses the rest (the connection is dropped)."""
        ...


S = TypeVar("S", bound=Sink)


@dataclass
class Reply(Generic[S]):
    """An answer's status and headers (names lower-cased, the last of a repeated one), the
    sink that took its body, and any cookies it set (their `Set-Cookie` values)."""

    status_code: int
    headers: dict[str, str]
    sink: S
    cookies: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Endpoint:
    """Where the connections go, and how long each step may take."""

    host: str
    port: int
    ssl_context: ssl.SSLContext | None
    connect_timeout: float
    read_timeout: float
    max_idle: int


_HEAD, _FIXED, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE = range(7)


class _Connection(asyncio.Protocol, Generic[S]):
    """One connection; one request at a time. `data_received` parses as bytes arrive and
    settles `_done` when the answer is whole (or broken)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.usable = True  # False once closed, broken, or the answer said "close"
        self.idle_since = 0.0
        self._buffer = bytearray()
        self._done: asyncio.Future[Reply[S]] | None = None
        self._open_sink: Callable[[Mapping[str, str]], S] | None = None
        self._reply: Reply[S] | None = None
        self._stage = _HEAD
        self._left = 0  # bytes of the body (or of the chunk) still to come
        self._answered = False  # a byte of the answer arrived

    # ------------------------------------------------------------ asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._done is None or self._done.done():  # bytes nobody asked for: not reusable
            self.close()
            return
        self._answered = True
        self._buffer += data
        try:
            self._parse()
        except GetFailed as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        if self._done is not None and not self._done.done():
            if self._stage == _UNTIL_CLOSE:
                self._finish()
            elif not self._answered:
                self._fail(_ClosedUnanswered("the server closed the connection unanswered"))
            else:
                self._fail(GetFailed("the server closed the connection mid-answer"))
        self.usable = False
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        if self._done is not None and not self._done.done():
            if not self._answered:
                self._fail(_ClosedUnanswered(f"the connection was lost unanswered ({exc})"))
            else:
                self._fail(GetFailed(f"the connection was lost mid-answer ({exc})"))

    # ------------------------------------------------------------ the client's side

    async def request(
        self, head: bytes, open_sink: Callable[[Mapping[str, str]], S], timeout: float
    ) -> Reply[S]:
        """Send `head` (a whole GET request) and wait for its answer."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Reply[S]] = loop.create_future()
        self._done, self._open_sink, self._reply = done, open_sink, None
        self._stage, self._answered = _HEAD, False
        self._buffer.clear()
        self.transport.write(head)
        timer = loop.call_later(timeout, self._timed_out, done)
        try:
            return await done
        finally:
            timer.cancel()
            self._done = None
            if not done.done() or done.cancelled() or done.exception() is not None:
                self.close()  # cancelled or failed mid-answer: never reused

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.abort()

    def _timed_out(self, done: asyncio.Future[Reply[S]]) -> None:
        if not done.done():
            self._fail(ReadTimeout("no whole answer within the read timeout"))

    def _fail(self, exc: GetFailed) -> None:
        self.usable = False
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def _finish(self) -> None:
        assert self._done is not None and self._reply is not None
        if self._buffer:  # more than the answer: not a connection to trust again
            self.usable = False
        self._done.set_result(self._reply)

    # ------------------------------------------------------------ parsing

    def _parse(self) -> None:
        while self._done is not None and not self._done.done():
            if self._stage == _HEAD:
                if not self._head():
                    return
            elif self._stage == _FIXED:
                take = min(self._left, len(self._buffer))
                if take and not self._feed(take):
                    return
                self._left -= take
                if self._left:
                    return
                self._finish()
            elif self._stage == _UNTIL_CLOSE:
                if self._buffer:
                    self._feed(len(self._buffer))
                return
            elif not self._chunked():
                return

    def _feed(self, size: int) -> bool:
        """Hand `size` bytes of the buffer to the sink; False (the call settled) if refused."""
        assert self._reply is not None
        piece = bytes(self._buffer[:size])
        del self._buffer[:size]
        if self._reply.sink.feed(piece):
            return True
        self.usable = False  # the rest is not read: the connection cannot carry another
        assert self._done is not None
        self._done.set_result(self._reply)
        if self.transport is not None:
            self.transport.abort()
        return False

    def _head(self) -> bool:
        """Parse the status line and headers once they are whole; False to wait for more."""
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise GetFailed("an answer's headers past 64 KiB")
            return False
        lines = bytes(self._buffer[:end]).split(b"\r\n")
        del self._buffer[: end + 4]
        version, _, rest = lines[0].partition(b" ")
        code = rest[:3]
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or not code.isdigit() or len(code) != 3:
            raise GetFailed(f"not an HTTP/1.x status line: {lines[0][:40]!r}")
        status = int(code)
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():  # also obsolete line folding
                raise GetFailed(f"a malformed header line: {line[:40]!r}")
            key, text = name.decode("latin-1").lower(), value.strip().decode("latin-1")
            if key == "content-length" and headers.get(key, text) != text:
                raise GetFailed("two different Content-Length headers")
            if key == "set-cookie":
                cookies.append(text)
            headers[key] = text
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            return True
        if version == b"HTTP/1.0" or "close" in headers.get("connection", "").lower():
            self.usable = False
        assert self._open_sink is not None
        self._reply = Reply(status, headers, self._open_sink(headers), cookies)
        self._body_framing(status, headers)
        return True

    def _body_framing(self, status: int, headers: dict[str, str]) -> None:
        coding = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if coding is not None:
            if coding.lower().rsplit(",", 1)[-1].strip() != "chunked":
                self._stage = _UNTIL_CLOSE
                self.usable = False
            else:
                self._stage = _CHUNK_SIZE
        elif length is not None:
            if not length.isdigit():
                raise GetFailed(f"a Content-Length that is not a number: {length[:20]!r}")
            self._stage, self._left = _FIXED, int(length)
        elif status in (204, 304):
            self._stage, self._left = _FIXED, 0
        else:
            self._stage = _UNTIL_CLOSE
            self.usable = False

    def _chunked(self) -> bool:
        """One step of a chunked body; False to wait for more bytes."""
        if self._stage == _CHUNK_DATA:
            take = min(self._left, len(self._buffer))
            if not take:
                return False
            if not self._feed(take):
                return False
            self._left -= take
            if not self._left:
                self._stage = _CHUNK_END
            return True
        line_end = self._buffer.find(b"\r\n")
        if line_end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise GetFailed("a chunk-size or trailer line past 64 KiB")
            return False
        line = bytes(self._buffer[:line_end])
        del self._buffer[: line_end + 2]
        if self._stage == _CHUNK_END:
            if line:
                raise GetFailed("a chunk not followed by CRLF")
            self._stage = _CHUNK_SIZE
        elif self._stage == _CHUNK_SIZE:
            size = line.split(b";", 1)[0].strip()
            try:
                self._left = int(size, 16)
            except ValueError:
                raise GetFailed(f"a malformed chunk size: {size[:20]!r}") from None
            self._stage = _CHUNK_DATA if self._left else _TRAILERS
        elif not line:  # _TRAILERS: the empty line ends the answer
            self._finish()
        return True


class KeepAliveGets:
    """Up to `endpoint.max_idle` idle keep-alive connections to one host, for GETs. How many
    are in flight at once is the caller's to cap (MotionClient's semaphore)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._idle: list[_Connection[Any]] = []
        self._closed = False
        self.connections_opened = 0

    async def get(self, head: bytes, open_sink: Callable[[Mapping[str, str]], S]) -> Reply[S]:
        """The answer to the GET whose request bytes are `head`. Raises ConnectFailed
        (nothing sent), ReadTimeout, or GetFailed."""
        connection = self._idle_connection()
        if connection is not None:
            try:
                return self._after(
                    connection,
                    await connection.request(head, open_sink, self.endpoint.read_timeout),
                )
            except _ClosedUnanswered:
                pass  # closed by the server as it went out: once more, on a new connection
        connection = await self._connect()
        return self._after(
            connection, await connection.request(head, open_sink, self.endpoint.read_timeout)
        )

    def _after(self, connection: _Connection[S], reply: Reply[S]) -> Reply[S]:
        if connection.usable and not self._closed and len(self._idle) < self.endpoint.max_idle:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()
        return reply

    def _idle_connection(self) -> _Connection[Any] | None:
        """The most recently used idle connection still open and not expired."""
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            transport = connection.transport
            if (
                connection.usable
                and transport is not None
                and not transport.is_closing()
                and now - connection.idle_since <= KEEPALIVE_SECONDS
            ):
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection[Any]:
        endpoint = self.endpoint
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(endpoint.connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection[Any],
                    endpoint.host,
                    endpoint.port,
                    ssl=endpoint.ssl_context,
                    server_hostname=endpoint.host if endpoint.ssl_context else None,
                )
        except TimeoutError as exc:
            raise ConnectTimeout(f"no connection within {endpoint.connect_timeout} s") from exc
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
        self.connections_opened += 1
        return connection

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                connection.close()
