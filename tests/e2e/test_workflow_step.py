"""The Workflow Builder step "Make a Motion video" (`function_executed`, callback id
`make_motion_video`), end to end: the real app over real sockets, the stand-in keeping the
executions (an execution ends once; a second end is refused as Slack refuses it).

A step starts a job as `/motion` from the requester in the step's channel would, and ends when
the job's first run does: completed with `video_url`, `thread_permalink` and `job_id`, or
failed with the words on the card. One run per execution, one end per execution, whichever
instance sees it."""

from __future__ import annotations

from typing import Any

from bot.local.functions import Execution
from bot.local.tryout import free_port
from bot.sandbox import JobPlan
from tests.support.e2e import READY, buttons, results, settle, wait_card
from tests.support.harness import Harness, until

SLOW = JobPlan(queued_s=0.2, created_s=0.2, running_s=2.5, render_s=0.2)


def execution(harness: Harness, event: dict[str, Any]) -> Execution:
    found = harness.slack.functions.execution(event["function_execution_id"])
    assert found is not None
    return found


async def ended(harness: Harness, event: dict[str, Any], timeout: float = 15) -> Execution:
    """The execution once the app has ended it (and a moment more, for a second end)."""
    await until(
        lambda: execution(harness, event).state != "running",
        timeout=timeout,
        what="the step's end",
    )
    await settle()
    return execution(harness, event)


def ends(harness: Harness) -> list[Any]:
    """Every completeSuccess / completeError call, whatever Slack answered."""
    return harness.slack.calls("functions.completeSuccess") + harness.slack.calls(
        "functions.completeError"
    )


def step_jobs(harness: Harness) -> int:
    return int(harness.bot.store._value("SELECT COUNT(*) FROM jobs"))


async def test_a_step_starts_a_job_and_completes_once_with_its_outputs(
    harness: Harness,
) -> None:
    await harness.start()
    event, answer = await harness.workflow_step(
        harness.step_inputs("a fox in the snow", aspect="9:16", duration="10-30s")
    )
    assert answer.status_code == 200
    card = (await until(lambda: harness.cards(), what="the step's card"))[0]
    assert "<@U0ALICE>" in card["text"]  # the requester's job, in the step's channel
    done = await ended(harness, event)
    assert done.state == "completed" and done.ends == 1 and done.refused == 0
    [result] = results(harness, card["ts"])
    assert done.outputs is not None
    outputs = done.outputs
    assert set(outputs) == {"video_url", "thread_permalink", "job_id"}
    [job] = harness.bot.store.recent_jobs("T0001", "U0ALICE")
    assert outputs["job_id"] == str(job.id)
    [create] = harness.sandbox.creates
    assert create["prompt"] == "a fox in the snow"
    assert create["aspect_ratio"] == "9:16" and create["duration"] == "10-30s"
    # Without PUBLIC_URL the video's link is Motion's own, as the result in the thread shows it.
    assert outputs["video_url"] == harness.sandbox.job(job.motion_job_id or "").download_url
    assert outputs["video_url"] in str(result["blocks"])
    assert outputs["thread_permalink"].endswith(f"/p{card['ts'].replace('.', '')}")
    assert len(ends(harness)) == 1
    # The step's token is never used: everything went out with the app's own bot token.
    assert all(c.params.get("token") is None for c in ends(harness))


async def test_with_public_url_the_step_outputs_the_lasting_link(harness: Harness) -> None:
    port = free_port()
    await harness.start(PORT=str(port), PUBLIC_URL=f"http://127.0.0.1:{port}")
    event, _ = await harness.workflow_step(harness.step_inputs())
    done = await ended(harness, event)
    assert done.state == "completed" and done.outputs is not None
    assert done.outputs["video_url"].startswith(f"http://127.0.0.1:{port}/v/")
    [card] = harness.cards()
    assert done.outputs["video_url"] in str(results(harness, card["ts"])[0]["blocks"])


