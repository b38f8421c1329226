"""The listener callbacks called directly, as Bolt would call them, with the real service over
a real store: what each acknowledges, records and answers. (Bolt's `ack` and `respond` are
callbacks it hands in; here they record what they were given.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_bolt.async_app import AsyncBoltContext

from bot.jobs import JobService
from bot.listeners import actions, commands, events
from bot.listeners.context import SERVICE_KEY
from bot.motion import MotionClient
from bot.schedule import PollSchedule
from bot.slack.out import SlackOut, make_client
from bot.store import JobState, RunKind, RunState, Store
from tests.support.harness import BOT_TOKEN
from tests.support.slack import SlackDouble

NOW = 1_763_000_000.0


class Recorder:
    """Stands in for Bolt's `ack` / `respond`: keeps each call's keyword arguments."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


@pytest.fixture
async def service(database_url: str, slack: SlackDouble) -> AsyncIterator[JobService]:
    store = Store(database_url)
    motion = MotionClient("http://127.0.0.1:9", "motion_unused")  # never called here
    woken: list[int] = []
    built = JobService(
        store,
        motion,
        SlackOut(make_client(BOT_TOKEN, slack.base_url, retry_writes=False)),
        schedule=PollSchedule(3.0, 30.0),
        sandbox=False,
        clock=lambda: NOW,
        wake=woken.append,
    )
    built.woken = woken  # type: ignore[attr-defined]
    yield built
    await built.drain_background(2)
    await motion.aclose()
    store.close()


def context(service: JobService) -> AsyncBoltContext:
    return AsyncBoltContext({SERVICE_KEY: service, "bot_user_id": "U0BOT"})


def command(text: str, **fields: str) -> dict[str, str]:
    return {
        "team_id": "T0001", "channel_id": "C0PUBLIC", "user_id": "U0ALICE", "text": text,
        "response_url": "http://127.0.0.1:9/never-used", **fields,
    }  # fmt: skip


async def test_a_command_is_recorded_before_its_ack_and_wakes_the_poller(
    service: JobService,
) -> None:
    ack = Recorder()
    await commands.motion_command(ack, command("a fox --aspect 9:16"), context(service))
    [job] = service.store.recent_jobs("T0001", "U0ALICE")
    assert (job.state, job.prompt, job.channel_id) == (JobState.NEW, "a fox", "C0PUBLIC")
    [run] = service.store.runs(job.id)
    assert (run.kind, run.state, run.request["aspect"]) == (
        RunKind.CREATE,
        RunState.WAITING,
        "9:16",
    )
    assert service.woken == [job.id]  # type: ignore[attr-defined]
    assert len(ack.calls) == 1 and "Starting your video" in ack.calls[0]["text"]


@pytest.mark.parametrize(
    ("text", "answer"),
    [("--aspect 9:16", "The prompt is empty"), ("a fox --size big", "`--size` is not an option")],
)
async def test_a_bad_command_is_answered_in_the_ack_and_records_nothing(
    service: JobService, text: str, answer: str
) -> None:
    ack = Recorder()
    await commands.motion_command(ack, command(text), context(service))
    assert answer in ack.calls[0]["text"]
    assert service.store.recent_jobs("T0001", "U0ALICE") == []


@pytest.mark.parametrize("missing", ["user_id", "channel_id"])
async def test_a_command_without_a_person_or_a_channel_records_nothing(
    service: JobService, missing: str
) -> None:
    ack = Recorder()
    fields = command("a fox")
    del fields[missing]
    await commands.motion_command(ack, fields, context(service))
    assert "nothing was started" in ack.calls[0]["text"]
    assert service.store.count_followed() == 0


async def test_help_and_list_are_answered_without_recording_a_job(
    service: JobService, slack: SlackDouble
) -> None:
    ack = Recorder()
    await commands.motion_command(ack, command("help"), context(service))
    listing = command("list", response_url=slack.response_url("list"))
    await commands.motion_command(ack, listing, context(service))
    assert "/motion &lt;prompt&gt;" in ack.calls[0]["text"]
    assert ack.calls[1] == {}  # list answers later through response_url
    await service.drain_background(5)
    [answer] = slack.responses
    assert "You have no Motion jobs yet" in answer["text"]
    assert service.store.count_followed() == 0


def reply(text: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "message", "channel": "C0PUBLIC", "user": "U0BOB", "text": text,
        "ts": "1763000100.000200", "thread_ts": "1763000000.000100", **fields,
    }  # fmt: skip


