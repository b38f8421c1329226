"""Prometheus metrics: the app's own registry and families, the counts that need a query, and
`/metrics` — on a listener of its own (METRICS_PORT) or on PORT behind a bearer token
(METRICS_TOKEN). Off unless one of them is set: then nothing here is built.

The registry is the app's own, not prometheus_client's global one, so two apps in one process
(tests, benchmarks) never share a series. What is counted is told by plain callables the parts
are handed by bot/app.py (`MotionClient(observe=…)`, `SlackOut(observe=…)`, the poller's
`observe_lag`, `JobEvents`): none of them imports this module. On those paths a count costs a
dict lookup of the label values and an increment; the labelled children are made once.

What needs a query (jobs by state, the outbox) is read on the store's workers every
`REFRESH_SECONDS` into a snapshot, as /healthz does (bot/health.py): a scrape never costs a
query, and a flood of scrapes costs none either. When the database cannot be read, those
families have no sample until it can (absent, rather than old numbers looking current).

No label holds a person, a prompt, a channel, a workspace or a token: only kinds, outcomes,
states, reasons and Slack method names, each from a short fixed list.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from bot.refresher import Refresher
from bot.store import JobState, Store

log = logging.getLogger(__name__)
REFRESH_SECONDS = 5.0
# How late a look starts after its job fell due: most within the poller's batching, a backlog
# in seconds, a stalled poller in minutes.
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Slack gives up on an answer after 3 s.
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
MOTION_KINDS = ("create", "followup", "status")
MOTION_OUTCOMES = ("2xx", "429", "5xx", "timeout", "error")  # and 4xx_<code> as they come
UPLOAD_OUTCOMES = ("uploaded", "skipped", "retried", "failed")
REFUSAL_REASONS = ("channel", "user_day", "workspace_month")
RUN_ENDINGS = ("done", "failed", "rejected", "unknown", "stopped")


@dataclass(frozen=True)
class StoreCounts:
    """What the refresher last read from the store, and when (wall clock)."""

    jobs_by_state: dict[str, int]
    outbox_waiting: int
    outbox_oldest_at: float | None  # when the oldest waiting message was recorded
    taken_at: float


def _take(store: Store, now: float) -> StoreCounts:
    """On a store worker: two statements."""
    waiting, oldest = store.outbox_waiting()
    return StoreCounts(store.jobs_by_state(), waiting, oldest, now)


class _Children:
    """A labelled family's children by label values, each made once: `labels()` checks and
    locks on every call, which a status call should not pay."""

    def __init__(self, family: Any, zero: Iterable[tuple[str, ...]] = ()) -> None:
        self._family = family
        self._made: dict[tuple[str, ...], Any] = {}
        for values in zero:  # shown at 0 from the start, so rate() and alerts see them
            self.child(values)

    def child(self, values: tuple[str, ...]) -> Any:
        made = self._made.get(values)
        if made is None:
            made = self._made[values] = self._family.labels(*values)
        return made


class _FromStore(Collector):
    """The families read from the snapshot (and the poller's count of jobs it holds), built
    at each scrape from numbers already in memory."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterator[Metric]:
        return self._families(None, None)

    def collect(self) -> Iterator[Metric]:
        return self._families(self._metrics.snapshot, self._metrics.jobs_held())

    def _families(self, counts: StoreCounts | None, held: int | None) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "motion_jobs", "Jobs by state (new: card not posted yet).", labels=["state"]
        )
        waiting = GaugeMetricFamily(
            "motion_outbox_waiting", "Messages recorded for Slack and not sent yet (no uploads)."
        )
        oldest = GaugeMetricFamily(
            "motion_outbox_oldest_waiting_seconds",
            "Age of the oldest message waiting in the outbox (0: none waits).",
        )
        if counts is not None:
            for state in JobState:
                jobs.add_metric([state.value], counts.jobs_by_state.get(state.value, 0))
            waiting.add_metric([], counts.outbox_waiting)
            age = 0.0 if counts.outbox_oldest_at is None else time.time() - counts.outbox_oldest_at
            oldest.add_metric([], max(0.0, age))
        held_family = GaugeMetricFamily(
            "motion_jobs_held", "Jobs this instance is looking at now (each under its lease)."
        )
        if held is not None:
            held_family.add_metric([], held)
        yield from (jobs, waiting, oldest, held_family)