async def test_a_redelivered_step_makes_one_job_and_one_completion(harness: Harness) -> None:
    harness.sandbox.plan_next(SLOW)
    await harness.start()
    event, _ = await harness.workflow_step(harness.step_inputs())
    await until(lambda: harness.cards(), what="the card")
    # Slack retries the same delivery, then sends the same execution again as a new event.
    envelope_id = "Ev0REDELIVERED"
    for retry, event_id in ((1, envelope_id), (2, envelope_id), (None, "Ev0NEWDELIVERY")):
        answer = await harness.event(event, event_id=event_id, retry=retry)
        assert answer.status_code == 200
    done = await ended(harness, event, timeout=20)
    assert done.state == "completed" and done.ends == 1
    assert len(harness.cards()) == 1 and step_jobs(harness) == 1
    assert harness.sandbox.count("create") == 1
    assert len(ends(harness)) == 1


async def test_a_second_end_is_refused_by_slack_and_taken_as_done(harness: Harness) -> None:
    """The completion's answer is lost: the outbox sends it again, Slack answers
    execution_not_in_running_state, and that is the end of it (no loop, no second post)."""
    await harness.start()
    harness.slack.fail_next("functions.completeSuccess", drop="after")
    event, _ = await harness.workflow_step(harness.step_inputs())
    done = await ended(harness, event)
    await until(lambda: len(ends(harness)) == 2, what="the resent completion")
    await settle(0.6)
    assert done.state == "completed" and done.ends == 1
    assert execution(harness, event).refused == 1
    assert [(c.ok, c.error) for c in ends(harness)] == [
        (True, None),
        (False, "execution_not_in_running_state"),
    ]
    [card] = harness.cards()
    assert len(results(harness, card["ts"])) == 1


async def test_another_instance_completes_a_step_whose_instance_stopped(
    harness: Harness,
) -> None:
    harness.sandbox.plan_next(JobPlan(queued_s=0.3, created_s=0.3, running_s=3.0, render_s=0.2))
    first = await harness.start(MOTION_INSTANCE="web.1")
    second = await harness.start(MOTION_INSTANCE="web.2")
    event, _ = await harness.workflow_step(harness.step_inputs(), to=first)
    await until(lambda: harness.sandbox.count("create") == 1, what="the create")
    await harness.stop(first)  # its leases are freed: the other instance takes the job
    assert second in harness.bots and first not in harness.bots
    done = await ended(harness, event, timeout=25)
    assert done.state == "completed" and done.ends == 1
    assert len(ends(harness)) == 1 and harness.sandbox.count("create") == 1
    [card] = harness.cards()
    assert len(results(harness, card["ts"])) == 1


async def test_a_restart_still_completes_the_step(harness: Harness) -> None:
    harness.sandbox.plan_next(SLOW)
    await harness.start()
    event, _ = await harness.workflow_step(harness.step_inputs())
    await until(lambda: harness.sandbox.count("create") == 1, what="the create")
    await harness.stop()
    assert execution(harness, event).state == "running"
    await harness.start()
    done = await ended(harness, event, timeout=20)
    assert done.state == "completed" and len(ends(harness)) == 1


# ---------------------------------------------------------------- the step fails, once


async def failed_with(harness: Harness, event: dict[str, Any], *needles: str) -> str:
    done = await ended(harness, event)
    assert done.state == "failed" and done.ends == 1 and done.error
    for needle in needles:
        assert needle in done.error, done.error
    # And once: however long one waits, nothing ends it again.
    await settle(0.5)
    assert len(ends(harness)) == 1
    return done.error


