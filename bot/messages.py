"""Every sentence and Block Kit payload the app sends to Slack, and the escaping they rely on.

Anything that came from a person or from Motion passes through `escape` (or `link`) before it
is placed in mrkdwn, so `<!channel>`, mentions and disguised links arrive as inert text.
Limits (50 blocks, 3,000 characters a section, 4,000 for chat.update's text) are enforced here,
where the payloads are built, rather than discovered as Slack errors later.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from bot.motion import (
    AuthenticationError,
    BadRequest,
    Conflict,
    InsufficientCredits,
    MotionError,
    MotionRequest,
    MotionStatus,
    NotFound,
    Retry,
    ServerError,
    Source,
    Usage,
)

Blocks = list[dict[str, Any]]

MAX_BLOCKS = 50
MAX_SECTION = 3_000
MAX_UPDATE_TEXT = 4_000
MAX_BUTTON_URL = 3_000
# Stay well under Slack's undocumented cumulative block-text limit (~12k).
MAX_MESSAGE_CHARS = 10_000
PROMPT_PREVIEW = 600
SANDBOX_NOTE = (
    "🧪 Sandbox: Motion is simulated here, no credits are spent and the video is a sample."
)
CREDITS_URL = "https://motion.so"


@dataclass(frozen=True)
class Message:
    """One Slack message: fallback text (mrkdwn, already escaped) and blocks."""

    text: str
    blocks: Blocks = field(default_factory=list)
    # What the message is (its builder's name): carried in the post's metadata so that
    # whoever reads the thread later (the outbox, the soak) knows it without parsing words.
    kind: str = "message"

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks} if self.blocks else {"text": self.text}


def escape(text: object) -> str:
    """Neutralise Slack's control characters; `&` first so entities are not double-read."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str | None, label: str | None = None) -> str:
    """A link only for http(s) URLs; anything else is shown as inert text."""
    if not url or urlparse(url).scheme not in ("http", "https"):
        return escape(label or url or "")
    safe_url = escape(url.replace("|", "%7C").replace(" ", "%20"))
    if not label:
        return f"<{safe_url}>"
    return f"<{safe_url}|{escape(label).replace('|', '¦')}>"


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def mention(user_id: str) -> str:
    return f"<@{user_id}>" if re.fullmatch(r"[UW][A-Z0-9]+", user_id or "") else escape(user_id)


def quote(text: str, limit: int = PROMPT_PREVIEW) -> str:
    return "\n".join("> " + line for line in escape(shorten(text, limit)).splitlines() or [""])


