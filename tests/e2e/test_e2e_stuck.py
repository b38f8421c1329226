"""Stuck runs and "Stop tracking", end to end: the real app over HTTP, the Slack double and the
sandbox with runs that never finish, STUCK_AFTER_MINUTES at 0.01 (0.6 s). Each test counts the
thread's messages, the reactions and the sandbox's calls."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from bot.app import MotionBot
from bot.sandbox import JobPlan
from tests.support.e2e import buttons, card_text, replies, results, run_command, settle
from tests.support.harness import Harness, until

STUCK = {"STUCK_AFTER_MINUTES": "0.01"}  # 0.6 s
PERIOD = 0.6
NEVER = JobPlan(queued_s=0.02, created_s=0.02, running_s=3600)
STOPPED_WORDS = "stopped tracking this job"
STUCK_COLUMNS = re.compile(r"\bstuck_(notices|waited|from)\b")  # the stuck logic's own SQL
NO_CANCEL_WORDS = "Motion may still finish the video in its web app"


def kind_of(message: dict[str, Any]) -> str | None:
    about = (message.get("metadata") or {}).get("event_payload") or {}
    return about.get("kind")


def notices(h: Harness, card_ts: str) -> list[dict[str, Any]]:
    return [m for m in h.bot_replies(card_ts) if kind_of(m) == "stuck_notice"]


def stop_posts(h: Harness, card_ts: str) -> list[dict[str, Any]]:
    return [m for m in h.bot_replies(card_ts) if kind_of(m) == "tracking_stopped"]


def button_of(message: dict[str, Any], action_id: str) -> dict[str, Any]:
    return next(b for b in buttons(message) if b["action_id"] == action_id)


def private_answers(h: Harness, user: str) -> list[str]:
    return [
        r["text"]
        for r in h.slack.responses
        if r["tag"] == f"action-{user}" and r.get("response_type") == "ephemeral"
    ]


def status_calls(h: Harness) -> int:
    return h.sandbox.count("status")


async def stuck_job(h: Harness, prompt: str = "a slow teaser") -> dict[str, Any]:
    """A job whose run never finishes in Motion; returns its card once the run is in Motion."""
    h.sandbox.plan_next(NEVER)
    card = await run_command(h, prompt)
    await until(lambda: status_calls(h) >= 1, what="the first status call")
    return card


async def first_notice(h: Harness, card_ts: str) -> dict[str, Any]:
    found = await until(lambda: notices(h, card_ts), timeout=10, what="the stuck notice")
    return found[0]


async def press(
    h: Harness, message: dict[str, Any], action_id: str, *, user: str = "U0ALICE",
    to: MotionBot | None = None,
) -> None:  # fmt: skip
    """Press the button `action_id` on `message` as Slack would deliver it."""
    value = button_of(message, action_id)["value"]
    response = await h.action(action_id, value, message_ts=message["ts"], user=user, to=to)
    assert response.status_code == 200, response.text


def current(h: Harness, message: dict[str, Any]) -> dict[str, Any]:
    found = h.slack.message("C0PUBLIC", message["ts"])
    assert found is not None
    return found


async def assert_polling_ended(h: Harness) -> None:
    """No status call after a look that was in flight: polling of the job has ended."""
    await settle(0.5)
    before = status_calls(h)
    await settle(1.0)
    assert status_calls(h) == before, "the stopped job is still being polled"


# ---------------------------------------------------------------- the notice


async def test_a_run_not_finished_in_time_gets_one_notice_with_both_buttons(
    harness: Harness,
) -> None:
    await harness.start(**STUCK)
    started = time.time()
    card = await stuck_job(harness)
    notice = await first_notice(harness, card["ts"])
    assert time.time() - started >= PERIOD
    assert "Run 1 is still not finished" in notice["text"]
    assert [b["action_id"] for b in buttons(notice)] == ["stuck_keep_waiting", "stop_tracking"]
    polled = status_calls(harness)
    await settle(PERIOD * 4)  # four periods more: nobody answered, so no second notice
    assert len(notices(harness, card["ts"])) == 1
    assert status_calls(harness) > polled  # still followed meanwhile
    assert "Stop tracking" in str(current(harness, card)["blocks"])


async def test_keep_waiting_rewrites_the_notice_and_asks_again_after_as_long_again(
    harness: Harness,
) -> None:
    await harness.start(**STUCK)
    card = await stuck_job(harness)
    notice = await first_notice(harness, card["ts"])
    clicked = time.time()
    await press(harness, notice, "stuck_keep_waiting", user="U0BOB")
    rewritten = await until(
        lambda: (
            "chose to keep waiting" in current(harness, notice)["text"] and current(harness, notice)
        ),
        what="the notice saying who chose to keep waiting",
    )
    assert "<@U0BOB> chose to keep waiting" in rewritten["text"]
    assert buttons(rewritten) == []
    second = await until(
        lambda: len(notices(harness, card["ts"])) == 2 and notices(harness, card["ts"])[1],
        timeout=10,
        what="the second notice",
    )
    assert time.time() - clicked >= PERIOD
    assert "still not finished" in second["text"]
    assert button_of(second, "stuck_keep_waiting")["value"].endswith(":2")

    # A replay of the first click (Slack retries, a double click) changes nothing more.
    edits = len(harness.posts("chat.update"))
    await press(harness, notice, "stuck_keep_waiting", user="U0BOB")
    answer = await until(lambda: private_answers(harness, "U0BOB"), what="a private answer")
    assert "already answered" in answer[0]
    await settle(PERIOD * 2)
    assert len(notices(harness, card["ts"])) == 2
    assert current(harness, notice)["text"] == rewritten["text"]
    notice_edits = [
        c for c in harness.posts("chat.update")[edits:] if c.params.get("ts") == notice["ts"]
    ]
    assert notice_edits == []


# ---------------------------------------------------------------- Stop tracking


async def test_the_requester_stops_tracking_from_the_notice(harness: Harness) -> None:
    await harness.start(**STUCK)
    card = await stuck_job(harness)
    notice = await first_notice(harness, card["ts"])
    await press(harness, notice, "stop_tracking", user="U0ALICE")
    said = await until(lambda: stop_posts(harness, card["ts"]), what="the stop message")
    assert "<@U0ALICE> stopped tracking this job" in said[0]["text"]
    assert NO_CANCEL_WORDS in said[0]["text"] and "no way to cancel" in said[0]["text"]
    text = await until(
        lambda: STOPPED_WORDS in card_text(harness, card["ts"]) and card_text(harness, card["ts"]),
        what="the card saying it was stopped",
    )
    assert NO_CANCEL_WORDS in text and "⛔ Stopped" in text
    assert "stop_tracking" not in [b["action_id"] for b in buttons(current(harness, card))]
    answered = await until(
        lambda: (
            "chose to stop tracking" in current(harness, notice)["text"]
            and current(harness, notice)
        ),
        what="the notice saying who stopped it",
    )
    assert buttons(answered) == []
    await assert_polling_ended(harness)
    assert len(stop_posts(harness, card["ts"])) == 1 and results(harness, card["ts"]) == []
    assert private_answers(harness, "U0ALICE") == []


async def test_an_admin_stops_tracking_from_the_card(harness: Harness) -> None:
    await harness.start(MOTION_ADMINS="U0CAROL", STUCK_AFTER_MINUTES="60")
    card = await stuck_job(harness)
    card = await until(
        lambda: buttons(current(harness, card)) and current(harness, card), what="Stop on card"
    )
    assert button_of(card, "stop_tracking")["value"].isdigit()
    await press(harness, card, "stop_tracking", user="U0CAROL")
    said = await until(lambda: stop_posts(harness, card["ts"]), what="the stop message")
    assert "<@U0CAROL> stopped tracking" in said[0]["text"]
    await until(lambda: "<@U0CAROL> stopped tracking" in card_text(harness, card["ts"]))
    await assert_polling_ended(harness)
    assert notices(harness, card["ts"]) == []


async def test_someone_else_is_refused_privately_and_nothing_changes(harness: Harness) -> None:
    await harness.start(MOTION_ADMINS="U0CAROL", STUCK_AFTER_MINUTES="60")
    card = await stuck_job(harness)
    card = await until(
        lambda: buttons(current(harness, card)) and current(harness, card), what="Stop on card"
    )
    await press(harness, card, "stop_tracking", user="U0BOB")
    answer = await until(lambda: private_answers(harness, "U0BOB"), what="the refusal")
    assert "Only <@U0ALICE>" in answer[0] and "Motion admin" in answer[0]
    assert "Nothing was changed" in answer[0]
    polled = status_calls(harness)
    await settle(1.0)
    assert stop_posts(harness, card["ts"]) == []
    assert status_calls(harness) > polled  # still followed
    assert STOPPED_WORDS not in card_text(harness, card["ts"])
    job = harness.bot.store.job_for_thread("C0PUBLIC", card["ts"], team_id="T0001")
    assert job is not None and job.state == "open" and job.stopped_by is None


async def test_a_double_click_and_a_replay_stop_once(harness: Harness) -> None:
    await harness.start(**STUCK)
    card = await stuck_job(harness)
    notice = await first_notice(harness, card["ts"])
    await asyncio.gather(
        press(harness, notice, "stop_tracking"),
        press(harness, card_with_stop(harness, card), "stop_tracking"),
    )
    await until(lambda: stop_posts(harness, card["ts"]), what="the stop message")
    await press(harness, notice, "stop_tracking")  # a replay, later
    await until(lambda: private_answers(harness, "U0ALICE"), what="already stopped")
    await settle(0.8)
    assert len(stop_posts(harness, card["ts"])) == 1
    assert any("already stopped" in a for a in private_answers(harness, "U0ALICE"))


def card_with_stop(h: Harness, card: dict[str, Any]) -> dict[str, Any]:
    message = current(h, card)
    assert "stop_tracking" in [b["action_id"] for b in buttons(message)]
    return message


async def test_two_instances_clicked_at_once_stop_once(harness: Harness) -> None:
    first = await harness.start(**STUCK)
    second = await harness.start(**STUCK)
    card = await stuck_job(harness)
    notice = await first_notice(harness, card["ts"])
    assert len(notices(harness, card["ts"])) == 1  # two instances, one notice
    on_card = card_with_stop(harness, card)
    await asyncio.gather(
        press(harness, notice, "stop_tracking", to=first),
        press(harness, notice, "stop_tracking", to=second),
        press(harness, on_card, "stop_tracking", to=second),
        press(harness, on_card, "stop_tracking", to=first),
    )
    await until(lambda: stop_posts(harness, card["ts"]), what="the stop message")
    await until(lambda: STOPPED_WORDS in card_text(harness, card["ts"]), what="stopped card")
    await assert_polling_ended(harness)
    assert len(stop_posts(harness, card["ts"])) == 1
    assert len(private_answers(harness, "U0ALICE")) == 3  # the other three: already stopped
    assert len(notices(harness, card["ts"])) == 1


async def test_waiting_followups_are_dropped_with_the_failed_reaction_and_one_message(
    harness: Harness,
) -> None:
    await harness.start(STUCK_AFTER_MINUTES="60")
    card = await stuck_job(harness)
    thread = card["ts"]
    first = harness.reply_event(thread, "make it brighter")
    second = harness.reply_event(thread, "and shorter")
    for reply in (first, second):
        assert (await harness.event(reply)).status_code == 200
    for reply in (first, second):
        await until(lambda r=reply: harness.slack.reactions("C0PUBLIC", r["ts"]), what="⏳")
    await until(lambda: "2 followups waiting" in card_text(harness, thread), what="2 waiting")
    await press(harness, card_with_stop(harness, card), "stop_tracking")
    said = await until(lambda: stop_posts(harness, thread), what="the stop message")
    assert "2 waiting followups (marked ❌) were dropped" in said[0]["text"]
    for reply in (first, second):
        await until(
            lambda r=reply: (
                harness.slack.reactions("C0PUBLIC", r["ts"]) == ["hourglass_flowing_sand", "x"]
            ),
            what="the failed reaction on each dropped reply",
        )
    await assert_polling_ended(harness)
    await harness.bot.service.drain_background()
    assert harness.sandbox.count("followup") == 0
    assert len(stop_posts(harness, thread)) == 1
    assert len(harness.posts("reactions.add")) == 4
    # Never sent, so not spent: the two dropped followups gave their counts back.
    assert harness.bot.service.usage_view("T0001", "U0ALICE").today == 1
    assert "followups waiting" not in card_text(harness, thread)


async def test_a_reply_in_a_stopped_thread_is_refused_with_what_to_do(harness: Harness) -> None:
    await harness.start(STUCK_AFTER_MINUTES="60")
    card = await stuck_job(harness)
    await press(harness, card_with_stop(harness, card), "stop_tracking")
    await until(lambda: stop_posts(harness, card["ts"]), what="the stop message")
    reply = harness.reply_event(card["ts"], "one more idea")
    assert (await harness.event(reply)).status_code == 200
    answer = await until(
        lambda: replies(harness, card["ts"], "was not sent to Motion"), what="the refusal"
    )
    assert "`/motion`" in answer[0]["text"]
    await until(lambda: harness.slack.reactions("C0PUBLIC", reply["ts"]) == ["x"])
    await settle(0.5)
    assert harness.sandbox.count("followup") == 0


# ---------------------------------------------------------------- restarts


async def test_the_notice_is_not_posted_again_after_a_restart(harness: Harness) -> None:
    await harness.start(**STUCK)
    card = await stuck_job(harness)
    await first_notice(harness, card["ts"])
    await harness.stop()
    await harness.start(**STUCK)
    polled = status_calls(harness)
    await until(lambda: status_calls(harness) > polled + 3, what="polling after the restart")
    await settle(PERIOD * 3)
    assert len(notices(harness, card["ts"])) == 1


async def test_a_notice_that_fell_due_while_the_app_was_down_comes_after_the_restart(
    harness: Harness,
) -> None:
    slow = {"STUCK_AFTER_MINUTES": "0.04"}  # 2.4 s
    await harness.start(**slow)
    sent = time.time()
    card = await stuck_job(harness)
    await harness.stop()
    assert notices(harness, card["ts"]) == []
    await asyncio.sleep(max(0.0, sent + 2.6 - time.time()))  # due while nobody runs
    await harness.start(**slow)
    await first_notice(harness, card["ts"])
    await settle(1.0)
    assert len(notices(harness, card["ts"])) == 1


# ---------------------------------------------------------------- a stop racing the result


async def test_a_stop_racing_the_result_announces_one_of_them(harness: Harness) -> None:
    """Stop clicked around the moment the run completes, at several offsets: the thread gets
    either the result or the stop message, never both, and the card agrees."""
    await harness.start(STUCK_AFTER_MINUTES="60")
    plan = JobPlan(queued_s=0.02, created_s=0.02, running_s=0.4, render_s=0.05)
    outcomes: list[str] = []
    for offset in (0.0, 0.3, 0.45, 0.55, 0.7, 1.5):
        harness.sandbox.plan_next(plan)
        card = await run_command(harness, f"race {offset}")
        card = await until(
            lambda c=card: buttons(current(harness, c)) and current(harness, c), what="Stop"
        )
        await asyncio.sleep(offset)
        await press(harness, card, "stop_tracking")
        await until(
            lambda c=card: (
                stop_posts(harness, c["ts"])
                or ("Done" in card_text(harness, c["ts"]) and results(harness, c["ts"]))
            ),
            what="one outcome",
        )
        await settle(0.6)
        stopped, announced = stop_posts(harness, card["ts"]), results(harness, card["ts"])
        text = card_text(harness, card["ts"])
        assert len(stopped) + len(announced) == 1, (offset, stopped, announced)
        if stopped:
            assert STOPPED_WORDS in text and "Done" not in text
            outcomes.append("stopped")
        else:
            assert "Done" in text and STOPPED_WORDS not in text
            outcomes.append("done")
    assert outcomes[0] == "stopped" and outcomes[-1] == "done", outcomes
    assert any("nothing left to follow" in a for a in private_answers(harness, "U0ALICE"))


async def test_a_status_answer_in_flight_when_stop_is_recorded_announces_nothing(
    harness: Harness,
) -> None:
    """The look that holds the job's lease is waiting on a status call when Stop is pressed;
    the answer says the video is ready. The stop stands: no result, the card stays stopped."""
    await harness.start(STUCK_AFTER_MINUTES="60")
    harness.sandbox.plan_next(JobPlan(queued_s=0.02, created_s=0.02, running_s=0.1, render_s=0.02))
    harness.sandbox.fault("status", delay=1.2, times=50)  # every status call answers late
    card = await run_command(harness, "a quick one")
    card = await until(lambda: buttons(current(harness, card)) and current(harness, card))
    await until(lambda: harness.sandbox.job_ids, what="the create")
    await asyncio.sleep(0.4)  # the first status call is out now, its answer 0.8 s away
    assert status_calls(harness) == 0
    await press(harness, card, "stop_tracking")
    await until(lambda: stop_posts(harness, card["ts"]), what="the stop message")
    await until(lambda: status_calls(harness) >= 1, what="the late status answer")
    assert harness.sandbox.job(harness.sandbox.job_ids[0]).download_url is not None
    await settle(1.5)
    assert results(harness, card["ts"]) == []
    text = card_text(harness, card["ts"])
    assert STOPPED_WORDS in text and "Done" not in text
    assert len(stop_posts(harness, card["ts"])) == 1
    assert status_calls(harness) == 1  # the one in flight; none after it


async def test_a_create_in_flight_when_stop_is_recorded_is_not_followed(harness: Harness) -> None:
    """Stop pressed while the create is out (its answer late): Motion's job exists (the API
    has no cancel) but the run stays stopped and is never polled."""
    await harness.start(STUCK_AFTER_MINUTES="60")
    harness.sandbox.plan_next(NEVER)
    harness.sandbox.fault("create", delay=1.0, after_processing=True)
    card = await run_command(harness, "a slow start")
    await until(lambda: harness.sandbox.job_ids, what="the create taking effect")
    job = harness.bot.store.job_for_thread("C0PUBLIC", card["ts"], team_id="T0001")
    assert job is not None and job.motion_job_id is None  # the create's answer is not back
    # The card's first post has no button yet (the job opens with it): press what it will carry.
    await harness.action("stop_tracking", str(job.id), message_ts=card["ts"])
    await until(lambda: stop_posts(harness, card["ts"]), what="the stop message")
    await settle(2.0)
    assert harness.sandbox.count("create") == 1 and status_calls(harness) == 0
    job = harness.bot.store.job_for_thread("C0PUBLIC", card["ts"], team_id="T0001")
    assert job is not None and job.state == "stopped" and job.motion_job_id is not None
    assert [r.state for r in harness.bot.store.runs(job.id)] == ["stopped"]
    assert STOPPED_WORDS in card_text(harness, card["ts"])


# ---------------------------------------------------------------- the poller's cost


@pytest.mark.sqlite_only  # the statements are counted with sqlite3's trace callback
async def test_the_stuck_timer_costs_no_statement_of_its_own_until_a_notice_is_due(
    harness: Harness,
) -> None:
    """Every statement the app runs is recorded while a never-finishing run is polled: before
    its notice is due and after it was posted, none is the stuck logic's; at the moment it is
    due, exactly one (the claim, with its post, in one transaction)."""
    bot = await harness.start(STUCK_AFTER_MINUTES="0.02")  # 1.2 s
    statements: list[str] = []
    bot.store.db.conn.set_trace_callback(statements.append)
    card = await stuck_job(harness)
    before_polls, before = status_calls(harness), len(statements)
    await asyncio.sleep(0.8)
    assert notices(harness, card["ts"]) == []
    window_a = statements[before:]
    polls_a = status_calls(harness) - before_polls
    await first_notice(harness, card["ts"])
    after_polls, after = status_calls(harness), len(statements)
    await asyncio.sleep(0.8)
    window_b = statements[after:]
    polls_b = status_calls(harness) - after_polls
    bot.store.db.conn.set_trace_callback(None)
    stuck = [s for s in statements if STUCK_COLUMNS.search(s)]
    assert [s for s in window_a + window_b if STUCK_COLUMNS.search(s)] == []
    assert len(stuck) == 1 and "SET stuck_notices = stuck_notices + 1" in stuck[0]
    assert polls_a >= 3 and polls_b >= 3
    print(
        f"[statements per status call] before the notice {len(window_a) / polls_a:.1f},"
        f" after it {len(window_b) / polls_b:.1f}"
    )


async def test_the_buttons_carry_specs_names_exactly(harness: Harness) -> None:
    """SPEC names the buttons "Keep waiting", "Stop tracking", "Refine", "New variation" and
    "Fresh link": that is what a person reads (and searches for), nothing added."""
    await harness.start(**STUCK)
    card = await stuck_job(harness)
    notice = await first_notice(harness, card["ts"])
    labels = {b["action_id"]: b["text"]["text"] for b in buttons(notice)}
    assert labels == {"stuck_keep_waiting": "Keep waiting", "stop_tracking": "Stop tracking"}
    [on_card] = buttons(current(harness, card))
    assert on_card["text"]["text"] == "Stop tracking"
    finished = await run_command(harness, "a quick teaser")
    [result] = await until(lambda: results(harness, finished["ts"]), what="the result")
    labels = {b["action_id"]: b["text"]["text"] for b in buttons(result)}
    assert {k: v for k, v in labels.items() if k != "download"} == {
        "refine": "Refine", "new_variation": "New variation", "fresh_link": "Fresh link",
    }  # fmt: skip


async def test_a_mention_jobs_notice_and_card_are_told_apart_and_its_card_is_edited(
    harness: Harness,
) -> None:
    """A job started by an @mention: its thread's parent is the person's message, its card the
    app's first reply. The notice comes in that thread; a stop from the notice rewrites the
    notice and edits the card (never the person's message)."""
    await harness.start(**STUCK)
    harness.sandbox.plan_next(NEVER)
    mention, _ = harness.slack.mention("C0PUBLIC", "<@U0BOT> a slow teaser", user="U0ALICE")
    assert (await harness.event(mention)).status_code == 200
    [card] = await until(lambda: harness.bot_replies(mention["ts"])[:1], what="the card")
    notice = await until(
        lambda: notices(harness, mention["ts"])[:1], timeout=10, what="the stuck notice"
    )
    notice = notice[0]
    assert notice["ts"] != card["ts"]
    await press(harness, notice, "stop_tracking", user="U0ALICE")
    await until(lambda: stop_posts(harness, mention["ts"]), what="the stop message")
    await until(
        lambda: STOPPED_WORDS in current(harness, card)["text"], what="the card, a reply, edited"
    )
    await until(
        lambda: "chose to stop tracking" in current(harness, notice)["text"],
        what="the notice rewritten",
    )
    assert current(harness, mention)["text"] == mention["text"]  # the person's own message
    assert buttons(current(harness, card)) == []
    await assert_polling_ended(harness)


async def test_stop_on_a_mention_jobs_card_edits_the_card_not_as_a_notice(
    harness: Harness,
) -> None:
    await harness.start(STUCK_AFTER_MINUTES="60")
    harness.sandbox.plan_next(NEVER)
    mention, _ = harness.slack.mention("C0PUBLIC", "<@U0BOT> a slow teaser", user="U0ALICE")
    assert (await harness.event(mention)).status_code == 200
    [card] = await until(
        lambda: [m for m in harness.bot_replies(mention["ts"])[:1] if buttons(m)],
        what="the card with Stop tracking",
    )
    await press(harness, card, "stop_tracking", user="U0ALICE")
    edited = await until(
        lambda: STOPPED_WORDS in current(harness, card)["text"] and current(harness, card),
        what="the card saying it was stopped",
    )
    assert "chose to stop tracking" not in edited["text"]  # not rewritten as a notice
    assert NO_CANCEL_WORDS in edited["text"] and buttons(edited) == []
    assert current(harness, mention)["text"] == mention["text"]
    await assert_polling_ended(harness)
