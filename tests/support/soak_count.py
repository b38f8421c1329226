"""The soak's counting: what the doubles hold at the end, read by what each post says it is.

Every post the app makes carries Slack message metadata naming its kind (the builder in
bot/slack/messages that made it) and the run it is about; cards carry the job in their key
(`card:<job id>`). The soak reads only that, never the wording, so rewording a message cannot
blind it. A card's job is matched to the command that asked for it through the app's database
(read-only), which is the only place that links the two.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.slack.out import METADATA_EVENT
from tests.support.slack import SlackDouble
from tests.support.soak_app import MAX_ATTEMPTS, bot_sources_digest

if TYPE_CHECKING:
    from tests.support.soak import Soak

CHANNEL = "C0PUBLIC"

# Kinds of post (bot/slack/messages' builder names) that matter to the soak.
RESULT = "result"
UNKNOWN = "outcome_unknown"  # the answer to a create or followup never arrived
NOT_STARTED = frozenset({"motion_server_error", "motion_unreachable"})  # with "Try again"
# How a run may end in the soak, and how it ends only when something went wrong.
EXPECTED_ENDS = frozenset({RESULT, UNKNOWN, *NOT_STARTED})
UNEXPECTED_ENDS = frozenset(
    {
        "job_failed",
        "render_failed",
        "bad_request",
        "auth_failed",
        "job_not_found",
        "insufficient_credits",
        "awaiting_input",
    }
)
TERMINAL = EXPECTED_ENDS | UNEXPECTED_ENDS
REMARKS = frozenset({"result_continued", "lost_answer_found"})  # about a run, not its end
LINK = re.compile(r"<(?P<url>https://[^|>]+)")  # a link in mrkdwn: <url|label> or <url>


@dataclass
class SoakReport:
    figures: dict[str, Any]
    failures: list[str]
    details: list[str]
    work_dir: Path
    app_log: Path


def post_about(message: dict[str, Any]) -> tuple[str | None, int | None]:
    """A post's kind and the run it is about, from its metadata (None, None: it has none)."""
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != METADATA_EVENT:
        return None, None
    payload = metadata.get("event_payload") or {}
    run = payload.get("run")
    return payload.get("kind"), run if isinstance(run, int) else None


def post_key(message: dict[str, Any]) -> str | None:
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != METADATA_EVENT:
        return None
    return (metadata.get("event_payload") or {}).get("key")


def card_job(message: dict[str, Any]) -> str | None:
    """The job a card is for (its metadata key is `card:<job id>`); None if not a card."""
    kind, _ = post_about(message)
    key = post_key(message) or ""
    if kind != "card" or not key.startswith("card:"):
        return None
    return key.removeprefix("card:")


def _buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        element
        for block in message.get("blocks") or []
        if block.get("type") == "actions"
        for element in block.get("elements") or []
    ]


def result_download_url(message: dict[str, Any]) -> str | None:
    """The MP4 link of a result: its Download button, else the first link in its text."""
    for element in _buttons(message):
        if element.get("action_id") == "download" and element.get("url"):
            return str(element["url"])
    match = LINK.search(message.get("text") or "")
    return match["url"] if match else None


def retry_button_value(message: dict[str, Any]) -> str | None:
    for element in _buttons(message):
        if element.get("action_id") == "retry_run":
            return str(element.get("value"))
    return None


