"""Thread replies as followups, end to end: signed Events API deliveries, the Slack double and
the sandbox. Each test checks the exact number of Motion calls, Slack posts and reactions."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bot.sandbox import JobPlan
from tests.support.harness import FAST_PLAN, SIGNING_SECRET, Harness, until


def ready_posts(h: Harness, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in h.bot_replies(thread_ts) if "is ready" in m["text"]]


async def finished_job(h: Harness, prompt: str = "a product teaser", **overrides: str) -> str:
    """Start the app (if needed), run one job to its result; returns the thread ts."""
    if not h.bots:
        await h.start(**overrides)
    response = await h.command(prompt)
    assert response.status_code == 200
    card = (await until(lambda: h.cards(), what="card"))[-1]
    await until(lambda: ready_posts(h, card["ts"]), what="first result")
    return card["ts"]


async def assert_counts(h: Harness, **expected: int) -> None:
    """Exact numbers of Motion writes, Slack posts and reactions once everything settled."""
    await asyncio.sleep(0.4)  # anything extra would show up now
    await h.bot.service.drain_background()
    seen = {
        "creates": h.sandbox.count("create"),
        "followups": h.sandbox.count("followup"),
        "posts": len(h.posts("chat.postMessage")),
        "reactions": len(h.posts("reactions.add")),
    }
    print(f"[counts] {seen}")
    assert seen == expected


def followup_prompts(h: Harness) -> list[str]:
    return [body["prompt"] for body in h.sandbox.followups]


async def test_followup_after_completion_runs_again_and_posts_the_new_result_once(
    harness: Harness,
) -> None:
    thread = await finished_job(harness)
    reply = harness.reply_event(thread, "make it shorter --aspect 1:1")
    response = await harness.event(reply)
    assert response.status_code == 200

    results = await until(
        lambda: len(ready_posts(harness, thread)) == 2 and ready_posts(harness, thread)
    )
    assert harness.sandbox.count("create") == 1
    assert harness.sandbox.followups == [{"prompt": "make it shorter", "aspect_ratio": "1:1"}]
    assert "run 2" in results[1]["text"] and "run-2" in results[1]["text"]
    await until(lambda: "arrow_forward" in harness.slack.reactions("C0PUBLIC", reply["ts"]))
    assert harness.slack.reactions("C0PUBLIC", reply["ts"]) == [
        "hourglass_flowing_sand",
        "arrow_forward",
    ]
    card = await until(
        lambda: (
            (m := harness.slack.message("C0PUBLIC", thread))
            and "Run 2" in json.dumps(m["blocks"])
            and "Done" in m["text"]
            and m
        )
    )
    history = json.dumps(card["blocks"])
    assert "run-1.mp4" in history and "run-2.mp4" in history
    assert len(harness.posts("reactions.add")) == 2
    await assert_counts(harness, creates=1, followups=1, posts=3, reactions=2)


async def test_two_followups_written_while_running_are_sent_in_order_once_each(
    harness: Harness,
) -> None:
    harness.sandbox.plan_next(JobPlan(queued_s=0.05, created_s=0.05, running_s=1.0, render_s=0.1))
    await harness.start()
    await harness.command("first cut")
    card = (await until(lambda: harness.cards()))[0]
    first = harness.reply_event(card["ts"], "add music")
    second = harness.reply_event(card["ts"], "and a logo at the end")
    assert (await harness.event(first)).status_code == 200
    assert (await harness.event(second)).status_code == 200

    await until(
        lambda: len(ready_posts(harness, card["ts"])) == 3, timeout=20, what="three results"
    )
    assert harness.sandbox.count("create") == 1
    assert followup_prompts(harness) == ["add music", "and a logo at the end"]
    assert harness.sandbox.count("followup") == 2  # never a 409 retry: each waited for completion
    results = ready_posts(harness, card["ts"])
    assert [
        "run 1" in results[0]["text"],
        "run 2" in results[1]["text"],
        "run 3" in results[2]["text"],
    ] == [True] * 3
    assert len({r["ts"] for r in results}) == 3
    await assert_counts(harness, creates=1, followups=2, posts=4, reactions=4)


async def test_redelivered_event_makes_no_second_followup(harness: Harness) -> None:
    thread = await finished_job(harness)
    reply = harness.reply_event(thread, "brighter colours")
    assert (await harness.event(reply, event_id="Ev0REDELIVER")).status_code == 200
    assert (await harness.event(reply, event_id="Ev0REDELIVER", retry=1)).status_code == 200
    assert (await harness.event(reply, event_id="Ev0REDELIVER", retry=2)).status_code == 200
    await until(lambda: len(ready_posts(harness, thread)) == 2)
    await harness.bot.service.drain_background()
    assert followup_prompts(harness) == ["brighter colours"]
    assert harness.slack.reactions("C0PUBLIC", reply["ts"]) == [
        "hourglass_flowing_sand",
        "arrow_forward",
    ]
    await assert_counts(harness, creates=1, followups=1, posts=3, reactions=2)


async def test_mention_delivered_as_app_mention_and_message_is_one_followup(
    harness: Harness,
) -> None:
    thread = await finished_job(harness)
    reply = harness.reply_event(thread, "<@U0BOT> slower pace")
    mention = {
        k: reply[k] for k in ("type", "user", "text", "ts", "channel", "event_ts", "thread_ts")
    }
    mention["type"] = "app_mention"
    assert (await harness.event(mention)).status_code == 200
    assert (await harness.event(reply)).status_code == 200
    await until(lambda: len(ready_posts(harness, thread)) == 2)
    assert followup_prompts(harness) == ["slower pace"]
    await assert_counts(harness, creates=1, followups=1, posts=3, reactions=2)


async def test_events_that_are_not_human_replies_are_acknowledged_and_ignored(
    harness: Harness,
) -> None:
    thread = await finished_job(harness)
    reply = harness.reply_event(thread, "edited text")
    other_thread = harness.slack.add_human_message("C0PUBLIC", "unrelated")
    ignored: list[dict[str, Any]] = [
        {
            "type": "message",
            "subtype": "message_changed",
            "hidden": True,
            "channel": "C0PUBLIC",
            "ts": "1763869999.000100",
            "message": {**reply, "text": "changed"},
            "previous_message": reply,
        },
        {
            "type": "message",
            "subtype": "message_deleted",
            "hidden": True,
            "channel": "C0PUBLIC",
            "ts": "1763869999.000200",
            "deleted_ts": reply["ts"],
            "previous_message": reply,
        },
        {
            **harness.reply_event(thread, "<@U0BOB> has joined the channel"),
            "subtype": "channel_join",
        },
        {
            **harness.reply_event(thread, "bot says hi"),
            "subtype": "bot_message",
            "bot_id": "B0OTHER",
        },
        {
            **harness.reply_event(thread, "modern bot"),
            "bot_id": "B0OTHER",
            "bot_profile": {"id": "B0OTHER"},
        },
        {**harness.reply_event(thread, "me too"), "subtype": "me_message"},
        # (a `file_share` reply is a followup with its files: tests/e2e/test_e2e_files.py)
        harness.reply_event(other_thread, "a reply in a thread that is not a job"),
        {k: v for k, v in harness.reply_event(thread, "top level").items() if k != "thread_ts"},
        {
            "type": "reaction_added",
            "user": "U0ALICE",
            "reaction": "tada",
            "item": {"type": "message", "channel": "C0PUBLIC", "ts": thread},
            "event_ts": "1763869999.0003",
        },
        {**harness.reply_event(thread, "from the app itself"), "user": "U0BOT", "bot_id": "B0BOT"},
    ]
    for event in ignored:
        response = await harness.event(event)
        assert response.status_code == 200, event
    await harness.bot.service.drain_background()
    assert harness.sandbox.count("followup") == 0
    assert harness.posts("reactions.add") == []
    assert len(harness.bot_replies(thread)) == 1  # only the first result
    await assert_counts(harness, creates=1, followups=0, posts=2, reactions=0)


async def test_followup_requires_mention_when_configured(harness: Harness) -> None:
    thread = await finished_job(harness, FOLLOWUP_REQUIRES_MENTION="true")
    plain = harness.reply_event(thread, "this is just chat")
    assert (await harness.event(plain)).status_code == 200
    mentioned = harness.reply_event(thread, "<@U0BOT> make it blue")
    assert (await harness.event(mentioned)).status_code == 200
    await until(lambda: len(ready_posts(harness, thread)) == 2)
    assert followup_prompts(harness) == ["make it blue"]
    assert harness.slack.reactions("C0PUBLIC", plain["ts"]) == []
    await assert_counts(harness, creates=1, followups=1, posts=3, reactions=2)


async def test_reply_with_a_bad_option_gets_the_error_in_the_thread_and_no_motion_call(
    harness: Harness,
) -> None:
    thread = await finished_job(harness)
    reply = harness.reply_event(thread, "make it wide --aspect 3:2")
    assert (await harness.event(reply)).status_code == 200
    assert (await harness.event(reply, retry=1)).status_code == 200
    errors = await until(
        lambda: [m for m in harness.bot_replies(thread) if "not supported" in m["text"]]
    )
    assert len(errors) == 1
    assert "16:9" in errors[0]["text"]
    await until(lambda: harness.slack.reactions("C0PUBLIC", reply["ts"]) == ["x"])
    assert harness.sandbox.count("followup") == 0
    await assert_counts(harness, creates=1, followups=0, posts=3, reactions=1)


async def test_stale_status_after_a_followup_is_never_announced_as_the_new_result(
    harness: Harness,
) -> None:
    thread = await finished_job(harness)
    harness.sandbox.plan_next(
        JobPlan(queued_s=0.05, created_s=0.05, running_s=0.3, render_s=0.1, stale_polls=4)
    )
    await harness.event(harness.reply_event(thread, "second take"))
    await until(lambda: len(ready_posts(harness, thread)) == 2)
    results = ready_posts(harness, thread)
    assert "run-1.mp4" in results[0]["text"] and "run-2.mp4" not in results[0]["text"]
    assert "run-2.mp4" in results[1]["text"] and "run-1.mp4" not in results[1]["text"]
    statuses_after = [c for c in harness.sandbox.calls if c.endpoint == "status"]
    assert len(statuses_after) >= 5  # the stale answers were seen and waited out
    await assert_counts(harness, creates=1, followups=1, posts=3, reactions=2)


async def test_restart_with_a_followup_waiting_sends_it_once(harness: Harness) -> None:
    harness.sandbox.plan_next(JobPlan(queued_s=0.05, created_s=0.05, running_s=1.5, render_s=0.1))
    await harness.start()
    await harness.command("long first run")
    card = (await until(lambda: harness.cards()))[0]
    await until(lambda: harness.sandbox.count("create") == 1)
    reply = harness.reply_event(card["ts"], "then tighten the edit")
    assert (await harness.event(reply)).status_code == 200
    await harness.stop()
    await harness.start()
    await until(lambda: len(ready_posts(harness, card["ts"])) == 2, timeout=20)
    assert harness.sandbox.count("create") == 1
    assert followup_prompts(harness) == ["then tighten the edit"]
    await assert_counts(harness, creates=1, followups=1, posts=3, reactions=2)


async def test_followup_whose_answer_was_lost_is_found_running_and_not_resent(
    harness: Harness,
) -> None:
    thread = await finished_job(harness)
    harness.sandbox.fault("followup", after_processing=True, drop=True)
    await harness.event(harness.reply_event(thread, "lost answer take"))
    await until(lambda: len(ready_posts(harness, thread)) == 2)
    assert harness.sandbox.count("followup") == 1
    notes = [m for m in harness.bot_replies(thread) if "was lost on the way" in m["text"]]
    assert len(notes) == 1
    await assert_counts(harness, creates=1, followups=1, posts=4, reactions=2)


async def test_followup_lost_before_motion_saw_it_is_reported_with_a_resend_button(
    harness: Harness,
) -> None:
    thread = await finished_job(harness)
    harness.sandbox.fault("followup", drop=True)  # the request never took effect
    await harness.event(harness.reply_event(thread, "vanishing take"))
    notice = await until(
        lambda: [m for m in harness.bot_replies(thread) if "never reached me" in m["text"]]
    )
    assert harness.sandbox.followups == []
    button = next(e for b in notice[0]["blocks"] if b["type"] == "actions" for e in b["elements"])
    assert button["action_id"] == "retry_run"
    await harness.action("retry_run", button["value"], message_ts=notice[0]["ts"])
    await harness.action("retry_run", button["value"], message_ts=notice[0]["ts"])
    await until(lambda: len(ready_posts(harness, thread)) == 2)
    assert followup_prompts(harness) == ["vanishing take"]
    await assert_counts(harness, creates=1, followups=2, posts=4, reactions=1)


async def test_restart_between_recording_a_followup_and_motions_answer(harness: Harness) -> None:
    thread = await finished_job(harness)
    bot = harness.bot
    job = bot.store.job_for_thread("C0PUBLIC", thread, team_id="T0001")
    assert job is not None
    await harness.stop()
    # What a crash mid-call leaves behind: the followup recorded as sending, no answer stored.
    from bot.store import Store

    store = Store(harness.env["DATABASE_URL"])
    done = store.runs(job.id)[-1]
    run_id = store.add_followup(
        job.id, {"prompt": "crash take"}, "U0ALICE", "C0PUBLIC", "1763869000.000100", 0.0
    )
    assert run_id is not None
    store.mark_sending(
        run_id, baseline_completed_at=done.completed_at, baseline_url=done.download_url, now=0.0
    )
    store.close()
    await harness.start()
    notice = await until(
        lambda: [m for m in harness.bot_replies(thread) if "never reached me" in m["text"]],
        timeout=20,
    )
    assert len(notice) == 1
    assert harness.sandbox.count("followup") == 0  # never re-sent blindly
    await assert_counts(harness, creates=1, followups=0, posts=3, reactions=0)


async def test_followup_on_a_failed_job_offers_a_new_job_in_a_new_thread(harness: Harness) -> None:
    harness.sandbox.plan_next(
        JobPlan(queued_s=0.05, created_s=0.05, running_s=0.2, fail_error="out of ideas")
    )
    await harness.start()
    await harness.command("doomed video")
    card = (await until(lambda: harness.cards()))[0]
    await until(lambda: [m for m in harness.bot_replies(card["ts"]) if "failed" in m["text"]])
    reply = harness.reply_event(card["ts"], "try with cats")
    await harness.event(reply)
    offer = await until(
        lambda: [
            m for m in harness.bot_replies(card["ts"]) if "does not take followups" in m["text"]
        ]
    )
    assert harness.sandbox.count("followup") == 1  # Motion answered 409
    button = next(e for b in offer[0]["blocks"] if b["type"] == "actions" for e in b["elements"])
    assert button["action_id"] == "restart_job"
    harness.sandbox.plan_next(FAST_PLAN)
    await harness.action("restart_job", button["value"], message_ts=offer[0]["ts"])
    await harness.action("restart_job", button["value"], message_ts=offer[0]["ts"])
    cards = await until(lambda: len(harness.cards()) == 2 and harness.cards())
    await until(lambda: ready_posts(harness, cards[1]["ts"]))
    assert harness.sandbox.count("create") == 2
    assert harness.sandbox.creates[1]["prompt"] == "doomed video\n\ntry with cats"
    links = await until(
        lambda: [m for m in harness.bot_replies(card["ts"]) if "Started a new job" in m["text"]]
    )
    assert len(links) == 1 and "archives/C0PUBLIC" in links[0]["text"]
    await assert_counts(harness, creates=2, followups=1, posts=6, reactions=2)


async def test_motion_list_shows_the_callers_recent_jobs_with_thread_links(
    harness: Harness,
) -> None:
    thread = await finished_job(harness, prompt="the first video")
    await harness.command("a video for bob", user="U0BOB")
    response = await harness.command("list")
    assert response.status_code == 200
    listing = await until(
        lambda: [r for r in harness.slack.responses if "recent Motion jobs" in r.get("text", "")]
    )
    text = listing[0]["text"]
    assert "the first video" in text and "a video for bob" not in text
    assert f"p{thread.replace('.', '')}" in text
    assert "1 run" in text


async def test_a_409_because_the_job_moved_on_puts_the_followup_back_in_the_queue(
    harness: Harness,
) -> None:
    thread = await finished_job(harness)
    harness.sandbox.fault(
        "followup",
        status=409,
        body=json.dumps(
            {
                "error": "followup_requires_completed_job",
                "message": "Followups can only be created for completed Mosaic Motion jobs.",
                "status": "running",
            }
        ),
    )
    reply = harness.reply_event(thread, "keep this one")
    await harness.event(reply)
    await until(lambda: len(ready_posts(harness, thread)) == 2, what="run 2 after the 409")
    assert followup_prompts(harness) == ["keep this one"]  # accepted once
    await assert_counts(harness, creates=1, followups=2, posts=3, reactions=2)


async def test_a_reply_to_a_job_that_never_started_is_not_sent_as_a_new_video(
    harness: Harness,
) -> None:
    harness.sandbox.set_balance(0, minimum=300)
    await harness.start()
    await harness.command("no credits left")
    card = (await until(lambda: harness.cards()))[0]
    await until(lambda: [m for m in harness.bot_replies(card["ts"]) if "credits" in m["text"]])
    harness.sandbox.set_balance(None)
    reply = harness.reply_event(card["ts"], "try anyway")
    await harness.event(reply)
    notice = await until(
        lambda: [m for m in harness.bot_replies(card["ts"]) if "nothing to refine" in m["text"]]
    )
    assert len(notice) == 1
    await until(lambda: harness.slack.reactions("C0PUBLIC", reply["ts"])[-1:] == ["x"])
    await assert_counts(harness, creates=1, followups=0, posts=3, reactions=2)


async def test_every_queued_followup_is_settled_even_when_each_is_refused(
    harness: Harness,
) -> None:
    harness.sandbox.plan_next(JobPlan(queued_s=0.05, created_s=0.05, running_s=0.8, render_s=0.1))
    await harness.start()
    await harness.command("a busy thread")
    card = (await until(lambda: harness.cards()))[0]
    credits = json.dumps(
        {
            "error": "insufficient_credits",
            "code": "insufficient_credits_minimum_kickoff_balance",
            "message": "Not enough credits.",
            "minimum_required_credits": 1,
            "current_balance": 0,
        }
    )
    harness.sandbox.fault("followup", status=402, body=credits, times=4)
    replies = [harness.reply_event(card["ts"], f"change {i}") for i in range(4)]
    for reply in replies:
        await harness.event(reply)
    await until(
        lambda: len([m for m in harness.bot_replies(card["ts"]) if "Not enough" in m["text"]]) == 4,
        what="four refusals",
    )
    for reply in replies:
        await until(lambda r=reply: harness.slack.reactions("C0PUBLIC", r["ts"])[-1:] == ["x"])
    await assert_counts(harness, creates=1, followups=4, posts=6, reactions=8)


async def test_a_reply_that_comes_before_slack_answers_for_the_card_is_taken(
    harness: Harness,
) -> None:
    """The card is in the channel (people see it and reply) before Slack's answer, which
    carries the card's ts, reaches the app: the reply is queued, not ignored."""
    harness.slack.fail_next("chat.postMessage", answer_delay=0.5)  # the card's answer is slow
    await harness.start()
    await harness.command("a card Slack is slow to confirm")
    card = (await until(lambda: harness.cards()))[0]
    reply = harness.reply_event(card["ts"], "make it blue")
    began = time.monotonic()
    response = await harness.event(reply)
    assert response.status_code == 200
    assert time.monotonic() - began < 2.5  # the ack still leaves within Slack's 3 s
    await until(
        lambda: harness.slack.reactions("C0PUBLIC", reply["ts"])[:1] == ["hourglass_flowing_sand"],
        what="the reply queued",
    )
    await until(lambda: followup_prompts(harness) == ["make it blue"], what="the followup sent")
    await until(
        lambda: (
            harness.slack.reactions("C0PUBLIC", reply["ts"])
            == ["hourglass_flowing_sand", "arrow_forward"]
        ),
        what="the reply marked as sent",
    )
    await assert_counts(harness, creates=1, followups=1, posts=2, reactions=2)


