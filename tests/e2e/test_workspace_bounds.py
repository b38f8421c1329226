"""Isolation, tested as an attacker would: workspace B (a forged team id, signed as Slack signs
it) presses every button of workspace A's messages, submits A's forms, replies in A's threads and
opens A's links. Each gets a private refusal (a 403 for a link) and changes nothing; and what a
person sees of their jobs and usage, and the limits that count them, are their workspace's only,
even for the same user id in two workspaces (Enterprise Grid user ids are global)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import httpx

from bot.local import payloads
from bot.local.payloads import FORM, JSON
from bot.motion import ASPECTS, DURATIONS
from bot.sandbox import JobPlan
from bot.slack import messages
from bot.slack.ids import ActionId, BlockId
from tests.support.e2e import buttons, results, run_command, settle
from tests.support.harness import APP, BOT_USER, FAST_PLAN, TEAM, TOKEN, Harness, until

A, B = TEAM, "T0OTHER"
REFUSAL = messages.OTHER_WORKSPACE
CHANGING = ("chat.postMessage", "chat.postEphemeral", "chat.update", "views.open")


# ---------------------------------------------------------------- what workspace B sends


async def press(
    harness: Harness, action_id: str, value: str, *, team: str = B, user: str = "U0ALICE",
    message_ts: str = "",
) -> list[dict[str, Any]]:  # fmt: skip
    """A button pressed in `team`; returns what the app answered on the press's response_url."""
    tag = f"{team}-{action_id}-{value}"
    payload = payloads.block_actions(
        team_id=team, user_id=user, user_name="mallory", app_id=APP,
        container={"type": "message", "message_ts": message_ts, "channel_id": "C0PUBLIC"},
        trigger_id=harness.slack.issue_trigger(user),
        source={
            "channel": {"id": "C0PUBLIC", "name": "general"},
            "message": {"ts": message_ts, "type": "message"},
            "response_url": harness.slack.response_url(tag),
        },
        actions=[payloads.button(action_id, block_id="b1", value=value)],
        token=TOKEN,
    )  # fmt: skip
    response = await harness.interaction(payload)
    assert response.status_code == 200, response.text
    return await until(
        lambda: [r for r in harness.slack.responses if r["tag"] == tag],
        what=f"{action_id}'s answer",
    )


async def submit_as(
    harness: Harness, view: dict[str, Any], answers: dict[str, str | None], *, team: str = B
) -> httpx.Response:
    values = harness.view_state(view, answers)
    return await harness.interaction(
        payloads.view_submission(
            {**view, "state": {"values": values}}, team_id=team, user_id="U0ALICE",
            user_name="mallory", app_id=APP, trigger_id=harness.slack.issue_trigger("U0ALICE"),
            response_urls=[], token=TOKEN,
        )
    )  # fmt: skip


async def command_as(harness: Harness, team: str, text: str, user: str = "U0ALICE") -> str:
    fields = {**harness.command_fields(text, user=user), "team_id": team}
    fields["response_url"] = harness.slack.response_url(f"cmd-{team}-{user}")
    response = await harness.post(urlencode(fields), FORM)
    assert response.status_code == 200, response.text
    if not response.headers.get("content-type", "").startswith("application/json"):
        return response.text
    return str(response.json().get("text") or "")


async def event_as(harness: Harness, team: str, event: dict[str, Any], event_id: str) -> None:
    envelope = payloads.event_callback(
        event, team_id=team, app_id=APP, bot_user_id=BOT_USER, event_id=event_id, token=TOKEN
    )
    response = await harness.post(json.dumps(envelope), JSON)
    assert response.status_code == 200, response.text


def rows(harness: Harness) -> dict[str, list[tuple[Any, ...]]]:
    """What a press could change: jobs, runs, previews, usage, handled deliveries."""
    store = harness.bot.store
    return {
        "jobs": [
            (r["id"], r["state"], r["stopped_by"])
            for r in store._rows("SELECT * FROM jobs ORDER BY id")
        ],
        "runs": [
            (r["id"], r["job_id"], r["state"], r["stuck_waited"], r["request"])
            for r in store._rows("SELECT * FROM runs ORDER BY id")
        ],
        "previews": [
            (r["state"],) for r in store._rows("SELECT state FROM previews ORDER BY created_at")
        ],
        "usage": [
            (r["team_id"], r["user_id"], r["period"], r["runs"])
            for r in store._rows("SELECT * FROM usage_counts ORDER BY team_id, user_id, period")
        ],
    }


