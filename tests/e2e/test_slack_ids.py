"""Every button, shortcut and form the app can build has a listener, and every listener waits
for something the app builds.

The fallback listener acknowledges whatever nothing else takes (so Slack never shows an error),
which also means a misspelt id fails silently: the button does nothing. These tests build every
message and view the app can build, collect the ids on them, and compare them with the ids the
app registers (`bot.listeners.INTERACTIONS`, the table `register` adds to Bolt), with the
manifest's shortcut, and with the running app's own routing over real sockets.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.command_line import Field
from bot.listeners import INTERACTIONS, Kind
from bot.motion import ASPECTS, DURATIONS, MotionRequest, Source
from bot.sandbox import generated_sources
from bot.slack import messages
from bot.slack.ids import INPUT_ACTION, NEW_VIDEO_SHORTCUT, ActionId, BlockId, CallbackId
from bot.slack.messages import HomeJob, JobListing, Message, PersonUsage, RunLine, UsageView
from bot.slack.messages.forms import file_input_block, form_previewed
from bot.slack.messages.notices import stop_button
from bot.slack.messages.results import fresh_link_button
from tests.support.harness import Harness

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "<!channel> <@U123> & <http://evil.example|good>"
DOWNLOAD = "https://cdn.example.com/jobs/abc/run-1.mp4?sig=abc"
USAGE = UsageView(
    now=1_763_000_000, today=2, month=5, workspace_month=40, per_user_per_day=3, per_month=100,
    day_resets_at=1_763_050_000, month_resets_at=1_764_547_200,
)  # fmt: skip
SOURCES = [Source.parse(s) for s in generated_sources("0f3c1d2e-aaaa", 1, 3)]
REQUEST = MotionRequest("a teaser", "https://youtu.be/x", ("https://a.example/logo.png",), "9:16")

Built = Message | list[Message] | dict[str, Any]

# Every builder in bot/slack/messages that returns a message or a view (or a piece of one that
# carries an id), with arguments that make it show every button it can show.
BUILDERS: dict[str, Callable[[], Built]] = {
    "job_card": lambda: messages.job_card(
        requester="U1",
        prompt=HOSTILE,
        status="queued",
        sandbox=False,
        stop_job_id=7,
        runs=[RunLine(1, "done", "ok", DOWNLOAD), RunLine(2, "running", "going")],
    ),
    "job_card_stopped": lambda: messages.job_card(
        requester="U1", prompt=HOSTILE, status="stopped", runs=[], sandbox=False, stopped_by="U2"
    ),
    "result_messages": lambda: messages.result_messages(
        requester="U1",
        run_number=1,
        download_url=DOWNLOAD,
        sources=SOURCES,
        expires_at="soon",
        sandbox=False,
        run_id=41,
        fresh_link=True,
    ),
    "notify_message": lambda: messages.notify_message(
        requester="U1", prompt=HOSTILE, permalink=None, run_number=1, sandbox=False, private=False
    ),
    "fresh_link": lambda: messages.fresh_link(DOWNLOAD, 1, sandbox=False),
    "fresh_link_button": lambda: fresh_link_button(41),
    "job_failed": lambda: messages.job_failed(run_number=1, error=HOSTILE, sandbox=False),
    "render_failed": lambda: messages.render_failed(run_number=1, sandbox=False),
    "insufficient_credits": lambda: messages.insufficient_credits(
        balance=0, minimum=300, message=None, followup=False, sandbox=False
    ),
    "awaiting_input": lambda: messages.awaiting_input(run_number=1, sandbox=False),
    "outcome_unknown": lambda: messages.outcome_unknown(
        run_number=1, followup=False, run_id=7, sandbox=False
    ),
    "lost_answer_found": lambda: messages.lost_answer_found(run_number=1, sandbox=False),
    "bad_request": lambda: messages.bad_request(
        run_number=1, details=[HOSTILE], message=HOSTILE, sandbox=False
    ),
    "auth_failed": lambda: messages.auth_failed(sandbox=False),
    "job_not_found": lambda: messages.job_not_found(sandbox=False),
    "motion_server_error": lambda: messages.motion_server_error(
        run_number=1, error=HOSTILE, run_id=7, sandbox=False
    ),
    "motion_unreachable": lambda: messages.motion_unreachable(
        run_number=1, error=HOSTILE, run_id=7, sandbox=False
    ),
    "followup_on_failed": lambda: messages.followup_on_failed(sandbox=False, value="7"),
    "nothing_to_refine": lambda: messages.nothing_to_refine(sandbox=False),
    "new_job_link": lambda: messages.new_job_link(permalink=None, sandbox=False),
    "mention_hint": lambda: messages.mention_hint(False),
    "dm_hint": lambda: messages.dm_hint(False),
    "dms_off": lambda: messages.dms_off(False),
    "database_away": lambda: messages.database_away(False),
    "stop_button": lambda: stop_button(7),
    "stop_not_allowed": lambda: messages.stop_not_allowed(requester="U1", sandbox=False),
    "stuck_notice": lambda: messages.stuck_notice(
        run_number=1, elapsed=700, period=600, run_id=4, notice=1, job_id=7, sandbox=False
    ),
    "stuck_answered": lambda: messages.stuck_answered(
        run_number=1, elapsed=700, user_id="U2", kept_waiting=True, period=600, sandbox=False
    ),
    "tracking_stopped": lambda: messages.tracking_stopped(user_id="U2", dropped=1, sandbox=False),
    "usage_error": lambda: messages.usage_error(HOSTILE, False),
    "help_message": lambda: messages.help_message(False),
    "invite_hint": lambda: messages.invite_hint(channel_is_dm=False, sandbox=False),
    "already_done": lambda: messages.already_done(HOSTILE, False),
    "other_workspace": lambda: messages.other_workspace(False),
    "accepted": lambda: messages.accepted(False),
    "job_list": lambda: messages.job_list(
        [JobListing(HOSTILE, "done", 2, "https://x.slack.com/archives/C1/p1", "2026-04-28")],
        False,
        USAGE,
    ),
    "channel_not_allowed": lambda: messages.channel_not_allowed(allowed=["C1"], sandbox=False),
    "limit_reached": lambda: messages.limit_reached(
        scope="user_day", used=3, limit=3, view=USAGE, sandbox=False
    ),
    "usage_report": lambda: messages.usage_report(
        USAGE, everyone=[PersonUsage("U1", 2, 5)], sandbox=False
    ),
    "run_preview": lambda: messages.run_preview(
        kind="new_job", request=REQUEST, token="tok", view=USAGE, sandbox=False
    ),
    "preview_answer": lambda: messages.preview_answer(messages.PREVIEW_GONE, False),
    "new_video_form": lambda: messages.new_video_form(
        channel_id="C1", aspects=ASPECTS, durations=DURATIONS, sandbox=False
    ),
    "refine_form": lambda: messages.refine_form(
        job_id=3, run_number=2, aspects=ASPECTS, durations=DURATIONS, sandbox=False
    ),
    "file_input_block": lambda: file_input_block(),
    "refine_queued": lambda: messages.refine_queued(sandbox=False),
    "variation_started": lambda: messages.variation_started(sandbox=False),
    "form_previewed": lambda: form_previewed(sandbox=False),
    "home_view": lambda: messages.home_view(
        [HomeJob(HOSTILE, "done", 1, None, DOWNLOAD, "2026-04-28")],
        USAGE,
        sandbox=False,
        settings=True,
    ),
    "settings_form": lambda: messages.settings_form(
        messages.SettingsFormView(
            team_id="T1",
            key=messages.KeyState.STORED,
            key_last4="abcd",
            values={"MOTION_ALLOWED_CHANNELS": ("C0VIDEOS",), "MOTION_CONFIRM": True},
            locked=frozenset({"MOTION_RUNS_PER_MONTH"}),
            changes=[messages.ChangeShown("MOTION_CONFIRM", "U1", 1_763_000_000, "false", "true")],
        )
    ),
}
# The generic pieces (`button`, `section`…) take their ids from the builders above.
GENERIC_MODULES = {"bot.slack.messages.base"}
BUILT_TYPES = {"Message", "list[Message]", "dict[str, Any]"}


def payloads(value: Built) -> list[Any]:
    """What is sent to Slack: a message's blocks, or the view / block / element itself."""
    if isinstance(value, Message):
        return [value.blocks]
    if isinstance(value, list):
        return [m.blocks for m in value]
    return [value]


