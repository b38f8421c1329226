"""Notices in plain words: why a run did not go as asked (Motion's refusals, lost answers,
failures), why a mention or a file could not start anything, and the stuck-run notice with its
"Keep waiting" and "Stop tracking"."""

from __future__ import annotations

from typing import Any

from bot.motion import (
    AuthenticationError,
    BadRequest,
    Conflict,
    InsufficientCredits,
    MotionError,
    MotionStatus,
    NotFound,
    Retry,
    ServerError,
)
from bot.slack.ids import ActionId
from bot.slack.messages.base import (
    CREDITS_URL,
    Message,
    button,
    duration_text,
    escape,
    link,
    mention,
    notice_message,
    section,
    shorten,
    with_sandbox,
)
from bot.slack.messages.forms import FILE_MAX_MB

# ---------------------------------------------------------------- problems, in plain words

# Why a run ended without a video, in a few words for the card (plain text: escaped there).
ANSWER_LOST = "Motion's answer never arrived"
NEVER_STARTED = "the video never started in Motion, so there was nothing to refine"
NO_REASON = "Motion gave no reason"
RENDER_FAILED = "Motion could not render the MP4 file"


def reason_for(exc: MotionError) -> str:
    """Why Motion did not take (or dropped) a run, for the card: with the numbers for credits."""
    if isinstance(exc, InsufficientCredits):
        facts = []
        if exc.current_balance is not None:
            facts.append(f"balance {exc.current_balance:,}")
        if exc.minimum_required is not None:
            facts.append(f"at least {exc.minimum_required:,} needed")
        return "not enough Motion credits" + (f" ({', '.join(facts)})" if facts else "")
    if isinstance(exc, AuthenticationError):
        return "Motion refused this app's API key"
    if isinstance(exc, NotFound):
        return "Motion no longer knows this job"
    if isinstance(exc, BadRequest):
        return "Motion refused the request as invalid"
    if isinstance(exc, Conflict):
        if exc.job_status == MotionStatus.FAILED:
            return "Motion takes no followups on a failed job"
        return "Motion was still busy with the previous run"
    if exc.retry is Retry.LATER:
        return "Motion could not be reached"
    if isinstance(exc, ServerError):
        return "Motion reported an internal error"
    return f"Motion refused it ({shorten(exc.message, 150)})"


def job_failed(*, run_number: int, error: str | None, sandbox: bool) -> Message:
    reason = escape(shorten(error, 1_500)) if error else "Motion gave no reason."
    return notice_message(
        "job_failed",
        f"❌ Run {run_number} failed in Motion: {reason}\n"
        "Start again with `/motion` and a changed prompt; followups in this thread cannot revive a "
        "failed job.",
        sandbox,
    )


def render_failed(*, run_number: int, sandbox: bool) -> Message:
    return notice_message(
        "render_failed",
        f"❌ Run {run_number} finished, but Motion could not render the MP4 file. Reply in this "
        "thread to try the run again, or start a new job with `/motion`.",
        sandbox,
    )


def insufficient_credits(
    *, balance: int | None, minimum: int | None, message: str | None, followup: bool, sandbox: bool
) -> Message:
    what = "this followup" if followup else "this video"
    facts = []
    if balance is not None:
        facts.append(f"your balance is {balance:,} credits")
    if minimum is not None:
        facts.append(f"Motion needs at least {minimum:,} to start")
    detail = (
        ("; ".join(facts) + ". ")
        if facts
        else (escape(shorten(message, 300)) + " " if message else "")
    )
    return notice_message(
        "insufficient_credits",
        f"💳 Not enough Motion credits for {what}: {detail}"
        f"Credits are bought in the Motion web app ({link(CREDITS_URL, 'motion.so')}), then try "
        "again. Nothing was charged for this attempt.",
        sandbox,
    )


