"""A local emulator of the Mosaic Motion API, for sandbox mode and ``python -m bot.sandbox``.

It follows the public documentation (see ``motion-api.md``): strict where the documentation is
precise (body rules, error bodies, status codes, ownership), configurable where it is vague
(timings, ``sources``, the lag after a followup). That lets the bot run the whole flow without
spending credits or waiting for real renders.

Every lifecycle decision reads ``MotionSandbox.clock``, so a caller can pass a fake clock and move
time forward instead of sleeping. State is read and changed under one lock, because the bot runs
in one event loop and the sandbox in another thread (``SandboxThread``). Subclasses extend it
through two hooks: ``next_plan`` (how the next run behaves) and ``respond`` (around every call);
the tests' fault scripting and call recording live in ``tests/support/motion.py``.

Standalone: ``python -m bot.sandbox --port 8787`` prints the base URL and serves until stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import hashlib
import hmac
import json
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from bot.motion import (
    ASPECTS,
    ATTACHMENT_TYPES,
    DURATIONS,
    MAX_ATTACHMENT_NAME,
    MAX_ATTACHMENT_URL,
    MAX_ATTACHMENTS,
    MAX_PROMPT,
    is_youtube,
    js_length,
)

BASE_PATH = "/api/motion"
API_KEY_PREFIX = "motion_"

MAX_DESIGN_MD_CHARS = 200_000
DESIGN_SYSTEMS = (
    "mosaic",
    "apple",
    "claude",
    "cursor",
    "linear",
    "vercel",
    "stripe",
    "figma",
    "notion",
    "spotify",
    "supabase",
    "raycast",
    "framer",
    "resend",
    "mintlify",
    "sentry",
    "tesla",
    "nike",
    "shopify",
    "airbnb",
    "posthog",
)
DOWNLOAD_BASE = "https://cdn.sandbox.motion.invalid"
DOWNLOAD_URL_LIFETIME_S = 3_600.0
CDN_PATH = "/cdn"  # where a started sandbox serves the MP4s its download URLs point at
VIDEO_BYTES = 200_000  # the default size of a sandbox MP4
CDN_CHUNK = 64 * 1024
SHUTDOWN_TIMEOUT_S = 0.1

_MISSING = object()


@dataclass
class JobPlan:
    """How one run (a create or a followup) behaves; durations are seconds of sandbox clock."""

    queued_s: float = 0.2
    created_s: float = 0.2
    running_s: float = 1.0
    # From job `completed` to a ready URL, spread evenly over output pending/queued/processing.
    render_s: float = 0.5
    fail_error: str | None = None
    # > 0: an awaiting_user_input interlude of this length in the middle of running.
    await_input_s: float = 0.0
    render_fails: bool = False
    source_count: int = 4
    # Returned verbatim (deep-copied) instead of generated sources, to inject hostile text.
    sources: list[dict[str, Any]] | None = None
    # Leave out the `output`/`sources` keys until completed, like the documented example.
    omit_keys: bool = False
    # The first N status calls after this run's followup still answer the previous run's body.
    stale_polls: int = 0
    # Size of the MP4 the run's download URL serves.
    video_bytes: int = VIDEO_BYTES

    def __post_init__(self) -> None:
        durations = (self.queued_s, self.created_s, self.running_s, self.render_s)
        if min(durations) < 0 or self.await_input_s < 0:
            raise ValueError("JobPlan durations must not be negative")
        if self.source_count < 0 or self.stale_polls < 0 or self.video_bytes < 0:
            raise ValueError("JobPlan counts must not be negative")


@dataclass
class _Run:
    number: int
    plan: JobPlan
    submitted_at: float
    body: dict[str, Any]


@dataclass
class _Job:
    job_id: str
    api_key: str
    runs: list[_Run]
    stale_body: dict[str, Any] | None = None
    stale_remaining: int = 0


@dataclass(frozen=True)
class _RunState:
    status: str
    changed_at: float
    finished_at: float | None
    output_status: str | None
    output_ready_at: float | None


@dataclass
class Answer:
    """What the API answers to one call, and what the call did."""

    status: int
    payload: dict[str, Any]
    job_id: str | None = None
    # True when the call took effect (a job created, a followup run started).
    accepted: bool = False
    # The request body, when it parsed as a JSON object.
    request_body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Exchange:
    """One call as received, before it is processed: what the `respond` hook is given."""

    endpoint: str  # "create", "followup" or "status"
    request: web.Request
    raw: bytes
    job_id: str | None  # from the path
    received_at: float


# --- request validation (zod-shaped issues, as the real API answers) -----------------------


def _received_type(value: object) -> str:
    if value is _MISSING:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _invalid_type(path: list[str | int], expected: str, value: object) -> dict[str, Any]:
    received = _received_type(value)
    message = "Required" if value is _MISSING else f"Expected {expected}, received {received}"
    return {
        "code": "invalid_type",
        "expected": expected,
        "received": received,
        "path": path,
        "message": message,
    }


def _string_issues(
    path: list[str | int], value: str, minimum: int | None, maximum: int | None
) -> list[dict[str, Any]]:
    length = js_length(value)
    common = {"type": "string", "inclusive": True, "exact": False, "path": path}
    if minimum is not None and length < minimum:
        message = f"String must contain at least {minimum} character(s)"
        return [{"code": "too_small", "minimum": minimum, **common, "message": message}]
    if maximum is not None and length > maximum:
        message = f"String must contain at most {maximum} character(s)"
        return [{"code": "too_big", "maximum": maximum, **common, "message": message}]
    return []


def _check_string(
    body: dict[str, Any],
    key: str,
    path: list[str | int],
    *,
    required: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
) -> tuple[str | None, list[dict[str, Any]]]:
    """Check one string field; optional means absent, not null (zod `.optional()`)."""
    value = body.get(key, _MISSING)
    if value is _MISSING and not required:
        return None, []
    if not isinstance(value, str):
        return None, [_invalid_type([*path, key], "string", value)]
    return value, _string_issues([*path, key], value, minimum, maximum)


def _check_enum(
    body: dict[str, Any], key: str, path: list[str | int], options: tuple[str, ...]
) -> list[dict[str, Any]]:
    value = body.get(key, _MISSING)
    if value is _MISSING or value in options:
        return []
    expected = " | ".join(f"'{option}'" for option in options)
    if not isinstance(value, str):
        return [_invalid_type([*path, key], expected, value)]
    return [
        {
            "received": value,
            "code": "invalid_enum_value",
            "options": list(options),
            "path": [*path, key],
            "message": f"Invalid enum value. Expected {expected}, received '{value}'",
        }
    ]


def _custom(path: list[str | int], message: str) -> dict[str, Any]:
    return {"code": "custom", "message": message, "path": path}


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _attachment_issues(index: int, attachment: object) -> list[dict[str, Any]]:
    path: list[str | int] = ["attachments", index]
    if not isinstance(attachment, dict):
        return [_invalid_type(path, "object", attachment)]
    url, issues = _check_string(attachment, "url", path, required=True, maximum=MAX_ATTACHMENT_URL)
    if url is not None and not issues:
        parts = urlsplit(url)
        if not parts.scheme or not parts.hostname:
            issues.append(
                {
                    "validation": "url",
                    "code": "invalid_string",
                    "message": "Invalid url",
                    "path": [*path, "url"],
                }
            )
        elif parts.scheme != "https" and not (
            parts.scheme == "http" and parts.hostname in _LOOPBACK  # a local test's own app
        ):
            issues.append(_custom([*path, "url"], "Attachment URL must use https"))
    issues += _check_string(attachment, "name", path, maximum=MAX_ATTACHMENT_NAME)[1]
    issues += _check_enum(attachment, "type", path, ATTACHMENT_TYPES)
    issues += _check_string(attachment, "content_type", path)[1]
    return issues


def _design_md_issues(body: dict[str, Any]) -> list[dict[str, Any]]:
    value = body.get("design_md", _MISSING)
    if value is _MISSING:
        return []
    if isinstance(value, str):
        return _string_issues(["design_md"], value, 1, MAX_DESIGN_MD_CHARS)
    if not isinstance(value, dict):
        return [_invalid_type(["design_md"], "string | object", value)]
    issues = _check_string(
        value, "content", ["design_md"], required=True, minimum=1, maximum=MAX_DESIGN_MD_CHARS
    )[1]
    return issues + _check_string(value, "filename", ["design_md"])[1]


def validate_request(body: object) -> list[dict[str, Any]]:
    """All the problems with a create/followup body, as zod issues; empty means valid.

    Unknown fields are ignored, like the real API. Optional fields must be absent, not null.
    """
    if not isinstance(body, dict):
        return [_invalid_type([], "object", body)]
    _, issues = _check_string(body, "prompt", [], required=True, minimum=1, maximum=MAX_PROMPT)
    style, style_issues = _check_string(body, "style_reference_url", [])
    issues += style_issues
    if style is not None and not is_youtube(style):
        issues.append(_custom(["style_reference_url"], "style_reference_url must be a YouTube URL"))
    attachments = body.get("attachments", _MISSING)
    if attachments is not _MISSING:
        if not isinstance(attachments, list):
            issues.append(_invalid_type(["attachments"], "array", attachments))
        else:
            if len(attachments) > MAX_ATTACHMENTS:
                issues.append(
                    {
                        "code": "too_big",
                        "maximum": MAX_ATTACHMENTS,
                        "type": "array",
                        "inclusive": True,
                        "exact": False,
                        "message": f"Array must contain at most {MAX_ATTACHMENTS} element(s)",
                        "path": ["attachments"],
                    }
                )
            for index, attachment in enumerate(attachments):
                issues += _attachment_issues(index, attachment)
    issues += _check_enum(body, "aspect_ratio", [], ASPECTS)
    issues += _check_enum(body, "duration", [], DURATIONS)
    issues += _check_enum(body, "design_system_id", [], DESIGN_SYSTEMS)
    issues += _design_md_issues(body)
    return issues


def _parse_body(raw: bytes) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else _MISSING
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, [_custom([], "Request body must be valid JSON")]
    issues = validate_request(body)
    return (body if isinstance(body, dict) else None), issues


# --- lifecycle --------------------------------------------------------------------------


def _latest(steps: list[tuple[float, str]], now: float) -> tuple[float, str] | None:
    """The last step already reached; steps are in order, zero-length phases are skipped."""
    reached = [step for step in steps if step[0] <= now]
    return reached[-1] if reached else None


def run_state(run: _Run, now: float) -> _RunState:
    """Where a run is at `now`, derived only from the plan and when the run was submitted."""
    plan = run.plan
    running_at = run.submitted_at + plan.queued_s + plan.created_s
    steps = [(run.submitted_at, "queued"), (run.submitted_at + plan.queued_s, "created")]
    steps.append((running_at, "running"))
    if plan.await_input_s > 0:
        paused_at = running_at + plan.running_s / 2
        steps.append((paused_at, "awaiting_user_input"))
        steps.append((paused_at + plan.await_input_s, "running"))
    finished_at = running_at + plan.running_s + plan.await_input_s
    failed = plan.fail_error is not None
    steps.append((finished_at, "failed" if failed else "completed"))
    output_steps: list[tuple[float, str]] = []
    ready_at = finished_at + plan.render_s
    if not failed:
        third = plan.render_s / 3
        output_steps = [
            (finished_at, "pending"),
            (finished_at + third, "queued"),
            (finished_at + 2 * third, "processing"),
            (ready_at, "failed" if plan.render_fails else "completed"),
        ]
    changed_at, status = _latest(steps, now) or steps[0]
    output = _latest(output_steps, now)
    if output is not None:
        changed_at = max(changed_at, output[0])
    return _RunState(
        status=status,
        changed_at=changed_at,
        finished_at=finished_at if status in ("completed", "failed") else None,
        output_status=output[1] if output else None,
        output_ready_at=ready_at if output and output[1] == "completed" else None,
    )


def download_url(
    job_id: str, run_number: int, *, base: str = DOWNLOAD_BASE, generation: int = 0
) -> str:
    """The signed CDN link of a run's MP4. Before the sandbox serves HTTP it points at a
    .invalid host that never resolves; a started sandbox serves it itself (`base`), and each
    `generation` signs a different URL, the way Motion's signed URLs change when they expire."""
    signature = _cdn_signature(job_id, run_number, generation)
    query = f"sig={signature}" if generation == 0 else f"g={generation}&sig={signature}"
    return f"{base}/{job_id}/run-{run_number}.mp4?{query}"