def interactive_ids(value: Any) -> tuple[set[str], set[str]]:
    """(action_ids that Slack reports when pressed, callback_ids of views), walking Block Kit.
    An input's element sends nothing until its view is submitted (unless `dispatch_action`)."""
    actions: set[str] = set()
    callbacks: set[str] = set()

    def walk(node: Any, in_input: bool) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, in_input)
        elif isinstance(node, dict):
            if node.get("type") == "modal":
                callbacks.add(node["callback_id"])
            if "action_id" in node and not in_input:
                actions.add(node["action_id"])
            quiet_input = node.get("type") == "input" and not node.get("dispatch_action")
            for item in node.values():
                walk(item, in_input or quiet_input)

    walk(value, False)
    return actions, callbacks


def built_ids() -> dict[str, tuple[set[str], set[str]]]:
    """For each builder, the ids on what it builds."""
    found = {}
    for name, build in BUILDERS.items():
        actions, callbacks = interactive_ids(payloads(build()))
        found[name] = (actions, callbacks)
    return found


def built_actions() -> dict[str, set[str]]:
    """Each action id the app builds, and which builders put it on something."""
    where: dict[str, set[str]] = {}
    for name, (actions, _) in built_ids().items():
        for action in actions:
            where.setdefault(action, set()).add(name)
    return where


