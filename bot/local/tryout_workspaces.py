"""`python -m bot try --workspaces`: many-workspaces mode ("Add to Slack") in a terminal, with
nothing configured.

The real app runs as a deployment serving many workspaces does (SLACK_CLIENT_ID and
SLACK_CLIENT_SECRET of the stand-in's app, SECRET_KEYS made up for the run, PUBLIC_URL its own
loopback address, no MOTION_API_KEY), against a stand-in for two Slack workspaces, Acme and
Globex. This module plays the people, as `bot.local.tryout` does for one workspace:

1. in each workspace someone opens PUBLIC_URL/slack/install in a browser (httpx), approves on
   Slack's approve page (the stand-in's) and lands back on the app's page: installed;
2. in Acme, an admin opens App Home, presses Settings and saves a Motion key in the form. The
   key works with "Motion": a second sandbox that accepts only that key, at MOTION_API_URL, as
   the real Motion would. Globex sets no key, so it stays in sandbox mode (the app's own
   emulator);
3. `/motion` in each workspace, the channels printed as they change, until both results are in:
   Acme's from "Motion" with Acme's key, Globex's marked as sandbox.

Nothing secret is printed: no token, refresh token or key (only a key's last 4 characters, as
the form shows it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar
from urllib.parse import urlencode

import httpx

from bot import logs
from bot.app import MotionBot
from bot.config import Settings
from bot.local.model import Change
from bot.local.oauth import CLIENT_ID, CLIENT_SECRET
from bot.local.payloads import FORM, JSON, form_body, shown_answers, signed_headers
from bot.local.server import SlackStandIn
from bot.local.tryout import (
    CHANNEL,
    CHANNEL_NAME,
    FAILED_KINDS,
    FAST_PLAN,
    PLAN,
    Terminal,
    free_port,
    kind_of,
    message_lines,
)
from bot.local.workspaces import HostedWorkspace
from bot.sandbox import API_KEY_PREFIX, MotionSandbox, SandboxThread
from bot.slack.ids import ActionId, BlockId
from bot.workspaces.secrets import new_key

WAIT_S = 10.0  # for one thing the app does in reply to one request (a Home tab, a form)
_TAGS = re.compile(r"<[^>]+>")
_BREAK = re.compile(r"</(?:h[1-6]|p|div|li)>|<br\s*/?>", re.IGNORECASE)
_IMAGE = re.compile(r'<img[^>]*\balt="([^"]*)"[^>]*>')
_INSTALL_LINK = re.compile(r'href="([^"]+/oauth/v2/authorize[^"]*)"')


@dataclass(frozen=True)
class Person:
    user_id: str
    name: str
    real_name: str


@dataclass
class Place:
    """One workspace of the walk: who installs it, who runs a job there, and how it prints."""

    workspace: HostedWorkspace
    installer: Person
    requester: Person
    terminal: Terminal
    result: bool = False

    @property
    def name(self) -> str:
        return self.workspace.name


def workspaces_settings(
    slack_api_url: str, motion_api_url: str, directory: Path, *, port: int, fast: bool,
    verbose: bool,
) -> Settings:  # fmt: skip
    """A deployment serving many workspaces, made up here: the stand-in app's client id and
    secret, a new SECRET_KEYS, PUBLIC_URL on loopback, no MOTION_API_KEY (sandbox until a
    workspace sets a key; a key's runs go to `motion_api_url`). Nothing is read from the
    environment."""
    return Settings.from_env(
        {
            "SLACK_CLIENT_ID": CLIENT_ID,
            "SLACK_CLIENT_SECRET": CLIENT_SECRET,
            "SLACK_SIGNING_SECRET": secrets.token_hex(16),
            "SLACK_API_URL": slack_api_url,
            "SECRET_KEYS": new_key(),
            "PORT": str(port),
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
            "MOTION_API_URL": motion_api_url,
            "DATABASE_URL": f"sqlite:///{directory / 'motion-bot.db'}",
            "POLL_INITIAL_SECONDS": "0.2" if fast else "1",
            "POLL_MAX_SECONDS": "0.4" if fast else "2",
            "LOG_LEVEL": "INFO" if verbose else "ERROR",
            # No MP4 in the threads: the app fetches a video only over https (or from its own
            # sandbox), and this "Motion" is plain http on loopback; the links work in both.
            "UPLOAD_MAX_MB": "0",
        }
    )


def page_text(page: str) -> list[str]:
    """A web page's words as a browser shows them, a line per heading or paragraph (tags
    dropped, an image as its alt text, entities decoded)."""
    body = page.split("<body", 1)[-1].split(">", 1)[-1]
    words = _TAGS.sub(" ", _BREAK.sub("\n", _IMAGE.sub(r" [ \1 ] ", body)))
    lines = (" ".join(line.split()) for line in html.unescape(words).splitlines())
    return [line for line in lines if line]


def ack_lines(ack: httpx.Response, names: dict[str, str]) -> list[str]:
    """What the person who sent a command sees of the app's answer to it: a message (JSON), or
    its text alone (Bolt answers a bare text as text/plain)."""
    if ack.headers.get("content-type", "").startswith("application/json"):
        return message_lines(ack.json(), names)
    return ack.text.splitlines()


def form_labels(view: dict[str, Any]) -> list[str]:
    """The form's fields a person can change, one line each."""
    lines = []
    for block in view.get("blocks") or []:
        if block.get("type") == "input":
            lines.append(f"▸ {block['label']['text']}")
    return lines


