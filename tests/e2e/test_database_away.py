"""The database away for a moment, through the real app (SPEC "The database away for a moment"):
PostgreSQL stopped and started again, and a SQLite file held under another connection's
exclusive lock, each for longer than a request's 2-s budget, while jobs are generating and while
a command, a thread reply and a click arrive.

Each: every request is answered within Slack's 3 s (the command and the click privately: try
again; the reply with an error status, so Slack delivers it again); nothing of them is
half-recorded (no job, no run, no counted spend, no claimed delivery); `/healthz` says 503 with
the reason, then 200; every generating job's result is posted once; the store logs the outage
once when it begins and once when it ends, and nothing else logs a traceback; and afterwards
the same command, the redelivered reply and the same click all work.

The PostgreSQL server is the test's own (tests/support/own_postgres.py): the one other tests
share (TEST_DATABASE_URL) is never stopped. The test runs wherever PostgreSQL's binaries are
installed, whatever TEST_DATABASE_URL says, and is skipped with the reason elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import MotionBot
from bot.jobs.spend import utc_day, utc_month
from bot.sandbox import JobPlan
from bot.slack.ids import ActionId
from tests.support.e2e import buttons, results, run_command, settle
from tests.support.harness import FAST_PLAN, Harness, until
from tests.support.own_postgres import OwnPostgres

ACK_LIMIT = 3.0  # Slack's
OUTAGE_SECONDS = 4.0  # longer than a request's 2-s budget
# Jobs still generating when the database goes, and after it is back.
GENERATING = JobPlan(queued_s=0.2, created_s=0.2, running_s=OUTAGE_SECONDS + 1.0, render_s=0.3)
TEAM, ALICE = "T0001", "U0ALICE"


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    missing = OwnPostgres.missing()
    if missing is not None:
        pytest.skip(f"needs a PostgreSQL server of its own to stop: {missing}")
    server = OwnPostgres()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


class HeldFile:
    """The SQLite file under an exclusive lock of another connection, from `begin` to `end`,
    as another process's long write holds it (WAL: readers go on, writers wait)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._held = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        other = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        try:
            other.execute("BEGIN EXCLUSIVE")
            self._held.set()
            self._release.wait(60)
            other.execute("ROLLBACK")
        finally:
            other.close()

    def begin(self) -> None:
        self._thread.start()
        assert self._held.wait(10)

    def end(self) -> None:
        self._release.set()
        self._thread.join(10)


@dataclass
class Answered:
    status: int
    seconds: float
    text: str


async def timed(request: Awaitable[httpx.Response]) -> Answered:
    started = time.monotonic()
    response = await request
    return Answered(response.status_code, time.monotonic() - started, response.text)


def button(message: dict[str, Any], action_id: str) -> dict[str, Any]:
    return next(b for b in buttons(message) if b["action_id"] == action_id)


def action_responses(h: Harness) -> list[dict[str, Any]]:
    return [r for r in h.slack.responses if r["tag"] == f"action-{ALICE}"]


async def health(h: Harness, bot: MotionBot) -> httpx.Response:
    return await h.http.get(f"http://127.0.0.1:{bot.port}/healthz")


async def read(bot: MotionBot, fn: Callable[..., Any], *args: Any) -> Any:
    """A look at the store from a thread of the test's own (on the loop's thread a store call
    is refused at once while the app knows the database is away)."""
    return await asyncio.to_thread(fn, *args)


