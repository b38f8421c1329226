"""The app's Home tab: the viewer's recent jobs, their usage, and "New video"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.slack.ids import ActionId, BlockId
from bot.slack.messages.base import (
    MAX_VIEW_BLOCKS,
    SANDBOX_NOTE,
    Blocks,
    button,
    context,
    escape,
    job_place,
    link,
    plain_text,
    section,
    shorten,
)
from bot.slack.messages.spend import UsageView, usage_line

HOME_JOBS = 20


@dataclass(frozen=True)
class HomeJob:
    prompt: str
    status: str
    runs: int
    permalink: str | None
    download_url: str | None
    created_at: str
    channel_id: str = ""  # where the job lives: a channel, or "Direct message"


def home_view(
    jobs: list[HomeJob], usage: UsageView, *, sandbox: bool, more: bool = False,
    settings: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """The Home tab: the viewer's recent jobs, usage and "New video"; one section per job,
    so 20 jobs stay far inside Slack's 100 blocks. `settings`: the viewer is one of the
    workspace's Motion admins, who get the "Settings" button."""
    actions = [button("🎬 New video", ActionId.HOME_NEW_VIDEO, style="primary")]
    if settings:
        actions.append(button("⚙️ Settings", ActionId.HOME_SETTINGS))
    blocks: Blocks = [
        {"type": "header", "text": plain_text("Your Motion videos")},
        section(escape(usage_line(usage))),
        {"type": "actions", "block_id": str(BlockId.HOME_ACTIONS), "elements": actions},
        {"type": "divider"},
    ]
    if not jobs:
        blocks.append(section("No videos yet. Press *New video*, or type `/motion <prompt>`."))
    for job in jobs[:HOME_JOBS]:
        where = link(job.permalink, "thread") if job.permalink else "thread unavailable"
        runs = f"{job.runs} run{'s' if job.runs != 1 else ''}"
        if job.channel_id:
            where = f"{job_place(job.channel_id)} · {where}"
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