def awaiting_input(*, run_number: int, sandbox: bool) -> Message:
    return notice_message(
        "awaiting_input",
        f"✋ Run {run_number} is waiting for a decision that only a person can make: open the "
        f"job in the Motion web app ({link(CREDITS_URL, 'motion.so')}) and answer there. I will "
        "carry on here as soon as it moves.",
        sandbox,
    )


def outcome_unknown(*, run_number: int, followup: bool, run_id: int, sandbox: bool) -> Message:
    what = "followup" if followup else "request to start this video"
    return notice_message(
        "outcome_unknown",
        f"❓ I sent the {what} (run {run_number}) to Motion, but its answer never reached me, so I "
        "do not know whether it started. I will not send it again on my own, because that could "
        "charge twice. Check the Motion web app; if nothing started there, press the button.",
        sandbox,
        [button("Send it again", ActionId.RETRY_RUN, value=str(run_id), style="danger")],
    )


def lost_answer_found(*, run_number: int, sandbox: bool) -> Message:
    return notice_message(
        "lost_answer_found",
        f"ℹ️ Motion's answer to run {run_number} was lost on the way, but Motion shows the run "
        "going, so I am following it. Nothing was sent twice.",
        sandbox,
    )


def bad_request(*, run_number: int, details: list[str], message: str, sandbox: bool) -> Message:
    items = "\n".join(f"• {escape(shorten(d, 300))}" for d in details[:10]) or escape(message)
    return notice_message(
        "bad_request",
        f"⚠️ Motion refused run {run_number} as invalid:\n{items}\nFix that and try again.",
        sandbox,
    )


def auth_failed(*, sandbox: bool) -> Message:
    return notice_message(
        "auth_failed",
        "🔑 Motion did not accept this app's API key, so I stopped following this job. An admin "
        "should set a valid `MOTION_API_KEY` (Motion web app → Settings → API keys) and run "
        "`python -m bot check`.",
        sandbox,
    )


def job_not_found(*, sandbox: bool) -> Message:
    return notice_message(
        "job_not_found",
        "🔎 Motion no longer knows this job (404): it was deleted, or belongs to another API key. "
        "I stopped following it; start a new one with `/motion`.",
        sandbox,
    )


def motion_server_error(*, run_number: int, error: str, run_id: int, sandbox: bool) -> Message:
    return notice_message(
        "motion_server_error",
        f"⚠️ Motion reported an internal error and did not start run {run_number} "
        f"({escape(shorten(error, 200))}). I do not resend on my own; press the button to try again.",
        sandbox,
        [button("Try again", ActionId.RETRY_RUN, value=str(run_id))],
    )


def motion_unreachable(*, run_number: int, error: str, run_id: int, sandbox: bool) -> Message:
    return notice_message(
        "motion_unreachable",
        f"⚠️ I could not reach Motion to start run {run_number} ({escape(shorten(error, 200))}). "
        "Nothing was started or charged. Press the button to try again.",
        sandbox,
        [button("Try again", ActionId.RETRY_RUN, value=str(run_id))],
    )


def followup_on_failed(*, sandbox: bool, value: str) -> Message:
    return notice_message(
        "followup_on_failed",
        "❌ Motion does not take followups on a failed job. I can start a new job with the "
        "original prompt and your reply, in a new thread.",
        sandbox,
        [button("Start a new job", ActionId.RESTART_JOB, value=value, style="primary")],
    )


def nothing_to_refine(*, sandbox: bool) -> Message:
    return notice_message(
        "nothing_to_refine",
        "⚠️ This video never started in Motion, so there is nothing to refine yet. Use the button "
        "above to send the original request again, or start a new video with `/motion`.",
        sandbox,
    )


STOPPED_JOB_REPLY = (
    "I stopped following this job (see above), so replies here can no longer refine it. "
    "Start a new video with `/motion`."
)


def new_job_link(*, permalink: str | None, sandbox: bool) -> Message:
    where = link(permalink, "this new thread") if permalink else "a new thread"
    return notice_message("new_job_link", f"➡️ Started a new job in {where}.", sandbox)