def duration_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def timestamp(value: Any) -> str | None:
    """Seconds as m:ss (h:mm:ss past an hour); other text kept as given."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            return None
        total = int(value)
        hours, rest = divmod(total, 3600)
        minutes, seconds = divmod(rest, 60)
        return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
    text = str(value).strip()
    try:
        return timestamp(float(text))
    except ValueError:
        return escape(shorten(text, 20))


def _mrkdwn(text: str) -> dict[str, Any]:
    # verbatim: Slack must not turn any plain "@channel" or "#name" into a live mention/link;
    # every link and mention the app means is already written out as <…>.
    return {"type": "mrkdwn", "text": shorten(text, MAX_SECTION), "verbatim": True}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(text)]}


def button(
    text: str, action_id: str, *, value: str = "", url: str | None = None, style: str | None = None
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": shorten(text, 75), "emoji": True},
        "action_id": action_id,
    }
    if value:
        element["value"] = value[:2000]
    if url:
        element["url"] = url
    if style:
        element["style"] = style
    return element


def with_sandbox(message: Message, sandbox: bool) -> Message:
    """Every message posted in sandbox mode says so (the spec's promise to admins)."""
    if not sandbox:
        return message
    # Slack shows the blocks when there are any, so a text-only message gets its words as a block.
    blocks = message.blocks or [section(message.text)]
    return Message(
        f"{message.text}\n_{SANDBOX_NOTE}_", [*blocks, context(SANDBOX_NOTE)], message.kind
    )


# ---------------------------------------------------------------- the job card


@dataclass(frozen=True)
class RunLine:
    number: int
    state: str
    status_text: str
    download_url: str | None = None


STATE_LABELS = {
    "new": "⏳ Starting",
    "queued": "⏳ Queued",
    "created": "🛠️ Preparing",
    "running": "🎬 Generating",
    "awaiting_user_input": "✋ Waiting for someone in the Motion web app",
    "rendering": "📼 Rendering the file",
    "done": "✅ Done",
    "failed": "❌ Failed",
    "stopped": "⛔ Stopped",
    "unknown": "❓ Outcome unknown",
    "waiting": "🕒 Waiting for the previous run",
    "rejected": "❌ Not started",
}


def status_label(status: str, elapsed: float | None = None) -> str:
    label = STATE_LABELS.get(status, escape(status.replace("_", " ").capitalize()))
    if status in ("running", "created", "queued") and elapsed is not None and elapsed >= 1:
        label += f" · {duration_text(elapsed)}"
    return label


def job_card(
    *,
    requester: str,
    prompt: str,
    status: str,
    runs: list[RunLine],
    sandbox: bool,
    options: str = "",
    stop_job_id: int | None = None,
    stopped_by: str | None = None,
) -> Message:
    """The card at the top of the thread; edited in place, never re-posted. `stop_job_id`:
    the job is followed, so it offers "Stop tracking"; `stopped_by`: someone chose it."""
    header = f"🎬 *Motion video* for {mention(requester)}"
    lines = [header, quote(prompt)]
    if options:
        lines.append(f"_{escape(options)}_")
    blocks: Blocks = [section("\n".join(lines)), context(f"*Status:* {status}")]
    if len(runs) > 1 or any(r.download_url for r in runs):
        history: list[str] = []
        room = MAX_SECTION - 100  # newest runs first in line for the space; links never cut
        for run in reversed(runs):
            entry = f"Run {run.number} · {run.status_text}"
            if run.download_url and len(run.download_url) < room // 2:
                entry += f" · {link(run.download_url, 'download')}"
            if len(history) >= 20 or sum(len(h) + 1 for h in history) + len(entry) > room:
                break
            history.insert(0, entry)
        if len(history) < len(runs):
            history.insert(0, f"_{len(runs) - len(history)} earlier runs not shown_")
        blocks.append(section("*Runs*\n" + "\n".join(history)))
    if stopped_by is not None:
        blocks.append(section(stopped_card_note(stopped_by)))
    else:
        blocks.append(context("Reply in this thread to refine the video."))
    if stop_job_id is not None:
        blocks.append({"type": "actions", "elements": [stop_button(stop_job_id)]})
    text = shorten(
        f"Motion video for {mention(requester)}: {escape(shorten(prompt, 300))} — {status}", 3_000
    )
    if stopped_by is not None:
        text = f"{shorten(text, 2_500)}\n{stopped_card_note(stopped_by)}"
    return with_sandbox(Message(shorten(text, MAX_UPDATE_TEXT - 200), blocks, "card"), sandbox)


# ---------------------------------------------------------------- results and credits


def usage_text(usage: Usage) -> str:
    """Where a source is used, in words: times as m:ss, the scene, the placement."""
    start, end = timestamp(usage.start), timestamp(usage.end)
    parts = []
    if start and end:
        parts.append(f"{start}–{end}")
    elif start:
        parts.append(f"at {start}")
    if usage.scene is not None:
        parts.append(f"scene {escape(shorten(usage.scene, 40))}")
    if usage.placement is not None:
        parts.append(escape(shorten(usage.placement, 60)))
    return " · ".join(parts)


def credit_line(index: int, source: Source) -> str:
    name = source.title or (urlparse(source.url).netloc if source.url else None) or "untitled"
    title = link(source.url, shorten(name, 150)) if source.url else escape(shorten(name, 150))
    rights = (
        f"rights: {escape(shorten(source.rights or '', 60))}"
        if source.cleared
        else f"⚠️ *rights {escape(shorten(source.rights, 60)) if source.rights else 'unknown'}"
        " — check before publishing*"
    )
    line = (
        f"{index}. *{escape(shorten(source.kind, 60)).capitalize()}* · "
        f"{escape(shorten(source.provider, 80))} · {title} · {rights}"
    )
    usages = [text for text in map(usage_text, source.usages) if text]
    if usages:
        line += "\n      used " + "; ".join(usages[:20])
        if len(usages) > 20:
            line += f"; and {len(usages) - 20} more"
    return shorten(line, 2_900)


def result_messages(
    *,
    requester: str,
    run_number: int,
    download_url: str,
    sources: list[Source],
    expires_at: str | None,
    sandbox: bool,
    run_id: int | None = None,
    fresh_link: bool = False,
) -> list[Message]:
    """The result of one run: link first, then every credit, split so that none is dropped.
    With `run_id`, the first part carries "Refine" and "New variation" for that run (and,
    with `fresh_link`, "Fresh link": Motion's URL expires and there is no PUBLIC_URL)."""
    credits = sources
    flagged = sum(1 for c in credits if not c.cleared)
    head = f"✅ {mention(requester)} run {run_number} of your Motion video is ready."
    url_line = f"Download: {link(download_url)}"
    if expires_at:
        url_line += f"\n_The link may expire ({escape(expires_at)}); download it soon._"
    first_blocks: Blocks = [section(head)]
    actions: Blocks = []
    if button_url_ok(download_url):
        actions.append(button("⬇️ Download MP4", "download", url=download_url, style="primary"))
    if run_id is not None:
        # One click, one run: each is claimed once per result (see Intake.variation_of).
        actions.append(button("Refine", "refine", value=str(run_id)))
        actions.append(button("New variation", "new_variation", value=str(run_id)))
        if fresh_link:
            actions.append(fresh_link_button(run_id))
    if actions:
        first_blocks.append({"type": "actions", "elements": actions})
    first_blocks.append(section(url_line))
    summary = f"*Credits* — {len(credits)} source{'s' if len(credits) != 1 else ''}"
    if flagged:
        summary += f", ⚠️ {flagged} not clearly cleared"
    first_blocks.append(section(summary if credits else "*Credits* — Motion listed no sources."))

    lines = [credit_line(i + 1, c) for i, c in enumerate(credits)]
    messages: list[Message] = []
    blocks, size = first_blocks, sum(len(b.get("text", {}).get("text", "")) for b in first_blocks)
    chunk: list[str] = []

    def flush_chunk() -> None:
        nonlocal chunk, size
        if chunk:
            text = "\n".join(chunk)
            blocks.append(section(text))
            size += len(text)
            chunk = []

    for line in lines:
        if chunk and sum(len(x) + 1 for x in chunk) + len(line) > MAX_SECTION - 50:
            flush_chunk()
        chunk_len = sum(len(x) + 1 for x in chunk)
        if size + chunk_len + len(line) > MAX_MESSAGE_CHARS or len(blocks) >= MAX_BLOCKS - 2:
            flush_chunk()
            messages.append(Message("", blocks))
            blocks, size = [], 0
        chunk.append(line)
    flush_chunk()
    messages.append(Message("", blocks))

    total = len(messages)
    out = []
    for i, message in enumerate(messages):
        if i > 0:
            message.blocks.insert(
                0, context(f"Credits for run {run_number}, continued ({i + 1}/{total})")
            )
        # The text repeats the message (link first): it is what is posted if Slack refuses the
        # blocks, kept within the 4,000 characters Slack handles well in notifications.
        text = shorten("\n".join(_block_text(b) for b in message.blocks if _block_text(b)), 3_900)
        kind = "result" if i == 0 else "result_continued"
        out.append(with_sandbox(Message(text, message.blocks, kind), sandbox))
    return out


def _block_text(block: dict[str, Any]) -> str:
    if block.get("type") == "section":
        return str(block["text"]["text"])
    if block.get("type") == "context":
        return " ".join(str(e.get("text", "")) for e in block["elements"])
    return ""


def notify_message(
    *, requester: str, prompt: str, permalink: str | None, run_number: int, sandbox: bool
) -> Message:
    where = link(permalink, "see the thread") if permalink else "see the job's thread"
    text = (
        f"🎬 A Motion video for {mention(requester)} is ready (run {run_number}): "
        f"“{escape(shorten(prompt, 150))}” — {where}."
    )
    return with_sandbox(Message(text, [section(text)], "notify"), sandbox)


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


def _notice(
    kind: str, text: str, sandbox: bool, actions: list[dict[str, Any]] | None = None
) -> Message:
    blocks: Blocks = [section(text)]
    if actions:
        blocks.append({"type": "actions", "elements": actions})
    return with_sandbox(Message(text, blocks, kind), sandbox)


def job_failed(*, run_number: int, error: str | None, sandbox: bool) -> Message:
    reason = escape(shorten(error, 1_500)) if error else "Motion gave no reason."
    return _notice(
        "job_failed",
        f"❌ Run {run_number} failed in Motion: {reason}\n"
        "Start again with `/motion` and a changed prompt; followups in this thread cannot revive a "
        "failed job.",
        sandbox,
    )


def render_failed(*, run_number: int, sandbox: bool) -> Message:
    return _notice(
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
    return _notice(
        "insufficient_credits",
        f"💳 Not enough Motion credits for {what}: {detail}"
        f"Credits are bought in the Motion web app ({link(CREDITS_URL, 'motion.so')}), then try "
        "again. Nothing was charged for this attempt.",
        sandbox,
    )


def awaiting_input(*, run_number: int, sandbox: bool) -> Message:
    return _notice(
        "awaiting_input",
        f"✋ Run {run_number} is waiting for a decision that only a person can make: open the "
        f"job in the Motion web app ({link(CREDITS_URL, 'motion.so')}) and answer there. I will "
        "carry on here as soon as it moves.",
        sandbox,
    )


def outcome_unknown(*, run_number: int, followup: bool, run_id: int, sandbox: bool) -> Message:
    what = "followup" if followup else "request to start this video"
    return _notice(
        "outcome_unknown",
        f"❓ I sent the {what} (run {run_number}) to Motion, but its answer never reached me, so I "
        "do not know whether it started. I will not send it again on my own, because that could "
        "charge twice. Check the Motion web app; if nothing started there, press the button.",
        sandbox,
        [button("Send it again", "retry_run", value=str(run_id), style="danger")],
    )


def lost_answer_found(*, run_number: int, sandbox: bool) -> Message:
    return _notice(
        "lost_answer_found",
        f"ℹ️ Motion's answer to run {run_number} was lost on the way, but Motion shows the run "
        "going, so I am following it. Nothing was sent twice.",
        sandbox,
    )


def bad_request(*, run_number: int, details: list[str], message: str, sandbox: bool) -> Message:
    items = "\n".join(f"• {escape(shorten(d, 300))}" for d in details[:10]) or escape(message)
    return _notice(
        "bad_request",
        f"⚠️ Motion refused run {run_number} as invalid:\n{items}\nFix that and try again.",
        sandbox,
    )


def auth_failed(*, sandbox: bool) -> Message:
    return _notice(
        "auth_failed",
        "🔑 Motion did not accept this app's API key, so I stopped following this job. An admin "
        "should set a valid `MOTION_API_KEY` (Motion web app → Settings → API keys) and run "
        "`python -m bot check`.",
        sandbox,
    )


def job_not_found(*, sandbox: bool) -> Message:
    return _notice(
        "job_not_found",
        "🔎 Motion no longer knows this job (404): it was deleted, or belongs to another API key. "
        "I stopped following it; start a new one with `/motion`.",
        sandbox,
    )


def motion_server_error(*, run_number: int, error: str, run_id: int, sandbox: bool) -> Message:
    return _notice(
        "motion_server_error",
        f"⚠️ Motion reported an internal error and did not start run {run_number} "
        f"({escape(shorten(error, 200))}). I do not resend on my own; press the button to try again.",
        sandbox,
        [button("Try again", "retry_run", value=str(run_id))],
    )


def motion_unreachable(*, run_number: int, error: str, run_id: int, sandbox: bool) -> Message:
    return _notice(
        "motion_unreachable",
        f"⚠️ I could not reach Motion to start run {run_number} ({escape(shorten(error, 200))}). "
        "Nothing was started or charged. Press the button to try again.",
        sandbox,
        [button("Try again", "retry_run", value=str(run_id))],
    )


def followup_on_failed(*, sandbox: bool, value: str) -> Message:
    return _notice(
        "followup_on_failed",
        "❌ Motion does not take followups on a failed job. I can start a new job with the "
        "original prompt and your reply, in a new thread.",
        sandbox,
        [button("Start a new job", "restart_job", value=value, style="primary")],
    )


def nothing_to_refine(*, sandbox: bool) -> Message:
    return _notice(
        "nothing_to_refine",
        "⚠️ This video never started in Motion, so there is nothing to refine yet. Use the button "
        "above to send the original request again, or start a new video with `/motion`.",
        sandbox,
    )


MALFORMED_COMMAND = (
    "Slack sent this command without the person or the channel, so nothing was started. "
    "Try the command again."
)
STOPPED_JOB_REPLY = (
    "I stopped following this job (see above), so replies here can no longer refine it. "
    "Start a new video with `/motion`."
)


def new_job_link(*, permalink: str | None, sandbox: bool) -> Message:
    where = link(permalink, "this new thread") if permalink else "a new thread"
    return _notice("new_job_link", f"➡️ Started a new job in {where}.", sandbox)


def usage_error(message: str, sandbox: bool = False) -> Message:
    return _notice("usage_error", f"⚠️ {escape(message)}", sandbox)


# ---------------------------------------------------------------- command replies


HELP_TEXT = (
    "*/motion* turns a prompt into a video, right here in a thread.\n"
    "• `/motion <prompt>` starts a video; options go after the prompt:\n"
    "    `--style <YouTube link>` copy the style of a video\n"
    "    `--attach <https link>` use an image, clip or file (up to 10)\n"
    "    `--aspect 16:9|9:16|1:1|4:5|21:9`\n"
    "    `--duration <10s|10-30s|30s-1min|1-5min`\n"
    "• Reply in the job's thread to refine the video (the same options work there).\n"
    "• `/motion new` opens a form (also the shortcut *New Motion video*).\n"
    "• `/motion list` shows your recent jobs; `/motion usage` your runs against the limits.\n"
    "Example: `/motion a 20-second teaser for our spring sale --aspect 9:16 --duration 10-30s`"
)


def help_message(sandbox: bool) -> Message:
    text = escape(HELP_TEXT)
    return with_sandbox(Message(text, [section(text)]), sandbox)


def invite_hint(*, channel_is_dm: bool, sandbox: bool) -> Message:
    if channel_is_dm:
        text = (
            "I can't follow a job in this conversation. Run `/motion` in a channel I'm in, "
            "or in a direct message with me. Nothing was started."
        )
    else:
        text = (
            "I'm not a member of this channel, so I couldn't post the job here or see replies. "
            "Invite me with `/invite @motion` and run the command again. Nothing was started."
        )
    return with_sandbox(Message(text, [section(text)]), sandbox)


def already_done(what: str, sandbox: bool) -> Message:
    return with_sandbox(Message(f"ℹ️ {escape(what)}"), sandbox)


def accepted(sandbox: bool) -> Message:
    return with_sandbox(
        Message("🎬 Starting your video: its card will appear in this channel in a moment."),
        sandbox,
    )


@dataclass(frozen=True)
class JobListing:
    prompt: str
    status: str
    runs: int
    permalink: str | None
    created_at: str


def job_list(jobs: list[JobListing], sandbox: bool, usage: UsageView | None = None) -> Message:
    footer = [context(usage_line(usage))] if usage else []
    if not jobs:
        text = "You have no Motion jobs yet. Start one with `/motion <prompt>`."
        return with_sandbox(Message(text, [section(text), *footer]), sandbox)
    lines = []
    for job in jobs:
        where = link(job.permalink, "thread") if job.permalink else "thread unavailable"
        runs = f"{job.runs} run{'s' if job.runs != 1 else ''}"
        lines.append(
            f"• {escape(shorten(job.prompt, 80))} — {job.status} · {runs} · {where} · {job.created_at}"
        )
    text = "*Your recent Motion jobs*\n" + "\n".join(lines)
    return with_sandbox(Message(text, [section(text), *footer]), sandbox)


# ---------------------------------------------------------------- spend controls


@dataclass(frozen=True)
class UsageView:
    """One person's runs against the limits, at `now` (all times UTC epoch seconds)."""

    now: float
    today: int
    month: int
    workspace_month: int
    per_user_per_day: int | None
    per_month: int | None
    day_resets_at: float
    month_resets_at: float


@dataclass(frozen=True)
class PersonUsage:
    user_id: str
    today: int
    month: int


def channel_mention(channel_id: str) -> str:
    return f"<#{channel_id}>" if re.fullmatch(r"[CGD][A-Z0-9]+", channel_id) else escape(channel_id)


def _day_reset(view: UsageView) -> str:
    return f"00:00 UTC, in {duration_text(view.day_resets_at - view.now)}"


def _month_reset(view: UsageView) -> str:
    at = datetime.fromtimestamp(view.month_resets_at, UTC)
    return f"{at.day} {at:%B %Y}, 00:00 UTC"


def _of(used: int, limit: int | None) -> str:
    return f"{used} of {limit}" if limit is not None else f"{used}"


def usage_line(view: UsageView) -> str:
    """One line of usage, for `/motion list`, previews and refusals."""
    today = f"{_of(view.today, view.per_user_per_day)} today"
    if view.per_user_per_day is not None:
        today += f" (resets {_day_reset(view)})"
    workspace = f"workspace {_of(view.workspace_month, view.per_month)} this month"
    if view.per_month is not None:
        workspace += f" (resets {_month_reset(view)})"
    limits = "" if view.per_user_per_day or view.per_month else " · no limits set"
    return f"Your Motion runs: {today} · {view.month} this month · {workspace}{limits}"


def channel_not_allowed(*, allowed: list[str], sandbox: bool) -> Message:
    where = ", ".join(channel_mention(c) for c in allowed[:20])
    if len(allowed) > 20:
        where += f" and {len(allowed) - 20} more"
    text = (
        f"🚫 Motion videos can't be started in this channel. They can be started in {where}. "
        "Nothing was sent to Motion and nothing was recorded."
    )
    return with_sandbox(Message(text, [section(text)], "channel_not_allowed"), sandbox)


def limit_reached(*, scope: str, used: int, limit: int, view: UsageView, sandbox: bool) -> Message:
    """A run over MOTION_RUNS_PER_USER_PER_DAY or MOTION_RUNS_PER_MONTH, refused before sending."""
    if scope == "user_day":
        head = (
            f"⛔ You have used {used} of your {limit} Motion runs for today (UTC). "
            f"Your count resets at {_day_reset(view)}."
        )
    else:
        month = datetime.fromtimestamp(view.now, UTC).strftime("%B %Y")
        head = (
            f"⛔ This workspace has used {used} of its {limit} Motion runs for {month}. "
            f"The count resets on {_month_reset(view)}."
        )
    text = f"{head} Nothing was sent to Motion and no credits were used."
    blocks = [section(text), context(usage_line(view))]
    return with_sandbox(Message(text, blocks, "limit_reached"), sandbox)


def usage_report(view: UsageView, *, everyone: list[PersonUsage] | None, sandbox: bool) -> Message:
    """`/motion usage`: the caller's runs against the limits; for admins, everyone's.

    However many people there are, the table stays inside one message's limits: sections of
    at most 3,000 characters, far fewer than 50 blocks, and about 10,000 characters in all;
    whoever does not fit is summed up in one line."""
    day_limit = (
        f"{view.today} of {view.per_user_per_day} (resets {_day_reset(view)})"
        if view.per_user_per_day is not None
        else f"{view.today} (no daily limit)"
    )
    month_limit = (
        f"{view.workspace_month} of {view.per_month} (resets {_month_reset(view)})"
        if view.per_month is not None
        else f"{view.workspace_month} (no monthly limit)"
    )
    lines = [
        "*Your Motion usage*",
        f"• Your runs today (UTC): {day_limit}",
        f"• Your runs this month: {view.month}",
        f"• The workspace's runs this month: {month_limit}",
    ]
    text = "\n".join(lines)
    blocks: Blocks = [section(text)]
    if everyone is not None:
        blocks.append(section(f"*Everyone's runs* ({len(everyone)} people this month)"))
        rows = [f"{mention(p.user_id)} — {p.today} today · {p.month} this month" for p in everyone]
        chunk: list[str] = []
        budget = MAX_MESSAGE_CHARS - len(text) - 400
        shown = 0
        for row in rows:
            if budget - len(row) - 1 < 0 or len(blocks) >= MAX_BLOCKS - 4:
                break
            if sum(len(r) + 1 for r in chunk) + len(row) > MAX_SECTION - 100:
                blocks.append(section("\n".join(chunk)))
                chunk = []
            chunk.append(row)
            budget -= len(row) + 1
            shown += 1
        if chunk:
            blocks.append(section("\n".join(chunk)))
        if not rows:
            blocks.append(section("_Nobody has started a run this month._"))
        if shown < len(rows):
            rest = everyone[shown:]
            blocks.append(
                context(
                    f"…and {len(rest)} more people with {sum(p.month for p in rest)} runs this "
                    "month between them (the busiest are listed first)."
                )
            )
        text += f"\nEveryone's runs: {len(everyone)} people this month."
    return with_sandbox(Message(text, blocks, "usage_report"), sandbox)


PREVIEW_HEADS = {
    "new_job": "*Start this Motion video?*",
    "followup": "*Send this followup to Motion?*",
    "retry": "*Send this run to Motion again?*",
    "restart": "*Start a new job with this request?*",
}


def run_preview(
    *, kind: str, request: MotionRequest, token: str, view: UsageView, sandbox: bool
) -> Message:
    """MOTION_CONFIRM: what would be sent, privately to its author, with Start and Cancel."""
    details = []
    if request.style_url:
        details.append(f"• Style: {link(request.style_url)}")
    if request.aspect:
        details.append(f"• Aspect: {escape(request.aspect)}")
    if request.duration:
        details.append(f"• Duration: {escape(request.duration)}")
    for i, url in enumerate(request.attachments, 1):
        details.append(f"• Attachment {i}: {link(shorten(url, 500))}")
    for i, file in enumerate(request.files, len(request.attachments) + 1):
        details.append(f"• Attachment {i}: {escape(shorten(file.name or 'a Slack file', 200))}")
    prompt = quote(request.prompt, 2_000)
    if len(request.prompt) > 2_000:
        prompt += f"\n_({len(request.prompt):,} characters in all; all of it will be sent)_"
    head = PREVIEW_HEADS.get(kind, PREVIEW_HEADS["new_job"])
    credits = "💳 This uses Motion credits: one run. Nothing is sent until you press *Start*."
    blocks: Blocks = [section(f"{head}\n{prompt}")]
    if details:
        blocks.append(section("\n".join(details)))
    blocks += [
        section(credits),
        context(usage_line(view)),
        {
            "type": "actions",
            "elements": [
                button("Start", "confirm_start", value=token, style="primary"),
                button("Cancel", "confirm_cancel", value=token),
            ],
        },
    ]
    text = shorten(f"{head} {escape(shorten(request.prompt, 300))} — {credits}", 3_000)
    return with_sandbox(Message(text, blocks, "run_preview"), sandbox)


PREVIEW_STARTED = {
    "new_job": "▶️ Started: the video's card will appear in this channel in a moment.",
    "followup": "▶️ Started: the followup is queued in this thread.",
    "retry": "▶️ Started: the run is being sent to Motion again.",
    "restart": "▶️ Started: a new job's card will appear in this channel in a moment.",
}
PREVIEW_CANCELLED = "✖️ Cancelled: nothing was sent to Motion and no credits were used."
PREVIEW_GONE = "ℹ️ This preview was already started or cancelled; nothing more was started."
PREVIEW_EXPIRED = (
    "ℹ️ This preview is more than a day old, so it was not started. Ask again to see a fresh one."
)
PREVIEW_NOT_YOURS = "ℹ️ Only the person who asked for this run can start or cancel it."


def preview_answer(text: str, sandbox: bool) -> Message:
    return with_sandbox(Message(escape(text), [section(escape(text))], "preview_answer"), sandbox)


# ---------------------------------------------------------------- the form, Refine, App Home
# Modal and Home limits (Slack): 100 blocks, a title of 24 characters, a submit/close label of
# 24, private_metadata of 3,000, an input label of 2,000, an error of a few hundred to be read.

MAX_VIEW_BLOCKS = 100
MAX_VIEW_TITLE = 24
FORM_PROMPT_MAX = 3_000  # Slack caps a plain_text_input at 3,000 characters
MAX_FIELD_ERROR = 300
HOME_JOBS = 20
NEW_FORM_CALLBACK = "new_motion_form"
REFINE_CALLBACK = "refine_form"
INPUT_ACTION = "value"  # every input's element: the block_id names the field
CHANNEL_BLOCK = "channel"


def _plain(text: str, limit: int = 150) -> dict[str, Any]:
    return {"type": "plain_text", "text": shorten(text, limit), "emoji": True}


def _option(value: str) -> dict[str, Any]:
    return {"text": _plain(value, 75), "value": value}


def _input(
    block_id: str, label: str, element: dict[str, Any], *, optional: bool, hint: str | None = None
) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "label": _plain(label),
        "element": {**element, "action_id": INPUT_ACTION},
        "optional": optional,
    }
    if hint:
        block["hint"] = _plain(hint, 2000)
    return block


def _request_inputs(aspects: tuple[str, ...], durations: tuple[str, ...]) -> Blocks:
    """The prompt and the options, shared by the form and Refine (block_ids = Field names)."""
    return [
        _input(
            "prompt", "Prompt",
            {
                "type": "plain_text_input", "multiline": True, "max_length": FORM_PROMPT_MAX,
                "placeholder": _plain("What should the video show?"),
            },
            optional=False,
        ),
        _input(
            "style", "Style link",
            {"type": "url_text_input", "placeholder": _plain("https://youtu.be/…")},
            optional=True, hint="A YouTube video whose style Motion copies.",
        ),
        _input(
            "aspect", "Aspect ratio",
            {"type": "static_select", "options": [_option(a) for a in aspects]},
            optional=True,
        ),
        _input(
            "duration", "Duration",
            {"type": "static_select", "options": [_option(d) for d in durations]},
            optional=True,
        ),
    ]  # fmt: skip


def _modal(
    callback_id: str, title: str, submit: str, blocks: Blocks, metadata: dict[str, Any],
    sandbox: bool,
) -> dict[str, Any]:  # fmt: skip
    if sandbox:
        blocks = [*blocks, context(SANDBOX_NOTE)]
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": _plain(title, MAX_VIEW_TITLE),
        "submit": _plain(submit, 24),
        "close": _plain("Cancel", 24),
        "private_metadata": json.dumps(metadata, separators=(",", ":")),
        "blocks": blocks[:MAX_VIEW_BLOCKS],
    }


