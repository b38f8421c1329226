"""The job card: the message at the top of a job's thread, edited in place as the job moves."""

from __future__ import annotations

from dataclasses import dataclass

from bot.slack.messages.base import (
    MAX_SECTION,
    MAX_UPDATE_TEXT,
    Blocks,
    Message,
    context,
    duration_text,
    escape,
    link,
    mention,
    quote,
    section,
    shorten,
    with_sandbox,
)
from bot.slack.messages.notices import stop_button, stopped_card_note


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
