"""The stuck notice, Stop tracking and the card's words, without any server: when a notice is
due, what the buttons carry, and that every message is valid Block Kit and escaped."""

from __future__ import annotations

import dataclasses
import json

from bot.jobs.stopping import StopValue, stuck_due_at
from bot.slack import messages
from bot.slack.messages import RunLine
from bot.store import Run, RunKind, RunState
from tests.support.blockkit import block_errors

T0 = 1_800_000_000.0
RUN = Run(
    id=7, job_id=3, number=2, kind=RunKind.FOLLOWUP, request={"prompt": "x"}, author="U0ALICE",
    reply_channel="C0PUBLIC", reply_ts="1.2", state=RunState.RUNNING, sent_at=T0,
    baseline_completed_at=None, baseline_url=None, seen_new=True, attempts=None,
    last_poll_at=None, motion_status="running", completed_at=None, download_url=None,
    expires_at=None, sources=[], error=None, created_at=T0, finished_at=None,
)  # fmt: skip


def everything(message: messages.Message) -> str:
    return message.text + json.dumps(message.blocks, ensure_ascii=False)


def test_a_notice_is_due_one_period_after_the_run_was_sent() -> None:
    assert stuck_due_at(RUN, 600) == T0 + 600


def test_no_notice_is_due_while_one_is_unanswered_and_the_next_counts_from_keep_waiting() -> None:
    asked = dataclasses.replace(RUN, stuck_notices=1)
    assert stuck_due_at(asked, 600) is None
    kept = dataclasses.replace(RUN, stuck_notices=1, stuck_waited=1, stuck_from=T0 + 700)
    assert stuck_due_at(kept, 600) == T0 + 1300


def test_no_notice_for_a_run_not_in_motion() -> None:
    for state in (RunState.WAITING, RunState.DONE, RunState.FAILED, RunState.STOPPED):
        assert stuck_due_at(dataclasses.replace(RUN, state=state), 600) is None
    assert stuck_due_at(dataclasses.replace(RUN, sent_at=None), 600) is None


def test_a_stop_button_value_names_the_job_and_on_a_notice_the_run() -> None:
    assert StopValue.parse("12") == StopValue(12)
    assert StopValue.parse("12:7") == StopValue(12, 7)
    for bad in ("", "x", "1:2:3", "-1", "1:"):
        assert StopValue.parse(bad) is None


def test_the_stuck_notice_offers_both_buttons_and_says_there_is_no_cancel() -> None:
    notice = messages.stuck_notice(
        run_number=2, elapsed=3725, period=3600, run_id=7, notice=1, job_id=3, sandbox=False
    )
    assert notice.kind == "stuck_notice"
    assert notice.text.startswith("⏳ Run 2 is still not finished after 1h 02m.")
    assert "another 1h 00m" in notice.text and "no way to cancel" in notice.text
    actions = next(b for b in notice.blocks if b["type"] == "actions")["elements"]
    assert [(b["action_id"], b["value"]) for b in actions] == [
        ("stuck_keep_waiting", "7:1"),
        ("stop_tracking", "3:7"),
    ]
    assert block_errors(notice.blocks) == []


def test_the_answered_notice_says_who_chose_what_and_has_no_buttons() -> None:
    kept = messages.stuck_answered(
        run_number=1, elapsed=61, user_id="U0BOB", kept_waiting=True, period=60, sandbox=True
    )
    assert "<@U0BOB> chose to keep waiting" in kept.text and "another 1m 00s" in kept.text
    stopped = messages.stuck_answered(
        run_number=1, elapsed=61, user_id="U0BOB", kept_waiting=False, period=60, sandbox=False
    )
    assert "<@U0BOB> chose to stop tracking it." in stopped.text
    for message in (kept, stopped):
        assert all(b["type"] != "actions" for b in message.blocks)
        assert block_errors(message.blocks) == []
    assert messages.SANDBOX_NOTE in everything(kept)


def test_the_stop_message_counts_the_dropped_followups() -> None:
    none = messages.tracking_stopped(user_id="U0ALICE", dropped=0, sandbox=False)
    one = messages.tracking_stopped(user_id="U0ALICE", dropped=1, sandbox=False)
    two = messages.tracking_stopped(user_id="U0ALICE", dropped=2, sandbox=False)
    assert "dropped" not in none.text
    assert "1 waiting followup (marked ❌) was dropped" in one.text
    assert "2 waiting followups (marked ❌) were dropped" in two.text
    assert "Motion may still finish the video in its web app" in none.text
    assert none.kind == "tracking_stopped"


def test_a_user_id_that_is_not_one_cannot_become_a_mention() -> None:
    hostile = "<!channel> <https://evil.example|click>"
    for message in (
        messages.tracking_stopped(user_id=hostile, dropped=0, sandbox=False),
        messages.stop_not_allowed(requester=hostile, sandbox=False),
        messages.stuck_answered(
            run_number=1, elapsed=1, user_id=hostile, kept_waiting=True, period=1, sandbox=False
        ),
    ):
        assert "<!channel>" not in everything(message)
        assert "<https://evil" not in everything(message)


def test_the_card_offers_stop_while_followed_and_says_plainly_when_stopped() -> None:
    followed = messages.job_card(
        requester="U0ALICE", prompt="a teaser", status="🎬 Generating", runs=[], sandbox=False,
        stop_job_id=3,
    )  # fmt: skip
    assert "Reply in this thread" in everything(followed)
    buttons = [e for b in followed.blocks if b["type"] == "actions" for e in b["elements"]]
    assert [(b["action_id"], b["value"]) for b in buttons] == [("stop_tracking", "3")]
    stopped = messages.job_card(
        requester="U0ALICE", prompt="a teaser", status="⛔ Stopped", sandbox=False,
        runs=[RunLine(1, "stopped", "⛔ Stopped")], stopped_by="U0CAROL",
    )  # fmt: skip
    text = everything(stopped)
    assert all(b["type"] != "actions" for b in stopped.blocks)
    assert "<@U0CAROL> stopped tracking this job" in stopped.text
    assert "Motion may still finish the video in its web app" in stopped.text
    assert "Reply in this thread" not in text
    assert block_errors(followed.blocks) == [] and block_errors(stopped.blocks) == []
