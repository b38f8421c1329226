"""Motion's API, and the only module that knows its wire format.

Here: the request body (`MotionRequest`), Motion's limits, the rule for merging a followup into
a new request, the typed answers (`JobStatus`, `Output`, `Source`, `Usage`), one pooled httpx
client with caps on calls in flight, and the error tree.

Each error says two things, kept apart: what HTTP said (its class: `BadRequest`, `Conflict`,
`ServerError`, ...) and whether the call may be repeated (`retry`): `Retry.LATER` when nothing
took effect, `Retry.UNSAFE` when a create or followup may have taken effect (they carry no
idempotency key and cost credits, so they are never re-sent blindly), `Retry.NO` when the answer
is final. Callers decide on `retry` first and on the class second, so the order of `except`
clauses never matters.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import unquote, urlparse

import httpx

# ---------------------------------------------------------------- Motion's limits

MAX_PROMPT = 12_000  # UTF-16 code units, as Motion's JavaScript validator counts
MAX_ATTACHMENTS = 10
MAX_ATTACHMENT_URL = 4_096
MAX_ATTACHMENT_NAME = 240
ASPECTS = ("16:9", "9:16", "1:1", "4:5", "21:9")
DURATIONS = ("<10s", "10-30s", "30s-1min", "1-5min")
ATTACHMENT_TYPES = ("image", "video", "audio", "file")
YOUTUBE_HOSTS = frozenset(
    {"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtu.be"}
)
_EXTENSION_TYPES = {
    "image": ("png", "jpg", "jpeg", "gif", "webp", "svg", "heic"),
    "video": ("mp4", "mov", "webm", "mkv", "avi", "m4v"),
    "audio": ("mp3", "wav", "m4a", "aac", "ogg", "flac"),
}
# Rights statuses that clearly allow use; anything else is flagged to the people publishing.
CLEARED_RIGHTS = frozenset(
    {
        "cleared", "licensed", "owned", "public_domain", "public domain", "royalty_free",
        "royalty-free", "cc0", "approved", "granted", "ok", "generated", "original",
    }
)  # fmt: skip


def js_length(text: str) -> int:
    """Length as Motion's JavaScript validator counts it (UTF-16 units: an emoji counts 2)."""
    return len(text.encode("utf-16-le")) // 2


def is_youtube(url: str) -> bool:
    parts = urlparse(url)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in YOUTUBE_HOSTS


class MotionStatus(StrEnum):
    """The job statuses motion-api.md names; an unknown one is kept as plain text."""

    QUEUED = "queued"
    CREATED = "created"
    RUNNING = "running"
    AWAITING_USER_INPUT = "awaiting_user_input"
    COMPLETED = "completed"
    FAILED = "failed"


# ---------------------------------------------------------------- the request