def read_rows(database: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows from the app's database without writing: a SQLite file opened read-only, or
    PostgreSQL (a `postgresql://` URL)."""
    if database.startswith(("postgres://", "postgresql://")):
        import psycopg

        with psycopg.connect(database, autocommit=True) as conn:
            return [tuple(row) for row in conn.execute(sql).fetchall()]
    path = database.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
        return conn.execute(sql).fetchall()


class JobPrompts:
    """Each job's prompt as the app recorded it, read from its database without writing."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.known: dict[str, str] = {}

    def prompt(self, job_id: str) -> str | None:
        if job_id not in self.known:
            self.refresh()
        return self.known.get(job_id)

    def refresh(self) -> None:
        try:
            rows = read_rows(self.database, "SELECT id, prompt FROM jobs")
        except Exception:
            return  # not created yet, or busy: the next look tries again
        self.known.update((str(job_id), prompt) for job_id, prompt in rows)


@dataclass
class Snapshot:
    """The channel as the doubles hold it: cards by prompt, bot replies by thread."""

    cards: dict[str, list[dict[str, Any]]]
    threads: dict[str, list[dict[str, Any]]]
    messages: list[dict[str, Any]]

    @classmethod
    def take(cls, slack: SlackDouble, prompts: JobPrompts) -> Snapshot:
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
            job_id = card_job(message)
            if job_id is not None:
                prompt = prompts.prompt(job_id) or f"<job {job_id}, not in the database>"
                cards[prompt].append(message)
        return cls(cards, threads, messages)

    def outcomes(self, thread_ts: str) -> dict[int, list[tuple[str, dict[str, Any]]]]:
        """Per run number, the posts that end it, in thread order."""
        found: dict[int, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for message in self.threads.get(thread_ts, []):
            kind, run = post_about(message)
            if kind in TERMINAL and run is not None:
                found[run].append((kind, message))
        return found


def account(
    soak: Soak,
    timed_out: bool,
    settled_at: float,
    exit_status: int | None,
    stop_seconds: float,
    app_log: Path,
) -> SoakReport:
    snapshot = Snapshot.take(soak.slack, soak.prompts)
    creates = Counter(body.get("prompt") for body in soak.sandbox.creates)
    followups = Counter(body.get("prompt") for body in soak.sandbox.followups)
    lost: list[str] = []
    duplicated: list[str] = []
    unexpected: list[str] = []
    inconsistent: list[str] = []
    notices: Counter[str] = Counter()
    ends: Counter[str] = Counter()
    results_posted = 0
    runs_with_result = 0
    unknown_but_started = 0
    tracked_prompts = set(soak.by_prompt)
    tracked_replies = {t.reply_text for t in soak.tracks}
    videos: Counter[tuple[str, str]] = Counter()  # (thread, file name) → videos shared

    for track in soak.tracks:
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
            soak.stats["ambiguous_commands_recorded"] += 1
        ends[track.end or "unfinished"] += 1
        thread = cards[0]["ts"]
        outcomes = snapshot.outcomes(thread)
        urls: list[str] = []
        for message in snapshot.threads.get(thread, []):
            if message.get("subtype") == "file_share":  # the video in the thread (--uploads)
                for file in message.get("files") or []:
                    videos[(thread, str(file.get("name")))] += 1
                continue
            kind, run = post_about(message)
            if kind not in TERMINAL | REMARKS or (kind in TERMINAL and run is None):
                unexpected.append(
                    f"{track.prompt}: a post of kind {kind!r} about run {run}: "
                    f"{message['text'][:120]!r}"
                )
            elif kind == "lost_answer_found":
                notices["lost_answer_found"] += 1
            elif kind == RESULT:
                results_posted += 1
                url = result_download_url(message)
                if url:
                    urls.append(url)
        if len(urls) != len(set(urls)):
            duplicated.append(f"{track.prompt}: a download URL announced twice: {urls}")
        for run, what in sorted(track.runs.items()):
            said = outcomes.get(run, [])
            kinds = [kind for kind, _ in said]
            if not said:
                lost.append(f"{track.prompt}: run {run} ({what}) has neither a result nor a notice")
                continue
            if len(said) > 1:
                duplicated.append(
                    f"{track.prompt}: run {run} ({what}) told {len(said)} times: {kinds}"
                )
            kind = kinds[0]
            notices[f"{what}_{kind}"] += 1
            if kind == RESULT:
                runs_with_result += 1
            if kind not in EXPECTED_ENDS:
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
            least = ended.count(RESULT)
            most = least + ended.count(UNKNOWN)
            got = counts[key]
            if got > most:
                duplicated.append(f"{track.prompt}: {got} {what}s in Motion for outcomes {ended}")
            elif got < least:
                inconsistent.append(
                    f"{track.prompt}: {got} {what}s in Motion, yet outcomes {ended}"
                )
            unknown_but_started += max(0, min(got, most) - least)

    stray_creates = sum(n for prompt, n in creates.items() if prompt not in tracked_prompts)
    stray_followups = sum(n for text, n in followups.items() if text not in tracked_replies)
    if stray_creates or stray_followups:
        duplicated.append(f"{stray_creates} creates, {stray_followups} followups of no command")
    twice_shared = {f"{t}/{name}": n for (t, name), n in videos.items() if n > 1}
    if twice_shared:
        duplicated.append(f"a run's video shared more than once: {twice_shared}")
    if not soak.config.uploads and videos:
        unexpected.append(f"{sum(videos.values())} videos shared without --uploads")
    keys = Counter(post_key(m) for m in snapshot.messages if post_key(m))
    twice = {key: n for key, n in keys.items() if n > 1}
    if twice:
        duplicated.append(f"outbox posts that reached Slack more than once: {twice}")
    cards_unclaimed = [p for p in snapshot.cards if p not in tracked_prompts]
    if cards_unclaimed:
        duplicated.append(f"cards for no command: {cards_unclaimed[:5]}")

    recorded, db_problems = cross_check_database(soak)
    duplicated += db_problems
    log_text = app_log.read_text(encoding="utf-8", errors="replace")
    wire = Counter(
        f"{call.endpoint}:{call.status if call.status else 'no_answer'}"
        for call in list(soak.sandbox.calls)
    )
    figures: dict[str, Any] = {
        "jobs": soak.config.jobs,
        "seed": soak.config.seed,
        "wall_seconds": round(soak.elapsed(), 1),
        "seconds_to_last_outcome": round(settled_at, 1),
        "timed_out": timed_out,
        "kills": soak.stats["kills"],
        "restarts": soak.stats["restarts"],
        "instances": len(soak.apps),
        "database": "postgresql" if soak.database.startswith("postgres") else "sqlite",
        "app_start_to_healthy_p50_s": round(
            sorted(soak.start_seconds())[len(soak.start_seconds()) // 2], 2
        ),
        "takeover": soak.takeover_figures(),
        "commands": {
            "requests": soak.stats["command_requests"],
            "acked": soak.stats["commands_acked"],
            "resent_after_refused_connection": soak.stats["commands_refused_app_down"],
            "broken_mid_request_resent_as_new": soak.stats["commands_ambiguous"],
            "broken_mid_request_recorded_anyway": soak.stats["ambiguous_commands_recorded"],
            "http_errors": soak.stats["command_http_errors"],
        },
        "events": {
            "replies": soak.stats["replies"],
            "redeliveries_on_purpose": soak.stats["redeliveries_on_purpose"],
            "redeliveries_overlapping_the_first": soak.stats["redeliveries_overlapping_the_first"],
            "deliveries": soak.stats["event_deliveries"],
            "deliveries_with_retry_header": soak.stats["event_deliveries_with_retry_header"],
            "deliveries_failed_app_down": soak.stats["event_deliveries_failed_app_down"],
            "deliveries_non_200": soak.stats["event_deliveries_non_200"],
            "redelivered_to_another_instance": soak.stats["event_deliveries_to_another_instance"],
        },
        "try_again_presses": soak.stats["button_presses"],
        "videos": {
            "shared": sum(videos.values()),
            "runs_with_a_video": len(videos),
            "upload_reservations": len(soak.slack.calls("files.getUploadURLExternal")),
            # files.info: an upload a kill interrupted after Slack gave it a file id, looked
            # for before anything else; completions refused as already done: late ones from
            # a killed process, which put no second video in the thread
            "looked_for_after_a_kill": len(soak.slack.calls("files.info")),
            "late_completions_refused": sum(
                1
                for c in soak.slack.calls("files.completeUploadExternal")
                if c.error == "file_already_completed"
            ),
        },
        "faults_injected": {e: dict(c) for e, c in sorted(soak.faults.items())},
        "motion_calls_by_answer": dict(sorted(wire.items())),
        "creates_accepted": sum(creates.values()),
        "followups_accepted": sum(followups.values()),
        "runs_with_result": runs_with_result,
        "result_posts": results_posted,
        "outcomes": dict(sorted(notices.items())),
        "unknown_outcome_notices": notices[f"create_{UNKNOWN}"] + notices[f"followup_{UNKNOWN}"],
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
        "kill_moments": soak.kill_log,
    }
    code_at_end = bot_sources_digest()
    figures["bot_code"] = soak.code_at_start
    figures["bot_code_changed_during_run"] = code_at_end != soak.code_at_start
    failures = []
    if code_at_end != soak.code_at_start:
        failures.append(
            f"bot/ changed during the run ({soak.code_at_start} -> {code_at_end}): "
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
        failures.append(f"{results_posted} result posts for {runs_with_result} runs with a result")
    given_up = {k: v for k, v in soak.stats.items() if k.endswith("_given_up") and v}
    if given_up:
        failures.append(f"requests that never got a 200 after {MAX_ATTEMPTS} tries: {given_up}")
    if timed_out:
        failures.append(f"not finished within {soak.config.timeout:.0f} s")
    if soak.stats["kills"] != soak.config.kills:
        failures.append(f"{soak.stats['kills']} kills instead of {soak.config.kills}")
    if exit_status != 0:
        failures.append(f"the app's exit status after SIGTERM was {exit_status}")
    failures += soak.problems
    details = lost + duplicated + unexpected + inconsistent
    return SoakReport(figures, failures, details, soak.work_dir, app_log)


def cross_check_database(soak: Soak) -> tuple[int, list[str]]:
    """After the stop: every run the app recorded was asked for, and nothing twice.

    This catches a duplicate that had not reached Motion or Slack yet when the app stopped
    (a second followup still waiting, say). Only long-standing columns are read.
    """
    rows = read_rows(
        soak.database,
        "SELECT jobs.prompt, runs.number FROM runs JOIN jobs ON jobs.id = runs.job_id",
    )
    jobs = Counter(prompt for (prompt,) in read_rows(soak.database, "SELECT prompt FROM jobs"))
    problems = [f"{prompt}: {n} jobs in the database" for prompt, n in jobs.items() if n > 1]
    unasked = sorted(set(jobs) - set(soak.by_prompt))
    if unasked:
        problems.append(f"jobs recorded for no command: {unasked[:10]}")
    followed = {t.prompt: t for t in soak.tracks if t.thread_ts}
    extra = sorted(
        (prompt, number)
        for prompt, number in rows
        if prompt in followed and number not in followed[prompt].runs
    )
    if extra:
        problems.append(f"runs recorded that nobody asked for: {extra[:10]}")
    return len(rows), problems
