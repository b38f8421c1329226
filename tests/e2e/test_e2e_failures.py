"""End to end, through signed HTTP requests: what goes wrong, and what the app does about it.

Bad input, channels the app is not in, forged requests, every Motion failure the app has to
survive (refusals, lost answers, proxies, rate limits), the result and credits messages, escaping
of hostile text, restarts mid-job and secrets. Each test counts the calls Motion received (from
the sandbox) and the messages Slack received (from the double), because "exactly once" and "not
at all" are the promises that matter here: a second create bills twice, a second result spams.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.sandbox import JobPlan, generated_sources
from bot.store import Store
from tests.support.e2e import (
    buttons,
    card_text,
    command_body,
    motion_calls,
    now,
    replies,
    results,
    run_command,
    section_texts,
    settle,
    signature,
    wait_card,
    wait_reply,
)
from tests.support.harness import BOT_TOKEN, MOTION_KEY, SIGNING_SECRET, Harness, until
from tests.support.motion import ScriptedSandbox
from tests.support.slack import WORKSPACE_URL, SlackDouble

PROMPT = "a teaser for our spring sale"


@pytest.fixture(autouse=True)
def observed_counts(
    request: pytest.FixtureRequest, sandbox: ScriptedSandbox, slack: SlackDouble
) -> Iterator[None]:
    """Print what each test made happen (shown with `-s`): the counts the report quotes."""
    yield
    endpoints = {e: sandbox.count(e) for e in ("create", "followup", "status")}
    posts = [c for c in slack.calls("chat.postMessage") if c.ok]
    print(
        f"\n[counts] {request.node.name}: motion {endpoints} accepted_creates="
        f"{len(sandbox.creates)}; slack chat.postMessage ok={len(posts)} "
        f"chat.update={len(slack.calls('chat.update'))} response_url={len(slack.responses)}"
    )


def nothing_started(harness: Harness) -> None:
    assert harness.sandbox.count("create") == 0
    assert harness.sandbox.count("status") == 0
    assert harness.posts() == []


# ---------------------------------------------------------------- 1. bad input


# Every wording of a usage error is a parser test (tests/unit/test_command_line.py); here one bad
# command proves the path: answered in the ack, ephemeral, nothing recorded or sent.
BAD_INPUT = [
    pytest.param("a teaser --speed 2", "`--speed` is not an option", id="unknown-option"),
]


@pytest.mark.parametrize(("text", "fix"), BAD_INPUT)
async def test_bad_input_is_answered_in_the_ack_and_nothing_starts(
    harness: Harness, text: str, fix: str
) -> None:
    await harness.start()
    response = await harness.command(text)
    assert response.status_code == 200
    body = response.json()
    assert body.get("response_type", "ephemeral") == "ephemeral"
    assert fix in body["text"]
    await settle(0.3)
    nothing_started(harness)
    assert harness.slack.responses == []
    assert harness.cards() == []


async def test_prompt_over_12000_utf16_units_is_refused_before_motion(harness: Harness) -> None:
    """Motion counts a prompt's length as JavaScript does (UTF-16 code units: an emoji is 2).

    6,001 emoji are 12,002 units: Motion answers 400, so the app must refuse it itself.
    """
    await harness.start()
    response = await harness.command("🎬" * 6_001)
    assert response.status_code == 200
    assert "card will appear" not in response.text
    assert "12,000" in response.text
    await settle(0.5)
    nothing_started(harness)


async def test_attachment_name_derived_from_the_link_fits_motions_limit(
    harness: Harness,
) -> None:
    """The app names an attachment after its file; Motion allows 240 UTF-16 units for that name.

    130 emoji are 130 characters for Python but 260 units for Motion: a valid command must not
    turn into a request Motion refuses.
    """
    await harness.start()
    name = "%F0%9F%8E%AC" * 130 + ".png"
    card = await run_command(harness, f"{PROMPT} --attach <https://example.com/{name}>")
    await until(
        lambda: results(harness, card["ts"]) or replies(harness, card["ts"], "refused"),
        what="the result or a refusal",
    )
    refusals = [m["text"] for m in replies(harness, card["ts"], "refused")]
    assert refusals == []
    [body] = harness.sandbox.creates
    assert body["attachments"][0]["url"] == f"https://example.com/{name}"
    assert len(results(harness, card["ts"])) == 1


@pytest.mark.parametrize("text", ["", "help", "  HELP  "])
async def test_bare_command_and_help_show_usage_with_the_options(
    harness: Harness, text: str
) -> None:
    await harness.start()
    response = await harness.command(text)
    assert response.status_code == 200
    body = response.json()
    assert body.get("response_type", "ephemeral") == "ephemeral"
    for option in ("--style", "--attach", "--aspect", "--duration", "/motion list"):
        assert option in body["text"], option
    assert "9:16" in body["text"] and "30s-1min" in body["text"]
    await settle(0.2)
    nothing_started(harness)
    assert harness.slack.responses == []


# ---------------------------------------------------------------- 3. channels the app is not in


@pytest.mark.parametrize(
    ("channel", "hint"),
    [
        pytest.param("G0PRIVATE", "/invite", id="private-channel"),
        pytest.param("D0DM", "Nothing was started", id="dm"),
    ],
)
async def test_channel_the_app_cannot_join_gets_an_invite_hint_and_no_job(
    harness: Harness, channel: str, hint: str
) -> None:
    await harness.start()
    response = await harness.command(f"{PROMPT} --aspect 9:16", channel=channel)
    assert response.status_code == 200
    answers = await until(lambda: harness.slack.responses, what="the response_url hint")
    await settle(0.3)
    assert len(harness.slack.responses) == 1
    answer = answers[0]
    assert answer["tag"] == "cmd-U0ALICE"
    assert answer.get("response_type") == "ephemeral"
    assert hint in answer["text"]
    assert "Nothing was started" in answer["text"]
    assert harness.cards(channel) == []
    nothing_started(harness)


async def test_public_channel_not_joined_is_joined_before_the_card(harness: Harness) -> None:
    await harness.start()
    card = await run_command(harness, PROMPT, channel="C0NOTIN")
    await until(lambda: results(harness, card["ts"], channel="C0NOTIN"), what="the result")
    joins = [c for c in harness.slack.calls("conversations.join") if c.ok]
    assert [c.params["channel"] for c in joins] == ["C0NOTIN"]
    first_post = next(c for c in harness.slack.calls("chat.postMessage") if c.ok)
    assert joins[0].at <= first_post.at
    await settle(0.3)
    assert harness.sandbox.count("create") == 1
    assert len(harness.cards("C0NOTIN")) == 1
    assert len(results(harness, card["ts"], channel="C0NOTIN")) == 1
    assert harness.slack.responses == []


# ---------------------------------------------------------------- 4. signatures and health


async def test_unsigned_forged_and_stale_requests_get_401_and_do_nothing(
    harness: Harness,
) -> None:
    bot = await harness.start()
    url = f"http://127.0.0.1:{bot.port}/slack/events"
    form = "application/x-www-form-urlencoded"
    calls_before = len(harness.slack.calls())

    unsigned = await harness.http.post(
        url, content=command_body(harness, PROMPT), headers={"Content-Type": form}
    )
    wrong_secret = await harness.command(PROMPT, secret="not-the-signing-secret")
    stale = await harness.command(PROMPT, timestamp=now() - 6 * 60)
    signed_body = command_body(harness, PROMPT)
    ts = now()
    tampered = await harness.http.post(
        url,
        content=command_body(harness, "a different prompt"),
        headers={
            "Content-Type": form,
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": signature(signed_body, ts),
        },
    )
    for name, response in [
        ("unsigned", unsigned),
        ("wrong secret", wrong_secret),
        ("6 minutes old", stale),
        ("tampered body", tampered),
    ]:
        assert response.status_code == 401, name
        assert "card will appear" not in response.text, name

    await settle(0.4)
    assert len(harness.slack.calls()) == calls_before
    assert harness.slack.responses == []
    assert harness.sandbox.calls == []
    assert bot.store._value("SELECT COUNT(*) FROM jobs") == 0


async def test_healthz_reports_database_and_jobs_polled(harness: Harness) -> None:
    bot = await harness.start()
    response = await harness.http.get(f"http://127.0.0.1:{bot.port}/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["ok"] is True
    assert body["database"] is True
    assert body["jobs_polled"] == 0


# ---------------------------------------------------------------- 5. Motion refuses or fails


ZOD_400 = {
    "error": "Invalid request",
    "details": [
        {
            "code": "too_big",
            "maximum": 10,
            "type": "array",
            "inclusive": True,
            "message": "Array must contain at most 10 element(s)",
            "path": ["attachments"],
        }
    ],
}


async def test_create_400_says_motion_refused_it_with_the_details(harness: Harness) -> None:
    harness.sandbox.fault("create", status=400, body=json.dumps(ZOD_400))
    await harness.start()
    card = await run_command(harness, PROMPT)
    reply = await wait_reply(harness, card["ts"], "refused")
    assert "Motion refused run 1 as invalid" in reply["text"]
    assert "attachments: Array must contain at most 10 element(s)" in reply["text"]
    await wait_card(harness, card["ts"], "❌ Not started — Motion refused the request as invalid")
    await settle()
    assert harness.sandbox.count("create") == 1
    assert harness.sandbox.count("status") == 0
    assert len(harness.bot_replies(card["ts"])) == 1
    assert len(harness.posts()) == 2  # the card and the refusal


async def test_create_401_says_the_key_was_refused_and_stops(harness: Harness) -> None:
    await harness.start(MOTION_API_KEY="motion_revoked_key_0000")
    card = await run_command(harness, PROMPT)
    reply = await wait_reply(harness, card["ts"], "API key")
    assert "Motion did not accept this app's API key" in reply["text"]
    assert "MOTION_API_KEY" in reply["text"]
    await wait_card(harness, card["ts"], "⛔ Stopped — Motion refused this app's API key")
    await settle()
    assert [c.status for c in motion_calls(harness.sandbox, "create")] == [401]
    assert harness.sandbox.count("status") == 0
    assert len(harness.bot_replies(card["ts"])) == 1
    assert len(harness.posts()) == 2


async def test_status_401_while_polling_stops_following_the_job(harness: Harness) -> None:
    harness.sandbox.fault("status", status=401, body=json.dumps({"error": "Invalid API key"}))
    await harness.start()
    card = await run_command(harness, PROMPT)
    reply = await wait_reply(harness, card["ts"], "API key")
    assert "stopped following this job" in reply["text"]
    await wait_card(harness, card["ts"], "⛔ Stopped")
    await settle(0.5)
    assert harness.sandbox.count("create") == 1
    assert harness.sandbox.count("status") == 1  # no status call after the 401
    assert results(harness, card["ts"]) == []
    assert len(harness.bot_replies(card["ts"])) == 1


async def test_create_402_gives_balance_minimum_and_where_to_buy_without_retrying(
    harness: Harness,
) -> None:
    harness.sandbox.set_balance(120, minimum=300)
    await harness.start()
    card = await run_command(harness, PROMPT)
    reply = await wait_reply(harness, card["ts"], "Not enough Motion credits")
    assert "your balance is 120 credits" in reply["text"]
    assert "Motion needs at least 300 to start" in reply["text"]
    assert "<https://motion.so|motion.so>" in reply["text"]
    await wait_card(
        harness, card["ts"], "❌ Not started — not enough Motion credits (balance 120, at least 300"
    )
    await settle(0.6)
    creates = motion_calls(harness.sandbox, "create")
    assert [c.status for c in creates] == [402]
    assert harness.sandbox.creates == []
    assert harness.sandbox.count("status") == 0
    assert len(harness.bot_replies(card["ts"])) == 1


async def test_create_402_numbers_come_from_the_body(harness: Harness) -> None:
    """A scripted 402 carrying only the two numbers: the message quotes them, not defaults."""
    body = {"error": "insufficient_credits", "current_balance": 0, "minimum_required_credits": 1}
    harness.sandbox.fault("create", status=402, body=json.dumps(body))
    await harness.start()
    card = await run_command(harness, PROMPT)
    reply = await wait_reply(harness, card["ts"], "Not enough Motion credits")
    assert "your balance is 0 credits" in reply["text"]
    assert "at least 1 to start" in reply["text"]
    await wait_card(harness, card["ts"], "❌ Not started")
    await settle(0.5)
    assert harness.sandbox.count("create") == 1


async def test_402_during_generation_fails_the_run_with_the_numbers(harness: Harness) -> None:
    """Motion can run out of credits mid-generation: a 402 on a status call."""
    body = {
        "error": "insufficient_credits",
        "message": "Not enough credits to continue generating.",
        "current_balance": 12,
        "minimum_required_credits": 50,
    }
    harness.sandbox.fault("status", status=402, body=json.dumps(body))
    await harness.start()
    card = await run_command(harness, PROMPT)
    reply = await wait_reply(harness, card["ts"], "Not enough Motion credits")
    assert "your balance is 12 credits" in reply["text"]
    assert "<https://motion.so|motion.so>" in reply["text"]
    await wait_card(harness, card["ts"], "❌ Failed")
    await settle(0.5)
    assert harness.sandbox.count("status") == 1
    assert results(harness, card["ts"]) == []
    assert len(harness.bot_replies(card["ts"])) == 1


async def test_failed_job_reports_the_escaped_error_and_card_failed(harness: Harness) -> None:
    harness.sandbox.plan_next(
        JobPlan(
            queued_s=0.05, created_s=0.05, running_s=0.2, fail_error="Renderer exploded <!channel>"
        )
    )
    await harness.start()
    card = await run_command(harness, PROMPT)
    reply = await wait_reply(harness, card["ts"], "failed in Motion")
    assert "Run 1 failed in Motion: Renderer exploded &lt;!channel&gt;" in reply["text"]
    await wait_card(harness, card["ts"], "❌ Failed")
    await settle()
    assert "<!channel>" not in harness.slack.all_text()
    assert harness.sandbox.count("create") == 1
    assert results(harness, card["ts"]) == []
    assert len(harness.bot_replies(card["ts"])) == 1


async def test_awaiting_user_input_notice_once_then_the_result(harness: Harness) -> None:
    harness.sandbox.plan_next(
        JobPlan(queued_s=0.05, created_s=0.05, running_s=0.3, render_s=0.1, await_input_s=0.8)
    )
    await harness.start()
    card = await run_command(harness, PROMPT)
    await until(lambda: results(harness, card["ts"]), what="the result after the interlude")
    await settle()
    notices = replies(harness, card["ts"], "only a person can make")
    assert len(notices) == 1
    assert "Motion web app" in notices[0]["text"]
    # The pause runs from 0.25 s to 1.05 s after the create: several polls saw it, one notice.
    created_at = motion_calls(harness.sandbox, "create")[0].at
    during_pause = [
        c
        for c in motion_calls(harness.sandbox, "status")
        if created_at + 0.3 <= c.at <= created_at + 1.0
    ]
    assert len(during_pause) >= 2
    assert len(results(harness, card["ts"])) == 1
    assert len(harness.bot_replies(card["ts"])) == 2
    updates = [c.params.get("text", "") for c in harness.slack.calls("chat.update")]
    assert any("Waiting for someone in the Motion web app" in t for t in updates)
    await wait_card(harness, card["ts"], "✅ Done")


async def test_render_failure_is_reported_and_no_result_posted(harness: Harness) -> None:
    harness.sandbox.plan_next(
        JobPlan(queued_s=0.05, created_s=0.05, running_s=0.2, render_s=0.15, render_fails=True)
    )
    await harness.start()
    card = await run_command(harness, PROMPT)
    reply = await wait_reply(harness, card["ts"], "could not render")
    assert "Run 1 finished" in reply["text"]
    await wait_card(harness, card["ts"], "❌ Failed")
    await settle()
    assert results(harness, card["ts"]) == []
    assert len(harness.bot_replies(card["ts"])) == 1
    assert harness.sandbox.count("create") == 1


async def test_404_while_polling_stops_with_a_message(harness: Harness) -> None:
    harness.sandbox.fault("status", status=404, times=100)
    await harness.start()
    card = await run_command(harness, PROMPT)
    reply = await wait_reply(harness, card["ts"], "no longer knows this job")
    assert "(404)" in reply["text"]
    await wait_card(harness, card["ts"], "⛔ Stopped")
    await settle(0.5)
    assert harness.sandbox.count("status") == 1
    assert harness.sandbox.count("create") == 1
    assert len(harness.bot_replies(card["ts"])) == 1


async def test_status_429_waits_its_retry_after_and_the_job_completes(harness: Harness) -> None:
    harness.sandbox.fault_rate_limited("status", retry_after=1)
    await harness.start()
    card = await run_command(harness, PROMPT)
    await until(lambda: results(harness, card["ts"]), what="the result")
    statuses = motion_calls(harness.sandbox, "status")
    assert statuses[0].status == 429
    assert statuses[1].at - statuses[0].at >= 1.0
    await settle()
    assert len(results(harness, card["ts"])) == 1
    assert len(harness.bot_replies(card["ts"])) == 1
    assert harness.sandbox.count("create") == 1


def _fault_500(sandbox: ScriptedSandbox) -> None:
    sandbox.fault("status", status=500, times=2)


def _fault_html_502(sandbox: ScriptedSandbox) -> None:
    sandbox.fault_html_502("status", times=2)


def _fault_drop(sandbox: ScriptedSandbox) -> None:
    sandbox.fault("status", drop=True, times=2)


def _fault_slow(sandbox: ScriptedSandbox) -> None:
    sandbox.plan_next(JobPlan(queued_s=0.05, created_s=0.05, running_s=0.8, render_s=0.1))
    sandbox.fault("status", delay=0.5)  # well under the app's timeout, mid-run


def _fault_not_json(sandbox: ScriptedSandbox) -> None:
    sandbox.fault(
        "status", status=200, body="OK, working on it", headers={"Content-Type": "text/plain"}
    )
    sandbox.fault("status", status=200, body="", headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("script", "wire"),
    [
        pytest.param(_fault_500, [500, 500], id="500"),
        pytest.param(_fault_html_502, [502, 502], id="html-502"),
        pytest.param(_fault_drop, [0, 0], id="dropped-connection"),
        pytest.param(_fault_slow, [200, 200], id="slow-answer"),
        pytest.param(_fault_not_json, [200, 200], id="non-json-200"),
    ],
)
async def test_transient_status_failures_never_drop_the_job(
    harness: Harness, script, wire: list[int]
) -> None:
    script(harness.sandbox)
    await harness.start()
    card = await run_command(harness, PROMPT)
    await until(lambda: results(harness, card["ts"]), what="the result despite the faults")
    statuses = motion_calls(harness.sandbox, "status")
    assert [c.status for c in statuses[: len(wire)]] == wire
    await settle()
    assert len(results(harness, card["ts"])) == 1
    assert len(harness.bot_replies(card["ts"])) == 1  # no error message for a passing fault
    assert harness.sandbox.count("create") == 1
    await wait_card(harness, card["ts"], "✅ Done")


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(lambda s: s.fault_rate_limited("create", retry_after=0.3), id="429"),
        pytest.param(lambda s: s.fault("create", status=503), id="503-json"),
    ],
)
async def test_create_refused_for_now_is_retried_and_creates_exactly_one_job(
    harness: Harness, script
) -> None:
    script(harness.sandbox)
    await harness.start()
    card = await run_command(harness, PROMPT)
    await until(lambda: results(harness, card["ts"]), what="the result after the retry")
    await settle()
    creates = motion_calls(harness.sandbox, "create")
    assert [c.accepted for c in creates] == [False] * (len(creates) - 1) + [True]
    assert len(harness.sandbox.job_ids) == 1
    assert harness.sandbox.creates == [{"prompt": PROMPT}]
    assert len(results(harness, card["ts"])) == 1
    assert len(harness.bot_replies(card["ts"])) == 1


async def test_motion_unreachable_at_create_is_reported_after_retries_then_try_again(
    harness: Harness,
) -> None:
    harness.sandbox.fault("create", status=503, times=6)
    await harness.start()
    card = await run_command(harness, PROMPT)
    notice = await wait_reply(harness, card["ts"], "could not reach Motion")
    assert "Nothing was started or charged" in notice["text"]
    [button] = buttons(notice)
    assert button["action_id"] == "retry_run"
    await wait_card(harness, card["ts"], "❌ Not started")
    await settle()
    assert [c.status for c in motion_calls(harness.sandbox, "create")] == [503] * 6
    assert harness.sandbox.job_ids == []

    await harness.action("retry_run", button["value"], message_ts=notice["ts"])
    await until(lambda: results(harness, card["ts"]), what="the result after Try again")
    await settle()
    assert harness.sandbox.count("create") == 7
    assert len(harness.sandbox.job_ids) == 1
    assert len(results(harness, card["ts"])) == 1


async def test_create_429_retry_waits_at_least_retry_after(harness: Harness) -> None:
    harness.sandbox.fault_rate_limited("create", retry_after=0.5)
    await harness.start()
    card = await run_command(harness, PROMPT)
    await until(lambda: results(harness, card["ts"]), what="the result")
    creates = motion_calls(harness.sandbox, "create")
    assert [c.status for c in creates] == [429, 202]
    assert creates[1].at - creates[0].at >= 0.5


async def test_lost_create_answer_is_not_resent_and_the_button_sends_it_once(
    harness: Harness,
) -> None:
    harness.sandbox.fault("create", after_processing=True, drop=True)
    await harness.start()
    card = await run_command(harness, PROMPT)
    notice = await wait_reply(harness, card["ts"], "answer never reached me")
    assert "will not send it again on my own" in notice["text"]
    [button] = buttons(notice)
    assert button["action_id"] == "retry_run"
    assert button["text"]["text"] == "Send it again"
    await wait_card(harness, card["ts"], "❓ Outcome unknown")
    await settle(0.5)
    # Motion did create the job; its answer was lost, and nothing was sent a second time.
    assert harness.sandbox.count("create") == 1
    assert len(harness.sandbox.job_ids) == 1
    assert harness.sandbox.count("status") == 0

    first = await harness.action("retry_run", button["value"], message_ts=notice["ts"])
    second = await harness.action("retry_run", button["value"], message_ts=notice["ts"])
    assert first.status_code == 200 and second.status_code == 200
    await until(lambda: results(harness, card["ts"]), what="the result of the retried run")
    await settle(0.5)
    assert harness.sandbox.count("create") == 2
    assert len(harness.sandbox.creates) == 2
    assert len(results(harness, card["ts"])) == 1
    already = [r for r in harness.slack.responses if "already sent again" in r.get("text", "")]
    assert len(already) == 1
    assert already[0]["response_type"] == "ephemeral"
    await wait_card(harness, card["ts"], "✅ Done")


# ---------------------------------------------------------------- 6. the result message


async def test_result_is_posted_once_broadcast_with_button_and_notify_notice(
    harness: Harness,
) -> None:
    harness.slack.add_channel("C0NOTIFY", name="video-news")
    await harness.start(MOTION_NOTIFY_CHANNEL="C0NOTIFY")
    card = await run_command(harness, PROMPT)
    await until(lambda: harness.slack.messages("C0NOTIFY"), what="the notify notice")
    await settle()

    [job_id] = harness.sandbox.job_ids
    url = harness.sandbox.download_url(job_id, 1)
    [result] = results(harness, card["ts"])
    assert result["subtype"] == "thread_broadcast"
    assert "<@U0ALICE>" in result["text"] and "run 1" in result["text"]
    assert url in result["text"]
    [download] = [b for b in buttons(result) if b["action_id"] == "download"]
    assert download["url"] == url
    posted = [
        c
        for c in harness.slack.calls("chat.postMessage")
        if c.ok and c.params.get("thread_ts") == card["ts"]
    ]
    assert len(posted) == 1
    assert posted[0].params["reply_broadcast"] is True

    [notice] = harness.slack.messages("C0NOTIFY")
    permalink = f"{WORKSPACE_URL}archives/C0PUBLIC/p{card['ts'].replace('.', '')}"
    assert permalink in notice["text"]
    assert not notice.get("thread_ts")
    assert harness.sandbox.count("create") == 1
    assert len(harness.posts()) == 3  # card, result, notice
    await wait_card(harness, card["ts"], "✅ Done")


async def test_result_post_whose_answer_is_lost_is_not_posted_twice(harness: Harness) -> None:
    """Slack posts the result but the connection resets before its answer: still one result.

    chat.postMessage has no idempotency key, so a blind retry of a post that went through
    doubles it; the app must look for its post (it tags each with a metadata key) first.
    """
    harness.sandbox.plan_next(JobPlan(queued_s=0.05, created_s=0.05, running_s=0.4, render_s=0.1))
    await harness.start()
    card = await run_command(harness, PROMPT)
    harness.slack.fail_next("chat.postMessage", drop="after")  # the next post is the result
    await until(lambda: results(harness, card["ts"]), what="the result")
    # The card turns Done only after the post call returned (retries included).
    await wait_card(harness, card["ts"], "✅ Done")
    await settle(0.5)
    keys = [
        c.params.get("metadata", {}).get("event_payload", {}).get("key")
        for c in harness.slack.calls("chat.postMessage")
        if c.params.get("thread_ts") == card["ts"]
    ]
    assert len(keys) == len(set(keys)), f"the same post was sent again: {keys}"
    assert len(results(harness, card["ts"])) == 1
    assert len(harness.bot_replies(card["ts"])) == 1


async def test_long_credit_lists_are_split_and_every_source_appears_once(
    harness: Harness,
) -> None:
    harness.sandbox.plan_next(
        JobPlan(queued_s=0.05, created_s=0.05, running_s=0.2, render_s=0.1, source_count=150)
    )
    await harness.start()
    card = await run_command(harness, PROMPT)
    await until(lambda: results(harness, card["ts"]), what="the result")
    await settle(0.6)
    parts = harness.bot_replies(card["ts"])
    assert len(parts) >= 2
    assert "is ready" in parts[0]["text"]
    for i, part in enumerate(parts[1:], start=2):
        assert f"continued ({i}/{len(parts)})" in part["text"]
        assert part.get("subtype") != "thread_broadcast"
    for part in parts:
        assert 0 < len(part["blocks"]) <= 50
        assert part["text"]
    text = "\n".join(t for part in parts for t in section_texts(part))
    numbers = [int(n) for n in re.findall(r"(?m)^(\d+)\. \*", text)]
    assert numbers == list(range(1, 151))
    [job_id] = harness.sandbox.job_ids
    for source in generated_sources(job_id, 1, 150):
        if "title" in source:
            assert text.count(source["title"]) == 1, source["title"]
    assert len(harness.posts()) == 1 + len(parts)


# ---------------------------------------------------------------- 7. escaping


HOSTILE_SOURCES = [
    {
        "source_kind": "stock_video <!channel>",
        "provider": "<!here> Pexels",
        "title": "<@U0BOB> look <https://evil.example|click me>",
        "display_url": "https://pexels.example/v/1",
        "rights_status": "<!channel>",
        "usages": [
            {"start_seconds": 3, "end_seconds": 9, "scene": "<!here>", "placement": "<@U0BOB>"}
        ],
    },
    {
        "source_kind": "music",
        "provider": "<https://evil.example|Epidemic>",
        "title": "<!channel>",
        "display_url": "javascript:alert(1)",
        "rights_status": "licensed",
    },
    {"source_kind": "<@U0BOB>", "provider": "<!here>", "source_url": "https://evil.example|x"},
]


async def test_hostile_prompt_and_sources_reach_slack_inert_and_motion_decoded(
    harness: Harness,
) -> None:
    harness.slack.add_channel("C0NOTIFY", name="video-news")
    harness.sandbox.plan_next(
        JobPlan(queued_s=0.05, created_s=0.05, running_s=0.2, render_s=0.1, sources=HOSTILE_SOURCES)
    )
    await harness.start(MOTION_NOTIFY_CHANNEL="C0NOTIFY")
    # What Slack sends when someone types these characters: &, <, > entity-encoded.
    typed = "promo <!channel> <!here> <@U0BOB> <https://evil.example|click me> & more"
    slack_text = typed.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    card = await run_command(harness, slack_text)
    await until(lambda: results(harness, card["ts"]), what="the result")
    await until(lambda: harness.slack.messages("C0NOTIFY"), what="the notify notice")
    await settle()

    assert harness.sandbox.creates == [{"prompt": typed}]
    sent = harness.slack.all_text()
    for control in ("<!channel>", "<!here>", "<@U0BOB>", "<https://evil.example|", "<javascript:"):
        assert control not in sent, control
    assert "&lt;!channel&gt;" in card_text(harness, card["ts"])
    credits = "\n".join(section_texts(results(harness, card["ts"])[0]))
    assert re.findall(r"(?m)^(\d+)\. ", credits) == ["1", "2", "3"]
    assert "&lt;@U0BOB&gt; look &lt;https://evil.example¦click me&gt;" in credits
    assert "&lt;!here&gt; Pexels" in credits
    assert "&lt;!channel&gt;" in card_text(harness, card["ts"])


async def test_slack_formatted_mentions_in_the_command_are_not_replayed(
    harness: Harness,
) -> None:
    """With "escape channels, users and links" on, Slack sends <!channel>, <@U…>, <url|label>."""
    await harness.start()
    card = await run_command(
        harness, "promo <!channel> for <@U0BOB> see <https://evil.example|click me>"
    )
    await until(lambda: results(harness, card["ts"]), what="the result")
    [body] = harness.sandbox.creates
    assert "<" not in body["prompt"]
    assert "evil.example" in body["prompt"]
    sent = harness.slack.all_text()
    for control in ("<!channel>", "<@U0BOB>", "<https://evil.example|"):
        assert control not in sent, control


# ---------------------------------------------------------------- 8. restarts


def _db_path(harness: Harness) -> str:
    return harness.env["DATABASE_URL"]  # a SQLite URL or a PostgreSQL one: Store takes both


async def test_restart_mid_job_resumes_and_posts_the_result_exactly_once(
    harness: Harness,
) -> None:
    harness.sandbox.plan_next(JobPlan(queued_s=0.05, created_s=0.05, running_s=1.2, render_s=0.2))
    await harness.start()
    card = await run_command(harness, PROMPT)
    await until(lambda: harness.sandbox.count("status") >= 1, what="the job being polled")
    await harness.stop()
    assert results(harness, card["ts"]) == []
    polls_before = harness.sandbox.count("status")

    await harness.start()
    await until(lambda: results(harness, card["ts"]), what="the result after the restart")
    await settle(0.5)
    assert harness.sandbox.count("status") > polls_before
    assert harness.sandbox.count("create") == 1
    assert len(results(harness, card["ts"])) == 1
    assert len(harness.cards()) == 1
    assert len(harness.posts()) == 2
    await wait_card(harness, card["ts"], "✅ Done")


async def test_create_in_flight_at_a_crash_is_not_resent_after_restart(harness: Harness) -> None:
    # Motion takes the create, then its answer is slow; the process dies meanwhile.
    harness.sandbox.fault("create", delay=1.0, after_processing=True)
    first = await harness.start()
    card = await run_command(harness, PROMPT)
    await until(lambda: first.motion.in_flight == 1, what="the create call in flight")
    harness.bots.remove(first)
    await first.stop(timeout=0.05)  # abandons the call, as a kill would
    store = Store(_db_path(harness))
    try:
        assert [r.state for r in store.runs(1)] == ["sending"]
    finally:
        store.close()
    await until(lambda: harness.sandbox.count("create") == 1, what="Motion finishing the create")
    assert len(harness.sandbox.job_ids) == 1  # it did start, and would bill again if re-sent

    await harness.start()
    notice = await wait_reply(harness, card["ts"], "answer never reached me")
    [button] = buttons(notice)
    assert button["action_id"] == "retry_run"
    await wait_card(harness, card["ts"], "❓ Outcome unknown")
    await settle(0.5)
    assert harness.sandbox.count("create") == 1
    assert len(harness.bot_replies(card["ts"])) == 1

    await harness.action("retry_run", button["value"], message_ts=notice["ts"])
    await until(lambda: results(harness, card["ts"]), what="the result of the retried run")
    await settle()
    assert harness.sandbox.count("create") == 2
    assert len(results(harness, card["ts"])) == 1


async def test_run_left_sending_in_the_database_gets_the_retry_notice(harness: Harness) -> None:
    """Deterministic variant: a stopped bot's database holds a run in state 'sending'."""
    first = await harness.start(MOTION_API_URL="http://127.0.0.1:9/api/motion")  # unreachable
    card = await run_command(harness, PROMPT)
    await harness.stop(first)
    store = Store(_db_path(harness))
    try:
        [run] = store.runs(1)
        assert run.state in ("waiting", "sending")
        store.mark_sending(run.id, baseline_completed_at=None, baseline_url=None, now=now())
    finally:
        store.close()

    await harness.start()
    notice = await wait_reply(harness, card["ts"], "answer never reached me")
    [button] = buttons(notice)
    assert button["value"] == str(run.id)
    await settle(0.5)
    assert harness.sandbox.count("create") == 0
    assert len(harness.bot_replies(card["ts"])) == 1
    assert len(harness.cards()) == 1

    await harness.action("retry_run", button["value"], message_ts=notice["ts"])
    await until(lambda: results(harness, card["ts"]), what="the result of the retried run")
    await settle()
    assert harness.sandbox.count("create") == 1
    assert len(results(harness, card["ts"])) == 1