async def test_bad_input_fails_the_step_with_what_to_fix_and_starts_nothing(
    harness: Harness,
) -> None:
    await harness.start()
    cases = [
        (harness.step_inputs(""), "The prompt is empty"),
        (harness.step_inputs(aspect="3:2"), "--aspect 3:2"),
        (harness.step_inputs(style_link="https://vimeo.com/1"), "YouTube"),
        (harness.step_inputs("x" * 12_001), "12,001 characters"),
    ]
    for inputs, needle in cases:
        event, answer = await harness.workflow_step(inputs)
        assert answer.status_code == 200
        done = await ended(harness, event)
        assert done.state == "failed" and done.ends == 1 and needle in (done.error or "")
    await settle()
    assert len(ends(harness)) == len(cases)
    assert harness.cards() == [] and harness.sandbox.count("create") == 0


async def test_a_redelivered_refusal_fails_the_step_once(harness: Harness) -> None:
    await harness.start()
    event, _ = await harness.workflow_step(harness.step_inputs(""))
    await harness.event(event, event_id="Ev0AGAIN")
    await failed_with(harness, event, "The prompt is empty")


async def test_a_channel_the_spend_controls_refuse_fails_the_step(harness: Harness) -> None:
    await harness.start(MOTION_ALLOWED_CHANNELS="G0MEMBER")
    event, _ = await harness.workflow_step(harness.step_inputs())
    await failed_with(harness, event, "can't be started in this channel")
    assert harness.cards() == [] and step_jobs(harness) == 0


async def test_a_spend_limit_fails_the_step_with_the_limit(harness: Harness) -> None:
    await harness.start(MOTION_RUNS_PER_USER_PER_DAY="1")
    first, _ = await harness.workflow_step(harness.step_inputs("first"))
    assert (await ended(harness, first)).state == "completed"
    second, _ = await harness.workflow_step(harness.step_inputs("second"))
    done = await ended(harness, second)
    assert done.state == "failed" and (done.error or "").startswith("⛔ You have used 1 of your 1")
    assert harness.sandbox.count("create") == 1 and step_jobs(harness) == 1


async def test_not_enough_credits_fails_the_step(harness: Harness) -> None:
    harness.sandbox.set_balance(3, minimum=50)
    await harness.start()
    event, _ = await harness.workflow_step(harness.step_inputs())
    error = await failed_with(harness, event, "not enough Motion credits")
    assert error.startswith("❌ Not started")
    [card] = harness.cards()
    assert "not enough Motion credits" in card["text"]


async def test_a_failed_run_fails_the_step_with_motions_reason(harness: Harness) -> None:
    harness.sandbox.plan_next(JobPlan(queued_s=0.05, created_s=0.05, fail_error="scene too dark"))
    await harness.start()
    event, _ = await harness.workflow_step(harness.step_inputs())
    error = await failed_with(harness, event, "scene too dark")
    assert error.startswith("❌ Failed")
    [card] = harness.cards()
    await wait_card(harness, card["ts"], "scene too dark")


async def test_stop_tracking_fails_the_step(harness: Harness) -> None:
    harness.sandbox.plan_next(JobPlan(queued_s=0.05, created_s=0.05, running_s=30.0))
    await harness.start()
    event, _ = await harness.workflow_step(harness.step_inputs())
    [card] = await until(lambda: harness.cards(), what="the card")
    await until(lambda: harness.sandbox.count("create") == 1, what="the create")
    stop = await until(
        lambda: [b for b in buttons(harness.slack.message("C0PUBLIC", card["ts"]) or {})
                 if b["action_id"] == "stop_tracking"],
        what="Stop tracking on the card",
    )  # fmt: skip
    await harness.action("stop_tracking", stop[0]["value"], message_ts=card["ts"])
    await harness.action("stop_tracking", stop[0]["value"], message_ts=card["ts"])
    await failed_with(harness, event, "Stopped")
    assert not any(READY in m["text"] for m in harness.bot_replies(card["ts"]))


