"""One pooled httpx client with caps on the calls in flight; HTTP answers mapped to data or
to the error tree in one place (`_raise_for`), each answer read only up to `MAX_ANSWER_BYTES`."""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import ssl
import time
import zlib
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpcore
import httpx

from bot.motion.answers import JobStatus, error_text
from bot.motion.errors import (
    AnswerLost,
    AuthenticationError,
    BadRequest,
    Conflict,
    InsufficientCredits,
    MotionError,
    NotFound,
    RateLimited,
    Retry,
    ServerError,
    Unreachable,
)
from bot.motion.gets import ConnectFailed, Endpoint, GetFailed, KeepAliveGets
from bot.motion.request import MotionRequest
from bot.motion.transport import MotionNetwork

# What a call is, and how it ended, as told to `observe` (bot/metrics.py counts them).
CallKind = Literal["create", "followup", "status"]
# "2xx", "4xx_<code>" (e.g. "4xx_404"), "429", "5xx", "timeout" (no answer in time, or no slot
# free in time: nothing sent) or "error" (no connection, a broken answer, any other status).
_OUTCOME_4XX = {code: f"4xx_{code}" for code in range(400, 500)}
_OUTCOME_4XX[429] = "429"

_PLAIN_PATH = re.compile(r"[A-Za-z0-9._~/-]+")  # nothing httpx would escape in a path
# A job id that cannot exist: a status call for it proves a key works (404) or not (401)
# without starting, or paying for, anything.
PROBE_JOB_ID = "00000000-0000-4000-8000-000000000000"
URL_CACHE = 20_000  # status URLs kept parsed: one per live job (a full cache starts afresh)
# Motion's answers are JSON of a few KB (a status with many sources, tens of KB). A body past
# this is not an answer of Motion's: it is refused unread, whatever it claims to be, so a broken
# or hostile server (or proxy) can make a call hold at most this much, plus one network read.
MAX_ANSWER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class MotionRoute:
    """Where one call goes and with which key, when not the client's own: a workspace's own
    Motion key (at MOTION_API_URL) on a deployment whose other workspaces may use another key,
    or the sandbox. Every route shares the client's one pool and caps (its calls go through
    httpx: the lighter status path serves the client's own base and key)."""

    base_url: str
    api_key: str = field(repr=False)