# ---------------------------------------------------------------- 9. secrets


async def test_no_secret_in_slack_messages_logs_or_database(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    harness.sandbox.fault("status", status=500)
    await harness.start()
    card = await run_command(harness, PROMPT)
    await until(lambda: results(harness, card["ts"]), what="the result")
    await harness.stop()

    secrets = {"bot token": BOT_TOKEN, "signing secret": SIGNING_SECRET, "motion key": MOTION_KEY}
    sent = harness.slack.all_text() + json.dumps(harness.slack.responses)
    records = [r.getMessage() for r in caplog.records] + [caplog.text]
    if harness.env["DATABASE_URL"].startswith("sqlite:///"):
        files = Path(_db_path(harness).removeprefix("sqlite:///")).parent.glob("motion.db*")
        database = b"".join(p.read_bytes() for p in files if p.is_file())
    else:  # every row of every table, as text
        store = Store(_db_path(harness))
        tables = ("jobs", "runs", "posts", "events", "run_history")
        database = "".join(str(store._rows(f"SELECT * FROM {t}")) for t in tables).encode()
        store.close()
        assert len(database) > 100
    assert len(caplog.records) > 10  # DEBUG logging really was on
    for name, secret in secrets.items():
        assert secret not in sent, f"{name} in a Slack message"
        assert not [r for r in records if secret in r], f"{name} in a log record"
        assert secret.encode() not in database, f"{name} in the database"


async def test_create_answered_with_motions_own_500_is_reported_not_resent(
    harness: Harness,
) -> None:
    """Motion says it had an internal error creating the job: no automatic resend (that could
    bill twice if the statement were wrong), a Try again button instead."""
    harness.sandbox.fault(
        "create", status=500, body='{"error": "internal_error", "message": "database hiccup"}'
    )
    await harness.start()
    card = await run_command(harness, PROMPT)
    notice = await until(
        lambda: [m for m in harness.bot_replies(card["ts"]) if "internal error" in m["text"]],
        what="the internal-error notice",
    )
    assert "database hiccup" in notice[0]["text"]
    await settle(0.5)
    assert harness.sandbox.count("create") == 1
    button = next(e for b in notice[0]["blocks"] if b["type"] == "actions" for e in b["elements"])
    assert button["action_id"] == "retry_run"
    await harness.action("retry_run", button["value"], message_ts=notice[0]["ts"])
    await until(lambda: results(harness, card["ts"]), what="the result after Try again")
    assert harness.sandbox.count("create") == 2
    assert len(harness.sandbox.creates) == 1  # only the second one took effect


async def test_a_lost_post_is_not_repeated_while_the_thread_cannot_be_checked(
    harness: Harness,
) -> None:
    harness.sandbox.plan_next(JobPlan(queued_s=0.05, created_s=0.05, running_s=0.3, render_s=0.1))
    await harness.start()
    card = await run_command(harness, PROMPT)
    harness.slack.fail_next("chat.postMessage", drop="after")  # the result: posted, answer lost
    harness.slack.fail_next("conversations.replies", status=500, times=2)  # can't check at first
    await wait_card(harness, card["ts"], "✅ Done")
    await settle(0.5)
    assert len(results(harness, card["ts"])) == 1
    assert len(harness.slack.calls("conversations.replies")) == 3


async def test_a_card_whose_answer_was_lost_is_found_pages_back_in_a_busy_channel(
    harness: Harness,
) -> None:
    """The card reached Slack but its answer was lost, and by the retry more than a page of
    messages came after it (the 3-instance soak: a takeover 30 s later, ~120 cards later). The
    app pages back through conversations.history and keeps that card: no second card."""
    harness.sandbox.plan_next(JobPlan(queued_s=0.05, created_s=0.05, running_s=0.3, render_s=0.1))
    await harness.start()
    harness.slack.fail_next("chat.postMessage", drop="after")  # the card: posted, answer lost
    harness.slack.fail_next("conversations.history", delay=1.0)  # time for the chatter below
    response = await harness.command(PROMPT)
    assert response.status_code == 200, response.text
    [card] = await until(
        lambda: [m for m in harness.cards() if m.get("metadata")], what="the card, posted"
    )
    for i in range(150):  # newer than the card: the first page of the history is all chatter
        harness.slack.add_human_message("C0PUBLIC", f"chatter {i}")

    await until(lambda: results(harness, card["ts"]), what="the result in the first card's thread")
    await settle(0.5)
    assert [m["ts"] for m in harness.cards() if m.get("metadata")] == [card["ts"]]
    lookups = harness.slack.calls("conversations.history")
    assert len(lookups) >= 2 and lookups[-1].params.get("cursor")
    assert harness.sandbox.count("create") == 1