def changing_calls(harness: Harness) -> list[str]:
    return [c.method for c in harness.slack.calls() if c.method in CHANGING]


# ---------------------------------------------------------------- buttons and forms


async def test_workspace_b_pressing_each_of_a_buttons_is_refused_privately_and_changes_nothing(
    harness: Harness,
) -> None:
    await harness.start(MOTION_CONFIRM="true", STUCK_AFTER_MINUTES="60")
    preview = (await harness.command("a fox for workspace A")).json()
    token = next(b["value"] for b in buttons(preview) if b["action_id"] == ActionId.CONFIRM_START)
    second = (await harness.command("another fox for workspace A")).json()
    pending = next(b["value"] for b in buttons(second) if b["action_id"] == ActionId.CONFIRM_START)
    await harness.action(ActionId.CONFIRM_START, token)
    card = (await until(lambda: harness.cards(), what="A's card"))[0]
    [result] = await until(lambda: results(harness, card["ts"]), what="A's result")
    [job] = harness.bot.store.recent_jobs(A, "U0ALICE")
    [run] = harness.bot.store.runs(job.id)
    await settle()
    before = rows(harness)
    harness.slack.reset_calls()

    presses = [
        (ActionId.REFINE, str(run.id)),
        (ActionId.NEW_VARIATION, str(run.id)),
        (ActionId.FRESH_LINK, str(run.id)),
        (ActionId.RETRY_RUN, str(run.id)),
        (ActionId.RESTART_JOB, str(run.id)),
        (ActionId.STOP_TRACKING, str(job.id)),
        (ActionId.STOP_TRACKING, f"{job.id}:{run.id}"),
        (ActionId.KEEP_WAITING, f"{run.id}:1"),
        (ActionId.CONFIRM_START, pending),
        (ActionId.CONFIRM_CANCEL, pending),
    ]
    for action_id, value in presses:  # the same user id as A's requester, from B
        [answer] = await press(harness, action_id, value, message_ts=result["ts"])
        assert REFUSAL in answer["text"], (action_id, answer)
        assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
        assert "workspace A" not in json.dumps(answer)
    await settle()
    assert rows(harness) == before
    assert changing_calls(harness) == []  # no form opened, no card, no post, no ephemeral
    assert harness.sandbox.count("create") == 1 and harness.sandbox.count("followup") == 0
    # A's own press of the same pending preview still works: nothing of it was spent.
    [started] = await press(harness, ActionId.CONFIRM_START, pending, team=A)
    assert REFUSAL not in started["text"] and "Started" in started["text"]


async def test_workspace_b_submitting_a_refine_form_for_a_job_is_refused_on_the_form(
    harness: Harness,
) -> None:
    await harness.start()
    card = await run_command(harness, "a fox for workspace A")
    await until(lambda: results(harness, card["ts"]), what="A's result")
    [job] = harness.bot.store.recent_jobs(A, "U0ALICE")
    await settle()
    before = rows(harness)
    harness.slack.reset_calls()
    form = messages.refine_form(
        job_id=job.id, run_number=1, aspects=ASPECTS, durations=DURATIONS, sandbox=False
    )
    view = {**form, "id": "V0FORGED", "team_id": B}
    response = await submit_as(harness, view, {BlockId.PROMPT: "make it say something else"})
    answer = response.json()
    assert answer["response_action"] == "errors"
    assert REFUSAL in answer["errors"][BlockId.PROMPT]
    # An invalid form naming A's job is refused just the same, before its fields are read.
    empty = (await submit_as(harness, {**view, "id": "V0FORGED2"}, {})).json()
    assert REFUSAL in empty["errors"][BlockId.PROMPT]
    await settle()
    assert rows(harness) == before and changing_calls(harness) == []
    assert harness.sandbox.count("followup") == 0


