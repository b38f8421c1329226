"""Each workspace's settings apply to its own work: the service asks its settings source with the
job's or the request's team_id, never one set of values for all. Listener callbacks are called
as Bolt would call them, with the real service over a real store; then Settings in Slack end to
end (App Home's Settings, the form, the Motion key per workspace, two instances)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_bolt.async_app import AsyncBoltContext

from bot.app import MotionBot
from bot.jobs import JobService, SpendPolicy, WorkspaceSettings
from bot.listeners import commands, events
from bot.listeners.context import SERVICE_KEY
from bot.local.payloads import FORM, shown_answers
from bot.motion import MotionClient
from bot.sandbox import JobPlan
from bot.schedule import PollSchedule
from bot.slack import messages
from bot.slack.ids import ActionId, BlockId
from bot.slack.messages import SANDBOX_NOTE
from bot.slack.out import SlackOut, make_client
from bot.store import JobState, RunKind, Store
from bot.workspaces.secrets import new_key
from tests.e2e.test_e2e_spend import ack_text
from tests.support.e2e import buttons, card_text, results, run_command, settle
from tests.support.harness import BOT_TOKEN, MOTION_KEY, Harness, until
from tests.support.slack import SlackDouble

NOW = 1_763_000_000.0
STRICT, RELAXED = "T0STRICT", "T0RELAXED"


@dataclass(frozen=True)
class ByTeam:
    """Settings kept per workspace, as an installation store would keep them."""

    teams: dict[str, WorkspaceSettings] = field(default_factory=dict)

    def for_team(self, team_id: str) -> WorkspaceSettings:
        return self.teams.get(team_id, WorkspaceSettings())

    def sandbox_of(self, team_id: str) -> bool:
        return self.for_team(team_id).sandbox


class Acks:
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def __call__(self, **kwargs: object) -> None:
        self.texts.append(str(kwargs.get("text", "")))


@pytest.fixture
async def service(database_url: str, slack: SlackDouble) -> AsyncIterator[JobService]:
    strict = WorkspaceSettings(
        followup_requires_mention=True,
        spend=SpendPolicy(allowed_channels=("C0VIDEOS",), admins=frozenset({"U0ADMIN"})),
    )
    relaxed = WorkspaceSettings(spend=SpendPolicy(confirm=True))
    store = Store(database_url)
    motion = MotionClient("http://127.0.0.1:9", "motion_unused")  # never called here
    built = JobService(
        store, motion, SlackOut(make_client(BOT_TOKEN, slack.base_url, retry_writes=False)),
        schedule=PollSchedule(3.0, 30.0), sandbox=False, clock=lambda: NOW,
        workspaces=ByTeam({STRICT: strict, RELAXED: relaxed}),
    )  # fmt: skip
    yield built
    await built.drain_background(2)
    await motion.aclose()
    store.close()


def context(service: JobService) -> AsyncBoltContext:
    return AsyncBoltContext({SERVICE_KEY: service, "bot_user_id": "U0BOT"})


def command(team_id: str, text: str) -> dict[str, str]:
    return {
        "team_id": team_id, "channel_id": "C0PUBLIC", "user_id": "U0ALICE", "text": text,
        "response_url": "http://127.0.0.1:9/never-used",
    }  # fmt: skip


def open_job(service: JobService, team_id: str, thread_ts: str) -> int:
    job_id, _ = service.store.create_job(
        team_id=team_id, channel_id="C0PUBLIC", requester="U0ALICE", response_url=None,
        request={"prompt": "a fox"}, sandbox=False, now=NOW,
    )  # fmt: skip
    service.store.record_card(job_id, thread_ts, "C0PUBLIC", "new", "d", NOW)
    return job_id


async def test_a_channel_one_workspace_allows_is_refused_only_where_it_is_not_allowed(
    service: JobService,
) -> None:
    strict, relaxed, plain = Acks(), Acks(), Acks()
    await commands.motion_command(strict, command(STRICT, "a fox"), context(service))
    await commands.motion_command(relaxed, command(RELAXED, "a fox"), context(service))
    await commands.motion_command(plain, command("T0OTHER", "a fox"), context(service))
    assert "can't be started in this channel" in strict.texts[0]
    assert "Start" in relaxed.texts[0] and "Starting your video" not in relaxed.texts[0]
    assert "Starting your video" in plain.texts[0]
    assert service.store.recent_jobs(STRICT, "U0ALICE") == []
    assert service.store.recent_jobs(RELAXED, "U0ALICE") == []  # a preview records no job
    [job] = service.store.recent_jobs("T0OTHER", "U0ALICE")
    assert job.state == JobState.NEW


async def test_an_admin_of_one_workspace_is_no_admin_of_another(service: JobService) -> None:
    assert "Everyone's runs" in str(service.usage_report(STRICT, "U0ADMIN").blocks)
    assert "Everyone's runs" not in str(service.usage_report(RELAXED, "U0ADMIN").blocks)
    relaxed_job = open_job(service, RELAXED, "1763000000.000100")
    said = service.stop_tracking(RELAXED, str(relaxed_job), "U0ADMIN", None, None)
    assert said is not None and "Only" in said.text
    strict_job = open_job(service, STRICT, "1763000000.000200")
    assert service.stop_tracking(STRICT, str(strict_job), "U0ADMIN", None, None) is None
    assert [j.state for j in map(service.store.job, (relaxed_job, strict_job)) if j] == [
        JobState.OPEN,
        JobState.STOPPED,
    ]


async def test_followups_need_a_mention_only_in_the_workspace_that_asks_for_it(
    service: JobService,
) -> None:
    strict_job = open_job(service, STRICT, "1763000000.000100")
    other_job = open_job(service, "T0OTHER", "1763000000.000200")
    for n, (team, thread) in enumerate(
        ((STRICT, "1763000000.000100"), ("T0OTHER", "1763000000.000200"))
    ):
        reply = {
            "type": "message", "channel": "C0PUBLIC", "user": "U0BOB", "text": "warmer",
            "ts": f"1763000100.00010{n}", "thread_ts": thread,
        }  # fmt: skip
        body = {"event_id": f"Ev000{n}", "team_id": team}
        await events.on_reply(reply, body, context(service))

    def followups(job_id: int) -> int:
        return sum(1 for r in service.store.runs(job_id) if r.kind == RunKind.FOLLOWUP)

    assert (followups(strict_job), followups(other_job)) == (0, 1)


# ---------------------------------------------------------------- Settings in Slack, end to end
# The real app over real sockets: the stand-in's users.info says who is an admin, the sandbox
# fixture (MOTION_API_URL, accepting only MOTION_KEY) is the real-mode Motion, and with
# MOTION_API_KEY unset the app runs its own emulator for workspaces without a key.

BOSS, MEMBER, HELPER = "U0BOSS", "U0ALICE", "U0CAROL"
OTHER_TEAM = "T0OTHER"


def settings_env(**more: str) -> dict[str, str]:
    """No MOTION_API_KEY (each workspace its own, sandbox until set) and SECRET_KEYS."""
    return {"MOTION_API_KEY": "", "SECRET_KEYS": new_key(), **more}


async def started(harness: Harness, **more: str) -> MotionBot:
    harness.slack.add_user(BOSS, name="boss", real_name="Bo Boss", admin=True)
    return await harness.start(**settings_env(**more))


def home_actions(harness: Harness, user: str) -> list[str]:
    home = harness.slack.home(user) or {}
    return [
        e["action_id"]
        for b in home.get("blocks", [])
        if b.get("block_id") == BlockId.HOME_ACTIONS
        for e in b["elements"]
    ]


async def home_of(harness: Harness, user: str) -> list[str]:
    before = len(harness.slack.calls("views.publish"))
    await harness.home_opened(user=user)
    await until(
        lambda: any(
            c.params.get("user_id") == user for c in harness.slack.calls("views.publish")[before:]
        ),
        what=f"{user}'s Home tab",
    )
    return home_actions(harness, user)


async def open_settings(harness: Harness, user: str = BOSS) -> dict[str, Any]:
    before = len(harness.slack.views(user))
    response = await harness.home_action(ActionId.HOME_SETTINGS, user=user)
    assert response.status_code == 200
    views = await until(
        lambda: harness.slack.views(user)[before:] or None, what="the settings form"
    )
    return dict(views[0])


async def submit(
    harness: Harness, view: dict[str, Any], answers: dict[str, str | None], user: str = BOSS
) -> dict[str, Any]:
    """Submit the form, each field left as shown unless `answers` changes it; Slack's answer
    to the submission ({} when it closes the form)."""
    response = await harness.submit_view(view, {**shown_answers(view), **answers}, user=user)
    assert response.status_code == 200, response.text
    return response.json() if response.content else {}


def inputs(view: dict[str, Any]) -> set[str]:
    return {b["block_id"] for b in view["blocks"] if b["type"] == "input"}


def stored(bot: MotionBot, team: str = "T0001") -> dict[str, object]:
    return {k: v for k, v in bot.store.workspace_settings(team).values.items() if v is not None}


def forged_form(team: str = "T0001") -> dict[str, Any]:
    """A settings form with every field an input, as no operator-locked form would have it."""
    view = messages.SettingsFormView(
        team_id=team, key=messages.KeyState.NONE, values={"MOTION_ALLOW_DMS": True}
    )
    return {**messages.settings_form(view), "id": "V0FORGED"}


async def test_a_slack_admin_sees_settings_and_a_member_does_not(harness: Harness) -> None:
    await started(harness, MOTION_ADMINS=HELPER)
    assert ActionId.HOME_SETTINGS in await home_of(harness, BOSS)  # users.info: is_admin
    assert ActionId.HOME_SETTINGS in await home_of(harness, HELPER)  # on the admin list
    assert ActionId.HOME_SETTINGS not in await home_of(harness, MEMBER)
    assert {c.params["user"] for c in harness.slack.calls("users.info")} >= {BOSS, MEMBER}
    # A member pressing a forged Settings button is shown nothing.
    await harness.home_action(ActionId.HOME_SETTINGS, user=MEMBER)
    await settle(0.3)
    assert harness.slack.views(MEMBER) == []
    view = await open_settings(harness)
    # MOTION_ADMINS is the operator's here: read-only, not a field.
    assert str(BlockId.SETTING_ADMINS) not in inputs(view)
    assert "Set by the operator (`MOTION_ADMINS`)" in json.dumps(view)
    assert {str(BlockId.SETTING_KEY), str(BlockId.SETTING_PER_MONTH)} <= inputs(view)


async def test_a_members_forged_submission_changes_nothing(harness: Harness) -> None:
    bot = await started(harness)
    answers = {str(BlockId.SETTING_PER_MONTH): "1", str(BlockId.SETTING_KEY): MOTION_KEY}
    assert await submit(harness, forged_form(), answers, user=MEMBER) == {}
    # An admin's form naming another workspace changes nothing either, in either workspace.
    assert await submit(harness, forged_form(OTHER_TEAM), answers) == {}
    assert stored(bot) == {} and stored(bot, OTHER_TEAM) == {}
    assert bot.store.settings_changes("T0001") == []
    assert bot.store.workspace_settings("T0001").sealed_motion_api_key is None
    assert "Starting your video" in ack_text(await harness.command("a fox"))
    assert "Starting your video" in ack_text(await harness.command("a fox"))  # no limit


async def test_a_locked_setting_cannot_be_changed_by_a_forged_submission(
    harness: Harness,
) -> None:
    bot = await started(harness, MOTION_RUNS_PER_MONTH="1")
    view = await open_settings(harness)
    assert str(BlockId.SETTING_PER_MONTH) not in inputs(view)
    forged = {**forged_form(), "id": view["id"]}
    answers = {str(BlockId.SETTING_PER_MONTH): "50", str(BlockId.SETTING_PER_DAY): "7"}
    assert await submit(harness, forged, answers) == {}
    assert stored(bot) == {"MOTION_RUNS_PER_USER_PER_DAY": 7}  # the workspace's own: saved
    assert [c.setting for c in bot.store.settings_changes("T0001")] == [
        "MOTION_RUNS_PER_USER_PER_DAY"
    ]
    assert "Starting your video" in ack_text(await harness.command("a fox"))
    assert "Motion runs" in ack_text(await harness.command("a fox"))  # the operator's 1 holds


async def test_a_new_key_is_tried_before_it_is_saved(harness: Harness) -> None:
    bot = await started(harness)
    view = await open_settings(harness)
    key_field = str(BlockId.SETTING_KEY)
    refused = await submit(harness, view, {key_field: "motion_refused_key_9999"})
    assert refused["response_action"] == "errors"
    assert "Motion refused this key" in refused["errors"][key_field]
    harness.sandbox.fault("status", status=503, body='{"error": "busy"}')
    busy = await submit(harness, view, {key_field: MOTION_KEY})
    assert "Try again" in busy["errors"][key_field]
    shape = await submit(harness, view, {key_field: "sk-not-motion"})
    assert "starts with motion_" in shape["errors"][key_field]
    assert bot.store.workspace_settings("T0001").sealed_motion_api_key is None
    assert await submit(harness, view, {key_field: MOTION_KEY}) == {}
    sealed = bot.store.workspace_settings("T0001").sealed_motion_api_key
    assert sealed is not None and MOTION_KEY not in sealed
    probes = [c for c in harness.sandbox.calls if c.endpoint == "status"]
    assert [c.status for c in probes] == [401, 503, 404]  # the job that cannot exist
    view = await open_settings(harness)
    shown = json.dumps(view)
    assert "ending in cdef" in shown and "set (ends in cdef)" in shown
    assert MOTION_KEY not in shown and MOTION_KEY[:-4] not in shown
    # An empty key field keeps the key; "Remove" removes it (the log says so, never the key).
    assert await submit(harness, view, {str(BlockId.SETTING_CONFIRM): "on"}) == {}
    assert bot.store.workspace_settings("T0001").sealed_motion_api_key == sealed
    view = await open_settings(harness)
    assert await submit(harness, view, {str(BlockId.SETTING_REMOVE_KEY): "on"}) == {}
    assert bot.store.workspace_settings("T0001").sealed_motion_api_key is None
    log = [(c.setting, c.old_value, c.new_value) for c in bot.store.settings_changes("T0001")]
    assert log == [
        ("MOTION_API_KEY", "cdef", None),
        ("MOTION_CONFIRM", None, "true"),
        ("MOTION_API_KEY", None, "cdef"),
    ]


async def test_without_secret_keys_no_key_can_be_set_and_none_is_stored(
    harness: Harness,
) -> None:
    harness.slack.add_user(BOSS, name="boss", admin=True)
    bot = await harness.start(MOTION_API_KEY="")
    view = await open_settings(harness)
    assert str(BlockId.SETTING_KEY) not in inputs(view)
    assert "no `SECRET_KEYS`" in json.dumps(view)
    assert await submit(harness, forged_form(), {str(BlockId.SETTING_KEY): MOTION_KEY}) == {}
    assert bot.store.workspace_settings("T0001").sealed_motion_api_key is None
    assert harness.sandbox.calls == []  # not even probed


async def test_saving_on_one_instance_holds_for_the_next_command_on_another(
    harness: Harness,
) -> None:
    other = await started(harness)
    await started(harness)  # the instance the form is submitted to (the harness's default)
    view = await open_settings(harness)
    answers = {
        str(BlockId.SETTING_PER_MONTH): "1",
        str(BlockId.SETTING_CHANNELS): "C0PUBLIC",
        str(BlockId.SETTING_ADMINS): HELPER,
    }
    assert await submit(harness, view, answers) == {}
    assert "Starting your video" in ack_text(await harness.command("a fox", to=other))
    assert "Motion runs" in ack_text(await harness.command("a fox", to=other))  # the month's 1
    refused = ack_text(await harness.command("a fox", channel="C0ELSEWHERE", to=other))
    assert "can't be started in this channel" in refused
    # HELPER is now a Motion admin there (everyone's usage); in another workspace, nobody.
    assert "Everyone's runs" in str(other.service.usage_report("T0001", HELPER).blocks)
    assert "Everyone's runs" not in str(other.service.usage_report(OTHER_TEAM, HELPER).blocks)


async def test_a_workspace_with_a_key_uses_motion_while_another_stays_in_sandbox(
    harness: Harness,
) -> None:
    bot = await started(harness)
    view = await open_settings(harness)
    assert await submit(harness, view, {str(BlockId.SETTING_KEY): MOTION_KEY}) == {}
    keyed = await run_command(harness, "a fox with a key")
    [result] = await until(lambda: results(harness, keyed["ts"]), what="the keyed job's result")
    assert SANDBOX_NOTE not in json.dumps(result)
    fields = {**harness.command_fields("a fox without one"), "team_id": OTHER_TEAM}
    response = await harness.post(urlencode(fields), FORM)
    assert "Sandbox" in ack_text(response)
    [job] = bot.store.recent_jobs("T0001", MEMBER)
    [sandboxed] = bot.store.recent_jobs(OTHER_TEAM, MEMBER)
    assert (job.sandbox, sandboxed.sandbox) == (False, True)
    assert job.motion_job_id is not None
    assert harness.sandbox.job(job.motion_job_id).api_key == MOTION_KEY  # MOTION_API_URL
    assert bot.sandbox_thread is not None

    def sent(job_id: int) -> str | None:
        found = bot.store.job(job_id)
        return found.motion_job_id if found else None

    emulated = await until(lambda: sent(sandboxed.id), what="the job sent to the emulator")
    assert len(harness.sandbox.creates) == 1  # MOTION_API_URL saw only the keyed job's
    assert bot.sandbox_thread.sandbox.owned_job(emulated, "motion_sandbox") is not None
    assert SANDBOX_NOTE not in card_text(harness, keyed["ts"])


async def test_once_a_workspace_has_a_key_its_replies_lose_the_sandbox_note(
    harness: Harness,
) -> None:
    await started(harness)
    assert SANDBOX_NOTE in ack_text(await harness.command("help"))
    view = await open_settings(harness)
    assert await submit(harness, view, {str(BlockId.SETTING_KEY): MOTION_KEY}) == {}

    async def in_other_team(text: str) -> str:
        fields = {**harness.command_fields(text, user=HELPER), "team_id": OTHER_TEAM}
        return ack_text(await harness.post(urlencode(fields), FORM))

    assert SANDBOX_NOTE not in ack_text(await harness.command("help"))
    assert SANDBOX_NOTE in await in_other_team("help")
    await harness.command("list")  # MEMBER's, in T0001
    await in_other_team("list")  # HELPER's, in the other workspace

    def listing(user: str) -> list[str]:
        return [
            json.dumps(r, ensure_ascii=False)
            for r in harness.slack.responses
            if r["tag"] == f"cmd-{user}"
        ]

    [keyed] = await until(lambda: listing(MEMBER) or None, what="the list in T0001")
    [sandboxed] = await until(lambda: listing(HELPER) or None, what="the other one's list")
    assert "no Motion jobs yet" in keyed and "no Motion jobs yet" in sandboxed
    assert SANDBOX_NOTE not in keyed and SANDBOX_NOTE in sandboxed


async def test_a_slack_admin_off_the_list_stops_anyones_job_and_sees_everyones_usage(
    harness: Harness,
) -> None:
    harness.slack.add_user(BOSS, name="boss", admin=True)  # users.info: is_admin, no list
    harness.slack.add_user(HELPER, name="carol")  # a plain member
    bot = await harness.start()
    harness.sandbox.plan_next(JobPlan(queued_s=0.2, created_s=0.2, running_s=60.0))
    card = await run_command(harness, "alice's fox")  # MEMBER's
    [job] = bot.store.recent_jobs("T0001", MEMBER)

    def stop_button() -> list[str]:
        now = harness.slack.message("C0PUBLIC", card["ts"]) or {}
        return [b["value"] for b in buttons(now) if b["action_id"] == ActionId.STOP_TRACKING]

    [stop] = await until(stop_button, what="Stop tracking on the card")

    async def press_stop(user: str) -> str:
        response = await harness.action(
            ActionId.STOP_TRACKING, stop, message_ts=card["ts"], user=user
        )
        assert response.status_code == 200 and not response.content  # acked, nothing more

        def told() -> list[str]:
            return [r["text"] for r in harness.slack.responses if r["tag"] == f"action-{user}"]

        return str((await until(told, what=f"what {user} is told"))[0])

    def state() -> JobState | None:
        found = bot.store.job(job.id)
        return found.state if found else None

    assert f"<@{MEMBER}>" in await press_stop(HELPER)
    assert state() == JobState.OPEN
    await harness.action(ActionId.STOP_TRACKING, stop, message_ts=card["ts"], user=BOSS)
    await until(lambda: state() == JobState.STOPPED, what="the job stopped by the Slack admin")
    assert [r for r in harness.slack.responses if r["tag"] == f"action-{BOSS}"] == []

    async def usage(user: str) -> str:
        response = await harness.command("usage", user=user)
        return json.dumps(response.json()["blocks"], ensure_ascii=False)

    assert "Everyone's runs" in await usage(BOSS)
    assert "Everyone's runs" not in await usage(HELPER)


async def test_the_form_shows_the_20_latest_changes_and_never_a_key(harness: Harness) -> None:
    bot = await started(harness)
    view = await open_settings(harness)
    assert await submit(harness, view, {str(BlockId.SETTING_KEY): MOTION_KEY}) == {}
    for n in range(1, 22):
        assert await submit(harness, view, {str(BlockId.SETTING_PER_DAY): str(n)}) == {}
    shown = await open_settings(harness)
    lines = [
        b["elements"][0]["text"]
        for b in shown["blocks"]
        if b["type"] == "context" and "·" in b["elements"][0]["text"]
    ]
    assert len(lines) == 20
    assert "20 → 21" in lines[0] and "1 → 2" in lines[-1]  # newest first; the key's is older
    assert all(f"<@{BOSS}>" in line for line in lines)
    assert len(bot.store.settings_changes("T0001", 100)) == 22
    assert MOTION_KEY not in json.dumps(shown)


async def test_an_admin_of_another_organisation_or_a_guest_is_no_motion_admin_here(
    harness: Harness,
) -> None:
    """users.info's admin flags are the person's own organisation's: a Slack Connect person
    (is_stranger), a guest, or someone whose home workspace is another is no admin here."""
    harness.slack.add_user(BOSS, name="boss", admin=True)
    harness.slack.add_user(HELPER, name="carol", admin=True)
    harness.slack.add_user("U0GUEST", name="gus", admin=True)
    with harness.slack.model.lock:
        harness.slack.model.users[HELPER]["is_stranger"] = True
        harness.slack.model.users[HELPER]["team_id"] = "T0ELSEWHERE"
        harness.slack.model.users["U0GUEST"]["is_restricted"] = True
    await harness.start()
    assert ActionId.HOME_SETTINGS in await home_of(harness, BOSS)
    assert ActionId.HOME_SETTINGS not in await home_of(harness, HELPER)
    assert ActionId.HOME_SETTINGS not in await home_of(harness, "U0GUEST")
