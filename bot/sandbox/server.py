"""The Motion API over HTTP: routes, authentication, the answers and error bodies, the CDN.

This module owns what a client sees on the wire, strict where ``motion-api.md`` is precise: the
paths under ``BASE_PATH``, Bearer keys, 400/401/402/404/409 with the documented bodies, the 202
that carries ``status_url``, and the CDN serving each run's MP4 behind its signed URL. What the
calls do to jobs is ``lifecycle.JobLifecycle``'s, which ``MotionSandbox`` builds on.

Subclasses extend it through two hooks: ``next_plan`` (how the next run behaves) and
``respond`` (around every call); the tests' fault scripting and call recording live in
``tests/support/motion.py``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.sandbox.fetching import Fetch, attachment_urls, fetch_attachment, fetch_session
from bot.sandbox.lifecycle import Job, JobLifecycle, JobPlan, run_state
from bot.sandbox.outputs import cdn_signature, video_bytes
from bot.sandbox.validation import custom_issue, parse_body

BASE_PATH = "/api/motion"
API_KEY_PREFIX = "motion_"
CDN_PATH = "/cdn"  # where a started sandbox serves the MP4s its download URLs point at
CDN_CHUNK = 64 * 1024
SHUTDOWN_TIMEOUT_S = 0.1

_CDN_ERROR = (
    "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{}</Code><Message>{}</Message></Error>"
)


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


class MotionSandbox(JobLifecycle):
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
        super().__init__(clock=clock, default_plan=default_plan, stale_polls=stale_polls)
        self.api_keys = set(api_keys) if api_keys is not None else None
        self.balance = balance
        self.minimum_credits = minimum_credits
        # Fetch each attachment URL as Motion would (plain GET, no headers, no cookies) and
        # answer 400 when one cannot be fetched; what was fetched is kept in `fetches`.
        self.fetch_attachments = fetch_attachments
        self.fetches: list[Fetch] = []
        self.base_url: str | None = None
        self.cdn_requests: list[tuple[str, str]] = []  # (method, path) of every CDN request
        # False: the CDN streams MP4s chunked, without announcing their length.
        self.cdn_sends_length = True
        # Set: the CDN answers every MP4 with a redirect to the same path and query under this
        # base URL, as a CDN that hands off to another host does.
        self.cdn_redirect: str | None = None
        self._runner: web.AppRunner | None = None

    # hook for subclasses (the other, `next_plan`, is JobLifecycle's)

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
                job = self.owned_job(job_id, key)
                if job is None:
                    return Answer(404, {"error": "not_found", "message": "Job not found"})
                if endpoint == "status":
                    return Answer(200, self.status_payload(job, now), job.job_id)
            body, issues = parse_body(raw)
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
        job_id = self.create_job(key, body, now)
        return Answer(202, _accepted_payload(job_id), job_id, accepted=True)

    def _followup(self, job: Job, body: dict[str, Any], now: float) -> Answer:
        status = run_state(job.runs[-1], now).status
        if status != "completed":
            payload = {
                "error": "followup_requires_completed_job",
                "message": "Followups can only be created for completed Mosaic Motion jobs.",
                "status": status,
            }
            return Answer(409, payload, job.job_id)
        self.start_followup(job, body, now)
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
            generation = self.url_generation
            run = self.run_by_file_name(job_id, name)
        if redirect is not None:
            location = redirect.rstrip("/") + request.path_qs.removeprefix(CDN_PATH)
            return web.Response(status=302, headers={"Location": location})
        if run is None:
            return _cdn_error(404, "NoSuchKey", "Not found")
        asked = request.query.get("g", "0")
        expected = cdn_signature(job_id, run.number, generation)
        if asked != str(generation) or not hmac.compare_digest(
            request.query.get("sig", ""), expected
        ):
            return _cdn_error(403, "AccessDenied", "Request has expired")
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
        urls = attachment_urls(raw)
        if not urls:
            return []
        issues: list[dict[str, Any]] = []
        async with fetch_session() as session:
            for index, url in urls:
                fetch = await fetch_attachment(session, url)
                with self._lock:
                    self.fetches.append(fetch)
                if fetch.status != 200 or fetch.error:
                    why = fetch.error or f"HTTP {fetch.status}"
                    issues.append(
                        custom_issue(
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
            await web.TCPSite(runner, host, port, backlog=1024).start()  # bursts of creates
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


def _accepted_payload(job_id: str) -> dict[str, Any]:
    # status_url carries the base path on purpose: the real API does, and clients must not
    # append it to the base URL.
    return {"job_id": job_id, "status": "queued", "status_url": f"{BASE_PATH}/sessions/{job_id}"}


def _cdn_error(status: int, code: str, message: str) -> web.Response:
    """An object store's XML error body, as the CDN behind signed URLs answers."""
    return web.Response(
        status=status, text=_CDN_ERROR.format(code, message), content_type="application/xml"
    )


async def _handle_health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})