async def test_a_mention_that_comes_before_slack_answers_for_the_card_is_a_followup(
    harness: Harness,
) -> None:
    """The same as an `app_mention` in the card's thread: a followup of the job, not a second
    job started in its thread."""
    harness.slack.fail_next("chat.postMessage", answer_delay=0.5)
    await harness.start()
    await harness.command("a card Slack is slow to confirm")
    card = (await until(lambda: harness.cards()))[0]
    reply = harness.reply_event(card["ts"], "<@U0BOT> slower pace")
    mention = {
        k: reply[k] for k in ("type", "user", "text", "ts", "channel", "event_ts", "thread_ts")
    }
    mention["type"] = "app_mention"
    assert (await harness.event(mention)).status_code == 200
    await until(lambda: followup_prompts(harness) == ["slower pace"], what="the followup sent")
    await until(lambda: len(ready_posts(harness, card["ts"])) == 2, what="run 2's result")
    await assert_counts(harness, creates=1, followups=1, posts=3, reactions=2)


async def test_a_reply_in_a_stopped_job_is_answered_not_left_waiting(harness: Harness) -> None:
    await harness.start()
    harness.sandbox.fault("status", status=404, body='{"error": "not_found"}', times=50)
    await harness.command("a job Motion will forget")
    card = (await until(lambda: harness.cards()))[0]
    await until(
        lambda: [m for m in harness.bot_replies(card["ts"]) if "no longer knows" in m["text"]]
    )
    reply = harness.reply_event(card["ts"], "hello?")
    await harness.event(reply)
    await until(
        lambda: [m for m in harness.bot_replies(card["ts"]) if "no longer refine" in m["text"]]
    )
    await assert_counts(harness, creates=1, followups=0, posts=3, reactions=1)
    answers = [m for m in harness.bot_replies(card["ts"]) if "no longer refine" in m["text"]]
    assert len(answers) == 1