def new_video_form(
    *, channel_id: str | None, aspects: tuple[str, ...], durations: tuple[str, ...], sandbox: bool
) -> dict[str, Any]:
    """`/motion new` and the shortcut: the channel defaults to the command's (none for the
    shortcut, then it must be picked). private_metadata holds only that channel id."""
    channel: dict[str, Any] = {
        "type": "conversations_select",
        "filter": {"include": ["public", "private"], "exclude_bot_users": True},
        # Slack then sends a response_url for the picked channel: the app can answer there
        # privately (the /invite hint, a preview) even where it is not a member, as for /motion.
        "response_url_enabled": True,
    }
    if channel_id:
        channel["initial_conversation"] = channel_id
    blocks = [
        *_request_inputs(aspects, durations),
        file_input_block(),
        _input(
            CHANNEL_BLOCK,
            "Post it in",
            channel,
            optional=False,
            hint="The job's card and thread appear in this channel.",
        ),
    ]
    return _modal(
        NEW_FORM_CALLBACK, "New Motion video", "Start", blocks, {"origin": channel_id or ""},
        sandbox,
    )  # fmt: skip


def refine_form(
    *, job_id: int, run_number: int, aspects: tuple[str, ...], durations: tuple[str, ...],
    sandbox: bool,
) -> dict[str, Any]:  # fmt: skip
    """The "Refine" button on a result: what a thread reply would say, as a form; sent as a followup."""
    blocks = [
        context(f"Refines run {run_number}: sent as a followup in the job's thread."),
        *_request_inputs(aspects, durations),
    ]
    return _modal(REFINE_CALLBACK, "Refine video", "Send", blocks, {"job": job_id}, sandbox)