class MotionClient:
    """One shared connection pool and one cap on every call the app makes to Motion, of which
    `reserved_for_reads` slots (a quarter by default) only status calls may use."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        max_in_flight: int = 8,
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
        reserved_for_reads: int | None = None,
        observe: Callable[[CallKind, str], None] | None = None,
    ) -> None:
        """`observe(kind, outcome)` hears how each call ended (see `CallKind`), on the loop."""
        self._observe = observe
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "motion-bot/0.1"},
            timeout=httpx.Timeout(timeout, connect=5.0),
            limits=httpx.Limits(
                max_connections=max_in_flight, max_keepalive_connections=max_in_flight
            ),
            transport=transport,
            follow_redirects=False,
        )
        # Status calls go on the lighter path when httpx would send them straight to Motion.
        self._gets = _use_motion_network(self._client, timeout) if transport is None else None
        self._heads: dict[str, bytes] = {}  # a status call's request bytes, per path
        self._block = _header_block(self._client)
        base = self._client.base_url
        self._base_path = base.raw_path if not base.query and not base.fragment else None
        # Status calls are most of the traffic: their requests are built here from parts made
        # once (see `_get`), not by `build_request` for every call.
        self._base = str(self._client.base_url)
        self._extensions = {"timeout": self._client.timeout.as_dict()}
        self._urls: dict[str, httpx.URL] = {}
        self._route_headers: dict[MotionRoute, httpx.Headers] = {}
        self._limit = asyncio.Semaphore(max_in_flight)
        # Creates and followups may take a long time: they never hold the slots kept for
        # status calls, so a finished video is not announced late behind slow writes.
        reserved = max(1, max_in_flight // 4) if reserved_for_reads is None else reserved_for_reads
        self.reserved_for_reads = min(max(0, reserved), max_in_flight - 1)
        self._writes = asyncio.Semaphore(max_in_flight - self.reserved_for_reads)
        self._deadline = timeout + 5.0
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.peak_in_flight = 0
        self.calls = 0

    @property
    def base_url(self) -> str:
        """The API's base URL (MOTION_API_URL, or the sandbox's), ending in "/"."""
        return self._base

    def writes_full(self) -> bool:
        """Every slot writes may use is taken: a create or followup now would only wait."""
        return self._writes.locked()

    async def aclose(self) -> None:
        if self._gets is not None:
            await self._gets.aclose()
        await self._client.aclose()

    async def create(
        self, request: MotionRequest | dict[str, Any], *, route: MotionRoute | None = None
    ) -> str:
        """Start a job; returns its id. Build status URLs from the id, never from status_url.

        A dict is sent as the body exactly as given (for tools and tests of Motion's checks).
        `route`: another base URL and key than the client's own (each call may name one)."""
        data = await self._request("POST", "/sessions", _body(request), kind="create", route=route)
        return _job_id(data)

    async def followup(
        self, job_id: str, request: MotionRequest | dict[str, Any], *,
        route: MotionRoute | None = None,
    ) -> str:  # fmt: skip
        path = f"/sessions/{job_id}/followups"
        data = await self._request("POST", path, _body(request), kind="followup", route=route)
        return _job_id(data, default=job_id)

    async def status(self, job_id: str, *, route: MotionRoute | None = None) -> JobStatus:
        data = await self._request("GET", f"/sessions/{job_id}", None, kind="status", route=route)
        return JobStatus.parse(data, job_id)

    async def _request(
        self, method: str, path: str, body: Any, *, kind: CallKind, route: MotionRoute | None
    ) -> Any:
        try:
            response, answer = await self._send(
                method, path, body, write=kind != "status", route=route
            )
        except (Unreachable, AnswerLost) as exc:
            if self._observe is not None:
                self._observe(kind, "timeout" if _timed_out(exc) else "error")
            raise
        if self._observe is not None:
            self._observe(kind, outcome_of(response.status_code))
        return _raise_for(response, answer, write=kind != "status")

    async def _send(
        self, method: str, path: str, body: Any, *, write: bool, route: MotionRoute | None = None
    ) -> tuple[_Head, _Answer]:
        """The call within the caps and the deadline: Motion's answer, read (at most
        MAX_ANSWER_BYTES), or Unreachable / AnswerLost when there is none."""
        # What a call that went out but got no answer means:
        lost = Retry.UNSAFE if write else Retry.LATER
        if self._limit.locked() or (write and self._writes.locked()):
            # `asyncio.timeout`, not `wait_for`: wait_for runs the call in a task of its own.
            try:  # waiting for a free slot counts against the same deadline as the call
                async with asyncio.timeout(self._deadline):
                    await self._take_slot(write)
            except TimeoutError as exc:
                raise Unreachable(
                    "too many Motion calls in flight; nothing was sent", retry=Retry.LATER
                ) from exc
        else:
            await self._take_slot(write)  # a slot is free: taken at once, no timer needed
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.calls += 1
        try:
            if route is None and method == "GET" and self._gets is not None:
                return await self._lite_get(path)
            return await self._httpx_call(method, path, body, route)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, ConnectFailed) as exc:
            raise Unreachable(
                f"could not reach Motion ({type(exc).__name__})", retry=Retry.LATER
            ) from exc
        except (httpx.HTTPError, TimeoutError, GetFailed) as exc:  # sent, then went wrong
            name = type(exc).__name__
            what = "Motion's answer was lost" if write else "Motion did not answer"
            raise AnswerLost(f"{what} ({name})", retry=lost) from exc
        finally:
            self.in_flight -= 1
            self._limit.release()
            if write:
                self._writes.release()

    async def _httpx_call(
        self, method: str, path: str, body: Any, route: MotionRoute | None = None
    ) -> tuple[_Head, _Answer]:
        """A call through httpx: creates and followups, calls on another route, and status
        calls when the lighter path is off (a proxy, a test's transport, a cookie). The overall
        deadline covers a server that trickles bytes past httpx's read timeout."""
        if route is not None:
            sent = self._routed(method, path, body, route)
        elif method == "GET":
            sent = self._get(path)
        else:
            sent = self._client.send(
                self._client.build_request(method, path, json=body), stream=True
            )
        async with asyncio.timeout(self._deadline):
            response = await sent
            try:
                answer = await _read_answer(response)
            finally:
                await response.aclose()  # unread (too large): the connection is dropped
        return response, answer

    async def _lite_get(self, path: str) -> tuple[_Head, _Answer]:
        """A status call on `KeepAliveGets` (bot/motion/gets.py): the same request bytes
        httpx would send, built once per job. Its own connect and read timeouts bound it
        (together within the overall deadline), so no timer of the client's is needed."""
        assert self._gets is not None
        head = self._heads.get(path)
        if head is None:
            if len(self._heads) >= URL_CACHE:
                self._heads.clear()
            head = self._heads[path] = b"GET " + self._target(path) + b" HTTP/1.1\r\n" + self._block
        reply = await self._gets.get(head, _Body)
        if reply.cookies:
            self._take_cookies(path, reply.status_code, reply.cookies)
        return reply, reply.sink.answer()

    def _target(self, path: str) -> bytes:
        """The request target httpx would send for `path`: the base URL's path, then `path`
        (a job id of plain characters needs no escaping, nor httpx's parser: ~20 µs)."""
        if self._base_path is not None and _PLAIN_PATH.fullmatch(path):
            return self._base_path + path.lstrip("/").encode()
        return httpx.URL(self._base + path.lstrip("/")).raw_path

    def _take_cookies(self, path: str, status: int, cookies: list[str]) -> None:
        """Motion set a cookie (it sets none today): into httpx's jar, and every later call
        goes through httpx, which sends it back as before."""
        url = httpx.URL(self._base + path.lstrip("/"))
        answer = httpx.Response(
            status, headers=[("set-cookie", c) for c in cookies], request=httpx.Request("GET", url)
        )
        self._client.cookies.extract_cookies(answer)
        self._gets = None

    def _get(self, path: str) -> Coroutine[Any, Any, httpx.Response]:
        """`AsyncClient.request("GET", path)`, cheaper: the same URL (the base URL's path, then
        `path`), headers, timeouts and cookies, from a URL parsed once per job rather than the
        base URL merged and parsed again for every call (`build_request` cost ~60 µs)."""
        client = self._client
        if len(client.cookies.jar):  # Motion sets none; if it ever does, httpx sends them
            return client.send(client.build_request("GET", path), stream=True)
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) >= URL_CACHE:
                self._urls.clear()
            url = self._urls[path] = httpx.URL(self._base + path.lstrip("/"))
        request = httpx.Request("GET", url, headers=client.headers, extensions=self._extensions)
        return client.send(request, stream=True)

    def forget_routes(self) -> None:
        """Drop the headers made for other routes (each holds its key): a key replaced or a
        workspace gone; the next call on a route makes them again."""
        self._route_headers.clear()

    def _routed(
        self, method: str, path: str, body: Any, route: MotionRoute
    ) -> Coroutine[Any, Any, httpx.Response]:
        """A call on another route, through the same pool: its URL and its own key (headers
        made once per route)."""
        headers = self._route_headers.get(route)
        if headers is None:
            if len(self._route_headers) >= URL_CACHE:
                self._route_headers.clear()
            headers = self._client.headers.copy()
            if route.api_key:
                headers["Authorization"] = f"Bearer {route.api_key}"
            else:  # no key: Motion answers 401, as it would to a key that was removed
                headers.pop("Authorization", None)
            self._route_headers[route] = headers
        url = route.base_url.rstrip("/") + "/" + path.lstrip("/")
        request = httpx.Request(
            method, url, headers=headers, json=body, extensions=self._extensions
        )
        return self._client.send(request, stream=True)

    async def _take_slot(self, write: bool) -> None:
        """A slot of the global cap; a write first takes one of the writes' share of it."""
        if write:
            await self._writes.acquire()
        try:
            await self._limit.acquire()
        except BaseException:
            if write:
                self._writes.release()
            raise