def _cdn_signature(job_id: str, run_number: int, generation: int) -> str:
    text = f"{job_id}:{run_number}" if generation == 0 else f"{job_id}:{run_number}:{generation}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def video_bytes(job_id: str, run_number: int, size: int) -> bytes:
    """A run's MP4 as the CDN serves it: an ftyp box then a pattern unique to the run, so a
    test can tell which run's bytes arrived (and that all of them did)."""
    head = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    pattern = hashlib.sha256(f"{job_id}:{run_number}".encode()).digest()
    body = head + pattern * (size // len(pattern) + 1)
    return body[:size]


_SOURCE_KINDS = (
    ("stock_video", "pexels", "Aerial city skyline at dusk"),
    ("stock_image", "unsplash", "Coffee cup on a wooden desk"),
    ("music", "epidemic_sound", "Upbeat corporate track"),
    ("stock_video", "pixabay", "Waves rolling onto a beach"),
    ("sound_effect", "freesound", "Soft whoosh transition"),
    ("generated_image", "mosaic", "Abstract gradient background"),
    ("web_capture", "youtube", "Product launch keynote"),
    ("voiceover", "elevenlabs", "Narration, calm voice"),
)
_RIGHTS = ("cleared", "licensed", "unknown", "restricted", None)
_LICENSES: tuple[object, ...] = (
    "Pexels License",
    "CC BY 4.0",
    None,
    {"name": "Epidemic Sound Standard", "url": "https://www.epidemicsound.com/licensing/"},
    _MISSING,
)
_PLACEMENTS = ("background", "foreground", "overlay", "audio_bed", "b-roll")


def generated_sources(job_id: str, run_number: int, count: int) -> list[dict[str, Any]]:
    """Deterministic sources whose fields vary and go missing, as the additive array may."""
    rng = random.Random(f"{job_id}:{run_number}")
    sources = []
    for index in range(count):
        kind, provider, title = _SOURCE_KINDS[index % len(_SOURCE_KINDS)]
        source: dict[str, Any] = {"source_kind": kind, "provider": provider}
        if index % 5 != 3:
            source["title"] = f"{title} ({index + 1})"
        if index % 4 != 2:
            source["source_url"] = f"https://{provider}.example/media/{job_id[:8]}-{index}"
        if index % 3 != 1:
            source["display_url"] = f"https://{provider}.example/m/{index}"
        rights = _RIGHTS[index % len(_RIGHTS)]
        if rights is not None:
            source["rights_status"] = rights
        license_ = _LICENSES[index % len(_LICENSES)]
        if license_ is not _MISSING:
            source["license"] = copy.deepcopy(license_)
        if index % 6 != 4:
            usages = []
            for _ in range(rng.randint(1, 2)):
                start = round(rng.uniform(0, 50), 1)
                usage: dict[str, Any] = {
                    "start_seconds": start,
                    "end_seconds": round(start + rng.uniform(1, 10), 1),
                    "placement": _PLACEMENTS[rng.randrange(len(_PLACEMENTS))],
                }
                if rng.random() < 0.8:
                    usage["scene"] = rng.randint(1, 8)
                usages.append(usage)
            source["usages"] = usages
        if index % 7 == 5:
            source["confidence"] = round(rng.uniform(0.5, 1.0), 2)
            source["attribution"] = {"author": "Sandbox Studio", "required": index % 2 == 0}
        sources.append(source)
    return sources


# --- the emulator ------------------------------------------------------------------------


class MotionSandbox:
    """The Motion API in one object: its state, the lifecycle of its runs, its HTTP server."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        default_plan: JobPlan | None = None,
        api_keys: set[str] | None = None,
        balance: int | None = None,
        minimum_credits: int = 300,
        stale_polls: int = 0,
        fetch_attachments: bool = False,
    ) -> None:
        self.clock = clock
        self.default_plan = default_plan or JobPlan()
        self.api_keys = set(api_keys) if api_keys is not None else None
        self.balance = balance
        self.minimum_credits = minimum_credits
        self.stale_polls = stale_polls
        # Fetch each attachment URL as Motion would (plain GET, no headers, no cookies) and
        # answer 400 when one cannot be fetched; what was fetched is kept in `fetches`.
        self.fetch_attachments = fetch_attachments
        self.fetches: list[Fetch] = []
        self.base_url: str | None = None
        # Where download URLs point: the .invalid CDN until `start` serves them itself.
        self.download_base = DOWNLOAD_BASE
        # Bumped by `expire_download_urls`: URLs signed for an older generation answer 403.
        self.url_generation = 0
        self.cdn_requests: list[tuple[str, str]] = []  # (method, path) of every CDN request
        # False: the CDN streams MP4s chunked, without announcing their length.
        self.cdn_sends_length = True
        # Set: the CDN answers every MP4 with a redirect to the same path and query under this
        # base URL, as a CDN that hands off to another host does.
        self.cdn_redirect: str | None = None
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._clock_anchor = clock()
        self._wall_anchor = time.time()
        self._runner: web.AppRunner | None = None

    # hooks for subclasses

    def next_plan(self) -> JobPlan:
        """How the run being submitted will behave; called under the lock, once per run."""
        return dataclasses.replace(self.default_plan)

    async def respond(
        self, exchange: Exchange, process: Callable[[], Answer]
    ) -> web.StreamResponse:
        """Answer one call; `process()` makes it take effect and returns the API's answer.

        A subclass may wrap this (delay, replace or lose the answer, record the exchange);
        not calling `process` means the call never reached the API.
        """
        answer = process()
        return web.json_response(answer.payload, status=answer.status)

    # the API itself (synchronous, under the lock)

    def timeline(self, job_id: str) -> tuple[float, float]:
        """When the job's first run was submitted and when its download URL appears (or would
        have appeared), on the sandbox clock: what benchmarks measure polling against."""
        with self._lock:
            run = self._jobs[job_id].runs[0]
        plan = run.plan
        generation = plan.queued_s + plan.created_s + plan.running_s + plan.await_input_s
        return run.submitted_at, run.submitted_at + generation + plan.render_s

    def _iso(self, at: float) -> str:
        wall = self._wall_anchor + (at - self._clock_anchor)
        stamp = datetime.fromtimestamp(wall, tz=UTC).isoformat(timespec="milliseconds")
        return stamp.replace("+00:00", "Z")

    def _authenticate(self, header: str | None) -> tuple[str | None, str]:
        """The caller's key, or None and the reason it is refused."""
        if not header:
            return None, "Missing Authorization header: send 'Authorization: Bearer motion_...'"
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return None, "Authorization header must be 'Bearer <api key>'"
        if self.api_keys is not None:
            accepted = key in self.api_keys
        else:
            accepted = key.startswith(API_KEY_PREFIX)
        return (key, "") if accepted else (None, "The API key is not valid or was revoked")

    def _owned_job(self, job_id: str | None, key: str) -> _Job | None:
        job = self._jobs.get(job_id or "")
        return job if job is not None and job.api_key == key else None

    def _status_body(self, job: _Job, now: float) -> dict[str, Any]:
        run = job.runs[-1]
        state = run_state(run, now)
        failed = state.status == "failed"
        finished_at = state.finished_at
        body: dict[str, Any] = {
            "job_id": job.job_id,
            "status": state.status,
            "created_at": self._iso(job.runs[0].submitted_at),
            "updated_at": self._iso(state.changed_at),
            "completed_at": None if finished_at is None else self._iso(finished_at),
            "error": run.plan.fail_error if failed else None,
            "pending_user_input": state.status == "awaiting_user_input",
            "output": None,
            "sources": [],
        }
        if state.status == "completed":
            body["output"] = self._output(job.job_id, run, state)
            body["sources"] = self._sources(job.job_id, run)
        elif not failed and len(job.runs) > 1:
            # A followup run in progress: the previous run's result stays until replaced.
            previous = job.runs[-2]
            body["output"] = self._output(
                job.job_id, previous, run_state(previous, run.submitted_at)
            )
            body["sources"] = self._sources(job.job_id, previous)
        if run.plan.omit_keys and state.status != "completed":
            del body["output"], body["sources"]
        return body

    def _output(self, job_id: str, run: _Run, state: _RunState) -> dict[str, Any] | None:
        if state.output_status is None:
            return None
        ready = state.output_ready_at
        url = self.download_url(job_id, run.number) if ready is not None else None
        return {
            "status": state.output_status,
            "download_url": url,
            "expires_at": None if ready is None else self._iso(ready + DOWNLOAD_URL_LIFETIME_S),
        }

    def download_url(self, job_id: str, run_number: int) -> str:
        """The run's download URL as a status call would answer it now."""
        return download_url(
            job_id, run_number, base=self.download_base, generation=self.url_generation
        )

    def expire_download_urls(self) -> None:
        """Every download URL handed out so far stops working (403) and status calls answer
        new ones, as when Motion's signed URLs pass their expiry."""
        with self._lock:
            self.url_generation += 1

    def _sources(self, job_id: str, run: _Run) -> list[dict[str, Any]]:
        if run.plan.sources is not None:
            return copy.deepcopy(run.plan.sources)
        return generated_sources(job_id, run.number, run.plan.source_count)

    def _process(
        self, endpoint: str, authorization: str | None, raw: bytes, job_id: str | None,
        fetch_issues: list[dict[str, Any]] | None = None,
    ) -> Answer:  # fmt: skip
        """Answer one API call as the real service would; `fetch_issues`: attachments that
        could not be fetched (a 400, after authentication, like any other bad attachment)."""
        with self._lock:
            now = self.clock()
            key, reason = self._authenticate(authorization)
            if key is None:
                return Answer(401, {"error": "Invalid API key", "message": reason})
            job = None
            if endpoint != "create":
                job = self._owned_job(job_id, key)
                if job is None:
                    return Answer(404, {"error": "not_found", "message": "Job not found"})
                if endpoint == "status":
                    return Answer(200, self._status_payload(job, now), job.job_id)
            body, issues = _parse_body(raw)
            issues = issues or list(fetch_issues or [])
            if issues or body is None:
                payload = {"error": "Invalid request", "details": issues}
                answer = Answer(400, payload, job_id)
            elif job is None:
                answer = self._create(key, body, now)
            else:
                answer = self._followup(job, body, now)
            answer.request_body = body
            return answer

    def _status_payload(self, job: _Job, now: float) -> dict[str, Any]:
        if job.stale_remaining > 0 and job.stale_body is not None:
            job.stale_remaining -= 1
            return copy.deepcopy(job.stale_body)
        return self._status_body(job, now)

    def _create(self, key: str, body: dict[str, Any], now: float) -> Answer:
        if self.balance is not None and self.balance < self.minimum_credits:
            minimum = self.minimum_credits
            message = (
                f"Starting a new Mosaic Motion session requires at least {minimum} credits "
                "in your balance."
            )
            payload = {
                "error": "insufficient_credits",
                "code": "insufficient_credits_minimum_kickoff_balance",
                "message": message,
                "minimum_required_credits": minimum,
                "current_balance": self.balance,
            }
            return Answer(402, payload)
        job_id = str(uuid.uuid4())
        self._jobs[job_id] = _Job(job_id, key, [_Run(1, self.next_plan(), now, body)])
        return Answer(202, _accepted_payload(job_id), job_id, accepted=True)

    def _followup(self, job: _Job, body: dict[str, Any], now: float) -> Answer:
        status = run_state(job.runs[-1], now).status
        if status != "completed":
            payload = {
                "error": "followup_requires_completed_job",
                "message": "Followups can only be created for completed Mosaic Motion jobs.",
                "status": status,
            }
            return Answer(409, payload, job.job_id)
        previous_body = self._status_body(job, now)
        plan = self.next_plan()
        job.runs.append(_Run(len(job.runs) + 1, plan, now, body))
        job.stale_remaining = plan.stale_polls or self.stale_polls
        job.stale_body = previous_body if job.stale_remaining else None
        return Answer(202, _accepted_payload(job.job_id), job.job_id, accepted=True)

    # HTTP

    def make_app(self) -> web.Application:
        """The aiohttp application; `start` serves it, tests may also mount it elsewhere."""
        app = web.Application()
        app.router.add_post(f"{BASE_PATH}/sessions", self._handle_create)
        app.router.add_post(f"{BASE_PATH}/sessions/{{job_id}}/followups", self._handle_followup)
        app.router.add_get(f"{BASE_PATH}/sessions/{{job_id}}", self._handle_status)
        app.router.add_get("/healthz", _handle_health)
        app.router.add_route("GET", f"{CDN_PATH}/{{job_id}}/{{name}}", self._handle_cdn)
        app.router.add_route("HEAD", f"{CDN_PATH}/{{job_id}}/{{name}}", self._handle_cdn)
        return app

    async def _handle_cdn(self, request: web.Request) -> web.StreamResponse:
        """The CDN behind the download URLs: the MP4 with its Content-Length, streamed in
        chunks; a URL whose signature is wrong or whose generation has passed answers 403 with
        an object-store style XML body, as an expired signed URL does."""
        job_id, name = request.match_info["job_id"], request.match_info["name"]
        with self._lock:
            self.cdn_requests.append((request.method, request.path))
            redirect = self.cdn_redirect
            job = self._jobs.get(job_id)
            generation = self.url_generation
            number = name.removeprefix("run-").removesuffix(".mp4")
            run = (
                job.runs[int(number) - 1]
                if job and number.isdigit() and 0 < int(number) <= len(job.runs)
                else None
            )
        if redirect is not None:
            location = redirect.rstrip("/") + request.path_qs.removeprefix(CDN_PATH)
            return web.Response(status=302, headers={"Location": location})
        if run is None:
            return web.Response(
                status=404,
                text=_CDN_ERROR.format("NoSuchKey", "Not found"),
                content_type="application/xml",
            )
        asked = request.query.get("g", "0")
        expected = _cdn_signature(job_id, run.number, generation)
        if asked != str(generation) or not hmac.compare_digest(
            request.query.get("sig", ""), expected
        ):
            return web.Response(
                status=403,
                text=_CDN_ERROR.format("AccessDenied", "Request has expired"),
                content_type="application/xml",
            )
        body = video_bytes(job_id, run.number, run.plan.video_bytes)
        response = web.StreamResponse(status=200, headers={"Content-Type": "video/mp4"})
        if self.cdn_sends_length:
            response.content_length = len(body)
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        if request.method == "GET":
            for start in range(0, len(body), CDN_CHUNK):
                await response.write(body[start : start + CDN_CHUNK])
        await response.write_eof()
        return response

    async def _handle_create(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "create")

    async def _handle_followup(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "followup")

    async def _handle_status(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "status")

    async def _handle(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        received_at = self.clock()
        raw = await request.read()
        job_id = request.match_info.get("job_id")
        authorization = request.headers.get("Authorization")

        fetch_issues = None
        if self.fetch_attachments and endpoint != "status":
            fetch_issues = await self._fetch_attachments(raw)

        def process() -> Answer:
            return self._process(endpoint, authorization, raw, job_id, fetch_issues)

        exchange = Exchange(endpoint, request, raw, job_id, received_at)
        return await self.respond(exchange, process)

    async def _fetch_attachments(self, raw: bytes) -> list[dict[str, Any]]:
        """GET every attachment URL the way Motion fetches one (no headers, no cookies, on the
        sandbox's own loop, so nothing blocks); an issue per URL that does not answer 200."""
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return []
        attachments = body.get("attachments") if isinstance(body, dict) else None
        if not isinstance(attachments, list):
            return []
        issues: list[dict[str, Any]] = []
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        jar = aiohttp.DummyCookieJar()
        async with aiohttp.ClientSession(timeout=timeout, cookie_jar=jar) as session:
            for index, attachment in enumerate(attachments):
                url = attachment.get("url") if isinstance(attachment, dict) else None
                if not isinstance(url, str):
                    continue
                fetch = await _fetch(session, url)
                with self._lock:
                    self.fetches.append(fetch)
                if fetch.status != 200 or fetch.error:
                    why = fetch.error or f"HTTP {fetch.status}"
                    issues.append(
                        _custom(
                            ["attachments", index, "url"], f"Could not fetch attachment ({why})"
                        )
                    )
        return issues

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0: any free port) and return the base URL clients use."""
        if self._runner is not None:
            raise RuntimeError("sandbox already started")
        runner = web.AppRunner(
            self.make_app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown_host = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{shown_host}:{bound_port}{BASE_PATH}"
        self.download_base = f"http://{shown_host}:{bound_port}{CDN_PATH}"
        return self.base_url

    async def stop(self) -> None:
        """Close the listening socket and every open connection."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


