"""Spend controls in words: usage against the limits (`/motion usage`, the line under lists
and previews), the refusals for a channel or a limit, and the MOTION_CONFIRM preview."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.motion import MotionRequest
from bot.slack.ids import ActionId
from bot.slack.messages.base import (
    MAX_BLOCKS,
    MAX_MESSAGE_CHARS,
    MAX_SECTION,
    Blocks,
    Message,
    button,
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
                button("Start", ActionId.CONFIRM_START, value=token, style="primary"),
                button("Cancel", ActionId.CONFIRM_CANCEL, value=token),
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