def field_error(message_text: str) -> str:
    """A problem shown under a field: plain text (no mrkdwn there), short enough to read."""
    # Every label class stops at `<`: bounded by the next `<`, each search stays linear
    # even on text made of many unclosed `<#C|` (a form's value is quoted in its problem).
    text = re.sub(
        r"<#([A-Z0-9]+)(?:\|([^<>]*))?>", lambda m: "#" + (m.group(2) or m.group(1)), message_text
    )
    text = re.sub(r"<@([A-Z0-9]+)>", r"@\1", text)
    text = re.sub(r"<([^<>|]+)\|([^<>]+)>", r"\2", text)
    text = text.replace("`", "").replace("*", "")
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    text = " ".join(line for line in text.split("\n") if SANDBOX_NOTE not in line)
    return shorten(text.strip(), MAX_FIELD_ERROR)


NO_CHANNEL = "Pick the channel where the job's card and thread should appear."
REFINE_GONE = "This job is no longer followed (stopped or gone), so it cannot be refined."
RESULT_GONE = "That result is gone, so there is nothing to make a variation of."


def refine_queued(*, sandbox: bool) -> Message:
    text = "🔁 Your refinement was queued as a followup in the job's thread."
    return with_sandbox(Message(text), sandbox)


def variation_started(*, sandbox: bool) -> Message:
    text = "🎬 Starting a new variation: its card will appear in the channel in a moment."
    return with_sandbox(Message(text), sandbox)


