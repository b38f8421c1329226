"""Workflow Builder steps without a server: the step's inputs read by the command's rules, the
words a step fails with, where a job lives in a list, and the store's one-run-per-execution and
one-end-per-execution (a real database: SQLite, or PostgreSQL with TEST_DATABASE_URL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.command_line import UsageError
from bot.jobs.workflow import step_inputs
from bot.jobs.workflow_ends import failure
from bot.slack import messages
from bot.slack.messages.base import job_place
from bot.store import STEP_KIND, NewPost, PreviewGone, Spend, StepPlace, StepState, Store

T0 = 1_000_000.0
REQUEST = {"prompt": "a fox", "style_url": None, "attachments": [], "aspect": None}
PLACE = StepPlace("Fx0001", "T1", "C1", "U1")


# ---------------------------------------------------------------- inputs and words


def test_the_steps_inputs_become_a_request_by_the_commands_rules() -> None:
    asked = step_inputs(
        {
            "prompt": "  a fox &amp; a hare  ",
            "channel": "C1",
            "requester": "U1",
            "style_link": "https://youtu.be/dQw4w9WgXcQ",
            "aspect": "9:16",
            "duration": "",
        }
    )
    assert (asked.channel_id, asked.requester) == ("C1", "U1")
    request = asked.request
    assert request.prompt == "a fox & a hare"
    assert request.style_url == "https://youtu.be/dQw4w9WgXcQ"
    assert (request.aspect, request.duration) == ("9:16", None)


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        ({"prompt": "", "channel": "C1", "requester": "U1"}, "The prompt is empty"),
        ({"prompt": "x" * 12_001, "channel": "C1", "requester": "U1"}, "12,001 characters"),
        ({"prompt": "a", "channel": "C1", "requester": "U1", "aspect": "3:2"}, "--aspect 3:2"),
        ({"prompt": "a", "channel": "C1", "requester": "U1", "duration": "2h"}, "--duration 2h"),
        ({"prompt": "a", "channel": "C1", "requester": "U1", "style_link": "x"}, "YouTube"),
        ({"prompt": "a", "requester": "U1"}, "channel is missing"),
        ({"prompt": "a", "channel": "C1"}, "requester is missing"),
    ],
)
def test_bad_inputs_say_what_to_fix(inputs: dict[str, str], problem: str) -> None:
    with pytest.raises(UsageError, match=problem.replace("(", r"\(")):
        step_inputs(inputs)


def test_a_step_fails_with_the_cards_words() -> None:
    assert messages.step_failed("failed", "scene too dark") == "❌ Failed — scene too dark"
    assert messages.step_failed("rejected", "not enough Motion credits").startswith(
        "❌ Not started — "
    )
    assert messages.step_failed("stopped", None) == "⛔ Stopped"
    assert messages.step_refused("The prompt is empty.") == "⚠️ The prompt is empty."
    assert messages.step_refused("🚫 Motion videos can't…") == "🚫 Motion videos can't…"
    long = failure("x" * 5_000)
    assert long.kind == STEP_KIND and len(long.payload["error"]) <= 1_000


def test_a_job_in_a_dm_is_listed_as_direct_message() -> None:
    assert job_place("D0ALICE") == "Direct message"
    assert job_place("C0PUBLIC") == "<#C0PUBLIC>" and job_place("G0PRIVATE") == "<#G0PRIVATE>"
    listing = messages.job_list(
        [messages.JobListing("a fox", "Done", 1, None, "today", channel_id="D0ALICE")], False
    )
    assert "Direct message" in listing.text


# ---------------------------------------------------------------- the store


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = Store(database_url)
    yield opened
    opened.close()


def create(store: Store, spend: Spend | None = None, place: StepPlace = PLACE) -> int | None:
    created = store.create_job(
        team_id="T1", channel_id="C1", requester="U1", response_url=None, request=REQUEST,
        sandbox=True, now=T0, spend=spend, step=place,
    )  # fmt: skip
    return created[0] if created else None


def test_an_execution_makes_one_job_however_often_it_is_delivered(store: Store) -> None:
    job_id = create(store)
    assert job_id is not None
    assert create(store) is None and create(store) is None
    assert store._value("SELECT COUNT(*) FROM jobs") == 1
    step = store.step("Fx0001")
    assert step is not None and step.state == StepState.RUNNING and step.job_id == job_id
    assert store.running_step(job_id) == "Fx0001"
    assert store.refuse_step(PLACE, "too late", T0) is False  # taken: no refusal to send


def test_a_job_ends_its_step_once_whatever_ends_it(store: Store) -> None:
    job_id = create(store)
    assert job_id is not None
    store.record_card(job_id, "1.1", "C1", "new", "digest", T0)
    [run] = store.runs(job_id)
    done = NewPost(STEP_KIND, {"outputs": {"job_id": str(job_id)}}, thread=False)
    assert store.finish_run(run.id, job_id, state="done", posts=[done], now=T0 + 1)

    def stopped(_: int) -> NewPost:
        return NewPost("tracking_stopped", {"text": "stopped"})

    store.stop_tracking(job_id, "U1", stopped, T0 + 2, also=[failure("⛔ Stopped")])
    steps = [p for p in store.open_posts(job_id) if p.kind == STEP_KIND]
    assert [p.payload for p in steps] == [
        {"outputs": {"job_id": str(job_id)}, "execution_id": "Fx0001"}
    ]
    assert store.running_step(job_id) is None
    step = store.step("Fx0001")
    assert step is not None and step.state == StepState.ENDED


def test_a_previewed_execution_is_taken_by_its_start_only(store: Store) -> None:
    token = "preview-token"
    saved = store.save_preview(
        token=token, kind="new_job", team_id="T1", channel_id="C1", user_id="U1", now=T0,
        request=REQUEST, step=PLACE,
    )  # fmt: skip
    assert saved and store.step_of_preview(token) == "Fx0001"
    again = store.save_preview(
        token="other", kind="new_job", team_id="T1", channel_id="C1", user_id="U1", now=T0,
        request=REQUEST, step=PLACE,
    )  # fmt: skip
    assert again is False  # a redelivery shows no second preview
    spend = Spend("T1", "U1", "1970-01-12", "1970-01", preview_token=token)
    job_id = create(store, spend)
    assert job_id is not None
    with pytest.raises(PreviewGone):  # Start pressed again: the preview was started
        create(store, spend)
    assert store.step_of_preview(token) is None and store.running_step(job_id) == "Fx0001"


def test_a_refused_execution_keeps_its_words_until_slack_has_them(store: Store) -> None:
    assert store.refuse_step(PLACE, "⚠️ The prompt is empty.", T0)
    assert store.refuse_step(PLACE, "again", T0) is False
    assert store.unsent_step_errors(T0 - 1) == [("Fx0001", "⚠️ The prompt is empty.", PLACE.team_id)]
    store.mark_step_sent("Fx0001", T0 + 1)
    assert store.unsent_step_errors(T0 - 1) == []
    assert create(store) is None  # and it never starts a job afterwards