T = TypeVar("T")


async def until(probe: Callable[[], T | None], what: str, timeout: float = WAIT_S) -> T:
    """`probe()` once it holds something; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while (found := probe()) is None or found == []:
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)
    return found


class WorkspacesTryout:
    """The walk through many-workspaces mode (see the module docstring)."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args, self.out = args, out
        self.changes: asyncio.Queue[tuple[Place, Change]] = asyncio.Queue()
        self.motion_key = API_KEY_PREFIX + secrets.token_hex(16)  # Acme's, made up for the run
        self.started = time.monotonic()
        self.terminal = Terminal(out, {}, self.started)  # for lines about no one workspace

    async def run(self) -> str | None:
        """Run the whole walk; returns why it failed, or None when both results are in."""
        plan = FAST_PLAN if self.args.fast else PLAN
        motion = MotionSandbox(default_plan=plan, api_keys={self.motion_key})
        motion_thread = SandboxThread(motion)  # "the real Motion": Acme's key, and only it
        with tempfile.TemporaryDirectory() as directory, SlackStandIn() as slack:
            motion_url = motion_thread.start()
            try:
                settings = workspaces_settings(
                    slack.base_url, motion_url, Path(directory), port=free_port(),
                    fast=self.args.fast, verbose=self.args.verbose,
                )  # fmt: skip
                slack.oauth.token_rotation = True  # as a distributed app's tokens rotate
                places = self.places(slack)
                logs.configure(
                    settings.log_level,
                    [settings.slack_signing_secret, CLIENT_SECRET, *settings.secret_keys,
                     self.motion_key],
                )  # fmt: skip
                bot = MotionBot.build(settings, sandbox_plan=plan)
                try:
                    await bot.start()
                    walk = Walk(self, slack, bot, motion, places)
                    return await asyncio.wait_for(walk.run(), self.args.timeout)
                except TimeoutError as exc:
                    waited = f" (waiting for {exc})" if str(exc) else ""
                    return f"no result within {self.args.timeout:g} s{waited}"
                finally:
                    await bot.stop(timeout=5)
            finally:
                motion_thread.stop()

    def places(self, slack: SlackStandIn) -> tuple[Place, Place]:
        """Acme (the stand-in's own workspace) and Globex, each with an admin who installs the
        app, each printed under its name as it changes."""
        slack.name = "Acme"
        globex = slack.add_workspace("T0002", name="Globex")
        loop = asyncio.get_running_loop()
        found = []
        for workspace, admin, requester in (
            (slack, Person("U0DANA", "dana", "Dana Diaz"), Person("U0ALICE", "alice", "")),
            (globex, Person("U0ERIN", "erin", "Erin Evans"), Person("U0BOB", "bob", "")),
        ):
            workspace.add_user(admin.user_id, name=admin.name, real_name=admin.real_name,
                               admin=True)  # fmt: skip
            names = {admin.user_id: admin.name, requester.user_id: requester.name,
                     workspace.bot_user_id: "motion", CHANNEL: CHANNEL_NAME}  # fmt: skip
            terminal = Terminal(self.out, names, self.started, where=f"{workspace.name} · ")
            place = Place(workspace, admin, requester, terminal)
            found.append(place)

            def heard(change: Change, place: Place = place) -> None:  # the stand-in's thread
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody listens
                    loop.call_soon_threadsafe(self.changes.put_nowait, (place, change))

            workspace.observe(heard)
        return found[0], found[1]