@dataclass(frozen=True)
class MotionRequest:
    """What a person asked for, already checked against Motion's documented rules."""

    prompt: str
    style_url: str | None = None
    attachments: tuple[str, ...] = ()
    aspect: str | None = None
    duration: str | None = None

    def to_body(self) -> dict[str, Any]:
        """The JSON body for create and followups; optional fields only when asked for."""
        body: dict[str, Any] = {"prompt": self.prompt}
        if self.style_url:
            body["style_reference_url"] = self.style_url
        if self.attachments:
            body["attachments"] = [_attachment(url) for url in self.attachments]
        if self.aspect:
            body["aspect_ratio"] = self.aspect
        if self.duration:
            body["duration"] = self.duration
        return body

    def to_json(self) -> dict[str, Any]:
        """How a request is kept in the database (not Motion's wire format)."""
        return {
            "prompt": self.prompt,
            "style_url": self.style_url,
            "attachments": list(self.attachments),
            "aspect": self.aspect,
            "duration": self.duration,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MotionRequest:
        return cls(
            prompt=data["prompt"],
            style_url=data.get("style_url"),
            attachments=tuple(data.get("attachments") or ()),
            aspect=data.get("aspect"),
            duration=data.get("duration"),
        )

    def merged_with(self, followup: MotionRequest) -> MotionRequest:
        """A new job from this request plus a followup that Motion refused on a failed job:
        both prompts, the followup's options where it set them, all attachments, within
        Motion's limits."""
        prompt = f"{self.prompt}\n\n{followup.prompt}"
        while js_length(prompt) > MAX_PROMPT:
            prompt = prompt[: MAX_PROMPT - (js_length(prompt) - len(prompt)) - 1]
        return MotionRequest(
            prompt=prompt,
            style_url=followup.style_url or self.style_url,
            attachments=(*self.attachments, *followup.attachments)[:MAX_ATTACHMENTS],
            aspect=followup.aspect or self.aspect,
            duration=followup.duration or self.duration,
        )


def _attachment(url: str) -> dict[str, str]:
    item = {"url": url}
    name = unquote(urlparse(url).path.rsplit("/", 1)[-1])
    while js_length(name) > MAX_ATTACHMENT_NAME:
        name = name[:-1]
    if name:
        item["name"] = name
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        for kind, extensions in _EXTENSION_TYPES.items():
            if extension in extensions:
                item["type"] = kind
    return item


# ---------------------------------------------------------------- errors


class Retry(StrEnum):
    LATER = "later"  # nothing took effect: try again after a wait
    UNSAFE = "unsafe"  # a write may have taken effect: never resend on our own
    NO = "no"  # a final answer: the same call would get the same


class MotionError(Exception):
    """Any failure talking to Motion; `message` is Motion's own words where it gave some."""

    def __init__(
        self, message: str, *, retry: Retry, status: int | None = None, body: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry = retry
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


class RateLimited(MotionError):
    """429: wait at least `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float | None, **kwargs: Any) -> None:
        super().__init__(message, retry=Retry.LATER, **kwargs)
        self.retry_after = retry_after


class ServerError(MotionError):
    """5xx, from Motion or a proxy in front of it."""


class Unreachable(MotionError):
    """No connection, or no free slot: nothing was sent."""


class AnswerLost(MotionError):
    """The request went out but no usable answer came back (a timeout, a dropped connection,
    a 2xx body that is not what the API returns)."""


# ---------------------------------------------------------------- answers


@dataclass(frozen=True)
class Output:
    status: str | None
    download_url: str | None
    expires_at: str | None = None

    @property
    def ready(self) -> bool:
        return self.status == MotionStatus.COMPLETED and bool(self.download_url)


@dataclass(frozen=True)
class Usage:
    """Where a source is used in the video; every field may be missing."""

    start: float | str | None = None
    end: float | str | None = None
    scene: str | None = None
    placement: str | None = None

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Usage:
        first = _first_of(data)
        scene = first("scene", "scene_index", "scene_number", "scene_id")
        placement = first("placement", "composition", "position", "layer", "role")
        return cls(
            start=_time_or_none(first("start_seconds", "start", "start_time", "timestamp", "at", "time")),
            end=_time_or_none(first("end_seconds", "end", "end_time")),
            scene=str(scene) if scene is not None else None,
            placement=str(placement) if placement is not None else None,
        )  # fmt: skip


@dataclass(frozen=True)
class Source:
    """One `sources` entry, read leniently: beyond `source_kind` and `provider` the field names
    are not published, so likely spellings are tried and a missing field is never an error."""

    kind: str
    provider: str
    title: str | None = None
    url: str | None = None
    rights: str | None = None
    usages: tuple[Usage, ...] = ()

    @property
    def cleared(self) -> bool:
        return self.rights is not None and self.rights.strip().lower() in CLEARED_RIGHTS

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Source:
        first = _first_of(data)
        kind = str(first("source_kind", "kind", "type", "category") or "media").replace("_", " ")
        provider = str(first("provider", "provider_name", "source", "origin") or "unknown provider")
        title = first("title", "name", "display_name", "caption", "description")
        url = first("display_url", "source_url", "url", "page_url", "link")
        rights = first("rights_status", "rights", "license_status", "clearance", "license")
        if isinstance(rights, dict):
            rights = rights.get("status") or rights.get("name")
        raw_usages = first("usages", "usage", "placements")
        usages = [
            Usage.parse(u) for u in (raw_usages if isinstance(raw_usages, list) else [])
            if isinstance(u, dict)
        ]  # fmt: skip
        return cls(
            kind=kind,
            provider=provider,
            title=str(title) if title is not None else None,
            url=url if isinstance(url, str) else None,
            rights=str(rights) if rights is not None else None,
            usages=tuple(u for u in usages if u != Usage()),
        )


@dataclass(frozen=True)
class JobStatus:
    """A status answer, parsed leniently: absent keys mean null / empty. `sources` keeps the
    raw entries (with fields this app does not know yet); `credits` is their typed reading."""

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
            self.status == MotionStatus.COMPLETED
            and self.output is not None
            and self.output.status == MotionStatus.FAILED
        )

    @property
    def credits(self) -> list[Source]:
        return [Source.parse(s) for s in self.sources]

    @classmethod
    def parse(cls, data: Any, job_id: str) -> JobStatus:
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            raise AnswerLost(
                "Motion answered a status call without a status", retry=Retry.LATER, body=data
            )
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

    async def create(self, request: MotionRequest | dict[str, Any]) -> str:
        """Start a job; returns its id. Build status URLs from the id, never from status_url.

        A dict is sent as the body exactly as given (for tools and tests of Motion's checks)."""
        data = await self._request("POST", "/sessions", _body(request), write=True)
        return _job_id(data)

    async def followup(self, job_id: str, request: MotionRequest | dict[str, Any]) -> str:
        path = f"/sessions/{job_id}/followups"
        data = await self._request("POST", path, _body(request), write=True)
        return _job_id(data, default=job_id)

    async def status(self, job_id: str) -> JobStatus:
        data = await self._request("GET", f"/sessions/{job_id}", None, write=False)
        return JobStatus.parse(data, job_id)

    async def _request(self, method: str, path: str, body: Any, *, write: bool) -> Any:
        # What a call that went out but got no answer means:
        lost = Retry.UNSAFE if write else Retry.LATER
        try:  # waiting for a free slot counts against the same deadline as the call itself
            await asyncio.wait_for(self._take_slot(write), self._deadline)
        except TimeoutError as exc:
            raise Unreachable(
                "too many Motion calls in flight; nothing was sent", retry=Retry.LATER
            ) from exc
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.calls += 1
        try:
            # The overall deadline covers a server that trickles bytes past the read timeout.
            response = await asyncio.wait_for(
                self._client.request(method, path, json=body), self._deadline
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Unreachable(
                f"could not reach Motion ({type(exc).__name__})", retry=Retry.LATER
            ) from exc
        except (httpx.HTTPError, TimeoutError) as exc:  # sent, then something went wrong
            name = type(exc).__name__
            what = "Motion's answer was lost" if write else "Motion did not answer"
            raise AnswerLost(f"{what} ({name})", retry=lost) from exc
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
    """Map an HTTP answer to data, or to an error saying what HTTP said and whether to retry."""
    status = response.status_code
    lost = Retry.UNSAFE if write else Retry.LATER
    try:
        data: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if 200 <= status < 300:
        if data is None:
            raise AnswerLost(
                f"Motion answered {status} with a body that is not JSON", retry=lost, status=status
            )
        return data
    message = _message(data) or f"HTTP {status}"
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
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
    raise AnswerLost(
        "Motion accepted the job but its answer has no job_id", retry=Retry.UNSAFE, body=data
    )


def _body(request: MotionRequest | dict[str, Any]) -> dict[str, Any]:
    return request.to_body() if isinstance(request, MotionRequest) else request


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int_or_none(body: Any, key: str) -> int | None:
    value = body.get(key) if isinstance(body, dict) else None
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _first_of(data: dict[str, Any]) -> Any:
    """A getter for the first of several spellings that holds a value."""

    def first(*keys: str) -> Any:
        for key in keys:
            value = data.get(key)
            if value not in (None, "", [], {}):
                return value
        return None

    return first


def _time_or_none(value: Any) -> float | str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    return str(value)