def form_previewed(*, sandbox: bool) -> Message:
    return with_sandbox(
        Message("👀 Check the preview in the channel: press Start to run it."), sandbox
    )


@dataclass(frozen=True)
class HomeJob:
    prompt: str
    status: str
    runs: int
    permalink: str | None
    download_url: str | None
    created_at: str


def home_view(
    jobs: list[HomeJob], usage: UsageView, *, sandbox: bool, more: bool = False
) -> dict[str, Any]:
    """The Home tab: the viewer's recent jobs, usage and "New video"; one section per job,
    so 20 jobs stay far inside Slack's 100 blocks."""
    blocks: Blocks = [
        {"type": "header", "text": _plain("Your Motion videos")},
        section(escape(usage_line(usage))),
        {
            "type": "actions",
            "block_id": "home_actions",
            "elements": [button("🎬 New video", "home_new_video", style="primary")],
        },
        {"type": "divider"},
    ]
    if not jobs:
        blocks.append(section("No videos yet. Press *New video*, or type `/motion <prompt>`."))
    for job in jobs[:HOME_JOBS]:
        where = link(job.permalink, "thread") if job.permalink else "thread unavailable"
        runs = f"{job.runs} run{'s' if job.runs != 1 else ''}"
        line = f"*{escape(shorten(job.prompt, 120))}*\n{job.status} · {runs} · {where}"
        if job.download_url:
            line += f" · {link(job.download_url, 'download')}"
        line += f" · {job.created_at}"
        blocks.append(section(line))
    if more:
        blocks.append(context(f"Showing your {HOME_JOBS} most recent jobs; `/motion list` too."))
    if sandbox:
        blocks.append(context(SANDBOX_NOTE))
    return {"type": "home", "blocks": blocks[:MAX_VIEW_BLOCKS]}


