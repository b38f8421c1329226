"""The Motion sandbox as the tests and benchmarks script it: queued plans, faults, recording.

`ScriptedSandbox` is `bot.sandbox.MotionSandbox` plus what only a test needs: plans queued for
the next runs (`plan_next`), misbehaviour in front of the API or after it (`fault` and its
shorthands), the balance changed mid-test, and a record of every call (`calls`, `count`,
`creates`, ...) with the true state of each job (`job`). It plugs into the core's two hooks,
`next_plan` and `respond`, so the API itself behaves exactly as in sandbox mode.

Scripting and recording take the sandbox's lock: the bot runs in one event loop and the
sandbox in another thread (`SandboxThread`).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.sandbox import Answer, Exchange, JobPlan, MotionSandbox, run_state

ENDPOINTS = ("create", "followup", "status")
HTML_502 = "<html><body><h1>502 Bad Gateway</h1></body></html>"
HUGE_CHUNK = 64 * 1024  # a huge fault body goes out in pieces of this size


@dataclass
class Call:
    """One request the sandbox received; `status` is what went on the wire (0: no answer)."""

    endpoint: str
    method: str
    path: str
    job_id: str | None
    body: dict[str, Any] | None
    status: int
    at: float
    # True when the request really took effect (job created / followup run started), even if
    # a fault then replaced or dropped the answer.
    accepted: bool = False


@dataclass(frozen=True)
class JobSnapshot:
    """The true state of a job, as opposed to what a (possibly stale) status call shows."""

    job_id: str
    api_key: str
    runs: int
    status: str
    output_status: str | None
    download_url: str | None
    bodies: tuple[dict[str, Any], ...]


@dataclass
class _Fault:
    status: int | None
    body: bytes | None
    headers: dict[str, str]
    delay: float
    times: int
    after_processing: bool
    drop: bool
    huge: int = 0  # > 0: the answer's body is this many bytes, streamed (`fault_huge_body`)
    announce_length: bool = True

    def cuts(self, request: web.Request) -> bool:
        """Whether this fault decides the answer (replaced, or none at all)."""
        return self.drop or self.status is not None or _client_gone(request)

    def wire_status(self, request: web.Request) -> int:
        if self.drop or self.status is None or _client_gone(request):
            return 0
        return self.status


class ScriptedSandbox(MotionSandbox):
    """A MotionSandbox that tests script (plans, faults, balance) and that records every call."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.calls: list[Call] = []
        self._plans: deque[JobPlan] = deque()
        self._faults: dict[str, deque[_Fault]] = {endpoint: deque() for endpoint in ENDPOINTS}
        # Bytes of each huge body (`fault_huge_body`) that went out before the client hung up.
        self.huge_bytes_sent: list[int] = []

    # scripting

    def plan_next(self, *plans: JobPlan) -> None:
        """Queue plans for the next submitted runs, creates and followups alike, in order."""
        with self._lock:
            self._plans.extend(dataclasses.replace(plan) for plan in plans)

    def fault(
        self,
        endpoint: str,
        *,
        status: int | None = None,
        body: str | bytes | None = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        times: int = 1,
        after_processing: bool = False,
        drop: bool = False,
    ) -> None:
        """Make the next `times` calls to `endpoint` misbehave.

        `status` (with optional `body`/`headers`) replaces the answer; `drop` closes the
        connection without one; `delay` answers late. Without `after_processing` the request is
        not processed (a proxy answered), and a delayed request whose client gave up meanwhile
        is never processed; with it, the request takes effect first and only the answer is
        replaced or lost.
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}, not {endpoint!r}")
        if times < 1 or delay < 0:
            raise ValueError("times must be >= 1 and delay >= 0")
        if body is not None and status is None:
            raise ValueError("a fault body needs a status")
        encoded = body.encode() if isinstance(body, str) else body
        fault = _Fault(status, encoded, dict(headers or {}), delay, times, after_processing, drop)
        with self._lock:
            self._faults[endpoint].append(fault)

    def fault_rate_limited(self, endpoint: str, *, retry_after: float = 2, times: int = 1) -> None:
        """429 with a Retry-After header (undocumented, but clients must expect it)."""
        body = json.dumps({"error": "rate_limited", "message": "Too many requests"})
        seconds = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        self.fault(endpoint, status=429, body=body, headers={"Retry-After": seconds}, times=times)

    def fault_html_502(self, endpoint: str, *, times: int = 1) -> None:
        """A proxy's HTML 502 page instead of JSON."""
        headers = {"Content-Type": "text/html"}
        self.fault(endpoint, status=502, body=HTML_502, headers=headers, times=times)

    def fault_huge_body(
        self, endpoint: str, size: int, *, status: int = 200, announce_length: bool = False,
        times: int = 1, after_processing: bool = False,
    ) -> None:  # fmt: skip
        """Answer the next `times` calls with a `size`-byte body that starts like Motion's JSON
        and goes on: streamed in chunks (never held whole here), its length announced or
        chunked (`announce_length`). What went out is in `huge_bytes_sent`; `after_processing`
        as for `fault`."""
        self.fault(endpoint, status=status, times=times, after_processing=after_processing)
        with self._lock:
            fault = self._faults[endpoint][-1]
            fault.huge, fault.announce_length = size, announce_length

    def set_balance(self, balance: int | None, minimum: int | None = None) -> None:
        """Set the credit balance (None: unlimited) and optionally the kickoff minimum."""
        with self._lock:
            self.balance = balance
            if minimum is not None:
                self.minimum_credits = minimum

    # recording

    def count(self, endpoint: str) -> int:
        """How many calls reached `endpoint`, whatever their answer."""
        with self._lock:
            return sum(1 for call in self.calls if call.endpoint == endpoint)

    def calls_to(self, endpoint: str) -> list[Call]:
        """The calls that reached `endpoint`, oldest first."""
        with self._lock:
            return [call for call in self.calls if call.endpoint == endpoint]

    @property
    def creates(self) -> list[dict[str, Any]]:
        """Bodies of the creates that really created a job (faulted-away ones excluded)."""
        return self._accepted_bodies("create")

    @property
    def followups(self) -> list[dict[str, Any]]:
        """Bodies of the followups that really started a run."""
        return self._accepted_bodies("followup")

    @property
    def job_ids(self) -> list[str]:
        """Ids of every job created, oldest first."""
        with self._lock:
            return list(self._jobs)

    def job(self, job_id: str) -> JobSnapshot:
        """The true current state of a job (KeyError if unknown)."""
        with self._lock:
            job = self._jobs[job_id]
            run = job.runs[-1]
            state = run_state(run, self.clock())
            ready = state.output_status == "completed"
            return JobSnapshot(
                job_id=job_id,
                api_key=job.api_key,
                runs=len(job.runs),
                status=state.status,
                output_status=state.output_status,
                download_url=self.download_url(job_id, run.number) if ready else None,
                bodies=tuple(copy.deepcopy(r.body) for r in job.runs),
            )

    def _accepted_bodies(self, endpoint: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                copy.deepcopy(call.body or {})
                for call in self.calls
                if call.endpoint == endpoint and call.accepted
            ]

    # the core's hooks

    def next_plan(self) -> JobPlan:
        return self._plans.popleft() if self._plans else super().next_plan()

    async def respond(
        self, exchange: Exchange, process: Callable[[], Answer]
    ) -> web.StreamResponse:
        """Process one call, with any fault in front (a proxy) or behind (a lost answer)."""
        request = exchange.request
        with self._lock:
            fault = self._take_fault(exchange.endpoint)
        if fault is not None and not fault.after_processing:
            await asyncio.sleep(fault.delay)
            if fault.cuts(request):
                self._record(exchange, fault.wire_status(request), None)
                if fault.huge:
                    return await self._huge_response(request, fault)
                return _fault_response(request, fault)
        answer = process()
        if fault is not None and fault.after_processing:
            await asyncio.sleep(fault.delay)
            if fault.cuts(request):
                self._record(exchange, fault.wire_status(request), answer)
                if fault.huge:
                    return await self._huge_response(request, fault)
                return _fault_response(request, fault)
        self._record(exchange, answer.status, answer)
        return web.json_response(answer.payload, status=answer.status)

    async def _huge_response(self, request: web.Request, fault: _Fault) -> web.StreamResponse:
        """`fault.huge` bytes of a JSON-looking body, a chunk at a time, until the client
        hangs up; aiohttp waits for the socket to drain, so what is counted left this side."""
        assert fault.status is not None
        response = web.StreamResponse(
            status=fault.status, headers={"Content-Type": "application/json"}
        )
        if fault.announce_length:
            response.content_length = fault.huge
        else:
            response.enable_chunked_encoding()
        head = b'{"status": "running", "pad": "'
        filler = b"x" * HUGE_CHUNK
        sent = 0
        try:
            await response.prepare(request)
            await response.write(head)
            sent = len(head)
            while sent < fault.huge:
                chunk = filler[: fault.huge - sent]
                await response.write(chunk)
                sent += len(chunk)
            await response.write_eof()
        except ConnectionError:  # the client stopped reading and closed the connection
            pass
        finally:
            with self._lock:
                self.huge_bytes_sent.append(sent)
        return response

    def _take_fault(self, endpoint: str) -> _Fault | None:
        queue = self._faults[endpoint]
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.popleft()
        return fault

    def _record(self, exchange: Exchange, status: int, answer: Answer | None) -> None:
        body = answer.request_body if answer is not None else None
        call = Call(
            endpoint=exchange.endpoint,
            method=exchange.request.method,
            path=exchange.request.path,
            job_id=(answer.job_id if answer else None) or exchange.job_id,
            body=copy.deepcopy(body) if body is not None else _lenient_json(exchange.raw),
            status=status,
            at=exchange.received_at,
            accepted=bool(answer and answer.accepted),
        )
        with self._lock:
            self.calls.append(call)


def _lenient_json(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _fault_response(request: web.Request, fault: _Fault) -> web.Response:
    """The replacement answer, or a closed connection when there must be none."""
    if fault.wire_status(request) == 0:
        if request.transport is not None:
            request.transport.close()
        # aiohttp notices the closed transport and sends nothing.
        return web.Response(status=500)
    headers = dict(fault.headers)
    body = fault.body
    if body is None:
        body = json.dumps({"error": "sandbox_fault", "message": f"HTTP {fault.status}"}).encode()
    if not any(name.lower() == "content-type" for name in headers):
        text = body.lstrip()
        if text.startswith(b"<"):
            headers["Content-Type"] = "text/html"
        elif _lenient_json(body) is not None:
            headers["Content-Type"] = "application/json"
        else:
            headers["Content-Type"] = "text/plain"
    return web.Response(status=fault.status, body=body, headers=headers)
