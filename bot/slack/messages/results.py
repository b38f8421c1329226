"""A run's result and its credits, the notify channel's notice, and the links to the video:
the buttons on a result, "Fresh link", the MP4's name and title in the thread."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from bot.motion import Source, Usage
from bot.slack.ids import ActionId
from bot.slack.messages.base import (
    MAX_BLOCKS,
    MAX_BUTTON_URL,
    MAX_MESSAGE_CHARS,
    MAX_SECTION,
    Blocks,
    Message,
    button,
    context,
    escape,
    link,
    mention,
    section,
    shorten,
    timestamp,
    with_sandbox,
)


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
    first_blocks = _result_head(
        requester=requester, run_number=run_number, download_url=download_url,
        sources=sources, expires_at=expires_at, run_id=run_id, fresh_link=fresh_link,
    )  # fmt: skip
    lines = [credit_line(i + 1, c) for i, c in enumerate(sources)]
    messages = _split_credits(first_blocks, lines)
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


def _result_head(
    *, requester: str, run_number: int, download_url: str, sources: list[Source],
    expires_at: str | None, run_id: int | None, fresh_link: bool,
) -> Blocks:  # fmt: skip
    """The first part's opening: who and which run, the buttons, the link, the credits' count."""
    credits = sources
    flagged = sum(1 for c in credits if not c.cleared)
    head = f"✅ {mention(requester)} run {run_number} of your Motion video is ready."
    url_line = f"Download: {link(download_url)}"
    if expires_at:
        url_line += f"\n_The link may expire ({escape(expires_at)}); download it soon._"
    first_blocks: Blocks = [section(head)]
    actions = _result_actions(download_url, run_id, fresh_link)
    if actions:
        first_blocks.append({"type": "actions", "elements": actions})
    first_blocks.append(section(url_line))
    summary = f"*Credits* — {len(credits)} source{'s' if len(credits) != 1 else ''}"
    if flagged:
        summary += f", ⚠️ {flagged} not clearly cleared"
    first_blocks.append(section(summary if credits else "*Credits* — Motion listed no sources."))
    return first_blocks


def _result_actions(download_url: str, run_id: int | None, fresh_link: bool) -> Blocks:
    actions: Blocks = []
    if button_url_ok(download_url):
        actions.append(
            button("⬇️ Download MP4", ActionId.DOWNLOAD, url=download_url, style="primary")
        )
    if run_id is not None:
        # One click, one run: each is claimed once per result (see Intake.variation_of).
        actions.append(button("Refine", ActionId.REFINE, value=str(run_id)))
        actions.append(button("New variation", ActionId.NEW_VARIATION, value=str(run_id)))
        if fresh_link:
            actions.append(fresh_link_button(run_id))
    return actions


def _split_credits(first_blocks: Blocks, lines: list[str]) -> list[Message]:
    """The credit lines in sections after `first_blocks`, a new message whenever one would
    pass Slack's limits (blocks, characters); the texts are filled in by the caller."""
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
    return messages


def _block_text(block: dict[str, Any]) -> str:
    if block.get("type") == "section":
        return str(block["text"]["text"])
    if block.get("type") == "context":
        return " ".join(str(e.get("text", "")) for e in block["elements"])
    return ""


def notify_message(
    *,
    requester: str,
    prompt: str,
    permalink: str | None,
    run_number: int,
    sandbox: bool,
    private: bool = True,
) -> Message:
    """The notify channel's notice. A job from a private channel, a group DM or a DM says only
    that a video is ready there: no prompt, no credits, no requester (the link opens only for
    the conversation's members)."""
    where = link(permalink, "see the thread") if permalink else "see the job's thread"
    if private:
        text = f"🎬 A Motion video is ready in a private conversation (run {run_number}): {where}."
        return with_sandbox(Message(text, [section(text)], "notify"), sandbox)
    text = (
        f"🎬 A Motion video for {mention(requester)} is ready (run {run_number}): "
        f"“{escape(shorten(prompt, 150))}” — {where}."
    )
    return with_sandbox(Message(text, [section(text)], "notify"), sandbox)


# ------------------------------------------------------------ the video in the thread, links
# that never expire


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def button_url_ok(url: str) -> bool:
    """Whether a link may sit on a button: https (plain http only on a loopback address, the
    sandbox's and local tests' own servers) and within Slack's 3,000 characters."""
    parts = urlparse(url)
    if len(url) > MAX_BUTTON_URL:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)


def fresh_link_button(run_id: int) -> dict[str, Any]:
    return button("Fresh link", ActionId.FRESH_LINK, value=str(run_id))


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
