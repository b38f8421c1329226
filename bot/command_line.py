"""Turn the text of `/motion` (or of a thread reply) into a Motion request or a precise error.

Pure: no Slack, no Motion, no database. Every error message says what is wrong and what to
type instead, because the person reading it is mid-task in Slack, not reading docs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlparse

from bot.motion import (
    ASPECTS,
    DURATIONS,
    MAX_ATTACHMENT_URL,
    MAX_ATTACHMENTS,
    MAX_PROMPT,
    MotionRequest,
    is_youtube,
    js_length,
)

OPTIONS = ("--style", "--attach", "--aspect", "--duration")
_SLACK_FILE_HOSTS = {"files.slack.com", "slack-files.com"}

# Slack (and macOS) turn a typed "--" into an em or en dash: accept both before an option name.
_DASHED_OPTION = re.compile(r"(?<!\S)(?:—|–)(?=[a-z])")
_OPTION_TOKEN = re.compile(r"(?<!\S)--[A-Za-z][\w-]*(?:=\S*)?")
_SLACK_LINK = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


class UsageError(ValueError):
    """A message for the person who typed the command; safe to show as it is (escaped)."""


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class ListJobs:
    pass


@dataclass(frozen=True)
class ShowUsage:
    pass


@dataclass(frozen=True)
class NewForm:
    """`/motion new`: open the form."""


@dataclass(frozen=True)
class Start:
    request: MotionRequest = field()


Command = Help | ListJobs | ShowUsage | NewForm | Start


def parse_command(slack_text: str) -> Command:
    """Parse `/motion` text as Slack sent it; raises UsageError with the fix."""
    text = slack_to_plain(slack_text).strip()
    if text.lower() in ("", "help", "-h", "--help"):
        return Help()
    if text.lower() == "list":
        return ListJobs()
    if text.lower() == "usage":
        return ShowUsage()
    if text.lower() == "new":
        return NewForm()
    return Start(parse_request(text, already_plain=True))


def parse_request(text: str, *, already_plain: bool = False) -> MotionRequest:
    """Parse a prompt followed by `--name value` options (used for thread followups too)."""
    if not already_plain:
        text = slack_to_plain(text)
    text = _DASHED_OPTION.sub("--", text.strip())
    first = _OPTION_TOKEN.search(text)
    prompt = (text[: first.start()] if first else text).strip()
    options = text[first.start() :].split() if first else []

    style: str | None = None
    aspect: str | None = None
    duration: str | None = None
    attachments: list[str] = []
    i = 0
    while i < len(options):
        token = options[i]
        name, eq, inline_value = token.partition("=")
        if not name.startswith("--"):
            raise UsageError(
                f"I don't know what to do with `{token}` after the options. Put all of the "
                "prompt first and the options (`--style`, `--attach`, `--aspect`, `--duration`) "
                "after it, each followed by one value."
            )
        if name not in OPTIONS:
            raise UsageError(
                f"`{name}` is not an option. The options are `--style <YouTube link>`, "
                "`--attach <https link>` (up to 10), `--aspect <ratio>` and `--duration <length>`."
            )
        if eq:
            value = inline_value
            i += 1
        elif i + 1 < len(options) and not options[i + 1].startswith("--"):
            value = options[i + 1]
            i += 2
        else:
            value = ""
            i += 1
        if not value:
            raise UsageError(f"`{name}` needs a value: {_hint(name)}.")
        value = _strip_brackets(value)
        if name == "--style":
            if style is not None:
                raise UsageError("`--style` was given twice: keep one YouTube link.")
            style = _raise_first(_style_problem(value))
        elif name == "--attach":
            attachments.append(_raise_first(_attachment_problem(value)))
        elif name == "--aspect":
            if aspect is not None:
                raise UsageError("`--aspect` was given twice: keep one.")
            aspect = _raise_first(_choice_problem(name, value, ASPECTS))
        else:
            if duration is not None:
                raise UsageError("`--duration` was given twice: keep one.")
            duration = _raise_first(_choice_problem(name, value, DURATIONS))

    return build_request(prompt, style, attachments, aspect, duration)


class Field(StrEnum):
    """The parts of a request a person fills in; the form's blocks are named after them."""

    PROMPT = "prompt"
    STYLE = "style"
    ATTACH = "attach"
    ASPECT = "aspect"
    DURATION = "duration"


