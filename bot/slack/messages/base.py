"""What every message builder shares: the `Message` type, Slack's limits, escaping and the
mrkdwn and Block Kit pieces.

Anything that came from a person or from Motion passes through `escape` (or `link`) before it
is placed in mrkdwn, so `<!channel>`, mentions and disguised links arrive as inert text.
Limits (50 blocks, 3,000 characters a section, 4,000 for chat.update's text) are enforced where
the payloads are built, rather than discovered as Slack errors later.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from bot.slack.ids import INPUT_ACTION

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
# Modal and Home limits (Slack): 100 blocks, a title of 24 characters, a submit/close label of
# 24, private_metadata of 3,000, an input label of 2,000, an error of a few hundred to be read.
MAX_VIEW_BLOCKS = 100


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


DIRECT_MESSAGE = "Direct message"


def job_place(channel_id: str) -> str:
    """Where a job lives, for a list of jobs: the channel (Slack shows its name), or a direct
    message with the app."""
    if channel_id.startswith("D"):
        return DIRECT_MESSAGE
    return f"<#{channel_id}>" if re.fullmatch(r"[CG][A-Z0-9]+", channel_id) else escape(channel_id)


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
        "action_id": str(action_id),  # a plain string in the payload, even from an ActionId
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


def plain_text(text: str, limit: int = 150) -> dict[str, Any]:
    """A plain_text object (labels, titles, headers: Slack shows it as is)."""
    return {"type": "plain_text", "text": shorten(text, limit), "emoji": True}


def input_block(
    block_id: str,
    label: str,
    element: dict[str, Any],
    *,
    optional: bool,
    hint: str | None = None,
) -> dict[str, Any]:
    """A form field (`input` block) whose value is read by `block_id` under `INPUT_ACTION`."""
    block: dict[str, Any] = {
        "type": "input",
        "block_id": str(block_id),
        "label": plain_text(label),
        "element": {**element, "action_id": INPUT_ACTION},
        "optional": optional,
    }
    if hint:
        block["hint"] = plain_text(hint, 2000)
    return block


def notice_message(
    kind: str, text: str, sandbox: bool, actions: list[dict[str, Any]] | None = None
) -> Message:
    """A message that is one section of words, and buttons under it when there are any."""
    blocks: Blocks = [section(text)]
    if actions:
        blocks.append({"type": "actions", "elements": actions})
    return with_sandbox(Message(text, blocks, kind), sandbox)