async def test_a_reply_in_workspace_b_in_a_thread_that_coincides_with_a_job_of_a_is_not_a_followup(
    harness: Harness,
) -> None:
    """Two workspaces see the same channel id and ts in a Slack Connect channel: a reply there
    from B is B's, never a followup of A's job."""
    harness.sandbox.plan_next(JobPlan(**{**FAST_PLAN.__dict__, "running_s": 30.0}))
    await harness.start()
    card = await run_command(harness, "a long fox for workspace A")
    [job] = harness.bot.store.recent_jobs(A, "U0ALICE")
    reply = harness.reply_event(card["ts"], "<@U0BOT> now make it mine")
    await event_as(harness, B, reply, "Ev0FROMB1")
    mention = {**reply, "type": "app_mention", "ts": reply["ts"]}
    await event_as(harness, B, mention, "Ev0FROMB2")
    await settle(0.6)
    assert [r.number for r in harness.bot.store.runs(job.id)] == [1]
    # The same reply from A is A's followup.
    mine = harness.reply_event(card["ts"], "<@U0BOT> warmer please")
    await event_as(harness, A, mine, "Ev0FROMA1")
    await until(lambda: len(harness.bot.store.runs(job.id)) == 2, what="A's followup")


# ---------------------------------------------------------------- what a person sees


async def test_home_list_and_usage_show_only_the_viewers_workspace_for_the_same_user_id(
    harness: Harness,
) -> None:
    await harness.start()
    card = await run_command(harness, "a fox only workspace A may see")
    await until(lambda: results(harness, card["ts"]), what="A's result")
    # The same user id in workspace B: no jobs, no usage.
    said = await command_as(harness, B, "usage")
    assert "Your runs today (UTC): 0 " in said and "Your runs this month: 0" in said, said
    assert "The workspace's runs this month: 0 " in said
    own_usage = await command_as(harness, A, "usage")
    assert "Your runs today (UTC): 1 " in own_usage and "this month: 1 " in own_usage
    await command_as(harness, B, "list")
    [listed] = await until(
        lambda: [r for r in harness.slack.responses if r["tag"] == f"cmd-{B}-U0ALICE"],
        what="B's list",
    )
    assert "only workspace A" not in json.dumps(listed) and "no Motion jobs" in listed["text"]
    await command_as(harness, A, "list")
    [own] = await until(
        lambda: [r for r in harness.slack.responses if r["tag"] == f"cmd-{A}-U0ALICE"],
        what="A's list",
    )
    assert "only workspace A" in json.dumps(own)
    harness.slack.reset_calls()
    await event_as(harness, B, payloads.app_home_opened("U0ALICE", tab="home", view=None), "Ev0H")
    [published] = await until(lambda: harness.slack.calls("views.publish"), what="B's Home")
    assert "only workspace A" not in json.dumps(published.params)


async def test_limits_count_each_workspace_on_its_own(harness: Harness) -> None:
    await harness.start(MOTION_RUNS_PER_USER_PER_DAY="1", MOTION_RUNS_PER_MONTH="2")
    assert "Starting your video" in await command_as(harness, A, "a fox")
    assert "Starting your video" not in await command_as(harness, A, "a second fox")
    assert "Starting your video" in await command_as(harness, A, "a fox", user="U0BOB")
    assert "Starting your video" not in await command_as(harness, A, "a fox", user="U0CAROL")
    # Workspace B, the same user ids: its own day and its own month.
    assert "Starting your video" in await command_as(harness, B, "a fox")
    assert "Starting your video" in await command_as(harness, B, "a fox", user="U0BOB")
    assert "Starting your video" not in await command_as(harness, B, "a fox", user="U0CAROL")
    view_a = harness.bot.service.usage_view(A, "U0ALICE")
    view_b = harness.bot.service.usage_view(B, "U0ALICE")
    assert (view_a.today, view_a.workspace_month) == (1, 2)
    assert (view_b.today, view_b.workspace_month) == (1, 2)


# ---------------------------------------------------------------- links


async def test_workspace_b_opening_a_video_link_naming_a_job_of_a_gets_403(
    harness: Harness,
) -> None:
    from bot.links import signer_for
    from tests.e2e.test_e2e_video import start_public
    from tests.support.harness import SIGNING_SECRET

    public = await start_public(harness)
    card = await run_command(harness, "a fox for workspace A")
    await until(lambda: results(harness, card["ts"]), what="A's result")
    [job] = harness.bot.store.recent_jobs(A, "U0ALICE")
    signer = signer_for(SIGNING_SECRET, "")
    own = f"{public}/v/" + signer.sign("video", {"j": job.id, "r": 1, "t": A}, None)
    other = f"{public}/v/" + signer.sign("video", {"j": job.id, "r": 1, "t": B}, None)
    calls = harness.sandbox.count("status")
    assert (await harness.http.get(other)).status_code == 403
    assert harness.sandbox.count("status") == calls  # refused before Motion is asked
    assert (await harness.http.get(own)).status_code == 302