FETCH_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Fetch:
    """One attachment fetched as Motion would: what came back, and a digest of the bytes."""

    url: str
    status: int
    content_type: str | None
    size: int
    sha256: str
    error: str | None = None


async def _fetch(session: aiohttp.ClientSession, url: str) -> Fetch:
    digest = hashlib.sha256()
    size = 0
    try:
        async with session.get(url, allow_redirects=True) as response:
            async for chunk in response.content.iter_chunked(64 * 1024):
                digest.update(chunk)
                size += len(chunk)
            return Fetch(url, response.status, response.content_type, size, digest.hexdigest())
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Fetch(url, 0, None, size, digest.hexdigest(), error=type(exc).__name__)


def _accepted_payload(job_id: str) -> dict[str, Any]:
    # status_url carries the base path on purpose: the real API does, and clients must not
    # append it to the base URL.
    return {"job_id": job_id, "status": "queued", "status_url": f"{BASE_PATH}/sessions/{job_id}"}


_CDN_ERROR = (
    "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{}</Code><Message>{}</Message></Error>"
)


async def _handle_health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


class SandboxThread:
    """Runs a MotionSandbox in a daemon thread with its own event loop.

    Tests drive the bot in their own loop; keeping the sandbox on another loop means a blocked
    or slow bot cannot stall the emulator, which is how the real API behaves.
    """

    def __init__(
        self,
        sandbox: MotionSandbox,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        start_timeout: float = 5.0,
    ) -> None:
        self.sandbox = sandbox
        self.host = host
        self.port = port
        self.start_timeout = start_timeout
        self.base_url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> str:
        """Start serving and return the base URL once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("sandbox thread already started")
        self._thread = threading.Thread(target=self._serve, name="motion-sandbox", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.start_timeout):
            raise RuntimeError("sandbox did not start in time")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("sandbox failed to start") from self._error
        assert self.base_url is not None
        return self.base_url

    def stop(self) -> None:
        """Stop the server and the loop, and wait for the thread to end."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            try:
                self.base_url = loop.run_until_complete(self.sandbox.start(self.host, self.port))
            except BaseException as exc:  # reported to the starting thread
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()
            loop.run_until_complete(self.sandbox.stop())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


async def _serve_until_signalled(sandbox: MotionSandbox, host: str, port: int) -> None:
    print(await sandbox.start(host, port), flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    try:
        await stopped.wait()
    finally:
        await sandbox.stop()


def main(argv: list[str] | None = None) -> None:
    """`python -m bot.sandbox`: serve a sandbox until Ctrl-C or SIGTERM."""
    defaults = JobPlan()
    parser = argparse.ArgumentParser(
        prog="python -m bot.sandbox", description="Serve a local Mosaic Motion API emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--running-seconds", type=float, default=defaults.running_s)
    parser.add_argument("--render-seconds", type=float, default=defaults.render_s)
    parser.add_argument(
        "--api-key", action="append", help="accept only these keys (default: any motion_ key)"
    )
    parser.add_argument("--balance", type=int, help="credit balance (default: unlimited)")
    args = parser.parse_args(argv)
    sandbox = MotionSandbox(
        default_plan=JobPlan(running_s=args.running_seconds, render_s=args.render_seconds),
        api_keys=set(args.api_key) if args.api_key else None,
        balance=args.balance,
    )
    asyncio.run(_serve_until_signalled(sandbox, args.host, args.port))


if __name__ == "__main__":
    main()
