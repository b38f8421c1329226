"""The crash-and-redelivery soak, shared by `bench/soak.py` and `tests/test_soak.py`.

The Slack double and the Motion sandbox run in this process (threads); the app runs as a
subprocess (`python -m bot`, HTTP mode) that is killed with SIGKILL at random moments and
restarted at once on the same database. Commands, thread replies and button presses go to it
as signed HTTP requests, shaped like `tests.support.harness.Harness` shapes them. Motion misbehaves
throughout (429, 500 with a JSON error, a proxy's HTML 502, answers later than the app's
timeout, answers lost after the call took effect). Everything is counted from the doubles at
the end, after the app was stopped with SIGTERM:

- per command: exactly one card, and one create in Motion (0 or 1 for a run whose thread says
  the answer never arrived; "Try again" after a "did not start" notice is pressed, then 1);
- per reply: one followup in Motion (same exceptions);
- per run: exactly one outcome in its thread: a result ("run N … is ready") or a notice;
- lost: a command or reply with neither; duplicated: anything there twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from bot.sandbox import JobPlan, SandboxThread
from tests.doubles.slack_web import SlackDouble
from tests.support.harness import BOT_TOKEN, SIGNING_SECRET, Harness
from tests.support.motion import ScriptedSandbox

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "C0PUBLIC"
MOTION_KEY = "motion_soak"
MAX_PRESSES = 4  # "Try again" presses per job before the driver gives up on it
# Attempts at one delivery (a command, an event, a press) before giving up, as Slack does after
# the original and 3 retries; the app is never down long enough in the soak to need more.
MAX_ATTEMPTS = 6
# Variables of the app's own configuration: never inherited from the caller's environment.
APP_VARIABLES = (
    "SLACK_",
    "MOTION_",
    "DATABASE_URL",
    "POLL_",
    "FOLLOWUP_REQUIRES_MENTION",
    "LOG_LEVEL",
    "PORT",
)
FAULT_KINDS = ("rate_limited", "server_500", "html_502", "timeout", "answer_lost")

# What the app says in a thread, by intent (bot/messages.py); the run number is group "run".
RESULT = re.compile(r"run (?P<run>\d+) of your Motion video is ready")
UNKNOWN = re.compile(
    r"I sent the (?P<what>followup|request to start this video) \(run (?P<run>\d+)\) to "
    r"Motion, but its answer never reached me"
)
INTERNAL = re.compile(r"Motion reported an internal error and did not start run (?P<run>\d+)")
UNREACHABLE = re.compile(r"I could not reach Motion to start run (?P<run>\d+)")
FOUND = re.compile(r"Motion's answer to run (?P<run>\d+) was lost on the way")
CONTINUED = re.compile(r"Credits for run (?P<run>\d+), continued")
UNEXPECTED = (
    ("failed", re.compile(r"Run (?P<run>\d+) failed in Motion")),
    ("render_failed", re.compile(r"Run (?P<run>\d+) finished, but Motion could not render")),
    ("refused", re.compile(r"Motion refused run (?P<run>\d+)")),
    ("stopped_auth", re.compile(r"Motion did not accept this app's API key")),
    ("stopped_404", re.compile(r"Motion no longer knows this job")),
    ("credits", re.compile(r"Not enough Motion credits")),
    ("awaiting_input", re.compile(r"Run (?P<run>\d+) is waiting for a decision")),
)
TERMINAL = {"result", "unknown", "internal", "unreachable"} | {k for k, _ in UNEXPECTED}
CARD = re.compile(r"^Motion video for <@\w+>: (?P<prompt>.+?) — ")
DOWNLOAD = re.compile(r"<(?P<url>https://cdn\.sandbox\.motion\.invalid/[^|>]+)")


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
    presses: int = 0
    done: bool = False
    end: str = ""


@dataclass
class SoakReport:
    figures: dict[str, Any]
    failures: list[str]
    details: list[str]
    work_dir: Path
    app_log: Path


class SlackSide(Harness):
    """What Slack sends, signed, to the app's fixed port; the payload shapes are Harness's."""

    def __init__(self, slack: SlackDouble, sandbox: ScriptedSandbox, port: int) -> None:
        # Harness.__init__ is not called: it would open a client with keep-alive, and a pooled
        # connection to a killed process would blur "not delivered" into "maybe delivered".
        self.env: dict[str, str] = {}
        self.slack = slack
        self.sandbox = sandbox
        self.bots = []
        self._event_seq = 0
        self.port = port
        self.http = httpx.AsyncClient(
            timeout=10, limits=httpx.Limits(max_connections=64, max_keepalive_connections=0)
        )

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    async def aclose(self) -> None:
        await self.http.aclose()


class AppProcess:
    """`python -m bot` as a child process, on one port and one database across restarts."""

    def __init__(self, env: dict[str, str], cwd: Path, log_path: Path, port: int) -> None:
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: TextIO = open(log_path, "a", encoding="utf-8")  # noqa: SIM115
        self.starts = 0
        self.up = asyncio.Event()
        self.up_since = 0.0
        self.lock = asyncio.Lock()
        self.start_seconds: list[float] = []

    def start(self) -> None:
        self.starts += 1
        self.log.write(f"=== soak: start {self.starts} at {time.time():.3f}\n")
        self.log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot"],
            cwd=self.cwd,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    async def wait_healthy(self, http: httpx.AsyncClient, timeout: float = 30.0) -> None:
        began = time.monotonic()
        deadline = began + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the app exited with {self.proc.returncode} at start:\n{self.tail()}"
                )
            with contextlib.suppress(httpx.TransportError):
                answer = await http.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
                if answer.status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app did not answer /healthz in {timeout}s:\n{self.tail()}")
            await asyncio.sleep(0.02)
        self.start_seconds.append(time.monotonic() - began)
        self.up_since = time.monotonic()
        self.up.set()

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed, in-flight calls are cut."""
        assert self.proc is not None
        self.up.clear()
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.log.write(f"=== soak: SIGKILL at {time.time():.3f}\n")
        self.log.flush()

    async def terminate(self, timeout: float = 40.0) -> tuple[int | None, float]:
        """SIGTERM and wait; returns the exit status (None: still running) and the seconds."""
        assert self.proc is not None
        self.up.clear()
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.proc.wait, timeout)
        return self.proc.poll(), time.monotonic() - began

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()

    def tail(self, lines: int = 40) -> str:
        self.log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def bot_sources_digest() -> str:
    """A digest of the app's code, to tell whether it changed while the soak ran."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "bot").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_env(slack: SlackDouble, motion_url: str, database: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(APP_VARIABLES)}
    path = [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    env.update(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.base_url,
        PORT=str(port),
        MOTION_API_KEY=MOTION_KEY,
        MOTION_API_URL=motion_url,
        DATABASE_URL=f"sqlite:///{database}",
        POLL_INITIAL_SECONDS="0.2",
        POLL_MAX_SECONDS="1",
        MOTION_TIMEOUT_SECONDS="1",
        LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join(path),
        PYTHONUNBUFFERED="1",
    )
    return env


def classify(text: str) -> tuple[str, int | None]:
    """What a bot message in a job thread is, and which run it is about."""
    for kind, pattern in (
        ("result", RESULT),
        ("internal", INTERNAL),
        ("unreachable", UNREACHABLE),
        ("found", FOUND),
        ("continued", CONTINUED),
        *UNEXPECTED,
    ):
        match = pattern.search(text)
        if match:
            run = match.groupdict().get("run")
            return kind, int(run) if run else None
    match = UNKNOWN.search(text)
    if match:
        return "unknown", int(match["run"])
    return "unrecognised", None


def retry_button_value(message: dict[str, Any]) -> str | None:
    for block in message.get("blocks") or []:
        if block.get("type") != "actions":
            continue
        for element in block.get("elements") or []:
            if element.get("action_id") == "retry_run":
                return str(element.get("value"))
    return None


@dataclass
class Snapshot:
    """The channel as the doubles hold it: cards by prompt, bot replies by thread."""

    cards: dict[str, list[dict[str, Any]]]
    threads: dict[str, list[dict[str, Any]]]
    messages: list[dict[str, Any]]

    @classmethod
    def take(cls, slack: SlackDouble) -> Snapshot:
        messages = slack.messages(CHANNEL)
        cards: dict[str, list[dict[str, Any]]] = defaultdict(list)
        threads: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for message in messages:
            if not message.get("bot_id"):
                continue
            parent = message.get("thread_ts")
            if parent and parent != message["ts"]:
                threads[parent].append(message)
                continue
            match = CARD.match(message.get("text") or "")
            if match:
                cards[match["prompt"]].append(message)
        return cls(cards, threads, messages)

    def outcomes(self, thread_ts: str) -> dict[int, list[tuple[str, dict[str, Any]]]]:
        """Per run number, the terminal messages about it, in thread order."""
        found: dict[int, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for message in self.threads.get(thread_ts, []):
            kind, run = classify(message.get("text") or "")
            if run is not None and kind in TERMINAL:
                found[run].append((kind, message))
        return found


class Soak:
    def __init__(self, config: SoakConfig, work_dir: Path) -> None:
        self.config = config
        self.work_dir = work_dir
        self.tracks: list[Track] = []
        self.by_prompt: dict[str, Track] = {}
        self.stats: Counter[str] = Counter()
        self.faults: dict[str, Counter[str]] = defaultdict(Counter)
        self.kill_log: list[dict[str, float]] = []
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

    async def run(self) -> SoakReport:
        database = self.work_dir / "soak.db"
        app_log = self.work_dir / "app.log"
        self.sandbox = ScriptedSandbox(
            default_plan=JobPlan(queued_s=0.1, created_s=0.1, running_s=1.0, render_s=0.3),
            api_keys={MOTION_KEY},
        )
        with SlackDouble(bot_token=BOT_TOKEN) as slack, SandboxThread(self.sandbox) as motion_url:
            self.slack = slack
            port = free_port()
            self.side = SlackSide(slack, self.sandbox, port)
            self.app = AppProcess(
                app_env(slack, motion_url, database, port), self.work_dir, app_log, port
            )
            try:
                return await self._run(app_log)
            finally:
                for task in list(self.tasks):
                    task.cancel()
                if self.tasks:
                    await asyncio.wait(list(self.tasks), timeout=5)
                self.app.close()
                await self.side.aclose()

    async def _run(self, app_log: Path) -> SoakReport:
        config = self.config
        self.started = time.monotonic()
        self.code_at_start = bot_sources_digest()
        self.app.start()
        await self.app.wait_healthy(self.side.http)
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
        async with self.app.lock:  # no restart half done
            if self.app.proc is None or self.app.proc.poll() is not None:
                self.app.start()
                await self.app.wait_healthy(self.side.http)
        await asyncio.sleep(config.settle_seconds)
        exit_status, stop_seconds = await self.app.terminate()
        for task in list(self.tasks):
            task.cancel()
        return self.account(timed_out, settled_at, exit_status, stop_seconds, app_log)

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
                    await self.app.up.wait()
                    continue
                # The request may have been recorded: a user would type it again; a new
                # attempt (its own prompt) keeps the two apart in the counts.
                self.stats["commands_ambiguous"] += 1
                track.ambiguous = True
                await self.app.up.wait()
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
            await self.app.up.wait()
            await asyncio.sleep(max(0.0, self.app.up_since + config.min_uptime - time.monotonic()))
            async with self.app.lock:
                uptime = time.monotonic() - self.app.up_since
                self.app.kill()
                self.stats["kills"] += 1
                killed_at = self.elapsed()
                self.app.start()
                await self.app.wait_healthy(self.side.http)
                self.stats["restarts"] += 1
                self.kill_log.append(
                    {
                        "at": round(killed_at, 2),
                        "uptime": round(uptime, 2),
                        "down": round(self.elapsed() - killed_at, 2),
                    }
                )
        self.kills_done = True

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
            snapshot = Snapshot.take(self.slack)
            for track in list(self.tracks):
                self.step(track, snapshot)
            if self.all_done():
                self.finished.set()
                return

    def all_done(self) -> bool:
        if not (self.commands_done and self.kills_done):
            return False
        if any(task.get_name().startswith(("reply ", "press ")) for task in self.tasks):
            return False  # a redelivery or a press still to come
        for track in self.tracks:
            if track.done:
                continue
            unrecorded = (
                not track.acked
                and track.thread_ts is None
                and time.monotonic() - track.sent_at > 15
                and self.app.up.is_set()
                and time.monotonic() - self.app.up_since > 5
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
        if kind == "result" and what == "create":
            following = max(track.runs) + 1
            track.runs[following] = "followup"
            track.waiting_on = following
            self.plan()
            self.spawn(self.send_reply(track), f"reply {track.prompt}")
        elif kind == "result":
            track.done, track.end, track.waiting_on = True, "followup_result", None
        elif kind in ("internal", "unreachable") and track.presses < MAX_PRESSES:
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
            if redelivery:
                self.stats["redeliveries_on_purpose"] += 1
                redelivery = False  # a failed one is redelivered like any other
            try:
                answer = await self.side.post(body, "application/json", headers=headers)
            except httpx.TransportError:
                self.stats["event_deliveries_failed_app_down"] += 1
                reason = "http_error"
                await self.app.up.wait()
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
                await self.app.up.wait()
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

    def account(
        self,
        timed_out: bool,
        settled_at: float,
        exit_status: int | None,
        stop_seconds: float,
        app_log: Path,
    ) -> SoakReport:
        snapshot = Snapshot.take(self.slack)
        creates = Counter(body.get("prompt") for body in self.sandbox.creates)
        followups = Counter(body.get("prompt") for body in self.sandbox.followups)
        lost: list[str] = []
        duplicated: list[str] = []
        unexpected: list[str] = []
        inconsistent: list[str] = []
        notices: Counter[str] = Counter()
        ends: Counter[str] = Counter()
        results_posted = 0
        runs_with_result = 0
        unknown_but_started = 0
        tracked_prompts = set(self.by_prompt)
        tracked_replies = {t.reply_text for t in self.tracks}

        for track in self.tracks:
            cards = snapshot.cards.get(track.prompt, [])
            if len(cards) > 1:
                duplicated.append(f"{track.prompt}: {len(cards)} cards")
            if not cards:
                if track.acked:
                    lost.append(f"{track.prompt}: acknowledged, but no card")
                elif track.ambiguous:
                    ends["command_not_recorded"] += 1
                if creates[track.prompt]:
                    duplicated.append(f"{track.prompt}: {creates[track.prompt]} creates, no card")
                continue
            if not track.acked:
                self.stats["ambiguous_commands_recorded"] += 1
            ends[track.end or "unfinished"] += 1
            thread = cards[0]["ts"]
            outcomes = snapshot.outcomes(thread)
            urls: list[str] = []
            for message in snapshot.threads.get(thread, []):
                kind, run = classify(message.get("text") or "")
                if kind == "unrecognised":
                    unexpected.append(
                        f"{track.prompt}: unrecognised message {message['text'][:120]!r}"
                    )
                elif kind == "found":
                    notices["lost_answer_found"] += 1
                elif kind == "result":
                    results_posted += 1
                    match = DOWNLOAD.search(message.get("text") or "")
                    if match:
                        urls.append(match["url"])
            if len(urls) != len(set(urls)):
                duplicated.append(f"{track.prompt}: a download URL announced twice: {urls}")
            for run, what in sorted(track.runs.items()):
                said = outcomes.get(run, [])
                kinds = [kind for kind, _ in said]
                if not said:
                    lost.append(
                        f"{track.prompt}: run {run} ({what}) has neither a result nor a notice"
                    )
                    continue
                if len(said) > 1:
                    duplicated.append(
                        f"{track.prompt}: run {run} ({what}) told {len(said)} times: {kinds}"
                    )
                kind = kinds[0]
                notices[f"{what}_{kind}"] += 1
                if kind == "result":
                    runs_with_result += 1
                if kind not in ("result", "unknown", "internal", "unreachable"):
                    unexpected.append(f"{track.prompt}: run {run} ({what}) ended {kind}")
            for run in sorted(set(outcomes) - set(track.runs)):
                kinds = [kind for kind, _ in outcomes[run]]
                duplicated.append(f"{track.prompt}: run {run} that nobody asked for: {kinds}")
            for what, counts, key in (
                ("create", creates, track.prompt),
                ("followup", followups, track.reply_text),
            ):
                ended = [
                    outcomes[run][0][0]
                    for run, kind in track.runs.items()
                    if kind == what and outcomes.get(run)
                ]
                least = ended.count("result")
                most = least + ended.count("unknown")
                got = counts[key]
                if got > most:
                    duplicated.append(
                        f"{track.prompt}: {got} {what}s in Motion for outcomes {ended}"
                    )
                elif got < least:
                    inconsistent.append(
                        f"{track.prompt}: {got} {what}s in Motion, yet outcomes {ended}"
                    )
                unknown_but_started += max(0, min(got, most) - least)

        stray_creates = sum(n for prompt, n in creates.items() if prompt not in tracked_prompts)
        stray_followups = sum(n for text, n in followups.items() if text not in tracked_replies)
        if stray_creates or stray_followups:
            duplicated.append(f"{stray_creates} creates, {stray_followups} followups of no command")
        keys = Counter(
            ((m.get("metadata") or {}).get("event_payload") or {}).get("key")
            for m in snapshot.messages
            if m.get("metadata")
        )
        twice = {key: n for key, n in keys.items() if n > 1}
        if twice:
            duplicated.append(f"outbox posts that reached Slack more than once: {twice}")
        cards_unclaimed = [p for p in snapshot.cards if p not in tracked_prompts]
        if cards_unclaimed:
            duplicated.append(f"cards for no command: {cards_unclaimed[:5]}")

        recorded, db_problems = self.cross_check_database()
        duplicated += db_problems
        log_text = app_log.read_text(encoding="utf-8", errors="replace")
        wire = Counter(
            f"{call.endpoint}:{call.status if call.status else 'no_answer'}"
            for call in list(self.sandbox.calls)
        )
        figures: dict[str, Any] = {
            "jobs": self.config.jobs,
            "seed": self.config.seed,
            "wall_seconds": round(self.elapsed(), 1),
            "seconds_to_last_outcome": round(settled_at, 1),
            "timed_out": timed_out,
            "kills": self.stats["kills"],
            "restarts": self.stats["restarts"],
            "app_start_to_healthy_p50_s": round(
                sorted(self.app.start_seconds)[len(self.app.start_seconds) // 2], 2
            ),
            "commands": {
                "requests": self.stats["command_requests"],
                "acked": self.stats["commands_acked"],
                "resent_after_refused_connection": self.stats["commands_refused_app_down"],
                "broken_mid_request_resent_as_new": self.stats["commands_ambiguous"],
                "broken_mid_request_recorded_anyway": self.stats["ambiguous_commands_recorded"],
                "http_errors": self.stats["command_http_errors"],
            },
            "events": {
                "replies": self.stats["replies"],
                "redeliveries_on_purpose": self.stats["redeliveries_on_purpose"],
                "redeliveries_overlapping_the_first": self.stats[
                    "redeliveries_overlapping_the_first"
                ],
                "deliveries": self.stats["event_deliveries"],
                "deliveries_with_retry_header": self.stats["event_deliveries_with_retry_header"],
                "deliveries_failed_app_down": self.stats["event_deliveries_failed_app_down"],
                "deliveries_non_200": self.stats["event_deliveries_non_200"],
            },
            "try_again_presses": self.stats["button_presses"],
            "faults_injected": {e: dict(c) for e, c in sorted(self.faults.items())},
            "motion_calls_by_answer": dict(sorted(wire.items())),
            "creates_accepted": sum(creates.values()),
            "followups_accepted": sum(followups.values()),
            "runs_with_result": runs_with_result,
            "result_posts": results_posted,
            "outcomes": dict(sorted(notices.items())),
            "unknown_outcome_notices": notices["create_unknown"] + notices["followup_unknown"],
            "unknown_outcome_where_motion_had_started": unknown_but_started,
            "job_ends": dict(sorted(ends.items())),
            "creates_recovered_in_flight_at_kill": log_text.count(
                "create was in flight at the last stop"
            ),
            "app_log_errors": sum(1 for line in log_text.splitlines() if " ERROR " in line),
            "app_log_tracebacks": log_text.count("Traceback"),
            "sigterm_exit_status": exit_status,
            "sigterm_seconds": round(stop_seconds, 2),
            "lost": len(lost),
            "duplicated": len(duplicated),
            "unexpected": len(unexpected),
            "inconsistent": len(inconsistent),
            "runs_recorded_in_database": recorded,
            "kill_moments": self.kill_log,
        }
        code_at_end = bot_sources_digest()
        figures["bot_code"] = self.code_at_start
        figures["bot_code_changed_during_run"] = code_at_end != self.code_at_start
        failures = []
        if code_at_end != self.code_at_start:
            failures.append(
                f"bot/ changed during the run ({self.code_at_start} -> {code_at_end}): "
                "the app restarted on different code; run again"
            )
        if lost:
            failures.append(f"{len(lost)} lost")
        if duplicated:
            failures.append(f"{len(duplicated)} duplicated")
        if unexpected or inconsistent:
            failures.append(
                f"{len(unexpected) + len(inconsistent)} unexpected or inconsistent outcomes"
            )
        if results_posted != runs_with_result:
            failures.append(
                f"{results_posted} result posts for {runs_with_result} runs with a result"
            )
        given_up = {k: v for k, v in self.stats.items() if k.endswith("_given_up") and v}
        if given_up:
            failures.append(f"requests that never got a 200 after {MAX_ATTEMPTS} tries: {given_up}")
        if timed_out:
            failures.append(f"not finished within {self.config.timeout:.0f} s")
        if self.stats["kills"] != self.config.kills:
            failures.append(f"{self.stats['kills']} kills instead of {self.config.kills}")
        if exit_status != 0:
            failures.append(f"the app's exit status after SIGTERM was {exit_status}")
        failures += self.problems
        details = lost + duplicated + unexpected + inconsistent
        return SoakReport(figures, failures, details, self.work_dir, app_log)

    def cross_check_database(self) -> tuple[int, list[str]]:
        """After the stop: every run the app recorded was asked for, and nothing twice.

        This catches a duplicate that had not reached Motion or Slack yet when the app stopped
        (a second followup still waiting, say). Only long-standing columns are read.
        """
        database = self.work_dir / "soak.db"
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
            rows = conn.execute(
                "SELECT jobs.prompt, runs.number FROM runs JOIN jobs ON jobs.id = runs.job_id"
            ).fetchall()
            jobs = Counter(prompt for (prompt,) in conn.execute("SELECT prompt FROM jobs"))
        problems = [f"{prompt}: {n} jobs in the database" for prompt, n in jobs.items() if n > 1]
        unasked = sorted(set(jobs) - set(self.by_prompt))
        if unasked:
            problems.append(f"jobs recorded for no command: {unasked[:10]}")
        followed = {t.prompt: t for t in self.tracks if t.thread_ts}
        extra = sorted(
            (prompt, number)
            for prompt, number in rows
            if prompt in followed and number not in followed[prompt].runs
        )
        if extra:
            problems.append(f"runs recorded that nobody asked for: {extra[:10]}")
        return len(rows), problems


async def run_soak(config: SoakConfig, work_dir: Path) -> SoakReport:
    await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
    return await Soak(config, work_dir).run()