async def open_job(service: JobService) -> int:
    job_id, _ = service.store.create_job(
        team_id="T0001", channel_id="C0PUBLIC", requester="U0ALICE", response_url=None,
        request={"prompt": "a fox"}, sandbox=False, now=NOW,
    )  # fmt: skip
    service.store.record_card(job_id, "1763000000.000100", "C0PUBLIC", "new", "d", NOW)
    return job_id


async def test_a_reply_in_a_job_thread_becomes_one_followup_however_often_delivered(
    service: JobService,
) -> None:
    job_id = await open_job(service)
    body = {"event_id": "Ev0001", "team_id": "T0001"}
    for _ in range(2):
        await events.on_reply(reply("make it warmer"), body, context(service))
    await events.on_reply(
        reply("make it warmer"), {"event_id": "Ev0002", "team_id": "T0001"}, context(service)
    )
    followups = [r for r in service.store.runs(job_id) if r.kind == RunKind.FOLLOWUP]
    assert [(r.number, r.request["prompt"], r.author) for r in followups] == [
        (2, "make it warmer", "U0BOB")
    ]


@pytest.mark.parametrize(
    "event",
    [
        reply("from a bot", bot_id="B1"),
        reply("edited", subtype="message_changed"),
        reply("top level", thread_ts=None),
        reply("the thread's parent", ts="1763000000.000100"),
        reply("another thread", thread_ts="1763009999.000100"),
    ],
)
async def test_replies_that_are_not_followups_record_nothing(
    service: JobService, event: dict[str, Any]
) -> None:
    job_id = await open_job(service)
    await events.on_reply(event, {"event_id": "Ev0003", "team_id": "T0001"}, context(service))
    assert len(service.store.runs(job_id)) == 1


async def test_a_button_with_a_value_that_is_no_run_says_it_is_already_done(
    service: JobService,
) -> None:
    ack, respond = Recorder(), Recorder()
    body = {"user": {"id": "U0ALICE"}, "team": {"id": "T0001"}}
    await actions.retry_run(ack, body, {"value": "not-a-number"}, respond, context(service))
    await actions.restart_job(ack, body, {"value": "999"}, respond, context(service))
    assert len(ack.calls) == 2
    assert [c["response_type"] for c in respond.calls] == ["ephemeral", "ephemeral"]
    assert "already sent again" in respond.calls[0]["text"]
    assert "already started" in respond.calls[1]["text"]


async def test_send_it_again_makes_one_new_run_however_often_pressed(service: JobService) -> None:
    job_id = await open_job(service)
    [first] = service.store.runs(job_id)
    service.store.mark_sending(first.id, baseline_completed_at=None, baseline_url=None, now=NOW)
    service.outcomes.settle_interrupted(service.store.job(job_id), first)  # type: ignore[arg-type]
    ack, respond = Recorder(), Recorder()
    body = {"team": {"id": "T0001"}, "user": {"id": "U0ALICE", "team_id": "T0001"}}
    presses = [
        actions.retry_run(ack, body, {"value": str(first.id)}, respond, context(service))
        for _ in range(3)
    ]
    await asyncio.gather(*presses)
    states = [r.state for r in service.store.runs(job_id)]
    assert states == [RunState.RETRIED, RunState.WAITING]
    assert len(respond.calls) == 2  # the second and third press are told it was done


# ---------------------------------------------------------------- views


def test_form_answers_are_read_from_the_state_slack_sends() -> None:
    from bot.listeners.views import answers_of
    from bot.slack.messages import new_video_form
    from tests.support.harness import Harness

    view = new_video_form(
        channel_id="C1", aspects=("16:9", "9:16"), durations=("<10s",), sandbox=False
    )
    answers = {"prompt": "a teaser", "style": None, "aspect": "9:16", "channel": "C2"}
    state = Harness.view_state(view, answers)
    read = answers_of(
        {**view, "state": {"values": state}},
        [
            {
                "block_id": "channel",
                "action_id": "value",
                "channel_id": "C2",
                "response_url": "https://r",
            }
        ],
    )
    assert (read.prompt, read.style, read.aspect, read.duration) == ("a teaser", None, "9:16", None)
    assert (read.channel, read.response_url) == ("C2", "https://r")
    empty = answers_of({"state": {"values": {}}})
    assert empty.prompt == "" and empty.channel is None and empty.response_url is None
