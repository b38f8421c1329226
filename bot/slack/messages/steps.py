"""Workflow Builder steps: the words a step ends with when it fails, the same a person reads on
the job's card (or in the private answer when nothing was started), in plain text for Slack's
`functions.completeError`; and the outputs it completes with."""

from __future__ import annotations

from bot.slack.messages.base import shorten
from bot.slack.messages.card import STATE_LABELS

MAX_STEP_ERROR = 1_000  # Workflow Builder shows the words in the run's activity: a few lines

STEP_CHANNEL_UNUSABLE = (
    "🚫 Not started — I can't post in that channel, so the video's thread could not be made: "
    "invite me with `/invite @motion`, or pick a channel I'm in."
)
STEP_STOPPED_TRACKING = (
    "⛔ Stopped — tracking was stopped from the job's thread (Motion may still finish the video "
    "in its web app)."
)
STEP_PREVIEW_CANCELLED = (
    "✖️ Cancelled — the requester pressed Cancel on the preview: nothing was sent to Motion."
)
STEP_PREVIEW_EXPIRED = "ℹ️ Not started — the preview was not started within a day."
STEP_NO_INPUT = "⚠️ Not started — the step's {field} is missing: pick one in Workflow Builder."


def step_failed(state: str, reason: str | None) -> str:
    """A run's end as its card shows it ("❌ Failed — <reason>"), as plain words."""
    label = STATE_LABELS.get(state, state.replace("_", " ").capitalize())
    return shorten(f"{label} — {reason}" if reason else label, MAX_STEP_ERROR)


def step_refused(words: str) -> str:
    """Why nothing was started, as the person asking would have read it (a refusal's own
    words keep their sign; a bare problem gets the usage error's ⚠️)."""
    signed = bool(words) and not words[0].isascii()
    return shorten(words if signed else f"⚠️ {words}", MAX_STEP_ERROR)


def step_preview_unshown(error: str) -> str:
    return (
        "🚫 Not started — the preview (MOTION_CONFIRM) could not be shown to the requester in "
        f"that channel (Slack said {error}): invite me there, or pick a channel they are in."
    )


def step_outputs(*, video_url: str, thread_permalink: str, job_id: int) -> dict[str, str]:
    """What the step completes with: the names of the manifest's output parameters."""
    return {"video_url": video_url, "thread_permalink": thread_permalink, "job_id": str(job_id)}
