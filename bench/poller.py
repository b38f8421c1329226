"""Many live jobs: 10,000 unfinished jobs in the database, followed by the real poller.

The Motion sandbox runs as its own process (answering fast, every job still generating), the
poller, JobService and MotionClient run here exactly as in the app, against a SQLite file holding
10,000 running jobs whose runs started up to 30 minutes ago (long videos take that long) (so their poll intervals span the
schedule, from POLL_INITIAL_SECONDS to POLL_MAX_SECONDS) and whose next polls are spread over
the first interval, as in a running system.

Reports scheduling lag (when a poll started minus when it was due) p50/p99, Motion requests in
flight at most, peak RSS and CPU seconds per 1,000 polls.
Targets: lag p99 < 1 s, in flight never above the cap, RSS < 300 MB, at most 1 CPU second per
1,000 status calls (1 ms each, the process's whole CPU: loop and store workers).

    python bench/poller.py [--jobs 10000] [--seconds 60] [--cap 8] [--database postgresql://…]

Given a PostgreSQL URL, the jobs go into a new schema of that database, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import logging
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from _app import MOTION_KEY, free_port, fresh_schema
from _common import percentile, verdict

from bot.jobs import JobService
from bot.motion import MotionClient
from bot.poller import Claimed, Poller
from bot.schedule import PollSchedule
from bot.slack.out import SlackOut, make_client
from bot.store import Store
from tests.support.slack import SlackDouble


def start_sandbox(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.sandbox", "--port", str(port), "--running-seconds", "86400",
         "--api-key", MOTION_KEY],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            import urllib.request

            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the sandbox did not start")


async def create_jobs(base: str, count: int) -> list[str]:
    """Real jobs in the sandbox, so every status call is answered for a job that exists."""
    connector = aiohttp.TCPConnector(limit=32)
    headers = {"Authorization": f"Bearer {MOTION_KEY}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(i: int) -> str:
            async with session.post(f"{base}/sessions", json={"prompt": f"live job {i}"}) as r:
                return str((await r.json())["job_id"])

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def seed_database(
    store: Store, job_ids: list[str], now: float, rng: random.Random, args_age: float
) -> None:
    # The due times a previous process would have left: its schedule knew every run going.
    schedule = PollSchedule(3.0, 30.0)
    sent = [now - rng.uniform(0, args_age) for _ in job_ids]
    for i, sent_at in enumerate(sent):
        schedule.going(i, "any", now - sent_at)
    due = [
        rng.uniform(0, schedule.next_delay(elapsed=now - t, status="running", rendering=False))
        for t in sent
    ]
    with store._write() as conn:
        _seed(conn, job_ids, now, sent, due)
        # Seeding takes seconds on PostgreSQL (0.4 s on SQLite): move every time by as much,
        # so the app starts with the jobs as a running system left them a moment ago, not
        # with a backlog the seeding made.
        late = time.time() - now
        conn.execute(
            "UPDATE jobs SET due_at = due_at + ?, created_at = created_at + ?", (late, late)
        )
        conn.execute(
            "UPDATE runs SET sent_at = sent_at + ?, last_poll_at = last_poll_at + ?,"
            " created_at = created_at + ?",
            (late, late, late),
        )


def _seed(conn: Any, job_ids: list[str], now: float, sent: list[float], due: list[float]) -> None:
    for i, (motion_id, sent_at) in enumerate(zip(job_ids, sent, strict=True)):
        job = conn.execute(
            "INSERT INTO jobs (team_id, channel_id, thread_ts, requester, prompt, motion_job_id,"
            " state, sandbox, due_at, errors, pending_posts, card_phase, card_digest,"
            " card_updated_at, created_at) VALUES ('T0001', 'C0PUBLIC', ?, 'U0ALICE', ?, ?,"
            " 'open', 0, ?, 0, 0, 'running:1:0', 'seed', ?, ?) RETURNING id",
            (f"1763000000.{i:06d}", f"live job {i}", motion_id,
             now + due[i],
             now, sent_at),
        ).fetchone()[0]  # fmt: skip
        conn.execute(
            "INSERT INTO runs (job_id, number, kind, request, author, state, sent_at, seen_new,"
            " motion_status, last_poll_at, created_at) VALUES (?, 1, 'create', ?, 'U0ALICE',"
            " 'running', ?, 1, 'running', ?, ?)",
            (job, json.dumps({"prompt": f"live job {i}"}), sent_at, sent_at, sent_at),
        )


class RoundTrips:
    """Statements sent to PostgreSQL (each one round trip), counted at the dialect layer."""

    count = 0

    @classmethod
    def install(cls) -> None:
        from bot.store import dialect

        pg_execute, tx_execute = dialect.PostgresBackend.execute, dialect._PgTx.execute

        def execute(self: Any, sql: str, params: Any = ()) -> Any:
            cls.count += 1
            return pg_execute(self, sql, params)

        def tx(self: Any, sql: str, params: Any = ()) -> Any:
            cls.count += 1
            return tx_execute(self, sql, params)

        dialect.PostgresBackend.execute = execute  # type: ignore[method-assign]
        dialect._PgTx.execute = tx  # type: ignore[method-assign]


async def measure(args: argparse.Namespace, base: str, database: str) -> dict[str, object]:
    rng = random.Random(args.seed)
    job_ids = await create_jobs(base, args.jobs)
    stores = [Store(database, instance=f"bench{i}") for i in range(args.instances)]
    seed_database(stores[0], job_ids, time.time(), rng, args.max_age)
    in_progress: set[int] = set()
    overlaps = 0
    with SlackDouble(bot_token="xoxb-bench") as slack:
        pollers, motions = [], []
        for store in stores:
            motion = MotionClient(base, MOTION_KEY, max_in_flight=args.cap, timeout=15)
            client = make_client("xoxb-bench", slack.base_url)
            service = JobService(
                store, motion, SlackOut(client), schedule=PollSchedule(3.0, 30.0), sandbox=False
            )

            async def advance(
                job_id: int, claimed: Claimed | None, service: JobService = service
            ) -> float | None:
                nonlocal overlaps
                if job_id in in_progress:  # another instance is polling this job right now
                    overlaps += 1
                in_progress.add(job_id)
                try:
                    return await service.advance(job_id, claimed)
                finally:
                    in_progress.discard(job_id)

            poller = Poller(store, advance, concurrency=64)
            service.wake = poller.wake
            service.recover()  # as the app does at start: the schedule learns the runs going
            poller.lags = []
            pollers.append(poller)
            motions.append(motion)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cpu_before = time.process_time()
        calls_before = sum(m.calls for m in motions)
        trips_before = RoundTrips.count
        workers_before = sum(store._off_loop.cpu_seconds for store in stores)
        profile = cProfile.Profile(time.process_time) if args.profile else None
        if profile is not None:  # CPU time of the loop's thread (store workers not included)
            profile.enable()
        for poller in pollers:
            poller.start()
        await asyncio.sleep(args.seconds)
        for poller in pollers:
            await poller.stop(10)
        cpu = time.process_time() - cpu_before
        worker_cpu = sum(store._off_loop.cpu_seconds for store in stores) - workers_before
        if profile is not None:
            profile.disable()
            profile.dump_stats(args.profile)
        polls = sum(m.calls for m in motions) - calls_before
        trips = RoundTrips.count - trips_before
        for motion in motions:
            await motion.aclose()
    for store in stores:
        store.close()
    lags = [lag for poller in pollers for lag in poller.lags or []]
    return {
        "database": stores[0].dialect,
        "instances": args.instances,
        "jobs": args.jobs,
        "seconds": args.seconds,
        "status_calls": polls,
        "status_calls_per_instance": [p.advanced for p in pollers],
        "polls_per_second": round(polls / args.seconds, 1),
        "lag_p50_ms": round(percentile(lags, 0.50) * 1000, 1),
        "lag_p99_ms": round(percentile(lags, 0.99) * 1000, 1),
        "lag_max_ms": round(max(lags, default=0) * 1000, 1),
        "in_flight_cap": args.cap,
        "in_flight_max": max(m.peak_in_flight for m in motions),
        "same_job_polled_at_once": overlaps,
        "db_round_trips_per_poll": round(trips / max(1, polls), 2) if trips else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_before_polling_mb": round(rss_before, 1),
        "cpu_seconds_per_1000_polls": round(cpu / max(1, polls) * 1000, 3),
        # Of that, on the store's worker threads (Store.off_loop); the rest is the loop's.
        "store_worker_cpu_seconds_per_1000_polls": round(worker_cpu / max(1, polls) * 1000, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--cap", type=int, default=8)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--max-age", type=float, default=1800.0, help="runs started up to this many seconds ago"
    )
    parser.add_argument("--database", default=None, help="postgresql://… (default: SQLite)")
    parser.add_argument("--instances", type=int, default=1, help="pollers sharing the jobs")
    parser.add_argument("--profile", default=None, help="write a CPU-time cProfile here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    RoundTrips.install()
    port = free_port()
    sandbox = start_sandbox(port)
    try:
        with contextlib.ExitStack() as stack:
            # PostgreSQL: a schema of its own, dropped at the end (never the database's others).
            database = (
                stack.enter_context(fresh_schema(args.database))
                if args.database
                else str(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "p.db")
            )
            figures = asyncio.run(measure(args, f"http://127.0.0.1:{port}/api/motion", database))
    finally:
        sandbox.terminate()
        sandbox.wait(10)
    failures = []
    if float(figures["lag_p99_ms"]) >= 1000:  # type: ignore[arg-type]
        failures.append(f"lag p99 {figures['lag_p99_ms']} ms ≥ 1 s")
    if int(figures["in_flight_max"]) > args.cap:  # type: ignore[call-overload]
        failures.append(f"{figures['in_flight_max']} requests in flight > cap {args.cap}")
    if float(figures["peak_rss_mb"]) >= 300:  # type: ignore[arg-type]
        failures.append(f"peak RSS {figures['peak_rss_mb']} MB ≥ 300 MB")
    if float(figures["cpu_seconds_per_1000_polls"]) > 1.0:  # type: ignore[arg-type]
        failures.append(f"{figures['cpu_seconds_per_1000_polls']} CPU s per 1,000 polls > 1")
    if figures["same_job_polled_at_once"]:
        failures.append(f"{figures['same_job_polled_at_once']} polls of a job another was polling")
    return verdict("poller", figures, failures)


if __name__ == "__main__":
    sys.exit(main())
