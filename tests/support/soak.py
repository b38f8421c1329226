"""The crash-and-redelivery soak, shared by `bench/soak.py` and `tests/e2e/test_soak.py`.

The Slack double and the Motion sandbox run in this process (threads); the app runs as a
subprocess (`python -m bot`, HTTP mode) that is killed with SIGKILL at random moments and
restarted at once on the same database (tests/support/soak_app.py). Commands, thread replies
and button presses go to it as signed HTTP requests, shaped like `tests.support.harness.Harness`
shapes them. Motion misbehaves throughout (429, 500 with a JSON error, a proxy's HTML 502,
answers later than the app's timeout, answers lost after the call took effect). Everything is
counted from the doubles at the end, after the app was stopped with SIGTERM, by what each post's
metadata says it is (tests/support/soak_count.py):

- per command: exactly one card, and one create in Motion (0 or 1 for a run whose thread says
  the answer never arrived; "Try again" after a "did not start" notice is pressed, then 1);
- per reply: one followup in Motion (same exceptions);
- per run: exactly one post that ends it in its thread: a result or a notice;
- lost: a command or reply with neither; duplicated: anything there twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bot.sandbox import JobPlan, SandboxThread
from tests.support.harness import BOT_TOKEN
from tests.support.motion import ScriptedSandbox
from tests.support.slack import SlackDouble
from tests.support.soak_app import (
    MAX_ATTEMPTS,
    MOTION_KEY,
    AppProcess,
    SlackSide,
    app_env,
    bot_sources_digest,
    free_port,
)
from tests.support.soak_count import (
    NOT_STARTED,
    RESULT,
    JobPrompts,
    Snapshot,
    SoakReport,
    account,
    read_rows,
    retry_button_value,
)

MAX_PRESSES = 4  # "Try again" presses per job before the driver gives up on it
FAULT_KINDS = ("rate_limited", "server_500", "html_502", "timeout", "answer_lost")


@dataclass
class SoakConfig:
    jobs: int = 200
    kills: int = 20
    seed: int = 1
    commands_per_second: float = 4.0
    redeliver_share: float = 1 / 3
    timeout: float = 300.0
    # Seconds after the start between which the kills fall; None: 1 s to the end of sending + 15 s.
    kill_window: tuple[float, float] | None = None
    min_uptime: float = 0.3  # a kill never comes sooner than this after the app answered /healthz
    # Motion calls between two injected faults, drawn uniformly per endpoint.
    fault_gaps: dict[str, tuple[int, int]] = field(
        default_factory=lambda: {"status": (6, 18), "create": (4, 10), "followup": (4, 10)}
    )
    running_seconds: tuple[float, float] = (0.5, 2.0)
    observe_every: float = 0.3
    settle_seconds: float = 2.0  # after the last outcome, before SIGTERM: room for a stray post
    # Instances sharing one database; with more than one, every delivery goes to one at random,
    # a redelivery to another than the first, and a killed instance restarts under a new name
    # (its jobs wait for another instance to take them over).
    instances: int = 1
    database_url: str | None = None  # None: a SQLite file in the work dir
    lease_seconds: float | None = None  # MOTION_LEASE_SECONDS for the app; None: its default
    # Each result's MP4 is also uploaded into its thread (UPLOAD_MAX_MB=5), each completion
    # held `upload_completion_delay` seconds so kills fall between "upload started" and
    # "recorded"; counted: at most one video per run.
    uploads: bool = False
    upload_completion_delay: float = 0.4


@dataclass
class Track:
    """One command attempt the driver sent, and what it did in that job's thread since."""

    index: int
    prompt: str
    reply_text: str
    redeliver: bool
    event_id: str
    acked: bool = False  # the command got HTTP 200
    ambiguous: bool = False  # the connection broke after the request went out: maybe recorded
    sent_at: float = 0.0
    thread_ts: str | None = None
    runs: dict[int, str] = field(default_factory=lambda: {1: "create"})
    waiting_on: int | None = 1
    outcomes: dict[int, str] = field(default_factory=dict)
    reply: dict[str, Any] | None = None
    deliveries: int = 0
    delivered: bool = False
    last_port: int | None = None
    presses: int = 0
    done: bool = False
    end: str = ""