# ---------------------------------------------------------------- Slack files as attachments


FILES_BLOCK = "files"  # the form's file field (a file_input; its state lists file ids)
FILE_FIELD_MAX = 10  # Slack's own cap for a file_input, and Motion's for attachments
FILE_MAX_MB = 100


def file_input_block() -> dict[str, Any]:
    """The form's file field: files picked or uploaded in Slack, re-hosted for Motion."""
    return _input(
        FILES_BLOCK, "Files", {"type": "file_input", "max_files": FILE_FIELD_MAX},
        optional=True,
        hint="Images, clips or audio for Motion to use (up to 10 in all, each at most 100 MB).",
    )  # fmt: skip


def file_kind(mimetype: str) -> str:
    """An attachment's `type` for Motion, from the file's MIME type."""
    head = mimetype.split("/", 1)[0].strip().lower()
    return head if head in ("image", "video", "audio") else "file"


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


# ------------------------------------------------------------ the video in the thread, links
# that never expire


FRESH_LINK_ACTION = "fresh_link"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def button_url_ok(url: str) -> bool:
    """Whether a link may sit on a button: https (plain http only on a loopback address, the
    sandbox's and local tests' own servers) and within Slack's 3,000 characters."""
    parts = urlparse(url)
    if len(url) > MAX_BUTTON_URL:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)


