"""The Motion API client: one pooled httpx client, a cap on requests in flight, typed answers.

Errors are mapped from HTTP status in one place (`_raise_for`), so callers decide by type:
`Transient` means "try again later", `OutcomeUnknown` means "the call may have taken effect
and must not be re-sent blindly" (create and followups have no idempotency key and cost credits).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


class MotionError(Exception):
    """Any failure talking to Motion; `message` is Motion's own words where it gave some."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body


class BadRequest(MotionError):
    """400: Motion rejected the input; `details` lists what, in its words."""

    @property
    def details(self) -> list[str]:
        details = self.body.get("details") if isinstance(self.body, dict) else None
        out: list[str] = []
        for item in details if isinstance(details, list) else []:
            if isinstance(item, dict):
                path = ".".join(str(p) for p in item.get("path") or [])
                text = str(item.get("message") or item.get("code") or "")
                out.append(f"{path}: {text}" if path else text)
        return out


class AuthenticationError(MotionError):
    """401: the key is missing, revoked or wrong."""


class InsufficientCredits(MotionError):
    """402: not enough credits; the numbers come from the body, never assumed."""

    @property
    def current_balance(self) -> int | None:
        return _int_or_none(self.body, "current_balance")

    @property
    def minimum_required(self) -> int | None:
        return _int_or_none(self.body, "minimum_required_credits")


class NotFound(MotionError):
    """404: the job does not exist or belongs to another key's owner."""


class Conflict(MotionError):
    """409: a followup on a job that is not completed; `job_status` is what Motion reported."""

    @property
    def job_status(self) -> str | None:
        value = self.body.get("status") if isinstance(self.body, dict) else None
        return value if isinstance(value, str) else None


class ServerRejected(MotionError):
    """500 with Motion's own error body on a create or followup: it says it did not start the
    run. Not retried automatically: if that statement were ever wrong, a resend would bill twice."""


class Transient(MotionError):
    """Worth retrying later: nothing suggests the call took effect."""


class RateLimited(Transient):
    """429: wait at least `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float | None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(Transient):
    """5xx on a read, or a 5xx on a write that Motion itself reported as not done."""


class OutcomeUnknown(Transient):
    """The request may have reached Motion and taken effect, but no usable answer came back."""


@dataclass(frozen=True)
class Output:
    status: str | None
    download_url: str | None
    expires_at: str | None = None

    @property
    def ready(self) -> bool:
        return self.status == "completed" and bool(self.download_url)


@dataclass(frozen=True)
class JobStatus:
    """A status answer, parsed leniently: absent keys mean null / empty, unknown keys kept."""

    job_id: str
    status: str
    completed_at: str | None = None
    updated_at: str | None = None
    error: str | None = None
    pending_user_input: bool = False
    output: Output | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)

    @property
    def download_url(self) -> str | None:
        return self.output.download_url if self.output and self.output.ready else None

    @property
    def render_failed(self) -> bool:
        return (
            self.status == "completed"
            and self.output is not None
            and self.output.status == "failed"
        )

    @classmethod
    def parse(cls, data: Any, job_id: str) -> JobStatus:
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            raise OutcomeUnknown("Motion answered a status call without a status", body=data)
        output_data = data.get("output")
        output = None
        if isinstance(output_data, dict):
            output = Output(
                status=_str_or_none(output_data.get("status")),
                download_url=_str_or_none(output_data.get("download_url")),
                expires_at=_str_or_none(output_data.get("expires_at")),
            )
        sources = data.get("sources")
        return cls(
            job_id=str(data.get("job_id") or job_id),
            status=data["status"],
            completed_at=_str_or_none(data.get("completed_at")),
            updated_at=_str_or_none(data.get("updated_at")),
            error=_error_text(data.get("error")),
            pending_user_input=bool(data.get("pending_user_input")),
            output=output,
            sources=[s for s in sources if isinstance(s, dict)]
            if isinstance(sources, list)
            else [],
        )


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
    ) -> None:
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

    def writes_full(self) -> bool:
        """Every slot writes may use is taken: a create or followup now would only wait."""
        return self._writes.locked()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def create(self, body: dict[str, Any]) -> str:
        """Start a job; returns its id. Build status URLs from the id, never from status_url."""
        data = await self._request("POST", "/sessions", body, write=True)
        return _job_id(data)

    async def followup(self, job_id: str, body: dict[str, Any]) -> str:
        data = await self._request("POST", f"/sessions/{job_id}/followups", body, write=True)
        return _job_id(data, default=job_id)

    async def status(self, job_id: str) -> JobStatus:
        data = await self._request("GET", f"/sessions/{job_id}", None, write=False)
        return JobStatus.parse(data, job_id)

    async def _request(self, method: str, path: str, body: Any, *, write: bool) -> Any:
        try:  # waiting for a free slot counts against the same deadline as the call itself
            await asyncio.wait_for(self._take_slot(write), self._deadline)
        except TimeoutError as exc:
            raise Transient("too many Motion calls in flight; nothing was sent") from exc
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.calls += 1
        try:
            # The overall deadline covers a server that trickles bytes past the read timeout.
            response = await asyncio.wait_for(
                self._client.request(method, path, json=body), self._deadline
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Transient(f"could not reach Motion ({type(exc).__name__})") from exc
        except (httpx.HTTPError, TimeoutError) as exc:  # sent, then something went wrong
            name = type(exc).__name__
            if write:
                raise OutcomeUnknown(f"Motion's answer was lost ({name})") from exc
            raise Transient(f"Motion did not answer ({name})") from exc
        finally:
            self.in_flight -= 1
            self._limit.release()
            if write:
                self._writes.release()
        return _raise_for(response, write=write)

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


def _raise_for(response: httpx.Response, *, write: bool) -> Any:
    """Map an HTTP answer to data or to the error type that says what the caller should do."""
    status = response.status_code
    try:
        data: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if 200 <= status < 300:
        if data is None:
            raise (OutcomeUnknown if write else Transient)(
                f"Motion answered {status} with a body that is not JSON", status=status
            )
        return data
    message = _message(data) or f"HTTP {status}"
    kind: type[MotionError]
    if status == 400:
        kind = BadRequest
    elif status == 401:
        kind = AuthenticationError
    elif status == 402:
        kind = InsufficientCredits
    elif status == 404:
        kind = NotFound
    elif status == 409:
        kind = Conflict
    elif status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise RateLimited(message, retry_after=retry_after, status=status, body=data)
    elif status == 500 and data is not None and write:
        kind = ServerRejected
    elif status in (500, 503) and (data is not None or not write):
        # A 503 means "not now": nothing was done, so the write is retried later.
        kind = ServerError
    elif status >= 500 or data is None:
        # A proxy's 502/504 or an HTML page: the write may have gone through behind it.
        kind = OutcomeUnknown if write else ServerError
    else:
        kind = MotionError
    raise kind(message, status=status, body=data)


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
        text = _error_text(data.get(key))
        if text:
            return text
    return None


def _error_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return _str_or_none(value.get("message")) or json.dumps(value)[:500]
    return str(value)


def _job_id(data: Any, default: str | None = None) -> str:
    value = data.get("job_id") if isinstance(data, dict) else None
    if isinstance(value, str) and value:
        return value
    if default:
        return default
    raise OutcomeUnknown("Motion accepted the job but its answer has no job_id", body=data)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int_or_none(body: Any, key: str) -> int | None:
    value = body.get(key) if isinstance(body, dict) else None
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