async def test_a_followup_after_a_failed_render_is_sent(harness: Harness) -> None:
    harness.sandbox.plan_next(
        JobPlan(queued_s=0.05, created_s=0.05, running_s=0.2, render_s=0.1, render_fails=True)
    )
    await harness.start()
    await harness.command("render me")
    card = (await until(lambda: harness.cards()))[0]
    await until(
        lambda: [m for m in harness.bot_replies(card["ts"]) if "could not render" in m["text"]]
    )
    await harness.event(harness.reply_event(card["ts"], "try the render again"))
    await until(lambda: ready_posts(harness, card["ts"]), what="run 2's result")
    assert followup_prompts(harness) == ["try the render again"]
    await assert_counts(harness, creates=1, followups=1, posts=3, reactions=2)


async def test_a_followup_refused_with_409_again_and_again_is_reported_not_retried_forever(
    harness: Harness,
) -> None:
    thread = await finished_job(harness)
    conflict = json.dumps({"error": "followup_requires_completed_job", "message": "Not now."})
    harness.sandbox.fault("followup", status=409, body=conflict, times=50)
    reply = harness.reply_event(thread, "never accepted")
    await harness.event(reply)
    notice = await until(
        lambda: [m for m in harness.bot_replies(thread) if "could not reach Motion" in m["text"]],
        what="the give-up notice",
    )
    assert "Not now." in notice[0]["text"]
    await assert_counts(harness, creates=1, followups=6, posts=3, reactions=2)