# ---------------------------------------------------------------- the database away

# The app's database out of reach for a moment (a restart, another process's long write): the
# request was rolled back whole, so its author can simply ask again.
DATABASE_AWAY = (
    "The app can't reach its database for a moment, so nothing was started or changed. "
    "Please try again in a moment."
)
DATABASE_AWAY_LOOKUP = (
    "The app can't reach its database for a moment. Please try again in a moment."
)


def database_away(sandbox: bool, *, lookup: bool = False) -> Message:
    """Said privately to whoever asked; `lookup`: they asked to see something, not to change
    anything."""
    text = DATABASE_AWAY_LOOKUP if lookup else DATABASE_AWAY
    return notice_message("database_away", f"⏳ {escape(text)}", sandbox)


# ---------------------------------------------------------------- files and mentions refused


def no_public_url_for_files() -> str:
    return (
        "Slack files can't be attached here: the app has no public address (PUBLIC_URL is not "
        "set), and Motion can only fetch files from a public link. Put the file somewhere with "
        "a public https link and use `--attach <link>`, or ask whoever runs this app to set "
        "PUBLIC_URL. Nothing was started."
    )


def file_too_large(title: str, size: int) -> str:
    megabytes = size / (1024 * 1024)
    return (
        f"“{shorten(title, 80)}” is {megabytes:,.0f} MB; Motion attachments can be at most "
        f"{FILE_MAX_MB} MB. Share a smaller file, or a public https link to it with "
        "`--attach <link>`. Nothing was started."
    )


def file_unreadable(code: str) -> str:
    if code == "missing_scope":
        why = (
            "the app lacks Slack's `files:read` permission (ask your Slack admin to reinstall it "
            "from manifest.yml)"
        )
    elif code in ("file_not_found", "file_deleted"):
        why = "Slack says the file is gone or not visible to the app (is the app in the channel?)"
    elif code == "no_download_url":
        why = "it is not stored in Slack (an external file), so there is nothing to fetch"
    else:
        why = f"Slack refused to let the app read it ({code})"
    return (
        f"A file could not be attached: {why}. Share it again in a channel the app is in, or "
        "attach a public https link with `--attach <link>`. Nothing was started."
    )


def files_busy() -> str:
    return (
        "Slack did not answer about the attached files just now. Nothing was started. "
        "Try again in a minute."
    )


def too_many_attachments(links: int, files: int, limit: int) -> str:
    return (
        f"{links + files} attachments ({links} `--attach` link{'s' if links != 1 else ''} and "
        f"{files} file{'s' if files != 1 else ''}); Motion accepts at most {limit} per run. "
        f"Remove {links + files - limit}. Nothing was started."
    )


THREAD_TAKEN = (
    "A Motion job already lives in this thread: reply in it to refine that video, or mention me "
    "in a new message to start another. Nothing was started."
)
FILES_NEED_A_PROMPT = (
    "Say what Motion should do with the attached file(s): write a few words with them, e.g. "
    "“use this logo in the closing shot”. Nothing was started."
)
MENTION_HINT = (
    "👋 Mention me with what the video should show, e.g. "
    "`@motion a 20-second teaser for our spring sale --aspect 9:16`. Files attached to that "
    "message are used too. I post the job in this thread; reply there to refine it."
)


def mention_hint(sandbox: bool) -> Message:
    return with_sandbox(Message(MENTION_HINT, [section(MENTION_HINT)], "mention_hint"), sandbox)


DM_HINT = (
    "👋 Send me what the video should show, e.g. "
    "`a 20-second teaser for our spring sale --aspect 9:16`. Files attached to that message are "
    "used too. I post the job in that message's thread; reply there to refine it."
)
DMS_OFF = (
    "🚫 Videos can't be started in a direct message with me in this workspace. Use `/motion` "
    "in a channel instead. Nothing was started."
)