class Soak:
    def __init__(self, config: SoakConfig, work_dir: Path) -> None:
        self.config = config
        self.work_dir = work_dir
        self.tracks: list[Track] = []
        self.by_prompt: dict[str, Track] = {}
        self.stats: Counter[str] = Counter()
        self.faults: dict[str, Counter[str]] = defaultdict(Counter)
        self.kill_log: list[dict[str, float]] = []
        self.takeover_waits: list[float] = []
        self.takeover_pending = 0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.finished = asyncio.Event()
        self.commands_done = False
        self.kills_done = False
        self.started = 0.0
        self.plan_rng = random.Random(f"{config.seed}:plans")
        self.event_rng = random.Random(f"{config.seed}:events")
        redeliver_count = round(config.jobs * config.redeliver_share)
        self.redeliver = set(
            random.Random(f"{config.seed}:redeliver").sample(range(config.jobs), redeliver_count)
        )
        self.problems: list[str] = []

    # ------------------------------------------------------------------ helpers

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.problems.append(f"driver task {task.get_name()} failed: {task.exception()!r}")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def plan(self) -> None:
        """One more run plan for whichever run Motion starts next (they are all alike)."""
        low, high = self.config.running_seconds
        running = self.plan_rng.uniform(low, high)
        self.sandbox.plan_next(
            JobPlan(queued_s=0.1, created_s=0.1, running_s=running, render_s=0.3)
        )

    def new_track(self, index: int, resend: int = 0) -> Track:
        prompt = f"soak job {index:03d}" + (f" resent {resend}" if resend else "")
        track = Track(
            index=index,
            prompt=prompt,
            reply_text=prompt.replace("soak job", "soak followup"),
            redeliver=index in self.redeliver if not resend else self.event_rng.random() < 1 / 3,
            event_id=f"EvSOAK{index:04d}R{resend}",
        )
        self.tracks.append(track)
        self.by_prompt[prompt] = track
        return track

    # ------------------------------------------------------------------ the run

    def start_seconds(self) -> list[float]:
        return [s for app in self.apps for s in app.start_seconds]

    def takeover_figures(self) -> dict[str, Any]:
        waits = sorted(self.takeover_waits)
        return {
            "jobs_held_at_kills": len(waits) + self.takeover_pending,
            "never_taken": self.takeover_pending,
            "wait_p50_s": round(waits[len(waits) // 2], 2) if waits else None,
            "wait_max_s": round(waits[-1], 2) if waits else None,
        }

    async def any_up(self) -> None:
        """Until at least one instance is up (a delivery refused by all of them waits here)."""
        if any(app.up.is_set() for app in self.apps):
            return
        waits = [asyncio.ensure_future(app.up.wait()) for app in self.apps]
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()

    async def run(self) -> SoakReport:
        config = self.config
        self.database = config.database_url or f"sqlite:///{self.work_dir / 'soak.db'}"
        app_log = self.work_dir / "app.log"
        self.prompts = JobPrompts(self.database)
        self.sandbox = ScriptedSandbox(
            default_plan=JobPlan(queued_s=0.1, created_s=0.1, running_s=1.0, render_s=0.3),
            api_keys={MOTION_KEY},
        )
        with SlackDouble(bot_token=BOT_TOKEN) as slack, SandboxThread(self.sandbox) as motion_url:
            self.slack = slack
            ports = [free_port() for _ in range(config.instances)]
            self.side = SlackSide(slack, self.sandbox, ports[0], seed=f"{config.seed}:route")
            env = lambda port: app_env(  # noqa: E731
                slack, motion_url, self.database, port, config.lease_seconds, config.uploads
            )
            if config.uploads:
                slack.fail_next(
                    "files.completeUploadExternal",
                    delay=config.upload_completion_delay,
                    times=1_000_000,
                )
            self.apps = [
                AppProcess(
                    env(port),
                    self.work_dir,
                    app_log if i == 0 else self.work_dir / f"app{i}.log",
                    port,
                    name=f"soak{i}",
                    same_name_on_restart=config.instances == 1,
                )
                for i, port in enumerate(ports)
            ]
            self.app = self.apps[0]
            if config.instances > 1:
                self.side.apps = self.apps
            try:
                return await self._run(app_log)
            finally:
                for task in list(self.tasks):
                    task.cancel()
                if self.tasks:
                    await asyncio.wait(list(self.tasks), timeout=5)
                for app in self.apps:
                    app.close()
                await self.side.aclose()

    async def _run(self, app_log: Path) -> SoakReport:
        config = self.config
        self.started = time.monotonic()
        self.code_at_start = bot_sources_digest()
        for app in self.apps:
            app.start()
        for app in self.apps:
            await app.wait_healthy(self.side.http)
        self.spawn(self.send_commands(), "commands")
        self.spawn(self.chaos(), "chaos")
        self.spawn(self.inject_faults(), "faults")
        self.spawn(self.observe(), "observer")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.finished.wait(), config.timeout)
        timed_out = not self.finished.is_set()
        settled_at = self.elapsed()
        for task in list(self.tasks):
            if task.get_name() in ("faults", "observer", "commands") or timed_out:
                task.cancel()
        for app in self.apps:
            async with app.lock:  # no restart half done
                if app.proc is None or app.proc.poll() is not None:
                    app.start()
                    await app.wait_healthy(self.side.http)
        await asyncio.sleep(config.settle_seconds)
        stops = await asyncio.gather(*(app.terminate() for app in self.apps))
        exit_status = next((code for code, _ in stops if code != 0), 0)
        stop_seconds = max(seconds for _, seconds in stops)
        for task in list(self.tasks):
            task.cancel()
        return account(self, timed_out, settled_at, exit_status, stop_seconds, app_log)

    async def send_commands(self) -> None:
        rate = self.config.commands_per_second
        for index in range(self.config.jobs):
            await asyncio.sleep(max(0.0, self.started + index / rate - time.monotonic()))
            track = self.new_track(index)
            resend = 0
            for _ in range(MAX_ATTEMPTS):
                self.plan()
                outcome = await self.command(track)
                if outcome == "acked":
                    break
                if outcome == "refused":  # nothing reached the app: the same command again
                    self.stats["commands_refused_app_down"] += 1
                    await self.any_up()
                    continue
                # The request may have been recorded: a user would type it again; a new
                # attempt (its own prompt) keeps the two apart in the counts.
                self.stats["commands_ambiguous"] += 1
                track.ambiguous = True
                await self.any_up()
                resend += 1
                track = self.new_track(index, resend)
            else:
                self.stats["commands_given_up"] += 1
        self.commands_done = True

    async def command(self, track: Track) -> str:
        track.sent_at = time.monotonic()
        self.stats["command_requests"] += 1
        try:
            answer = await self.side.command(track.prompt)
        except httpx.ConnectError:
            return "refused"
        except httpx.TransportError:
            return "ambiguous"
        if answer.status_code != 200:
            self.stats["command_http_errors"] += 1
            return "ambiguous"
        track.acked = True
        self.stats["commands_acked"] += 1
        return "acked"

    async def chaos(self) -> None:
        config = self.config
        rng = random.Random(f"{config.seed}:kills")
        window = config.kill_window or (1.0, config.jobs / config.commands_per_second + 15.0)
        moments = sorted(rng.uniform(*window) for _ in range(config.kills))
        for moment in moments:
            await asyncio.sleep(max(0.0, self.started + moment - time.monotonic()))
            app = self.apps[rng.randrange(len(self.apps))]
            await app.up.wait()
            await asyncio.sleep(max(0.0, app.up_since + config.min_uptime - time.monotonic()))
            async with app.lock:
                uptime = time.monotonic() - app.up_since
                owner = app.owner
                held = await asyncio.to_thread(self.held_by, owner)
                app.kill()
                self.stats["kills"] += 1
                killed_at = self.elapsed()
                if held:
                    self.spawn(self.watch_takeover(owner, held, time.monotonic()), "takeover")
                app.start()
                await app.wait_healthy(self.side.http)
                self.stats["restarts"] += 1
                self.kill_log.append(
                    {
                        "at": round(killed_at, 2),
                        "uptime": round(uptime, 2),
                        "down": round(self.elapsed() - killed_at, 2),
                        "jobs_held": len(held),
                    }
                )
        self.kills_done = True

    def held_by(self, owner: str | None) -> list[int]:
        if owner is None:
            return []
        with contextlib.suppress(Exception):
            quoted = owner.replace("'", "''")
            rows = read_rows(self.database, f"SELECT id FROM jobs WHERE lease_owner = '{quoted}'")
            return [int(r[0]) for r in rows]
        return []

    async def watch_takeover(self, owner: str | None, held: list[int], killed: float) -> None:
        """How long each job the killed instance held waited until another lease replaced its
        (or, after a restart under the same name, until its successor released it)."""
        waiting = set(held)
        self.takeover_pending += len(waiting)
        quoted = (owner or "").replace("'", "''")
        while waiting and time.monotonic() - killed < 120:
            await asyncio.sleep(0.1)
            with contextlib.suppress(Exception):
                rows = await asyncio.to_thread(
                    read_rows,
                    self.database,
                    f"SELECT id FROM jobs WHERE lease_owner = '{quoted}'",
                )
                still = {int(r[0]) for r in rows}
                for job_id in list(waiting - still):
                    waiting.discard(job_id)
                    self.takeover_pending -= 1
                    self.takeover_waits.append(time.monotonic() - killed)

    async def inject_faults(self) -> None:
        rng = random.Random(f"{self.config.seed}:faults")
        gaps = self.config.fault_gaps
        seen = 0
        calls: Counter[str] = Counter()
        next_at = {endpoint: rng.randint(*gap) for endpoint, gap in gaps.items()}
        while True:
            new = self.sandbox.calls[seen:]
            seen += len(new)
            calls.update(call.endpoint for call in new)
            for endpoint, gap in gaps.items():
                if calls[endpoint] < next_at[endpoint]:
                    continue
                kind = rng.choice(FAULT_KINDS)
                self.fault(endpoint, kind)
                next_at[endpoint] = calls[endpoint] + rng.randint(*gap)
            await asyncio.sleep(0.05)

    def fault(self, endpoint: str, kind: str) -> None:
        sandbox = self.sandbox
        if kind == "rate_limited":
            sandbox.fault_rate_limited(endpoint, retry_after=1)
        elif kind == "server_500":
            sandbox.fault(endpoint, status=500, body='{"error":"internal"}')
        elif kind == "html_502":
            sandbox.fault_html_502(endpoint)
        elif kind == "timeout":
            sandbox.fault(endpoint, delay=1.5)
        else:
            sandbox.fault(endpoint, after_processing=True, drop=True)
        self.faults[endpoint][kind] += 1

    # ------------------------------------------------------------------ following the threads

    async def observe(self) -> None:
        while True:
            await asyncio.sleep(self.config.observe_every)
            snapshot = Snapshot.take(self.slack, self.prompts)
            for track in list(self.tracks):
                self.step(track, snapshot)
            if self.all_done():
                self.finished.set()
                return

    def all_done(self) -> bool:
        if not (self.commands_done and self.kills_done):
            return False
        if any(task.get_name().startswith(("reply ", "press ", "takeover")) for task in self.tasks):
            return False  # a redelivery or a press still to come
        for track in self.tracks:
            if track.done:
                continue
            unrecorded = (
                not track.acked
                and track.thread_ts is None
                and time.monotonic() - track.sent_at > 15
                and all(app.up.is_set() for app in self.apps)
                and time.monotonic() - max(app.up_since for app in self.apps) > 5
            )
            if not unrecorded:
                return False
        return True

    def step(self, track: Track, snapshot: Snapshot) -> None:
        if track.done:
            return
        if track.thread_ts is None:
            cards = snapshot.cards.get(track.prompt)
            if not cards:
                return
            track.thread_ts = cards[0]["ts"]
        run = track.waiting_on
        assert run is not None
        outcomes = snapshot.outcomes(track.thread_ts).get(run)
        if not outcomes:
            return
        kind, message = outcomes[0]
        track.outcomes[run] = kind
        what = track.runs[run]
        if kind == RESULT and what == "create":
            following = max(track.runs) + 1
            track.runs[following] = "followup"
            track.waiting_on = following
            self.plan()
            self.spawn(self.send_reply(track), f"reply {track.prompt}")
        elif kind == RESULT:
            track.done, track.end, track.waiting_on = True, f"followup_{RESULT}", None
        elif kind in NOT_STARTED and track.presses < MAX_PRESSES:
            value = retry_button_value(message)
            if value is None:
                track.done, track.end, track.waiting_on = True, f"{what}_{kind}_no_button", None
                return
            following = max(track.runs) + 1
            track.runs[following] = what
            track.waiting_on = following
            track.presses += 1
            self.plan()
            self.spawn(self.press(track, value, message["ts"]), f"press {track.prompt}")
        else:
            track.done, track.end, track.waiting_on = True, f"{what}_{kind}", None

    async def send_reply(self, track: Track) -> None:
        assert track.thread_ts is not None
        track.reply = self.side.reply_event(track.thread_ts, track.reply_text)
        self.stats["replies"] += 1
        if not track.redeliver:
            await self.deliver(track, redelivery=False)
            return
        # Slack's http_timeout retry: sometimes while the first is still in flight, else later.
        overlapping = self.event_rng.random() < 0.25
        wait = self.event_rng.uniform(0.1, 3.0)
        again = self.event_rng.random() < 0.3
        later = self.event_rng.uniform(1.0, 5.0)
        if overlapping:
            self.stats["redeliveries_overlapping_the_first"] += 1
            await asyncio.gather(
                self.deliver(track, redelivery=False), self.deliver(track, redelivery=True)
            )
        else:
            await self.deliver(track, redelivery=False)
            await asyncio.sleep(wait)
            await self.deliver(track, redelivery=True)
        if again:
            await asyncio.sleep(later)
            await self.deliver(track, redelivery=True)

    async def deliver(self, track: Track, *, redelivery: bool) -> None:
        """One delivery as Slack makes it, redelivered (same event_id) until it gets a 200."""
        assert track.reply is not None
        reason = "http_timeout"
        for _ in range(MAX_ATTEMPTS):
            retry = track.deliveries
            track.deliveries += 1
            headers = {}
            if retry:
                headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": reason}
            body = json.dumps(self.side.envelope(track.reply, event_id=track.event_id))
            self.stats["event_deliveries"] += 1
            if retry:
                self.stats["event_deliveries_with_retry_header"] += 1
            # A redelivery goes to another instance than the last delivery (when there are several).
            port = self.side.route(avoid=track.last_port if retry else None)
            if retry and track.last_port is not None and port != track.last_port:
                self.stats["event_deliveries_to_another_instance"] += 1
            track.last_port = port
            if redelivery:
                self.stats["redeliveries_on_purpose"] += 1
                redelivery = False  # a failed one is redelivered like any other
            try:
                answer = await self.side.post(body, "application/json", headers=headers, port=port)
            except httpx.TransportError:
                self.stats["event_deliveries_failed_app_down"] += 1
                reason = "http_error"
                await self.any_up()
                continue
            if answer.status_code != 200:
                self.stats["event_deliveries_non_200"] += 1
                reason = "http_error"
                await asyncio.sleep(0.2)
                continue
            track.delivered = True
            return
        self.give_up(track, "event_deliveries_given_up", "reply_never_got_200")

    async def press(self, track: Track, value: str, message_ts: str) -> None:
        """Press "Try again"; a press that may not have arrived is pressed again (once-only)."""
        for _ in range(MAX_ATTEMPTS):
            self.stats["button_presses"] += 1
            try:
                answer = await self.side.action("retry_run", value, message_ts=message_ts)
            except httpx.TransportError:
                self.stats["button_presses_failed_app_down"] += 1
                await self.any_up()
                continue
            if answer.status_code == 200:
                return
            self.stats["button_presses_non_200"] += 1
            await asyncio.sleep(0.2)
        self.give_up(track, "button_presses_given_up", "press_never_got_200")

    def give_up(self, track: Track, stat: str, end: str) -> None:
        """Slack stops retrying too: the run asked for will have no outcome and count as lost."""
        self.stats[stat] += 1
        if not track.done:
            track.done, track.end = True, end

    # ------------------------------------------------------------------ counting


async def run_soak(config: SoakConfig, work_dir: Path) -> SoakReport:
    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
    return await Soak(config, work_dir).run()