def built_callbacks() -> set[str]:
    return {c for _, callbacks in built_ids().values() for c in callbacks}


def listened(kind: Kind) -> list[str]:
    return [i.id for i in INTERACTIONS if i.kind is kind]


def test_every_builder_in_the_messages_package_is_built_here() -> None:
    """A builder added later is checked too: it must be added to BUILDERS above."""
    package = importlib.import_module("bot.slack.messages")
    missing = []
    for info in pkgutil.iter_modules(package.__path__, "bot.slack.messages."):
        if info.name in GENERIC_MODULES:
            continue
        module = importlib.import_module(info.name)
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != info.name or name.startswith("_"):
                continue
            returns = str(inspect.signature(function).return_annotation)
            if returns in BUILT_TYPES and name not in BUILDERS:
                missing.append(f"{info.name}.{name}")
    assert missing == []


def test_every_button_the_app_builds_has_a_listener() -> None:
    unanswered = {
        action: sorted(builders)
        for action, builders in built_actions().items()
        if action not in listened(Kind.ACTION)
    }
    assert unanswered == {}, "built on these, but no listener waits for them"


def test_every_action_listener_waits_for_a_button_the_app_builds() -> None:
    never_built = set(listened(Kind.ACTION)) - set(built_actions())
    assert never_built == set()


def test_every_form_the_app_opens_has_a_submission_listener_and_no_other() -> None:
    assert sorted(built_callbacks()) == sorted(listened(Kind.VIEW_SUBMISSION))


def test_each_id_has_one_listener() -> None:
    keys = [(i.kind, i.id) for i in INTERACTIONS]
    assert len(keys) == len(set(keys))


def test_the_id_enums_hold_exactly_the_ids_that_are_built() -> None:
    assert {str(a) for a in ActionId} == set(built_actions())
    assert {str(c) for c in CallbackId} == built_callbacks()


def test_the_shortcut_listener_and_the_manifest_name_the_same_callback_id() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    declared = [s["callback_id"] for s in manifest["features"]["shortcuts"]]
    assert declared == [NEW_VIDEO_SHORTCUT]
    assert listened(Kind.SHORTCUT) == [NEW_VIDEO_SHORTCUT]


def input_blocks(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}


