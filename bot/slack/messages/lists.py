"""The answers to `/motion` itself: help, a usage error, "starting", the invite hint, and
`/motion list` (the caller's recent jobs)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.slack.messages.base import (
    Message,
    context,
    escape,
    job_place,
    link,
    notice_message,
    section,
    shorten,
    with_sandbox,
)
from bot.slack.messages.spend import UsageView, usage_line

MALFORMED_COMMAND = (
    "Slack sent this command without the person or the channel, so nothing was started. "
    "Try the command again."
)


def usage_error(message: str, sandbox: bool = False) -> Message:
    return notice_message("usage_error", f"⚠️ {escape(message)}", sandbox)


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


OTHER_WORKSPACE = "That belongs to another workspace, so nothing was changed."


def other_workspace(sandbox: bool) -> Message:
    """A button, form or link of one workspace used from another: said to its author alone,
    naming nothing of the other workspace."""
    return with_sandbox(Message(f"ℹ️ {OTHER_WORKSPACE}"), sandbox)


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
    channel_id: str = ""  # where the job lives: a channel, or "Direct message"


def job_list(jobs: list[JobListing], sandbox: bool, usage: UsageView | None = None) -> Message:
    footer = [context(usage_line(usage))] if usage else []
    if not jobs:
        text = "You have no Motion jobs yet. Start one with `/motion <prompt>`."
        return with_sandbox(Message(text, [section(text), *footer]), sandbox)
    lines = []
    for job in jobs:
        where = link(job.permalink, "thread") if job.permalink else "thread unavailable"
        runs = f"{job.runs} run{'s' if job.runs != 1 else ''}"
        if job.channel_id:
            where = f"{job_place(job.channel_id)} · {where}"
        lines.append(
            f"• {escape(shorten(job.prompt, 80))} — {job.status} · {runs} · {where} · {job.created_at}"
        )
    text = "*Your recent Motion jobs*\n" + "\n".join(lines)
    return with_sandbox(Message(text, [section(text), *footer]), sandbox)
