"""The modals: the form (`/motion new`, the shortcut, the Home tab's button) and Refine,
their fields (prompt, options, files, channel), the problems shown under a field, and the
private answers once submitted."""

from __future__ import annotations

import json
import re
from typing import Any

from bot.slack.ids import BlockId, CallbackId
from bot.slack.messages.base import (
    MAX_VIEW_BLOCKS,
    SANDBOX_NOTE,
    Blocks,
    Message,
    context,
    input_block,
    plain_text,
    shorten,
    with_sandbox,
)

# Modal limits (Slack): a title of 24 characters; a problem under a field is read, so short.
MAX_VIEW_TITLE = 24
FORM_PROMPT_MAX = 3_000  # Slack caps a plain_text_input at 3,000 characters
MAX_FIELD_ERROR = 300


def _option(value: str) -> dict[str, Any]:
    return {"text": plain_text(value, 75), "value": value}


def _request_inputs(aspects: tuple[str, ...], durations: tuple[str, ...]) -> Blocks:
    """The prompt and the options, shared by the form and Refine (block_ids = Field names)."""
    return [
        input_block(
            BlockId.PROMPT, "Prompt",
            {
                "type": "plain_text_input", "multiline": True, "max_length": FORM_PROMPT_MAX,
                "placeholder": plain_text("What should the video show?"),
            },
            optional=False,
        ),
        input_block(
            BlockId.STYLE, "Style link",
            {"type": "url_text_input", "placeholder": plain_text("https://youtu.be/…")},
            optional=True, hint="A YouTube video whose style Motion copies.",
        ),
        input_block(
            BlockId.ASPECT, "Aspect ratio",
            {"type": "static_select", "options": [_option(a) for a in aspects]},
            optional=True,
        ),
        input_block(
            BlockId.DURATION, "Duration",
            {"type": "static_select", "options": [_option(d) for d in durations]},
            optional=True,
        ),
    ]  # fmt: skip


def _modal(
    callback_id: CallbackId, title: str, submit: str, blocks: Blocks, metadata: dict[str, Any],
    sandbox: bool,
) -> dict[str, Any]:  # fmt: skip
    if sandbox:
        blocks = [*blocks, context(SANDBOX_NOTE)]
    return {
        "type": "modal",
        "callback_id": str(callback_id),
        "title": plain_text(title, MAX_VIEW_TITLE),
        "submit": plain_text(submit, 24),
        "close": plain_text("Cancel", 24),
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
        input_block(
            BlockId.CHANNEL,
            "Post it in",
            channel,
            optional=False,
            hint="The job's card and thread appear in this channel.",
        ),
    ]
    return _modal(
        CallbackId.NEW_FORM, "New Motion video", "Start", blocks, {"origin": channel_id or ""},
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
    return _modal(CallbackId.REFINE_FORM, "Refine video", "Send", blocks, {"job": job_id}, sandbox)


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


# ---------------------------------------------------------------- Slack files as attachments


FILE_FIELD_MAX = 10  # Slack's own cap for a file_input, and Motion's for attachments
FILE_MAX_MB = 100


def file_input_block() -> dict[str, Any]:
    """The form's file field: files picked or uploaded in Slack, re-hosted for Motion."""
    return input_block(
        BlockId.FILES, "Files", {"type": "file_input", "max_files": FILE_FIELD_MAX},
        optional=True,
        hint="Images, clips or audio for Motion to use (up to 10 in all, each at most 100 MB).",
    )  # fmt: skip


def file_kind(mimetype: str) -> str:
    """An attachment's `type` for Motion, from the file's MIME type."""
    head = mimetype.split("/", 1)[0].strip().lower()
    return head if head in ("image", "video", "audio") else "file"