async def test_postgresql_stopped_for_seconds_and_started_again(
    harness: Harness, own_postgres: OwnPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await harness.start(DATABASE_URL=own_postgres.url)
    assert bot.store.dialect == "postgresql"
    await ride_out(
        harness, bot, caplog, begin=own_postgres.stop, end=own_postgres.start,
        reason="database unreachable",
    )  # fmt: skip


async def test_a_sqlite_file_held_by_another_connection_past_the_budget(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "held.db"
    bot = await harness.start(DATABASE_URL=f"sqlite:///{path}")
    assert bot.store.dialect == "sqlite"
    held = HeldFile(path)
    await ride_out(harness, bot, caplog, begin=held.begin, end=held.end, reason="database locked")


async def ride_out(
    h: Harness, bot: MotionBot, caplog: pytest.LogCaptureFixture, *,
    begin: Callable[[], None], end: Callable[[], None], reason: str,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO)
    # Before: a finished job (its thread takes a reply, its result a click), and two jobs
    # that will still be generating when the database goes.
    finished = await run_command(h, "a finished video")
    [result] = await until(lambda: results(h, finished["ts"]), what="the first result")
    h.sandbox.plan_next(GENERATING, GENERATING)
    generating = [await run_command(h, f"generating {n}") for n in (1, 2)]
    await until(lambda: h.sandbox.count("create") == 3, what="both jobs sent to Motion")
    caplog.clear()

    # The database goes away; a command, a reply and a click arrive together.
    await asyncio.to_thread(begin)
    gone_at = time.monotonic()
    reply = h.reply_event(finished["ts"], "make it longer")
    variation = button(result, ActionId.NEW_VARIATION)["value"]
    command, replied, clicked = await asyncio.gather(
        timed(h.command("during the outage")),
        timed(h.event(reply, event_id="EvDuringOutage")),
        timed(h.action(ActionId.NEW_VARIATION, variation, message_ts=result["ts"])),
    )
    down = await until_health(h, bot, 503)
    await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - gone_at)))
    await asyncio.to_thread(end)
    await until_health(h, bot, 200)  # back
    jobs_after = await read(bot, bot.store.recent_jobs, TEAM, ALICE, 50)

    # Every request was answered within Slack's 3 s, and said what happened.
    assert command.status == 200 and command.seconds < ACK_LIMIT, command
    assert "nothing was started" in command.text and "try again" in command.text.lower()
    assert replied.status >= 500 and replied.seconds < ACK_LIMIT, replied  # Slack retries it
    assert clicked.status == 200 and clicked.seconds < ACK_LIMIT, clicked
    [said] = await until(lambda: action_responses(h), what="the clicker's private answer")
    assert said["response_type"] == "ephemeral" and "try again" in said["text"].lower()
    # (The first 503 may only say the look timed out: the outage's kind is in the log line.)
    assert down.json()["reason"] in (reason, "database timed out"), down.json()
    assert down.json()["database"] is False and down.json()["database_error"]
    # Nothing of them was recorded: no job (no followup, no spend: counted at the end).
    assert {j.prompt for j in jobs_after} == {"a finished video", "generating 1", "generating 2"}

    # The generating jobs finish, each result once.
    for card in generating:
        await until(lambda card=card: results(h, card["ts"]), what="a generating job's result")
    # Afterwards the same requests work: the command again, the reply redelivered, the click.
    again = await h.command("during the outage")
    assert again.status_code == 200 and "card will appear" in again.text
    redelivered = await h.event(reply, event_id="EvDuringOutage", retry=1)
    assert redelivered.status_code == 200
    clicked_again = await h.action(ActionId.NEW_VARIATION, variation, message_ts=result["ts"])
    assert clicked_again.status_code == 200
    await until(lambda: len(results(h, finished["ts"])) == 2, what="the reply's run")
    await until(lambda: h.sandbox.count("create") == 5, what="the command's and the variation's")
    await until(lambda: len(h.cards()) == 5, what="five cards")
    for card in h.cards():
        await until(lambda card=card: results(h, card["ts"]), what=f"{card['text'][:40]!r}")
    await settle(1.0)

    # Each job's result once; each run sent once; each run counted once.
    assert [len(results(h, card["ts"])) for card in h.cards()] == [2, 1, 1, 1, 1]
    assert h.sandbox.count("create") == 5 and h.sandbox.count("followup") == 1
    now = time.time()
    usage = await read(bot, bot.store.usage_of, TEAM, ALICE, utc_day(now), utc_month(now))
    assert usage.today == 6
    # Said once when it went, once when it came back; no traceback anywhere.
    said_by_store = [r.getMessage() for r in caplog.records if r.name == "bot.store"]
    assert len(said_by_store) == 2, said_by_store
    assert said_by_store[0].startswith(reason) and said_by_store[1].startswith("database back")
    tracebacks = [r for r in caplog.records if r.exc_info and r.name.startswith("bot")]
    assert tracebacks == []
    assert (await health(h, bot)).status_code == 200


async def until_health(h: Harness, bot: MotionBot, status: int) -> httpx.Response:
    """`/healthz` once it answers `status` (the snapshot is refreshed every 1.5 s)."""
    deadline = time.monotonic() + 15
    while True:
        answer = await health(h, bot)
        if answer.status_code == status or time.monotonic() > deadline:
            assert answer.status_code == status, answer.text
            return answer
        await asyncio.sleep(0.1)


def test_generating_jobs_outlast_the_outage() -> None:
    """(What the tests above rely on: the jobs started before it are still running after.)"""
    assert GENERATING.running_s > OUTAGE_SECONDS
    assert FAST_PLAN.running_s < 1.0