async def test_a_revoked_motion_key_stops_the_job_and_fails_the_step(harness: Harness) -> None:
    harness.sandbox.plan_next(JobPlan(queued_s=0.05, created_s=0.05, running_s=30.0))
    await harness.start()
    event, _ = await harness.workflow_step(harness.step_inputs())
    await until(lambda: harness.sandbox.count("create") == 1, what="the create")
    harness.sandbox.fault("status", status=404, times=100)
    await failed_with(harness, event, "Stopped", "Motion no longer knows this job")


async def test_a_channel_the_app_cannot_post_in_fails_the_step(harness: Harness) -> None:
    await harness.start()
    event, _ = await harness.workflow_step({**harness.step_inputs(), "channel": "G0PRIVATE"})
    await failed_with(harness, event, "can't post in that channel", "/invite")
    assert harness.sandbox.count("create") == 0 and harness.cards("G0PRIVATE") == []


async def test_missing_channel_or_requester_fails_the_step(harness: Harness) -> None:
    await harness.start()
    event, _ = await harness.workflow_step({"prompt": "a fox", "channel": "C0PUBLIC"})
    await failed_with(harness, event, "requester is missing")


# ---------------------------------------------------------------- MOTION_CONFIRM


def previews(harness: Harness) -> list[Any]:
    return [
        c for c in harness.slack.calls("chat.postEphemeral") if c.ok and "Start" in str(c.params)
    ]


async def test_a_previewed_step_starts_on_start_and_completes(harness: Harness) -> None:
    await harness.start(MOTION_CONFIRM="true")
    event, _ = await harness.workflow_step(harness.step_inputs())
    [preview] = await until(lambda: previews(harness), what="the preview to the requester")
    assert preview.params["user"] == "U0ALICE" and preview.params["channel"] == "C0PUBLIC"
    await harness.event(event, event_id="Ev0AGAIN")  # a redelivery shows no second preview
    await settle()
    assert len(previews(harness)) == 1 and harness.cards() == []
    start = next(b for b in buttons(preview.params) if b["action_id"] == "confirm_start")
    await harness.action("confirm_start", start["value"])
    await harness.action("confirm_start", start["value"])
    done = await ended(harness, event)
    assert done.state == "completed" and len(ends(harness)) == 1
    assert len(harness.cards()) == 1 and harness.sandbox.count("create") == 1


async def test_a_cancelled_preview_fails_the_step(harness: Harness) -> None:
    await harness.start(MOTION_CONFIRM="true")
    event, _ = await harness.workflow_step(harness.step_inputs())
    [preview] = await until(lambda: previews(harness), what="the preview")
    cancel = next(b for b in buttons(preview.params) if b["action_id"] == "confirm_cancel")
    await harness.action("confirm_cancel", cancel["value"])
    await failed_with(harness, event, "Cancel")
    assert harness.cards() == [] and harness.sandbox.count("create") == 0


async def test_a_preview_nobody_can_be_shown_fails_the_step(harness: Harness) -> None:
    await harness.start(MOTION_CONFIRM="true")
    event, _ = await harness.workflow_step({**harness.step_inputs(), "channel": "G0PRIVATE"})
    await failed_with(harness, event, "preview", "could not be shown")
    assert harness.cards("G0PRIVATE") == [] and harness.sandbox.count("create") == 0


async def test_a_refusal_slack_did_not_take_is_sent_again_at_the_next_start(
    harness: Harness,
) -> None:
    await harness.start()
    harness.slack.fail_next("functions.completeError", error="invalid_auth")
    event, _ = await harness.workflow_step(harness.step_inputs(""))
    await until(lambda: ends(harness), what="the refused call")
    await settle()
    assert execution(harness, event).state == "running" and len(ends(harness)) == 1
    await harness.stop()
    await harness.start()
    done = await ended(harness, event)
    assert done.state == "failed" and "The prompt is empty" in (done.error or "")
    await harness.stop()
    await harness.start()  # sent: a later start sends nothing more
    await settle(0.6)
    assert len(ends(harness)) == 2 and execution(harness, event).ends == 1