class Metrics:
    """The registry, its families, the observers handed to the parts, and the snapshot."""

    def __init__(self, store: Store, *, every: float = REFRESH_SECONDS) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._store = store
        self.snapshot: StoreCounts | None = None
        self._refresher = Refresher(self.refresh, every, "metrics")
        self.jobs_held: Callable[[], int | None] = lambda: None  # set to the poller's count
        self._families()
        self.registry.register(_FromStore(self))
        ProcessCollector(registry=self.registry)

    def _families(self) -> None:
        registry = self.registry
        self._lag = Histogram(
            "motion_poll_lag_seconds",
            "How late a look at a job started after the job fell due.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self._ack = Histogram(
            "motion_ack_seconds",
            "From a Slack request's arrival to its answer (Slack waits 3 s).",
            buckets=ACK_BUCKETS,
            registry=registry,
        )
        motion = Counter(
            "motion_api_calls",
            "Motion API calls by kind and outcome (2xx, 4xx_<code>, 429, 5xx, timeout, error).",
            ["kind", "outcome"],
            registry=registry,
        )
        self._motion = _Children(motion, [(k, o) for k in MOTION_KINDS for o in MOTION_OUTCOMES])
        slack = Counter(
            "slack_api_calls",
            "Slack Web API answers by method and outcome (ok, 429, 5xx, error_permanent, "
            "error_retryable, timeout, network); a 429 waited out counts, then its retry.",
            ["method", "outcome"],
            registry=registry,
        )
        self._slack = _Children(slack)
        self._takeovers = Counter(
            "motion_leases_taken_over",
            "Jobs this instance took over from another whose lease ran out (it died or hung).",
            registry=registry,
        )
        uploads = Counter(
            "motion_uploads", "Video uploads into threads by outcome.", ["outcome"],
            registry=registry,
        )  # fmt: skip
        self._uploads = _Children(uploads, [(o,) for o in UPLOAD_OUTCOMES])
        refused = Counter(
            "motion_runs_refused",
            "Runs refused by the spend controls: the channel, or which limit.",
            ["reason"],
            registry=registry,
        )
        self._refused = _Children(refused, [(r,) for r in REFUSAL_REASONS])
        ended = Counter("motion_runs_ended", "Runs ended, by how.", ["outcome"], registry=registry)
        self._ended = _Children(ended, [(o,) for o in RUN_ENDINGS])

    # ------------------------------------------------------------ the observers

    def motion_call(self, kind: str, outcome: str) -> None:
        self._motion.child((kind, outcome)).inc()

    def slack_call(self, method: str, outcome: str) -> None:
        self._slack.child((method, outcome)).inc()

    def poll_lag(self, seconds: float) -> None:
        self._lag.observe(max(0.0, seconds))

    def ack(self, seconds: float) -> None:
        self._ack.observe(seconds)

    def leases_taken_over(self, count: int) -> None:
        self._takeovers.inc(count)

    def upload(self, outcome: str) -> None:
        self._uploads.child((outcome,)).inc()

    def run_refused(self, reason: str) -> None:
        self._refused.child((reason,)).inc()

    def run_ended(self, outcome: str) -> None:
        self._ended.child((outcome,)).inc()

    # ------------------------------------------------------------ the snapshot

    async def refresh(self) -> StoreCounts | None:
        try:
            self.snapshot = await self._store.read_off_loop(_take, self._store, time.time())
        except Exception as exc:
            log.debug("metrics: the store could not be read (%s)", type(exc).__name__)
            self.snapshot = None
        return self.snapshot

    def start(self) -> None:
        self._refresher.start()

    async def stop(self) -> None:
        await self._refresher.stop()

    # ------------------------------------------------------------ /metrics

    def exposition(self, request: web.Request) -> web.Response:
        """The registry in the format the scraper asks for (`Accept`), as prometheus_client's
        own server answers: Prometheus' text format unless OpenMetrics is asked for."""
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(self.registry), headers={"Content-Type": content_type})

    async def answer(self, request: web.Request) -> web.Response:
        """`GET /metrics` on the listener of its own (METRICS_PORT)."""
        return self.exposition(request)

    def guarded(self, token: str) -> Callable[[web.Request], Any]:
        """`/metrics` on PORT: answered only to `Authorization: Bearer <token>`; anything else
        (no header, another token, another method) gets the 404 of a path that does not exist."""
        expected = hashlib.sha256(token.encode()).digest()

        async def answer(request: web.Request) -> web.Response:
            if request.method == "GET" and bearer_matches(request, expected):
                return self.exposition(request)
            raise web.HTTPNotFound()

        return answer


def bearer_matches(request: web.Request, expected_digest: bytes) -> bool:
    """`Authorization: Bearer <token>` with the token whose SHA-256 is `expected_digest`,
    compared in constant time (digests of equal length: no length is learnt either)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    given = hashlib.sha256(value.strip().encode("utf-8", "replace")).digest()
    return hmac.compare_digest(given, expected_digest)


class MetricsListener:
    """METRICS_PORT: `/metrics` on a listener of its own (all interfaces), nothing else."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, port: int) -> int:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics.answer)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "0.0.0.0", port).start()
        address = self._runner.addresses[0] if self._runner.addresses else None
        self.port = int(address[1]) if address else port
        log.info("serving Prometheus metrics on :%s/metrics (METRICS_PORT)", self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