def request_problems(
    prompt: str,
    style: str | None,
    attachments: Sequence[str],
    aspect: str | None,
    duration: str | None,
    *,
    max_prompt: int = MAX_PROMPT,
    form: bool = False,
) -> dict[Field, str]:
    """Every rule a request must meet, each problem under the field it is about.

    The one copy of the rules: the command raises the first problem (`build_request`), the
    form shows each on its field (`form`: worded for fields rather than options). `max_prompt`
    is lower for the form, which Slack caps."""
    problems: dict[Field, str] = {}
    if style is not None and (problem := _style_problem(style)[1]):
        problems[Field.STYLE] = (
            problem.replace("`--style` must", "The style link must", 1) if form else problem
        )
    for value in attachments:
        if problem := _attachment_problem(value)[1]:
            problems.setdefault(Field.ATTACH, problem)
    if len(attachments) > MAX_ATTACHMENTS:
        problems.setdefault(
            Field.ATTACH,
            f"{len(attachments)} attachments given; Motion accepts at most {MAX_ATTACHMENTS}. "
            f"Remove {len(attachments) - MAX_ATTACHMENTS}.",
        )
    if aspect is not None and (problem := _choice_problem("--aspect", aspect, ASPECTS)[1]):
        problems[Field.ASPECT] = problem
    if duration is not None and (problem := _choice_problem("--duration", duration, DURATIONS)[1]):
        problems[Field.DURATION] = problem
    if not prompt and form:
        problems[Field.PROMPT] = "The prompt is empty: write what the video should show."
    elif not prompt:
        problems[Field.PROMPT] = (
            "The prompt is empty: write what the video should show before any options, e.g. "
            "`/motion a 20-second teaser for our spring sale --aspect 9:16`."
        )
    elif js_length(prompt) > max_prompt:
        problems[Field.PROMPT] = (
            f"The prompt is {js_length(prompt):,} characters; Motion accepts at most "
            f"{max_prompt:,}. Shorten it by {js_length(prompt) - max_prompt:,} characters."
        )
    return problems


# The order the command reports problems in: the prompt first, as a person reads the line.
_COMMAND_ORDER = (Field.PROMPT, Field.ATTACH, Field.STYLE, Field.ASPECT, Field.DURATION)


def build_request(
    prompt: str,
    style: str | None,
    attachments: Sequence[str],
    aspect: str | None,
    duration: str | None,
) -> MotionRequest:
    """The request, or UsageError with the first problem `request_problems` finds."""
    problems = request_problems(prompt, style, attachments, aspect, duration)
    for name in _COMMAND_ORDER:
        if name in problems:
            raise UsageError(problems[name])
    return MotionRequest(prompt, style, tuple(attachments), aspect, duration)


def slack_to_plain(text: str) -> str:
    """Undo Slack's formatting so Motion sees what the person typed.

    Slack wraps links, mentions and channels in `<…>` and entity-encodes `&`, `<`, `>`; the
    entities are decoded last so that a typed `&lt;` is not mistaken for markup.
    """

    def link(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith("@") or target.startswith("#"):
            return target[0] + label if label else target
        if target.startswith("!"):
            name = label or target[1:].split("^")[0]
            return name if name.startswith("@") else "@" + name
        return target

    text = _SLACK_LINK.sub(link, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def strip_mention(text: str, bot_user_id: str) -> tuple[str, bool]:
    """Remove `<@BOT>` mentions from Slack text; say whether there was one.

    The label stops at `<` as well as `>`: Slack encodes a typed `<` as `&lt;`, so a real
    label never holds one, and a label that could run past the next `<` made the search
    quadratic (each of many unclosed `<@BOT|` scanned to the end of the text)."""
    pattern = re.compile(rf"<@{re.escape(bot_user_id)}(?:\|[^<>]*)?>")
    stripped, count = pattern.subn("", text)
    return re.sub(r"[ \t]{2,}", " ", stripped).strip(), count > 0


def _hint(option: str) -> str:
    return {
        "--style": "a YouTube link, e.g. `--style https://youtu.be/dQw4w9WgXcQ`",
        "--attach": "an https link anyone can open, e.g. `--attach https://example.com/logo.png`",
        "--aspect": "one of " + ", ".join(f"`{a}`" for a in ASPECTS),
        "--duration": "one of " + ", ".join(f"`{d}`" for d in DURATIONS),
    }[option]


def _strip_brackets(value: str) -> str:
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].split("|", 1)[0]
    return value


def _raise_first(checked: tuple[str, str | None]) -> str:
    value, problem = checked
    if problem:
        raise UsageError(problem)
    return value


def _choice_problem(option: str, value: str, choices: Sequence[str]) -> tuple[str, str | None]:
    if value in choices:
        return value, None
    return value, f"`{option} {value}` is not supported; use {_hint(option)}."


def _style_problem(value: str) -> tuple[str, str | None]:
    if not is_youtube(value):
        return value, (
            f"`--style` must be a YouTube link (youtube.com or youtu.be), not `{value}`. "
            "Motion copies the style of that video."
        )
    return value, None


def _attachment_problem(value: str) -> tuple[str, str | None]:
    parsed = urlparse(value)
    if parsed.scheme != "https" or not parsed.hostname:
        return value, (
            f"`--attach {value}` is not an https link. Attach files by a public https:// link "
            "that opens without signing in."
        )
    if parsed.hostname in _SLACK_FILE_HOSTS:
        return value, (
            "`--attach` got a Slack file link, which only people signed in to Slack can open, "
            "so Motion cannot fetch it. Share the file from somewhere public (a signed link from "
            "your storage) and attach that link."
        )
    if js_length(value) > MAX_ATTACHMENT_URL:
        return value, (
            f"An `--attach` link is {js_length(value):,} characters; Motion accepts at most "
            f"{MAX_ATTACHMENT_URL:,}. Use a shorter link."
        )
    return value, None