def fresh_link_button(run_id: int) -> dict[str, Any]:
    return button("Fresh link", FRESH_LINK_ACTION, value=str(run_id))


def fresh_link(url: str | None, run_number: int, *, sandbox: bool) -> Message:
    """The answer to "Fresh link", only for the person who pressed it."""
    if url is None:
        text = (
            f"I could not get a download link for run {run_number} from Motion just now. "
            "Try the button again in a minute, or open the job in Motion's web app."
        )
        return with_sandbox(Message(text), sandbox)
    text = f"Here is a fresh download link for run {run_number}: {link(url)}"
    text += "\n_It is signed by Motion and expires too: press the button again later._"
    return with_sandbox(Message(text), sandbox)


def video_filename(run_number: int) -> str:
    """The MP4's name in Slack (what a download from the thread saves as)."""
    return f"motion-run-{run_number}.mp4"


def video_title(run_number: int, prompt: str) -> str:
    """The file's title in the thread: the run and the start of its prompt (a title is plain
    text: Slack shows it as is, so nothing needs escaping, only shortening)."""
    return shorten(f"Run {run_number}: {prompt}", 200)


# ---------------------------------------------------------------- stuck runs and Stop tracking

STOP_ACTION = "stop_tracking"  # value: the job's id (card), "<job id>:<run id>" (stuck notice)
KEEP_WAITING_ACTION = "stuck_keep_waiting"  # value: "<run id>:<notice number>"
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
    return button("Stop tracking", STOP_ACTION, value=str(job_id))


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
        button("Keep waiting", KEEP_WAITING_ACTION, value=f"{run_id}:{notice}"),
        button("Stop tracking", STOP_ACTION, value=f"{job_id}:{run_id}"),
    ]
    return _notice("stuck_notice", text, sandbox, actions)


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
    return _notice("stuck_notice", text, sandbox)


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
    return _notice("tracking_stopped", text, sandbox)


def stopped_card_note(user_id: str) -> str:
    return f"⛔ {mention(user_id)} stopped tracking this job. {NO_CANCEL}"
