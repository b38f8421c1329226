"""`python -m bot try`: the whole product in a terminal, with no Slack workspace, key or settings.

The real app (listeners, service, poller, outbox) runs against a local stand-in for one Slack
workspace (`bot.local.server`) and the Motion sandbox. This module plays the person: it sends
`/motion <prompt>` (and a thread reply) signed as Slack signs them, and prints what the channel
shows as it changes.

PUBLIC_URL is the app's own loopback address, so the Slack-native side works with no setup: the
result links point at the app (`/v/`), and with `--file` / `--with-file` the prompt is an
@mention carrying a file (a slash command cannot carry one), which the sandbox fetches through
`PUBLIC_URL/files/<token>` exactly as Motion would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import mimetypes
import re
import secrets
import signal
import socket
import struct
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlencode

import httpx

from bot import logs
from bot.app import MotionBot
from bot.config import Settings
from bot.local.model import Change
from bot.local.payloads import FORM, JSON, signed_headers
from bot.local.server import SlackStandIn
from bot.sandbox import JobPlan, MotionSandbox
from bot.slack.messages import SANDBOX_NOTE

DEFAULT_PROMPT = "a 20-second teaser for our spring sale"
PLAN = JobPlan(queued_s=1.5, created_s=1.5, running_s=4.0, render_s=2.0)  # about 9 s a run
FAST_PLAN = JobPlan(queued_s=0.2, created_s=0.2, running_s=0.6, render_s=0.3)
CHANNEL, CHANNEL_NAME, USER, USER_NAME = "C0PUBLIC", "general", "U0ALICE", "alice"
FAILED_KINDS = frozenset(
    {
        "job_failed", "render_failed", "insufficient_credits", "outcome_unknown", "bad_request",
        "auth_failed", "job_not_found", "motion_server_error", "motion_unreachable",
        "followup_on_failed", "nothing_to_refine", "usage_error",
    }
)  # fmt: skip
EMOJI = {"hourglass_flowing_sand": "⏳", "arrow_forward": "▶️", "x": "❌", "white_check_mark": "✅"}
_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")
_BOLD = re.compile(r"(?<![\w*])\*(\S(?:[^*\n]*\S)?)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_(\S(?:[^_\n]*\S)?)_(?![\w_])")


def plain(mrkdwn: str, names: dict[str, str], *, urls: bool = True) -> str:
    """Slack mrkdwn as a terminal shows it: links and mentions spelled out, entities decoded;
    without `urls`, a labelled link shows only its label."""

    def spell(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith("@"):
            return "@" + (label or names.get(target[1:], target[1:]))
        if target.startswith("#"):
            return "#" + (label or names.get(target[1:], target[1:]))
        if label and label != target:
            return f"{label} ({target})" if urls else label
        return target

    text = _ITALIC.sub(r"\1", _BOLD.sub(r"\1", _LINK.sub(spell, mrkdwn)))
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def message_lines(
    message: dict[str, Any], names: dict[str, str], *, urls: bool = True
) -> list[str]:
    """What Slack shows of a message, line by line: its Block Kit texts and buttons when it has
    blocks (the text is then only the notification's), else its text."""
    lines: list[str] = []
    for block in message.get("blocks") or []:
        kind = block.get("type")
        if kind == "section" and isinstance(block.get("text"), dict):
            lines += plain(block["text"].get("text", ""), names, urls=urls).splitlines()
        elif kind == "context":
            texts = [e.get("text", "") for e in block.get("elements", []) if "text" in e]
            lines.append(plain(" ".join(texts), names, urls=urls))
        elif kind == "actions":
            labels = [e.get("text", {}).get("text", "") for e in block.get("elements", [])]
            lines.append("  ".join(f"[ {label} ]" for label in labels if label))
    for file in message.get("files") or []:  # the video in the thread
        size = int(file.get("size") or 0)
        lines.append(f"📎 {file.get('name')} ({size / 1_000_000:.1f} MB), plays in the thread")
    return lines or plain(message.get("text") or "", names, urls=urls).splitlines()


def card_line(message: dict[str, Any], names: dict[str, str]) -> str:
    """The card in one line, without the lines every card repeats."""
    lines = message_lines(message, names, urls=False)
    lines = [line for line in lines if line and line not in _CARD_FOOTERS]
    return " · ".join(lines)


_CARD_FOOTERS = ("Reply in this thread to refine the video.", SANDBOX_NOTE)


def kind_of(message: dict[str, Any]) -> str | None:
    return ((message.get("metadata") or {}).get("event_payload") or {}).get("kind")


class Terminal:
    """Prints the channel as it changes, each line stamped with the time since the start (and,
    with several workspaces, `where`: the workspace's name)."""

    def __init__(
        self, out: TextIO, names: dict[str, str], started: float, *, where: str = ""
    ) -> None:
        self.out, self.names, self.started, self.where = out, names, started, where
        self.cards: dict[str, str] = {}  # card ts → the line last shown

    def say(self, head: str, body: list[str] | None = None) -> None:
        elapsed = int(time.monotonic() - self.started)
        print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {self.where}{head}", file=self.out)
        for line in body or []:
            print(f"        {line}" if line else "", file=self.out)
        self.out.flush()

    def show(self, change: Change) -> None:
        message, who = change.message, self.names.get(change.message.get("user", ""), "someone")
        if change.kind == "step_ended":
            self.show_step_end(message)
        elif change.kind in ("ephemeral", "response"):
            self.say("(only you can see this)", message_lines(message, self.names))
        elif change.kind == "reaction_added":
            self.say(f"motion reacted {EMOJI.get(change.reaction or '', change.reaction)} "
                     f"to {who}'s message")  # fmt: skip
        elif change.kind in ("posted", "edited") and kind_of(message) == "card":
            line = card_line(message, self.names)
            if self.cards.get(message["ts"]) != line:
                reply = message.get("thread_ts") not in (None, message["ts"])
                head = ("  ↳ " if reply else "") + (
                    "card posted: " if change.kind == "posted" else "card edited: "
                )
                self.say(head + line)
                self.cards[message["ts"]] = line
        elif change.kind == "posted":
            thread = message.get("thread_ts") not in (None, message["ts"])
            head = f"{'  ↳ ' if thread else ''}{who}"
            if message.get("subtype") == "thread_broadcast":
                head += f" (also sent to #{self.names.get(change.channel or '', 'the channel')})"
            self.say(f"{head}:", message_lines(message, self.names))

    def show_step_end(self, ended: dict[str, Any]) -> None:
        """The workflow step's end, as Workflow Builder's activity would show it."""
        if ended.get("state") == "completed":
            outputs = ended.get("outputs") or {}
            self.say(
                "workflow step “Make a Motion video” completed; its outputs:",
                [f"{name} = {value}" for name, value in outputs.items()],
            )
        else:
            self.say("workflow step “Make a Motion video” failed:", [str(ended.get("error"))])


@dataclass(frozen=True)
class Attachment:
    """The file the person attaches to the prompt (`--file`, or the sample of `--with-file`)."""

    name: str
    mimetype: str
    content: bytes

    @classmethod
    def from_path(cls, path: Path) -> Attachment:
        mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return cls(path.name, mimetype, path.read_bytes())

    def line(self) -> str:
        return f"📎 {self.name} ({_size(len(self.content))}, {self.mimetype})"


def sample_image() -> Attachment:
    """A 48×48 PNG drawn here (a diagonal gradient), so `--with-file` needs no file of its own."""
    side = 48
    rows = b"".join(
        b"\x00" + bytes(v for x in range(side) for v in (x * 5, y * 5, 160)) for y in range(side)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit RGB
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return Attachment("sample-logo.png", "image/png", png)


def _size(length: int) -> str:
    return f"{length} bytes" if length < 1000 else f"{length / 1000:.0f} kB"


def free_port() -> int:
    """A loopback port nobody holds now: PUBLIC_URL must be known before the app starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def try_settings(
    slack_api_url: str, directory: Path, *, fast: bool, verbose: bool, port: int = 0
) -> Settings:
    """Settings for the stand-in, made up here: nothing is read from the environment. With a
    `port`, PUBLIC_URL is the app's own loopback address there (plain http, as config allows)."""
    public = {"PUBLIC_URL": f"http://127.0.0.1:{port}"} if port else {}
    return Settings.from_env(
        {
            "SLACK_BOT_TOKEN": f"xoxb-try-{secrets.token_hex(12)}",
            "SLACK_SIGNING_SECRET": secrets.token_hex(16),
            "SLACK_API_URL": slack_api_url,
            "PORT": str(port),
            **public,
            "DATABASE_URL": f"sqlite:///{directory / 'motion-bot.db'}",
            "POLL_INITIAL_SECONDS": "0.2" if fast else "1",
            "POLL_MAX_SECONDS": "0.4" if fast else "2",
            "LOG_LEVEL": "INFO" if verbose else "ERROR",
        }
    )


class Tryout:
    """One person's session: a command, then maybe a thread reply, each until its result."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args, self.out = args, out
        self.changes: asyncio.Queue[Change] = asyncio.Queue()
        self.sandbox: MotionSandbox | None = None  # the app's own, once it is built
        self.fetches_shown = 0
        self.step_end: dict[str, Any] | None = None  # the workflow step's end, once seen

    async def run(self) -> str | None:
        """Run the whole session; returns why it failed, or None when the last result is in."""
        loop = asyncio.get_running_loop()

        def heard(change: Change) -> None:  # on the stand-in's thread
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
                loop.call_soon_threadsafe(self.changes.put_nowait, change)

        with tempfile.TemporaryDirectory() as directory, SlackStandIn() as slack:
            settings = try_settings(
                slack.base_url,
                Path(directory),
                fast=self.args.fast,
                verbose=self.args.verbose,
                port=free_port(),
            )
            slack.bot_token = settings.slack_bot_token
            slack.observe(heard)
            logs.configure(
                settings.log_level, [settings.slack_bot_token, settings.slack_signing_secret]
            )
            bot = MotionBot.build(settings, sandbox_plan=FAST_PLAN if self.args.fast else PLAN)
            self.sandbox = bot.sandbox_thread.sandbox if bot.sandbox_thread else None
            if self.sandbox is not None and self.args.attachment is not None:
                # fetch attachments as Motion does (only then: an --attach link to the internet
                # would otherwise fail offline), proving PUBLIC_URL/files/ end to end
                self.sandbox.fetch_attachments = True
            try:
                await bot.start()
                async with httpx.AsyncClient(timeout=10) as http:
                    return await asyncio.wait_for(
                        self.session(slack, settings, http, f"http://127.0.0.1:{bot.port}"),
                        self.args.timeout,
                    )
            except TimeoutError:
                return f"no result within {self.args.timeout:g} s"
            finally:
                await bot.stop(timeout=5)

    async def session(
        self, slack: SlackStandIn, settings: Settings, http: httpx.AsyncClient, app: str
    ) -> str | None:
        names = {USER: USER_NAME, slack.bot_user_id: "motion", CHANNEL: CHANNEL_NAME}
        self.terminal = Terminal(self.out, names, time.monotonic())
        secret = settings.slack_signing_secret or ""
        self.terminal.say(f"#{CHANNEL_NAME} · a local stand-in for Slack, Motion in sandbox mode")
        if self.args.attachment is not None:
            failure = await self.mention(slack, http, app, secret, self.args.attachment)
            if failure:
                return failure
        elif self.args.workflow:
            failure = await self.workflow_step(slack, http, app, secret)
            if failure:
                return failure
        else:
            self.terminal.say(f"{USER_NAME}: /motion {self.args.prompt}")
            fields = slack.slash_command("/motion", self.args.prompt, channel=CHANNEL, user=USER)
            body = urlencode(fields)
            ack = await http.post(
                f"{app}/slack/events",
                content=body,
                headers=signed_headers(body, secret, FORM),
            )
            if ack.status_code != 200:
                return f"the app answered the command with HTTP {ack.status_code}"
            if ack.headers.get("content-type", "").startswith("application/json"):
                self.terminal.say("(only you can see this)", message_lines(ack.json(), names))
        card_ts, failure = await self.until_result(run=1)
        self.show_fetches()
        if self.args.workflow:
            failure = await self.until_step_end() or failure
        if failure or not self.args.followup:
            return failure
        event = slack.thread_reply(CHANNEL, self.args.followup, user=USER, thread_ts=card_ts)
        envelope = slack.event_callback(event)
        body = json.dumps(envelope)
        answer = await http.post(
            f"{app}/slack/events", content=body, headers=signed_headers(body, secret, JSON)
        )
        if answer.status_code != 200:
            return f"the app answered the thread reply with HTTP {answer.status_code}"
        failure = (await self.until_result(run=2))[1]
        self.show_fetches()
        return failure

    async def mention(
        self,
        slack: SlackStandIn,
        http: httpx.AsyncClient,
        app: str,
        secret: str,
        attachment: Attachment,
    ) -> str | None:
        """The prompt as a message that @mentions the app with the file, as a person sends it:
        Slack delivers the `app_mention` event and its `message` twin; returns why not, or None."""
        file_id = slack.add_file(
            title=attachment.name,
            mimetype=attachment.mimetype,
            content=attachment.content,
            user=USER,
            channel=CHANNEL,
        )
        text = f"<@{slack.bot_user_id}> {self.args.prompt}"
        mention, twin = slack.mention(CHANNEL, text, user=USER, file_ids=[file_id])
        while True:  # the message itself, then its file under it
            change = await self.changes.get()
            self.show(change)
            if change.kind == "posted" and change.message.get("ts") == mention["ts"]:
                break
        print(f"        {attachment.line()}", file=self.out, flush=True)
        for event in (mention, twin):
            body = json.dumps(slack.event_callback(event))
            answer = await http.post(
                f"{app}/slack/events",
                content=body,
                headers=signed_headers(body, secret, JSON),
            )
            if answer.status_code != 200:
                return f"the app answered the mention with HTTP {answer.status_code}"
        return None

    async def workflow_step(
        self, slack: SlackStandIn, http: httpx.AsyncClient, app: str, secret: str
    ) -> str | None:
        """A workflow reaches the app's step "Make a Motion video": Slack sends the app the
        `function_executed` event with the step's inputs; returns why not, or None."""
        inputs = {"prompt": self.args.prompt, "channel": CHANNEL, "requester": USER}
        self.terminal.say(
            "Workflow Builder: a workflow runs the step “Make a Motion video”",
            [f"{name} = {value}" for name, value in inputs.items()],
        )
        event = slack.workflow_step(inputs)
        body = json.dumps(slack.event_callback(event))
        answer = await http.post(
            f"{app}/slack/events", content=body, headers=signed_headers(body, secret, JSON)
        )
        if answer.status_code != 200:
            return f"the app answered function_executed with HTTP {answer.status_code}"
        return None

    async def until_step_end(self) -> str | None:
        """Print changes until the workflow step has ended (it may already have); why it
        failed, or None when it completed."""
        while self.step_end is None:
            self.show(await self.changes.get())
        if self.step_end.get("state") != "completed":
            return f"the workflow step failed: {self.step_end.get('error')}"
        return None

    def show(self, change: Change) -> None:
        """Print a change; a workflow step's end is also kept (the session waits for it)."""
        if change.kind == "step_ended":
            self.step_end = change.message
        self.terminal.show(change)

    def show_fetches(self) -> None:
        """What Motion (the sandbox) fetched through PUBLIC_URL/files/: not shown in Slack, but
        the proof that a file travelled Slack → app → Motion."""
        fetches = list(self.sandbox.fetches) if self.sandbox is not None else []
        name = self.args.attachment.name if self.args.attachment else "a file"
        for fetch in fetches[self.fetches_shown :]:  # (appended on the sandbox's thread)
            self.terminal.say(
                f"(behind the scenes) Motion fetched {name} from {fetch.url[:60]}…: "
                f"{fetch.status}, {fetch.content_type}, {fetch.size} bytes"
            )
        self.fetches_shown = len(fetches)

    async def until_result(self, *, run: int) -> tuple[str, str | None]:
        """Print changes until run `run`'s result is posted (then a moment more): (the thread,
        why not); a mention's card is a reply, so its thread is the mention's."""
        card_ts, failure, done = "", None, False
        while not done:
            change = await self.changes.get()
            self.show(change)
            message, kind = change.message, kind_of(change.message)
            run_of = ((message.get("metadata") or {}).get("event_payload") or {}).get("run")
            if change.kind == "posted" and kind == "card":
                card_ts = message.get("thread_ts") or message["ts"]
            elif change.kind == "posted" and kind == "result" and run_of in (run, None):
                done = True
            elif change.kind == "posted" and kind in FAILED_KINDS:
                failure = " ".join(message_lines(message, self.terminal.names)[:1])
                done = True
        with contextlib.suppress(TimeoutError):  # the card's last edit, the reactions
            while True:
                self.show(await asyncio.wait_for(self.changes.get(), 1.0))
        return card_ts, failure


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot try",
        description="Try the app with no Slack workspace, no Motion key and no configuration.",
    )
    parser.add_argument("prompt", nargs="?", default=DEFAULT_PROMPT, help="what /motion gets")
    parser.add_argument("--followup", metavar="TEXT", help="then reply in the job's thread")
    attach = parser.add_mutually_exclusive_group()
    attach.add_argument(
        "--file", metavar="PATH", type=Path, help="attach this file (the prompt is then @motion …)"
    )
    attach.add_argument(
        "--with-file", action="store_true", help="attach a built-in sample image (48×48 PNG)"
    )
    attach.add_argument(
        "--workflow",
        action="store_true",
        help="start it as a Workflow Builder step (Make a Motion video) and show its completion",
    )
    attach.add_argument(
        "--workspaces",
        action="store_true",
        help="many-workspaces mode: install the app in two workspaces from its install page, "
        "an admin saves a Motion key in one from Settings, then a job in each",
    )
    parser.add_argument("--fast", action="store_true", help="sandbox runs of about a second")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds (default 90)")
    parser.add_argument("--verbose", action="store_true", help="show the app's log")
    args = parser.parse_args(argv)
    if args.workspaces and args.followup:
        parser.error("--followup is not part of --workspaces")
    args.attachment = None
    if args.file is not None:
        try:
            args.attachment = Attachment.from_path(args.file)
        except OSError as exc:
            parser.error(f"--file {args.file}: {exc.strerror.lower() if exc.strerror else exc}")
    elif args.with_file:
        args.attachment = sample_image()
    return args


def main(argv: list[str], out: TextIO = sys.stdout) -> int:
    args = parse_args(argv)
    logging.getLogger().setLevel(logging.INFO if args.verbose else logging.ERROR)
    run = Tryout(args, out).run
    if args.workspaces:
        from bot.local.tryout_workspaces import WorkspacesTryout  # it builds on this module

        run = WorkspacesTryout(args, out).run

    async def interruptible() -> str | None:
        task = asyncio.ensure_future(run())
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGINT, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            return "interrupted"

    reason = asyncio.run(interruptible())
    if reason is not None:
        print(f"motion-bot try: {reason}", file=sys.stderr)
        return 130 if reason == "interrupted" else 1
    return 0