def outcome_of(status: int) -> str:
    """An HTTP status as a call's outcome: "2xx", "4xx_<code>", "429", "5xx" or "error"."""
    if 200 <= status < 300:
        return "2xx"
    if status >= 500:
        return "5xx"
    return _OUTCOME_4XX.get(status, "error")


def _timed_out(exc: MotionError) -> bool:
    """Whether a call without an answer ran out of time (rather than failing to connect)."""
    cause = exc.__cause__
    return isinstance(cause, TimeoutError | httpx.TimeoutException)


def _use_motion_network(client: httpx.AsyncClient, timeout: float) -> KeepAliveGets | None:
    """The transport httpx built (its limits, TLS and proxy settings untouched) opens its
    connections on `MotionNetwork`, which answers the pool's "closed by the server?" check
    cheaply. httpx has no parameter for httpcore's `network_backend`; the pool reads this
    attribute only when it opens a connection, and none is open yet.

    Returns the lighter path for status calls (`KeepAliveGets`, with the TLS context httpx
    built), or None where httpx alone knows the way: a proxy (any mount), another scheme, or
    an httpx whose private names moved."""
    transport = getattr(client, "_transport", None)  # private: a later httpx may rename it
    pool = (
        getattr(transport, "_pool", None)
        if isinstance(transport, httpx.AsyncHTTPTransport)
        else None
    )
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        return None  # httpcore's own backend: slower, correct
    pool._network_backend = MotionNetwork()
    url = client.base_url
    context = getattr(pool, "_ssl_context", None)
    if getattr(client, "_mounts", None) != {} or url.scheme not in ("http", "https"):
        return None
    if url.scheme == "https" and not isinstance(context, ssl.SSLContext):
        return None
    return KeepAliveGets(
        Endpoint(
            host=url.host,
            port=url.port or (443 if url.scheme == "https" else 80),
            ssl_context=context if url.scheme == "https" else None,
            connect_timeout=client.timeout.connect or timeout,
            read_timeout=client.timeout.read or timeout,
            max_idle=pool._max_keepalive_connections,
        )
    )