async def test_one_reply_delivered_to_two_instances_at_once_is_one_followup(
    harness: Harness,
) -> None:
    """Slack may deliver to any instance: the same reply as `app_mention` to one instance and as
    `message` to another, and the same event_id redelivered to both, at the same moment."""
    from tests.support.slack import signed_headers

    thread = await finished_job(harness)
    first = harness.bot
    second = await harness.start()
    reply = harness.reply_event(thread, "<@U0BOT> slower pace")
    mention = {
        k: reply[k] for k in ("type", "user", "text", "ts", "channel", "event_ts", "thread_ts")
    }
    mention["type"] = "app_mention"

    async def deliver(bot: Any, event: dict[str, Any], event_id: str) -> int:
        body = json.dumps(harness.envelope(event, event_id=event_id))
        headers = signed_headers(body, SIGNING_SECRET, "application/json")
        url = f"http://127.0.0.1:{bot.port}/slack/events"
        return (await harness.http.post(url, content=body, headers=headers)).status_code

    answers = await asyncio.gather(
        deliver(first, mention, "EvMENTION1"),
        deliver(second, reply, "EvMESSAGE1"),
        deliver(first, reply, "EvMESSAGE1"),
        deliver(second, mention, "EvMENTION1"),
    )
    assert answers == [200, 200, 200, 200]
    await until(lambda: len(ready_posts(harness, thread)) == 2)
    assert followup_prompts(harness) == ["slower pace"]
    await assert_counts(harness, creates=1, followups=1, posts=3, reactions=2)