def test_the_forms_fields_are_the_block_ids_their_submissions_read() -> None:
    new_form = input_blocks(messages.new_video_form(
        channel_id=None, aspects=ASPECTS, durations=DURATIONS, sandbox=True
    ))  # fmt: skip
    refine = input_blocks(messages.refine_form(
        job_id=1, run_number=1, aspects=ASPECTS, durations=DURATIONS, sandbox=True
    ))  # fmt: skip
    fields = {BlockId.PROMPT, BlockId.STYLE, BlockId.ASPECT, BlockId.DURATION}
    assert set(new_form) == fields | {BlockId.FILES, BlockId.CHANNEL}
    assert set(refine) == fields
    for block in [*new_form.values(), *refine.values()]:
        assert block["element"]["action_id"] == INPUT_ACTION
    # A problem `request_problems` finds is shown on the block named after its field.
    assert {str(f) for f in Field} - {str(b) for b in BlockId} == {str(Field.ATTACH)}
    home = messages.home_view([], USAGE, sandbox=False)
    assert [b["block_id"] for b in home["blocks"] if b["type"] == "actions"] == [
        BlockId.HOME_ACTIONS
    ]


def test_ids_in_payloads_are_plain_strings() -> None:
    """What is stored and sent is JSON; a StrEnum member would read the same, but a plain
    str keeps the payload exactly what it was before the ids had names."""

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for key, item in node.items():
                if key in ("action_id", "block_id", "callback_id"):
                    assert type(item) is str, (key, item)
                walk(item)

    for build in BUILDERS.values():
        walk(payloads(build()))


# Where the product builds or listens for ids; the Slack stand-in and the sandbox are not it.
PRODUCT_CODE = ("bot/slack", "bot/listeners", "bot/jobs", "bot/app.py")
ID_KEYS = {"action_id", "callback_id", "block_id"}
LISTENER_DECORATORS = {"action", "shortcut", "view", "view_submission", "view_closed", "options"}


def id_literals(source: str, where: str) -> list[str]:
    """String literals written where an id goes: as a Block Kit id key's value, a button's
    action id, or a Bolt listener's id."""
    found = []
    for node in ast.walk(ast.parse(source)):
        literal: ast.expr | None = None
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value in ID_KEYS:
                    literal = value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in LISTENER_DECORATORS and node.args:
                literal = node.args[0]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "button"
            and len(node.args) > 1
        ):
            literal = node.args[1]
        if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
            found.append(f"{where}:{node.lineno}: {literal.value!r}")
    return found


def test_no_id_is_written_as_a_literal_outside_ids_py() -> None:
    files = []
    for place in PRODUCT_CODE:
        path = ROOT / place
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    assert len(files) > 20
    literals = [
        hit
        for f in files
        if f.name != "ids.py"
        for hit in id_literals(f.read_text(), str(f.relative_to(ROOT)))
    ]
    assert literals == []


def test_the_literal_finder_finds_each_kind_of_literal_id() -> None:
    sample = (
        'app.action("retry_runn")(retry_run)\n'
        'app.view_submission("new_form")(submit)\n'
        'button("Go", "go_button", value="1")\n'
        'block = {"type": "actions", "block_id": "home", "elements": []}\n'
        "app.action(ActionId.RETRY_RUN)(retry_run)\n"
    )
    assert sorted(id_literals(sample, "sample")) == [
        "sample:1: 'retry_runn'", "sample:2: 'new_form'", "sample:3: 'go_button'",
        "sample:4: 'home'",
    ]  # fmt: skip


async def test_every_id_the_app_builds_reaches_its_own_listener_in_the_running_app(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Through Bolt's own matching over real sockets: each built button, the shortcut and each
    form reach a listener of the app, never the fallback; the values name nothing, so each
    listener only says it is gone. A misspelt id, the control, does reach the fallback."""
    caplog.set_level(logging.INFO)
    await harness.start()
    for action in sorted(built_actions()):
        response = await harness.action(action, "0")
        assert response.status_code == 200, (action, response.text)
    assert (await harness.shortcut(NEW_VIDEO_SHORTCUT)).status_code == 200
    for name in ("new_video_form", "refine_form"):
        view = BUILDERS[name]()
        assert isinstance(view, dict)
        response = await harness.submit_view({**view, "id": f"V-{name}"}, {})
        assert response.status_code == 200, (name, response.text)
    await harness.bot.service.drain_background(5)

    def fallback_records() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "bot.listeners.fallback"]

    assert fallback_records() == []
    response = await harness.action("retry_runn", "0")
    assert response.status_code == 200
    assert fallback_records() == ["acknowledged a block_actions the app does not handle"]