def _header_block(client: httpx.AsyncClient) -> bytes:
    """What follows a status call's request line: the headers httpx would send, in its order
    (Host first, then the client's), and the blank line."""
    lines = [b"Host: " + client.base_url.netloc]
    lines += [name + b": " + value for name, value in client.headers.raw]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class _Head(Protocol):
    """What `_raise_for` reads of an answer besides its body (an httpx.Response, or a
    `KeepAliveGets` reply)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class _Answer:
    """The body of an answer as read: its bytes, or why they were not kept."""

    content: bytes | None
    refused: str | None = None


_TOO_LARGE = f"a body over {MAX_ANSWER_BYTES // 1024} KiB (not read)"


class _Body:
    """An answer's body as it arrives (`feed`), kept only while it is at most MAX_ANSWER_BYTES
    on the wire and once decoded, inflated here step by step: a library's own decoding would
    inflate a small gzip body to any size before the count could stop it. Both ways of
    calling Motion read through it (httpx's raw stream, and `KeepAliveGets`)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self.refused: str | None = None
        self._inflate: Any = None
        self._parts: list[bytes] = []
        self._wire = self._kept = 0
        declared = headers.get("content-length", "")
        encoding = headers.get("content-encoding", "").strip().lower()
        if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
            self.refused = _TOO_LARGE
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self._inflate = zlib.decompressobj(32 + zlib.MAX_WBITS)  # a gzip or zlib header
        elif encoding not in ("", "identity"):
            self.refused = f"a body in an encoding it was not asked for ({encoding[:20]!r})"
        self._encoding = encoding

    def feed(self, raw: bytes) -> bool:
        """Keep the next piece; False (and nothing kept) once the body is refused."""
        if self.refused is not None:
            return False
        self._wire += len(raw)
        try:
            part = (
                raw
                if self._inflate is None
                else self._inflate.decompress(raw, MAX_ANSWER_BYTES - self._kept + 1)
            )
        except zlib.error:
            return self._refuse(f"a body that does not inflate as {self._encoding}")
        self._kept += len(part)
        if self._wire > MAX_ANSWER_BYTES or self._kept > MAX_ANSWER_BYTES:
            return self._refuse(_TOO_LARGE)
        self._parts.append(part)
        return True

    def answer(self) -> _Answer:
        """The whole body, once the answer has ended."""
        if self.refused is None and self._inflate is not None:
            try:
                self._feed_last(self._inflate.flush())
            except zlib.error:
                self._refuse(f"a body that does not inflate as {self._encoding}")
        if self.refused is not None:
            return _Answer(None, self.refused)
        return _Answer(self._parts[0] if len(self._parts) == 1 else b"".join(self._parts))

    def _feed_last(self, part: bytes) -> None:
        self._kept += len(part)
        if self._kept > MAX_ANSWER_BYTES:
            self._refuse(_TOO_LARGE)
        else:
            self._parts.append(part)

    def _refuse(self, why: str) -> bool:
        self.refused, self._parts = why, []
        return False


async def _read_answer(response: httpx.Response) -> _Answer:
    """The body of an httpx answer, through `_Body` (see there)."""
    body = _Body(response.headers)
    if body.refused is None:
        async for raw in response.aiter_raw():
            if not body.feed(raw):
                break
    return body.answer()


def _raise_for(response: _Head, answer: _Answer, *, write: bool) -> Any:
    """Map an HTTP answer to data, or to an error saying what HTTP said and whether to retry.
    A body that was not read (`answer.refused`) counts as one that is not JSON."""
    status = response.status_code
    lost = Retry.UNSAFE if write else Retry.LATER
    data: Any = None
    if answer.content is not None:
        try:
            data = json.loads(answer.content)
        except (ValueError, RecursionError):  # not JSON; or nested past Python's stack
            data = None
    if 200 <= status < 300:
        if data is None:
            what = answer.refused or "a body that is not JSON"
            raise AnswerLost(f"Motion answered {status} with {what}", retry=lost, status=status)
        return data
    message = _message(data) or f"HTTP {status}"
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise RateLimited(message, retry_after=retry_after, status=status, body=data)
    kind: type[MotionError] = _BY_STATUS.get(status, MotionError)
    # Not an answer of Motion's own (no JSON, a status it does not use): something in between.
    retry = lost if data is None and kind is MotionError else Retry.NO
    if status >= 500:
        kind = ServerError
        if not write or (status == 503 and data is not None):
            retry = Retry.LATER  # a read changes nothing; a JSON 503 says "not now"
        elif data is None or status != 500:
            retry = Retry.UNSAFE  # a proxy's 502/504 or an HTML page: the write may be through
        # A JSON 500 on a write is Motion saying it did not start the run: final, never
        # resent on our own (if that statement were ever wrong, a resend would bill twice).
    raise kind(message, retry=retry, status=status, body=data)


_BY_STATUS: dict[int, type[MotionError]] = {
    400: BadRequest,
    401: AuthenticationError,
    402: InsufficientCredits,
    404: NotFound,
    409: Conflict,
}


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After is seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _message(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    for key in ("message", "error"):
        text = error_text(data.get(key))
        if text:
            return text
    return None


def _job_id(data: Any, default: str | None = None) -> str:
    value = data.get("job_id") if isinstance(data, dict) else None
    if isinstance(value, str) and value:
        return value
    if default:
        return default
    raise AnswerLost(
        "Motion accepted the job but its answer has no job_id", retry=Retry.UNSAFE, body=data
    )


def _body(request: MotionRequest | dict[str, Any]) -> dict[str, Any]:
    return request.to_body() if isinstance(request, MotionRequest) else request