def dm_hint(sandbox: bool) -> Message:
    return with_sandbox(Message(DM_HINT, [section(DM_HINT)], "dm_hint"), sandbox)


def dms_off(sandbox: bool) -> Message:
    return notice_message("dms_off", DMS_OFF, sandbox)


# ---------------------------------------------------------------- stuck runs and Stop tracking

NO_CANCEL = (
    f"Motion may still finish the video in its web app ({link(CREDITS_URL, 'motion.so')}): "
    "its API has no way to cancel a job."
)
STOP_ALREADY = "Tracking of this job was already stopped; nothing more was changed."
STOP_NOTHING = (
    "This job has nothing left to follow (its last run already ended), so there is nothing to stop."
)
STOP_GONE = "That job is gone, so there is nothing to stop."
STUCK_ANSWERED = (
    "This notice was already answered, or the run is no longer followed; nothing changed."
)
STOPPED_TRACKING_REPLY = (
    "Tracking of this job was stopped (see above), so this reply was not sent to Motion and "
    "used no credits. Start a new video with `/motion`, or use *New variation* on a result."
)


def stop_button(job_id: int) -> dict[str, Any]:
    return button("Stop tracking", ActionId.STOP_TRACKING, value=str(job_id))


def stop_not_allowed(*, requester: str, sandbox: bool) -> Message:
    text = (
        f"ℹ️ Only {mention(requester)}, who asked for this video, or a Motion admin can stop "
        "tracking it. Nothing was changed."
    )
    return with_sandbox(Message(text), sandbox)


def _stuck_head(run_number: int, elapsed: float) -> str:
    return f"⏳ Run {run_number} is still not finished after {duration_text(elapsed)}."


def stuck_notice(
    *, run_number: int, elapsed: float, period: float, run_id: int, notice: int, job_id: int,
    sandbox: bool,
) -> Message:  # fmt: skip
    """Posted once per period to a run's thread while it is not finished."""
    text = (
        f"{_stuck_head(run_number, elapsed)} Motion may just be slow. *Keep waiting* asks "
        f"again if it is still going after another {duration_text(period)}; *Stop tracking* "
        f"stops following it here. {NO_CANCEL}"
    )
    actions = [
        button("Keep waiting", ActionId.KEEP_WAITING, value=f"{run_id}:{notice}"),
        button("Stop tracking", ActionId.STOP_TRACKING, value=f"{job_id}:{run_id}"),
    ]
    return notice_message("stuck_notice", text, sandbox, actions)


def stuck_answered(
    *, run_number: int, elapsed: float, user_id: str, kept_waiting: bool, period: float,
    sandbox: bool,
) -> Message:  # fmt: skip
    """The notice as it reads once answered: who chose what, and no buttons left to press."""
    if kept_waiting:
        choice = (
            f"{mention(user_id)} chose to keep waiting: I will ask again if it is still going "
            f"after another {duration_text(period)}."
        )
    else:
        choice = f"{mention(user_id)} chose to stop tracking it."
    text = f"{_stuck_head(run_number, elapsed)} {choice}"
    return notice_message("stuck_notice", text, sandbox)


def tracking_stopped(*, user_id: str, dropped: int, sandbox: bool) -> Message:
    """The thread's one message about a stop: who, what it means, the followups dropped."""
    text = (
        f"⛔ {mention(user_id)} stopped tracking this job: I no longer check on it, and its "
        f"result will not be posted here. {NO_CANCEL}"
    )
    if dropped:
        plural = "s" if dropped != 1 else ""
        text += (
            f"\n{dropped} waiting followup{plural} (marked ❌) {'were' if plural else 'was'} "
            "dropped: not sent to Motion, no credits used."
        )
    return notice_message("tracking_stopped", text, sandbox)


def stopped_card_note(user_id: str) -> str:
    return f"⛔ {mention(user_id)} stopped tracking this job. {NO_CANCEL}"