async def test_motions_answer_arriving_while_the_database_is_away_is_recorded_after_not_lost(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A create is out when the database goes: Motion's answer (the job's id) cannot be
    recorded, so it is kept, and the job's next look records it once the database is back.
    Without that, the run would be settled as one whose answer was lost ("Send it again"),
    although Motion is generating it."""
    path = tmp_path / "held.db"
    bot = await harness.start(DATABASE_URL=f"sqlite:///{path}")
    harness.sandbox.fault("create", delay=1.5, after_processing=True)  # answered late
    card = await run_command(harness, "answered while away")
    job = (await read(bot, bot.store.recent_jobs, TEAM, ALICE, 1))[0]

    async def sending() -> bool:
        runs = await read(bot, bot.store.runs, job.id)
        return bool(runs) and runs[0].state == "sending"

    deadline = time.monotonic() + 10
    while not await sending():  # the create is out, its answer 1.5 s away
        assert time.monotonic() < deadline, "the create never went out"
        await asyncio.sleep(0.02)
    held = HeldFile(path)
    await asyncio.to_thread(held.begin)
    await asyncio.sleep(3.0)  # the answer comes meanwhile
    await asyncio.to_thread(held.end)

    await until(lambda: results(harness, card["ts"]), what="the result")
    await settle(1.0)
    assert harness.sandbox.count("create") == 1
    assert len(results(harness, card["ts"])) == 1
    thread = harness.bot_replies(card["ts"])
    assert not [m for m in thread if "never reached me" in m["text"]]
    assert not [b for m in thread for b in buttons(m) if b["action_id"] == ActionId.RETRY_RUN]
    [run] = await read(bot, bot.store.runs, job.id)
    after = await read(bot, bot.store.job, job.id)
    assert run.state == "done" and after.motion_job_id == harness.sandbox.job_ids[0]


async def test_in_socket_mode_a_command_is_answered_within_the_budget_and_an_event_left_unacked(
    harness: Harness, tmp_path: Path
) -> None:
    """Socket Mode has no HTTP request to start the budget at: the listeners' middleware does.
    A command is acked in time with the private answer; an event that could not be recorded
    is not acked, so Slack delivers it again."""
    from tests.e2e.test_socket_mode import APP_TOKEN, acked, command_payload

    path = tmp_path / "held.db"
    bot = await harness.start(
        DATABASE_URL=f"sqlite:///{path}", SLACK_APP_TOKEN=APP_TOKEN, SLACK_SIGNING_SECRET=""
    )
    assert bot.settings.socket_mode
    await until(harness.slack.socket_connected, timeout=5, what="the Socket Mode connection")
    first = harness.slack.socket_send("slash_commands", command_payload(harness, "a finished one"))
    await acked(harness.slack, first)
    card = (await until(lambda: harness.cards(), what="the job card"))[-1]
    await until(lambda: results(harness, card["ts"]), what="the first result")
    held = HeldFile(path)
    await asyncio.to_thread(held.begin)
    try:
        started = time.monotonic()
        command = harness.slack.socket_send("slash_commands", command_payload(harness, "held"))
        reply = harness.envelope(harness.reply_event(card["ts"], "longer please"))
        event = harness.slack.socket_send("events_api", reply)
        answer = await acked(harness.slack, command, timeout=ACK_LIMIT)
        answered_after = time.monotonic() - started
        event_ack = await harness.slack.socket_ack_async(event, timeout=ACK_LIMIT)
    finally:
        await asyncio.to_thread(held.end)
    assert answered_after < ACK_LIMIT
    assert "nothing was started" in answer["text"] and "try again" in answer["text"].lower()
    assert event_ack is None  # not acked: Slack sends it again
    assert [j.prompt for j in await read(bot, bot.store.recent_jobs, TEAM, ALICE)] == [
        "a finished one"
    ]
    again = harness.slack.socket_send("events_api", reply, retry_attempt=1, retry_reason="timeout")
    assert await acked(harness.slack, again) == {}
    await until(lambda: len(results(harness, card["ts"])) == 2, what="the reply's run")


@pytest.mark.parametrize(
    "slow_answer", ["files.getUploadURLExternal", "files.completeUploadExternal"]
)
async def test_a_video_upload_caught_by_the_outage_is_shared_once_after_it(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture, slow_answer: str
) -> None:
    """The database goes while the video is on its way to the thread: Slack's answer naming
    the reserved file (`getUploadURLExternal`), or saying it is shared (`complete…`), comes
    when the upload cannot record it. The upload waits the outage out without spending an
    attempt, asks the store where it got to, and the video is in the thread once: a file id it
    could not record was never completed, a completed one is found shared."""
    caplog.set_level(logging.INFO)
    path = tmp_path / "held.db"
    harness.sandbox.plan_next(JobPlan(**{**FAST_PLAN.__dict__, "video_bytes": 300_000}))
    await harness.start(UPLOAD_MAX_MB="1", DATABASE_URL=f"sqlite:///{path}")
    harness.slack.fail_next(slow_answer, answer_delay=1.5)
    card = await run_command(harness, "a video to upload")
    await until(lambda: results(harness, card["ts"]), what="the result")
    await until(lambda: harness.slack.calls(slow_answer), what=slow_answer)
    held = HeldFile(path)
    await asyncio.to_thread(held.begin)
    await asyncio.sleep(3.0)  # Slack's answer comes meanwhile
    await asyncio.to_thread(held.end)
    shared = lambda: harness.slack.shared_files("C0PUBLIC", card["ts"])  # noqa: E731
    await until(shared, timeout=20, what="the video in the thread")
    await settle(2.0)
    assert len(shared()) == 1
    completed = [c for c in harness.slack.calls("files.completeUploadExternal") if c.ok]
    assert len(completed) == 1
    assert not [r for r in caplog.records if r.exc_info]
    assert not [r for r in caplog.records if "not uploaded" in r.getMessage()]


async def test_forms_lookups_and_other_clicks_while_postgresql_is_stopped(
    harness: Harness, own_postgres: OwnPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await harness.start(DATABASE_URL=own_postgres.url)
    await every_surface(harness, bot, caplog, own_postgres.stop, own_postgres.start, reads=False)


async def test_forms_lookups_and_other_clicks_while_a_sqlite_file_is_held(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "held.db"
    bot = await harness.start(DATABASE_URL=f"sqlite:///{path}")
    held = HeldFile(path)
    await every_surface(harness, bot, caplog, held.begin, held.end, reads=True)


async def every_surface(
    h: Harness, bot: MotionBot, caplog: pytest.LogCaptureFixture,
    begin: Callable[[], None], end: Callable[[], None], *, reads: bool,
) -> None:  # fmt: skip
    """The form and Refine submitted, `/motion usage` and `/motion list`, the Home tab, the
    Refine, Stop tracking and Fresh link buttons, all at once while the database is away:
    each answered within 3 s; a submission keeps its form open saying nothing was started; a
    change asked by a click is answered privately; a lookup is answered (SQLite: reads go on
    under another's write lock) or says to try again; nothing logs a traceback."""
    from tests.e2e.test_e2e_forms import opened_modal

    caplog.set_level(logging.INFO)
    finished = await run_command(h, "a finished video")
    [result] = await until(lambda: results(h, finished["ts"]), what="the first result")
    h.sandbox.plan_next(GENERATING)
    generating = await run_command(h, "still generating")
    await h.command("new")
    form = await opened_modal(h)
    await h.action(
        ActionId.REFINE, button(result, ActionId.REFINE)["value"], message_ts=result["ts"]
    )
    refine = await opened_modal(h, before=1)
    card = await until(lambda: h.slack.message("C0PUBLIC", generating["ts"]), what="the card")
    stop = button(card, ActionId.STOP_TRACKING)["value"]
    caplog.clear()
    await asyncio.to_thread(begin)
    try:
        answers = await asyncio.gather(
            timed(h.submit_view(form, {"prompt": "from the form", "channel": "C0PUBLIC"})),
            timed(h.submit_view(refine, {"prompt": "brighter"})),
            timed(h.command("usage")),
            timed(h.command("list")),
            timed(h.home_opened()),
            timed(h.action(ActionId.STOP_TRACKING, stop, message_ts=generating["ts"])),
            timed(h.action(ActionId.FRESH_LINK, "1", message_ts=result["ts"])),
        )
    finally:
        await asyncio.to_thread(end)
    submitted, refined, usage = answers[:3]
    assert all(a.seconds < ACK_LIMIT for a in answers), answers
    assert all(a.status == 200 for a in answers), answers
    for form_answer in (submitted, refined):  # the form stays open, saying so
        assert "response_action" in form_answer.text and "nothing was started" in form_answer.text
    [listed] = await until(
        lambda: [r for r in h.slack.responses if r["tag"] == f"cmd-{ALICE}"] or None,
        what="/motion list's answer",
    )
    if reads:  # SQLite's reads go on under another connection's write lock
        assert "Your Motion usage" in usage.text and "a finished video" in listed["text"]
    else:
        assert "try again in a moment" in usage.text and "try again" in listed["text"]
    stopped = await until(
        lambda: [r for r in action_responses(h) if "nothing was started" in r["text"]] or None,
        what="Stop tracking's private answer",
    )
    assert stopped[0]["response_type"] == "ephemeral"
    await until_health(h, bot, 200)
    await until(lambda: results(h, generating["ts"]), what="the job stopped nobody")
    assert [len(results(h, c["ts"])) for c in h.cards()] == [1, 1]  # nothing more started
    assert not [r for r in caplog.records if r.exc_info]
