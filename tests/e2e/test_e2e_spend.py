"""Spend controls end to end, through signed requests to the real app, the Slack double and the
sandbox: each control on each entry point (the command, a thread reply, "Send it again" /
"Try again", "Start a new job"), the races, and every refusal's words."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

import httpx

from bot.app import MotionBot
from bot.sandbox import JobPlan
from tests.support.e2e import buttons, results, run_command, settle, wait_reply
from tests.support.harness import FAST_PLAN, SIGNING_SECRET, Harness, until
from tests.support.slack import signed_headers

SLOW_PLAN = JobPlan(queued_s=0.05, created_s=0.05, running_s=1.5, render_s=0.2)
DAILY_REFUSAL = "You have used {used} of your {limit} Motion runs for today (UTC)."
CHANNEL_REFUSAL = (
    "🚫 Motion videos can't be started in this channel. They can be started in <#G0MEMBER>. "
    "Nothing was sent to Motion and nothing was recorded."
)
BAD_400 = {"error": "Invalid request", "details": [{"message": "prompt is not allowed"}]}


def ack_text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    if not response.headers.get("content-type", "").startswith("application/json"):
        return response.text  # Bolt answers a text-only ack as plain text
    return str(response.json().get("text") or "")


def ephemerals(h: Harness, user: str = "U0ALICE") -> list[dict[str, Any]]:
    return [c.params for c in h.posts("chat.postEphemeral") if c.params.get("user") == user]


def action_responses(h: Harness, user: str = "U0ALICE") -> list[dict[str, Any]]:
    return [r for r in h.slack.responses if r["tag"] == f"action-{user}"]


def jobs_of(h: Harness, user: str = "U0ALICE") -> int:
    return len(h.bot.store.recent_jobs("T0001", user, limit=100))


def usage_now(h: Harness, user: str = "U0ALICE") -> tuple[int, int]:
    view = h.bot.service.usage_view("T0001", user)
    return view.today, view.workspace_month


def button_value(message: dict[str, Any], action_id: str) -> str:
    return next(b["value"] for b in buttons(message) if b["action_id"] == action_id)


async def command_to(h: Harness, bot: MotionBot, text: str, user: str = "U0ALICE") -> str:
    body = urlencode(h.command_fields(text, user=user))
    headers = signed_headers(body, SIGNING_SECRET, "application/x-www-form-urlencoded")
    response = await h.http.post(
        f"http://127.0.0.1:{bot.port}/slack/events", content=body, headers=headers
    )
    return ack_text(response)


async def server_error_notice(h: Harness, prompt: str = "a teaser") -> tuple[str, dict[str, Any]]:
    """A create Motion answers with a JSON 500: not started, a "Try again" button offered."""
    h.sandbox.fault(
        "create", status=500, body='{"error": "internal_error", "message": "database hiccup"}'
    )
    card = await run_command(h, prompt)
    notice = await wait_reply(h, card["ts"], "internal error")
    return card["ts"], notice


async def followup_refused_on_failed_job(h: Harness) -> tuple[str, dict[str, Any]]:
    """A failed job, a reply Motion refuses with a final 409, and the "Start a new job" offer."""
    h.sandbox.plan_next(
        JobPlan(queued_s=0.05, created_s=0.05, running_s=0.2, fail_error="out of ideas")
    )
    card = await run_command(h, "doomed video")
    await wait_reply(h, card["ts"], "failed")
    await h.event(h.reply_event(card["ts"], "try with cats"))
    offer = await wait_reply(h, card["ts"], "does not take followups")
    h.sandbox.plan_next(FAST_PLAN)
    return card["ts"], offer


# ---------------------------------------------------------------- MOTION_ALLOWED_CHANNELS


async def test_a_command_outside_the_allowed_channels_is_refused_privately_and_records_nothing(
    harness: Harness,
) -> None:
    await harness.start(MOTION_ALLOWED_CHANNELS="G0MEMBER")
    assert ack_text(await harness.command("a fox")) == CHANNEL_REFUSAL
    await settle()
    assert harness.cards() == [] and jobs_of(harness) == 0
    assert harness.sandbox.count("create") == 0 and usage_now(harness) == (0, 0)
    card = await run_command(harness, "a fox", channel="G0MEMBER")  # where it works, it works
    await until(lambda: results(harness, card["ts"], channel="G0MEMBER"))


async def test_a_reply_and_both_buttons_in_a_channel_no_longer_allowed_are_refused_privately(
    harness: Harness,
) -> None:
    await harness.start()
    thread, notice = await server_error_notice(harness)
    failed_thread, offer = await followup_refused_on_failed_job(harness)
    await harness.stop()
    await harness.start(MOTION_ALLOWED_CHANNELS="G0MEMBER")
    harness.slack.reset_calls()
    before = (harness.sandbox.count("create"), harness.sandbox.count("followup"))

    reply = harness.reply_event(thread, "make it warmer")
    await harness.event(reply)
    told = await until(lambda: ephemerals(harness))
    assert told[0]["text"] == CHANNEL_REFUSAL and told[0]["thread_ts"] == thread
    await harness.action("retry_run", button_value(notice, "retry_run"))
    await harness.action("restart_job", button_value(offer, "restart_job"))
    answers = await until(lambda: len(action_responses(harness)) == 2 and action_responses(harness))
    assert [a["text"] for a in answers] == [CHANNEL_REFUSAL, CHANNEL_REFUSAL]
    assert all(a["response_type"] == "ephemeral" for a in answers)
    await settle()
    assert (harness.sandbox.count("create"), harness.sandbox.count("followup")) == before
    assert harness.slack.reactions("C0PUBLIC", reply["ts"]) == []
    assert (
        len(
            harness.bot.store.runs(
                harness.bot.store.job_for_thread("C0PUBLIC", thread, team_id="T0001").id
            )
        )
        == 1
    )  # type: ignore[union-attr]
    assert len(harness.cards()) == 2 and harness.posts() == []  # nothing in any channel
    assert failed_thread


# ---------------------------------------------------------------- limits


async def test_a_command_over_the_daily_limit_is_refused_with_used_limit_and_reset(
    harness: Harness,
) -> None:
    await harness.start(MOTION_RUNS_PER_USER_PER_DAY="1")
    await run_command(harness, "first")
    refusal = ack_text(await harness.command("second"))
    assert refusal.startswith("⛔ " + DAILY_REFUSAL.format(used=1, limit=1))
    assert "Your count resets at 00:00 UTC, in " in refusal
    assert refusal.endswith("Nothing was sent to Motion and no credits were used.")
    await settle()
    assert harness.sandbox.count("create") == 1 and jobs_of(harness) == 1
    await run_command(harness, "bob's", user="U0BOB")  # a day's limit is per person


async def test_a_command_over_the_monthly_limit_is_refused_for_everyone(harness: Harness) -> None:
    await harness.start(MOTION_RUNS_PER_MONTH="2")
    await run_command(harness, "one")
    await run_command(harness, "two", user="U0BOB")
    refusal = ack_text(await harness.command("three", user="U0CAROL"))
    assert "This workspace has used 2 of its 2 Motion runs for " in refusal
    assert "The count resets on 1 " in refusal and ", 00:00 UTC." in refusal
    assert jobs_of(harness, "U0CAROL") == 0


async def test_two_commands_at_the_limit_at_the_same_moment_on_two_instances_start_one_job(
    harness: Harness,
) -> None:
    first = await harness.start(MOTION_RUNS_PER_USER_PER_DAY="1")
    second = await harness.start(MOTION_RUNS_PER_USER_PER_DAY="1")  # same database file
    answers = await asyncio.gather(
        command_to(harness, first, "same moment A"), command_to(harness, second, "same moment B")
    )
    accepted = [a for a in answers if a.startswith("🎬 Starting your video")]
    refused = [a for a in answers if DAILY_REFUSAL.format(used=1, limit=1) in a]
    assert (len(accepted), len(refused)) == (1, 1), answers
    assert len(first.store.recent_jobs("T0001", "U0ALICE")) == 1


async def test_many_commands_at_once_on_one_instance_start_exactly_the_limit(
    harness: Harness,
) -> None:
    await harness.start(MOTION_RUNS_PER_USER_PER_DAY="2")
    answers = await asyncio.gather(*(harness.command(f"burst {i}") for i in range(6)))
    texts = [ack_text(a) for a in answers]
    assert sum(t.startswith("🎬 Starting") for t in texts) == 2
    assert sum(DAILY_REFUSAL.format(used=2, limit=2) in t for t in texts) == 4
    await until(lambda: harness.sandbox.count("create") == 2)
    await settle()
    assert harness.sandbox.count("create") == 2 and usage_now(harness) == (2, 2)


async def test_a_reply_over_the_limit_is_refused_privately_in_the_thread(
    harness: Harness,
) -> None:
    await harness.start(MOTION_RUNS_PER_USER_PER_DAY="1")
    card = await run_command(harness, "only one")
    await until(lambda: results(harness, card["ts"]))
    reply = harness.reply_event(card["ts"], "one more please")
    await harness.event(reply)
    told = await until(lambda: ephemerals(harness))
    assert told[0]["thread_ts"] == card["ts"]
    assert told[0]["text"].startswith("⛔ " + DAILY_REFUSAL.format(used=1, limit=1))
    await harness.event(reply)  # a redelivery is not refused twice
    await settle()
    assert len(ephemerals(harness)) == 1
    assert harness.sandbox.count("followup") == 0
    assert harness.slack.reactions("C0PUBLIC", reply["ts"]) == []


async def test_a_followup_waiting_in_the_queue_has_counted_and_the_next_reply_hits_the_limit(
    harness: Harness,
) -> None:
    harness.sandbox.plan_next(SLOW_PLAN)
    await harness.start(MOTION_RUNS_PER_USER_PER_DAY="2")
    card = await run_command(harness, "slow one")
    waiting = harness.reply_event(card["ts"], "queued take")
    await harness.event(waiting)
    await until(
        lambda: "hourglass_flowing_sand" in harness.slack.reactions("C0PUBLIC", waiting["ts"])
    )
    assert usage_now(harness) == (2, 2)
    await harness.event(harness.reply_event(card["ts"], "one too many"))
    told = await until(lambda: ephemerals(harness))
    assert DAILY_REFUSAL.format(used=2, limit=2) in told[0]["text"]
    await until(lambda: len(results(harness, card["ts"])) == 2, timeout=20)
    assert [f["prompt"] for f in harness.sandbox.followups] == ["queued take"]


async def test_send_it_again_counts_and_is_refused_over_the_limit_and_a_500_gives_back(
    harness: Harness,
) -> None:
    await harness.start(MOTION_RUNS_PER_USER_PER_DAY="1")
    thread, notice = await server_error_notice(harness)
    await until(lambda: usage_now(harness) == (0, 0), what="the 500's count given back")
    other = await run_command(harness, "the day's one run")  # possible only because of that
    await until(lambda: results(harness, other["ts"]))
    await harness.action("retry_run", button_value(notice, "retry_run"))
    answer = await until(lambda: action_responses(harness))
    assert DAILY_REFUSAL.format(used=1, limit=1) in answer[0]["text"]
    assert answer[0]["replace_original"] is False
    await settle()
    assert harness.sandbox.count("create") == 2 and results(harness, thread) == []


async def test_start_a_new_job_counts_and_is_refused_over_the_limit_after_a_409_gave_back(
    harness: Harness,
) -> None:
    await harness.start(MOTION_RUNS_PER_USER_PER_DAY="2")
    _, offer = await followup_refused_on_failed_job(harness)
    await until(lambda: usage_now(harness) == (1, 1), what="the final 409's count given back")
    await run_command(harness, "another")
    await harness.action("restart_job", button_value(offer, "restart_job"))
    answer = await until(lambda: action_responses(harness))
    assert DAILY_REFUSAL.format(used=2, limit=2) in answer[0]["text"]
    assert len(harness.cards()) == 2


async def test_runs_motion_refused_with_400_or_402_give_their_counts_back(
    harness: Harness,
) -> None:
    await harness.start(MOTION_RUNS_PER_USER_PER_DAY="1")
    harness.sandbox.fault("create", status=400, body=json.dumps(BAD_400))
    card = await run_command(harness, "refused as invalid")
    await wait_reply(harness, card["ts"], "refused")
    await until(lambda: usage_now(harness) == (0, 0))
    harness.sandbox.set_balance(0, minimum=100)
    card = await run_command(harness, "no credits")
    await wait_reply(harness, card["ts"], "Not enough Motion credits")
    await until(lambda: usage_now(harness) == (0, 0))
    harness.sandbox.set_balance(None)
    card = await run_command(harness, "finally")
    await until(lambda: results(harness, card["ts"]))
    assert usage_now(harness) == (1, 1)


# ---------------------------------------------------------------- /motion usage and list


async def test_usage_shows_the_callers_runs_and_admins_see_everyones(harness: Harness) -> None:
    await harness.start(
        MOTION_ADMINS="U0CAROL", MOTION_RUNS_PER_USER_PER_DAY="5", MOTION_RUNS_PER_MONTH="100"
    )
    await run_command(harness, "alice's")
    await run_command(harness, "bob's", user="U0BOB")
    await run_command(harness, "bob's again", user="U0BOB")
    mine = (await harness.command("usage")).json()
    text = json.dumps(mine["blocks"], ensure_ascii=False)
    assert "Your runs today (UTC): 1 of 5 (resets 00:00 UTC, in " in text
    assert "The workspace's runs this month: 3 of 100" in text
    assert "Everyone" not in text and "U0BOB" not in text
    admin = (await harness.command("usage", user="U0CAROL")).json()
    table = json.dumps(admin["blocks"], ensure_ascii=False)
    assert "Everyone's runs* (2 people this month)" in table
    assert table.index("<@U0BOB> — 2 today · 2 this month") < table.index(
        "<@U0ALICE> — 1 today · 1 this month"
    )
    assert harness.sandbox.count("create") == 3  # usage starts nothing


async def test_motion_list_shows_the_callers_usage(harness: Harness) -> None:
    await harness.start(MOTION_RUNS_PER_USER_PER_DAY="5")
    await run_command(harness, "listed")
    await harness.command("list")
    listing = await until(
        lambda: [r for r in harness.slack.responses if "Your Motion runs" in json.dumps(r)]
    )
    assert "Your Motion runs: 1 of 5 today" in json.dumps(listing[0]["blocks"], ensure_ascii=False)


# ---------------------------------------------------------------- MOTION_CONFIRM


async def test_confirm_shows_a_preview_and_start_pressed_twice_at_once_starts_one_job(
    harness: Harness,
) -> None:
    await harness.start(MOTION_CONFIRM="true", MOTION_RUNS_PER_USER_PER_DAY="5")
    preview = (
        await harness.command("a fox --aspect 9:16 --attach https://example.com/a.png")
    ).json()
    text = json.dumps(preview, ensure_ascii=False)
    assert "Start this Motion video?" in text and "This uses Motion credits" in text
    assert "9:16" in text and "https://example.com/a.png" in text
    assert jobs_of(harness) == 0 and usage_now(harness) == (0, 0)
    token = button_value(preview, "confirm_start")
    await asyncio.gather(
        harness.action("confirm_start", token), harness.action("confirm_start", token)
    )
    card = (await until(lambda: harness.cards()))[0]
    await until(lambda: results(harness, card["ts"]))
    await settle()
    assert harness.sandbox.count("create") == 1 and len(harness.cards()) == 1
    assert usage_now(harness) == (1, 1)
    answers = sorted(r["text"] for r in action_responses(harness))
    assert len(answers) == 2
    assert answers[0].startswith("ℹ️ This preview was already started or cancelled")
    assert answers[1].startswith("▶️ Started")
    assert all(r["replace_original"] is True for r in action_responses(harness))
    await harness.action("confirm_start", token)  # redelivered later: still one
    await settle()
    assert harness.sandbox.count("create") == 1


async def test_confirm_cancel_and_an_unanswered_preview_spend_nothing(harness: Harness) -> None:
    await harness.start(MOTION_CONFIRM="true")
    cancelled = (await harness.command("never mind")).json()
    (await harness.command("no answer")).json()
    token = button_value(cancelled, "confirm_start")
    await harness.action("confirm_cancel", token)
    await harness.action("confirm_start", token)
    await until(lambda: len(action_responses(harness)) == 2)
    answers = [r["text"] for r in action_responses(harness)]
    assert answers[0].startswith(
        "✖️ Cancelled: nothing was sent to Motion and no credits were used."
    )
    assert answers[1].startswith("ℹ️ This preview was already started or cancelled")
    await settle()
    assert harness.sandbox.count("create") == 0 and harness.cards() == []
    assert jobs_of(harness) == 0 and usage_now(harness) == (0, 0)


async def test_confirm_only_the_author_can_start_a_preview(harness: Harness) -> None:
    await harness.start(MOTION_CONFIRM="true")
    token = button_value((await harness.command("alice's")).json(), "confirm_start")
    await harness.action("confirm_start", token, user="U0BOB")
    answer = await until(lambda: action_responses(harness, "U0BOB"))
    assert answer[0]["text"].startswith("ℹ️ Only the person who asked for this run")
    await settle()
    assert harness.sandbox.count("create") == 0


async def test_confirm_a_reply_is_previewed_ephemerally_in_the_thread_then_sent_on_start(
    harness: Harness,
) -> None:
    await harness.start(MOTION_CONFIRM="true")
    token = button_value((await harness.command("first take")).json(), "confirm_start")
    await harness.action("confirm_start", token)
    card = (await until(lambda: harness.cards()))[0]
    await until(lambda: results(harness, card["ts"]))
    reply = harness.reply_event(card["ts"], "warmer --duration 10-30s")
    await harness.event(reply, event_id="EvREPLY1")
    preview = (await until(lambda: ephemerals(harness)))[0]
    assert preview["thread_ts"] == card["ts"]
    assert "Send this followup to Motion?" in json.dumps(preview["blocks"], ensure_ascii=False)
    await harness.event(reply, event_id="EvREPLY1", retry=1)  # redelivered: no second preview
    await settle()
    assert len(ephemerals(harness)) == 1 and harness.sandbox.count("followup") == 0
    assert usage_now(harness) == (1, 1)
    await harness.action("confirm_start", button_value(preview, "confirm_start"))
    await until(lambda: len(results(harness, card["ts"])) == 2)
    assert harness.sandbox.followups == [{"prompt": "warmer", "duration": "10-30s"}]
    assert usage_now(harness) == (2, 2)


async def test_confirm_send_it_again_is_previewed_before_it_is_sent(harness: Harness) -> None:
    await harness.start(MOTION_CONFIRM="true")
    token = button_value((await harness.command("hiccup")).json(), "confirm_start")
    harness.sandbox.fault(
        "create", status=500, body='{"error": "internal_error", "message": "database hiccup"}'
    )
    await harness.action("confirm_start", token)
    card = (await until(lambda: harness.cards()))[0]
    notice = await wait_reply(harness, card["ts"], "internal error")
    await harness.action("retry_run", button_value(notice, "retry_run"))
    preview = await until(lambda: [r for r in action_responses(harness) if r.get("blocks")])
    assert "Send this run to Motion again?" in json.dumps(preview[-1]["blocks"], ensure_ascii=False)
    assert preview[-1]["replace_original"] is False
    await settle()
    assert harness.sandbox.count("create") == 1
    await harness.action("confirm_start", button_value(preview[-1], "confirm_start"))
    await until(lambda: results(harness, card["ts"]))
    assert harness.sandbox.count("create") == 2


async def test_confirm_start_a_new_job_is_previewed_with_the_merged_request(
    harness: Harness,
) -> None:
    await harness.start()
    _, offer = await followup_refused_on_failed_job(harness)
    await harness.stop()
    await harness.start(MOTION_CONFIRM="true")
    await harness.action("restart_job", button_value(offer, "restart_job"))
    preview = await until(lambda: [r for r in action_responses(harness) if r.get("blocks")])
    shown = json.dumps(preview[0]["blocks"], ensure_ascii=False)
    assert "Start a new job with this request?" in shown and "try with cats" in shown
    assert len(harness.cards()) == 1
    await harness.action("confirm_start", button_value(preview[0], "confirm_start"))
    cards = await until(lambda: len(harness.cards()) == 2 and harness.cards())
    await until(lambda: results(harness, cards[1]["ts"]))
    assert harness.sandbox.creates[-1]["prompt"] == "doomed video\n\ntry with cats"


async def test_confirm_at_the_limit_refuses_before_showing_a_preview(harness: Harness) -> None:
    await harness.start(MOTION_CONFIRM="true", MOTION_RUNS_PER_USER_PER_DAY="1")
    first = button_value((await harness.command("one")).json(), "confirm_start")
    second = button_value((await harness.command("two")).json(), "confirm_start")
    await harness.action("confirm_start", first)
    await until(lambda: harness.cards())
    await harness.action("confirm_start", second)  # both previews shown under the limit
    answers = await until(lambda: len(action_responses(harness)) == 2 and action_responses(harness))
    assert DAILY_REFUSAL.format(used=1, limit=1) in answers[1]["text"]
    refusal = ack_text(await harness.command("three"))
    assert refusal.startswith("⛔ " + DAILY_REFUSAL.format(used=1, limit=1))
    await settle()
    assert harness.sandbox.count("create") == 1