@dataclass
class Walk:
    """The steps of the walk, with what they share: the stand-in, the app, "the real Motion"."""

    tryout: WorkspacesTryout
    slack: SlackStandIn
    bot: MotionBot
    motion: MotionSandbox
    places: tuple[Place, Place]

    @property
    def app(self) -> str:
        return self.bot.settings.public_url or ""

    async def run(self) -> str | None:
        self.tryout.terminal.say(
            "Two Slack workspaces, Acme and Globex, on a local stand-in for Slack; one "
            f"deployment serves both at {self.app} (many-workspaces mode: nothing installed "
            "yet, no Motion key anywhere)"
        )
        async with httpx.AsyncClient(timeout=10) as http:
            for place in self.places:
                failure = await self.install(place)
                if failure:
                    return failure
            failure = await self.set_key(http, self.places[0])  # Acme
            if failure:
                return failure
            return await self.jobs(http)

    async def post(self, http: httpx.AsyncClient, body: str, content_type: str) -> httpx.Response:
        """A request from Slack to the app, signed as Slack signs it."""
        secret = self.bot.settings.slack_signing_secret or ""
        headers = signed_headers(body, secret, content_type)
        return await http.post(f"{self.app}/slack/events", content=body, headers=headers)

    # -- 1. the install --------------------------------------------------------------------------

    async def install(self, place: Place) -> str | None:
        """Someone installs the app from its page: the page, Slack's approve page, the redirect
        back; in a browser of its own (the install's state lives in its cookie)."""
        who, say = place.installer, place.terminal.say
        self.slack.oauth.next_approval(place.workspace.team_id, who.user_id)
        async with httpx.AsyncClient(timeout=10) as browser:
            page = await browser.get(f"{self.app}/slack/install")
            link = _INSTALL_LINK.search(page.text)
            if page.status_code != 200 or link is None:
                return f"the install page answered HTTP {page.status_code} without a link"
            say(f"{who.name} opens {self.app}/slack/install in a browser:", page_text(page.text))
            say(f"{who.name} presses [ Add to Slack ]")
            approve = await browser.get(html.unescape(link.group(1)))
            back = approve.headers.get("location", "")
            if approve.status_code != 302 or not back:
                return f"Slack's approve page answered HTTP {approve.status_code}"
            say(
                f"Slack's approve page: {who.name} allows Motion in {place.name}; the browser "
                f"goes back to {back.split('?', 1)[0]}"
            )
            done = await browser.get(back)
        if done.status_code != 200:
            return f"the app's page after the install answered HTTP {done.status_code}"
        say("the browser shows the app's page:", page_text(done.text))
        say(f"{place.name} installed Motion")
        return None

    # -- 2. Settings in Slack --------------------------------------------------------------------

    async def set_key(self, http: httpx.AsyncClient, place: Place) -> str | None:
        """An admin opens App Home, presses Settings and saves a Motion key in the form."""
        workspace, admin, say = place.workspace, place.installer.user_id, place.terminal.say
        name = place.installer.name
        await self.post(http, json.dumps(workspace.home_opened(user=admin)), JSON)
        home = await until(lambda: self.home_with_settings(workspace, admin), f"{name}'s Home tab")
        say(f"{name} (a workspace admin) opens the app's Home tab:",
            message_lines(home, place.terminal.names))  # fmt: skip
        before = len(workspace.views(admin))
        press = workspace.home_button(ActionId.HOME_SETTINGS, user=admin)
        await self.post(http, form_body(press), FORM)
        [form] = await until(lambda: workspace.views(admin)[before:], "the Settings form")
        say(f"{name} presses [ Settings ]: the form “{form['title']['text']}” opens:",
            form_labels(form))  # fmt: skip
        key = self.tryout.motion_key
        answers = {**shown_answers(form), str(BlockId.SETTING_KEY): key}
        say(f"{name} pastes a Motion key (motion_…{key[-4:]}) and presses Save")
        submission = workspace.view_submission(form, answers, user=admin)
        answer = await self.post(http, form_body(submission), FORM)
        refused = answer.json() if answer.content else {}
        if answer.status_code != 200 or refused:
            errors = refused.get("errors") or {"": f"HTTP {answer.status_code}"}
            return "the Settings form was refused: " + "; ".join(errors.values())
        say("the form closes: the app tried the key with Motion (it works) and saved it, "
            "sealed with SECRET_KEYS; Acme's videos now use it")  # fmt: skip
        return None

    @staticmethod
    def home_with_settings(workspace: HostedWorkspace, user: str) -> dict[str, Any] | None:
        home = workspace.home(user)
        return home if home and ActionId.HOME_SETTINGS in json.dumps(home) else None

    # -- 3. a job in each workspace --------------------------------------------------------------

    async def jobs(self, http: httpx.AsyncClient) -> str | None:
        """`/motion` in each workspace; the channels as they change until both results are in."""
        prompt = self.tryout.args.prompt
        for place in self.places:
            who = place.requester
            place.terminal.say(f"#{CHANNEL_NAME} · {who.name}: /motion {prompt}")
            fields = place.workspace.slash_command(
                "/motion", prompt, channel=CHANNEL, user=who.user_id
            )
            ack = await self.post(http, urlencode(fields), FORM)
            if ack.status_code != 200:
                return f"the app answered the command in {place.name} with HTTP {ack.status_code}"
            lines = ack_lines(ack, place.terminal.names)
            if lines:
                place.terminal.say("(only you can see this)", lines)
        while not all(place.result for place in self.places):
            place, change = await self.tryout.changes.get()
            place.terminal.show(change)
            kind = kind_of(change.message)
            if change.kind == "posted" and kind == "result":
                place.result = True
            elif change.kind == "posted" and kind in FAILED_KINDS:
                words = message_lines(change.message, place.terminal.names)[:1]
                return f"in {place.name}: {' '.join(words)}"
        with contextlib.suppress(TimeoutError):  # the cards' last edits, the reactions
            while True:
                place, change = await asyncio.wait_for(self.tryout.changes.get(), 1.0)
                place.terminal.show(change)
        return self.behind_the_scenes()

    def behind_the_scenes(self) -> str | None:
        """Which Motion each job went to, as the app recorded it: Acme's to MOTION_API_URL with
        Acme's key, Globex's to the app's own sandbox."""
        acme, globex = self.places
        keyed = self.bot.store.recent_jobs(acme.workspace.team_id, acme.requester.user_id)
        sandboxed = self.bot.store.recent_jobs(globex.workspace.team_id, globex.requester.user_id)
        if not keyed or not sandboxed:
            return "a job is missing from the app's database"
        key = self.tryout.motion_key
        if keyed[0].sandbox or self.motion.owned_job(keyed[0].motion_job_id, key) is None:
            return "Acme's job did not go to Motion with Acme's key"
        if not sandboxed[0].sandbox:
            return "Globex's job was not in sandbox mode"
        self.tryout.terminal.say(
            "(behind the scenes) Acme's job went to Motion (MOTION_API_URL) with Acme's own key; "
            "Globex set no key, so its job ran in the sandbox, and its messages say so"
        )
        return None
