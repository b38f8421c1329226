"""Socket Mode end to end: the app connects to the Slack double's WebSocket (opened with the
app-level token through apps.connections.open), gets envelopes exactly as Slack sends them and
must ack each one within 3 s; the work behind them runs against the double and the sandbox.

In Socket Mode the app opens no HTTP port (`bot.port` stays None), so everything here goes
through `slack.socket_send` and comes back through `slack.socket_ack_async`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.app import MotionBot
from bot.config import Settings
from tests.support.harness import BOT_TOKEN, Harness, until
from tests.support.slack import SlackDouble

APP_TOKEN = "xapp-test"  # the double's default app-level token
ACK_SECONDS = 3.0


# -- helpers --------------------------------------------------------------------------------------


async def start_socket_bot(harness: Harness) -> MotionBot:
    """Start the app in Socket Mode (no signing secret) and wait for Slack's `hello`."""
    bot = await harness.start(SLACK_APP_TOKEN=APP_TOKEN, SLACK_SIGNING_SECRET="")
    assert bot.settings.socket_mode
    assert bot.port is None  # no HTTP listener in Socket Mode
    await until(harness.slack.socket_connected, timeout=5, what="the Socket Mode connection")
    return bot


def command_payload(
    harness: Harness, text: str, *, channel: str = "C0PUBLIC", user: str = "U0ALICE"
) -> dict[str, Any]:
    """The slash command as Socket Mode delivers it: the HTTP form fields, as a JSON object."""
    return dict(harness.command_fields(text, channel=channel, user=user))


async def acked(
    slack: SlackDouble, envelope_id: str, timeout: float = ACK_SECONDS
) -> dict[str, Any]:
    """The ack's payload (`{}` for a bare ack); fails if none came within Slack's 3 s."""
    payload = await slack.socket_ack_async(envelope_id, timeout=timeout)
    assert payload is not None, f"envelope {envelope_id} was not acked within {timeout}s"
    return payload


def ready_posts(harness: Harness, thread_ts: str) -> list[dict[str, Any]]:
    return [m for m in harness.bot_replies(thread_ts) if "is ready" in m["text"]]


async def socket_job(harness: Harness, prompt: str = "a product teaser") -> str:
    """Run `/motion prompt` over the socket to its first result; returns the card's ts."""
    envelope_id = harness.slack.socket_send("slash_commands", command_payload(harness, prompt))
    await acked(harness.slack, envelope_id)
    card = (await until(lambda: harness.cards(), what="the job card"))[-1]
    await until(lambda: ready_posts(harness, card["ts"]), what="the first result")
    return card["ts"]


async def settled_counts(harness: Harness) -> dict[str, int]:
    await asyncio.sleep(0.4)  # anything extra would show up by now
    await harness.bot.service.drain_background()
    return {
        "creates": harness.sandbox.count("create"),
        "followups": harness.sandbox.count("followup"),
    }


# -- the double's side of the protocol ------------------------------------------------------------


async def test_connections_open_wants_the_app_level_token(slack: SlackDouble) -> None:
    client = AsyncWebClient(base_url=slack.base_url)

    opened = await client.apps_connections_open(app_token=APP_TOKEN)
    assert opened["url"].startswith("ws://127.0.0.1:")
    assert "/link/?ticket=" in opened["url"] and opened["url"].endswith("&app_id=A0APP")

    errors = []
    for token in ("xapp-wrong", BOT_TOKEN):
        with pytest.raises(SlackApiError) as raised:
            await client.apps_connections_open(app_token=token)
        errors.append(raised.value.response["error"])
    with pytest.raises(SlackApiError) as raised:
        await client.api_call("apps.connections.open")
    errors.append(raised.value.response["error"])

    assert errors == ["invalid_auth", "not_allowed_token_type", "not_authed"]
    assert [c.ok for c in slack.calls("apps.connections.open")] == [True, False, False, False]
    assert not slack.socket_connected()


# -- the app over the socket ----------------------------------------------------------------------


async def test_slash_command_is_acked_and_runs_to_its_result_in_the_thread(
    harness: Harness,
) -> None:
    await start_socket_bot(harness)
    slack = harness.slack
    assert slack.socket_connections() == 1
    assert [c.ok for c in slack.calls("apps.connections.open")] == [True]
    await until(lambda: slack.socket_pings() >= 1, timeout=2, what="the client's first ping")

    sent = time.monotonic()
    envelope_id = slack.socket_send(
        "slash_commands", command_payload(harness, "a teaser for our spring sale --aspect 9:16")
    )
    payload = await acked(slack, envelope_id)
    (ack,) = slack.socket_acks(envelope_id)
    assert ack.known and ack.at - sent < ACK_SECONDS
    assert "Starting your video" in payload["text"]
    assert payload.get("response_type") in (None, "ephemeral")  # only the caller sees it

    card = (await until(lambda: harness.cards(), what="the job card"))[0]
    results = await until(lambda: ready_posts(harness, card["ts"]), what="the result reply")
    assert len(results) == 1
    assert "<@U0ALICE>" in results[0]["text"]
    assert harness.sandbox.creates == [
        {"prompt": "a teaser for our spring sale", "aspect_ratio": "9:16"}
    ]
    await until(lambda: "Done" in slack.message("C0PUBLIC", card["ts"])["text"], what="card done")
    assert (await settled_counts(harness)) == {"creates": 1, "followups": 0}
    assert len(slack.socket_acks(envelope_id)) == 1


async def test_thread_reply_event_becomes_one_followup_and_is_acked(harness: Harness) -> None:
    await start_socket_bot(harness)
    thread = await socket_job(harness)

    reply = harness.reply_event(thread, "make it shorter --aspect 1:1")
    envelope_id = harness.slack.socket_send(
        "events_api", harness.envelope(reply, event_id="Ev0SOCKET01")
    )
    assert await acked(harness.slack, envelope_id) == {}  # events are acked with no payload

    results = await until(
        lambda: len(ready_posts(harness, thread)) == 2 and ready_posts(harness, thread),
        what="the followup's result",
    )
    assert "run 2" in results[1]["text"]
    assert harness.sandbox.followups == [{"prompt": "make it shorter", "aspect_ratio": "1:1"}]
    assert (await settled_counts(harness)) == {"creates": 1, "followups": 1}


async def test_redelivered_event_is_acked_and_makes_no_second_followup(harness: Harness) -> None:
    await start_socket_bot(harness)
    thread = await socket_job(harness)
    slack = harness.slack

    body = harness.envelope(harness.reply_event(thread, "brighter colours"), event_id="Ev0SOCKRE")
    first = slack.socket_send("events_api", body)
    assert await acked(slack, first) == {}
    # Slack's retry: the same event (same event_id) in a new envelope, retry_attempt 1.
    second = slack.socket_send("events_api", body, retry_attempt=1, retry_reason="timeout")
    assert await acked(slack, second) == {}
    assert [e["retry_attempt"] for e in slack.socket_envelopes()[-2:]] == [0, 1]

    await until(lambda: len(ready_posts(harness, thread)) == 2, what="the followup's result")
    assert [f["prompt"] for f in harness.sandbox.followups] == ["brighter colours"]
    assert (await settled_counts(harness)) == {"creates": 1, "followups": 1}
    assert len(ready_posts(harness, thread)) == 2


async def test_unrelated_events_and_interactions_are_acked_without_doing_anything(
    harness: Harness,
) -> None:
    await start_socket_bot(harness)
    slack = harness.slack
    card_ts = slack.add_human_message("C0PUBLIC", "just chatting")
    events = [
        {
            "type": "reaction_added",
            "user": "U0ALICE",
            "reaction": "tada",
            "item": {"type": "message", "channel": "C0PUBLIC", "ts": card_ts},
            "item_user": "U0ALICE",
            "event_ts": card_ts,
        },
        {"type": "app_home_opened", "user": "U0ALICE", "channel": "D0DM", "tab": "messages"},
        {
            "type": "message",
            "subtype": "message_changed",
            "channel": "C0PUBLIC",
            "hidden": True,
            "ts": card_ts,
            "event_ts": card_ts,
            "message": {"type": "message", "user": "U0ALICE", "text": "edited", "ts": card_ts},
        },
        {  # a top-level message: no thread, so not a followup
            "type": "message",
            "channel": "C0PUBLIC",
            "user": "U0ALICE",
            "text": "hello",
            "ts": card_ts,
            "event_ts": card_ts,
            "channel_type": "channel",
        },
    ]
    envelope_ids = [slack.socket_send("events_api", harness.envelope(e)) for e in events]
    interaction = {
        "type": "block_actions",
        "team": {"id": "T0001", "domain": "sandbox-team"},
        "user": {"id": "U0ALICE", "username": "alice", "team_id": "T0001"},
        "api_app_id": "A0APP",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": card_ts, "channel_id": "C0PUBLIC"},
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "channel": {"id": "C0PUBLIC", "name": "general"},
        "message": {"ts": card_ts, "type": "message"},
        "response_url": slack.response_url("action-U0ALICE"),
        "actions": [
            {
                "action_id": "download",
                "block_id": "b1",
                "type": "button",
                "url": "https://cdn.sandbox.motion.invalid/x.mp4",
                "action_ts": str(time.time()),
            }
        ],
    }
    envelope_ids.append(slack.socket_send("interactive", interaction))

    payloads = await asyncio.gather(*(acked(slack, e) for e in envelope_ids))
    assert payloads == [{}] * len(envelope_ids)
    assert all(a.known for a in slack.socket_acks())
    assert (await settled_counts(harness)) == {"creates": 0, "followups": 0}
    assert harness.posts() == []


async def test_app_reconnects_when_slack_asks_and_when_the_socket_drops(harness: Harness) -> None:
    await start_socket_bot(harness)
    slack = harness.slack

    slack.socket_disconnect("refresh_requested")  # Slack rotating the connection
    await until(lambda: slack.socket_connections() == 2 and slack.socket_connected(), timeout=5)
    slack.socket_close()  # the connection dropped from Slack's side
    await until(lambda: slack.socket_connections() == 3 and slack.socket_connected(), timeout=5)
    assert [c.ok for c in slack.calls("apps.connections.open")] == [True] * 3

    envelope_id = slack.socket_send("slash_commands", command_payload(harness, "after reconnect"))
    assert "Starting your video" in (await acked(slack, envelope_id))["text"]
    assert slack.socket_acks(envelope_id)[0].connection == 3
    card = (await until(lambda: harness.cards(), what="the job card"))[0]
    await until(lambda: ready_posts(harness, card["ts"]), what="the result reply")
    assert (await settled_counts(harness)) == {"creates": 1, "followups": 0}


async def test_a_refused_app_token_makes_start_fail_fast(harness: Harness) -> None:
    settings = Settings.from_env(
        {**harness.env, "SLACK_APP_TOKEN": "xapp-revoked", "SLACK_SIGNING_SECRET": ""}
    )
    bot = MotionBot.build(settings)
    start = asyncio.create_task(bot.start())
    try:
        done, _ = await asyncio.wait({start}, timeout=3)
        assert done, "start() still running 3 s after Slack refused the app token"
        error = start.exception()
        assert error is not None and (
            "invalid_auth" in str(error) or "SLACK_APP_TOKEN" in str(error)
        )
    finally:
        start.cancel()
        with contextlib.suppress(BaseException):
            await start
        await bot.stop(timeout=2)
    assert [c.error for c in harness.slack.calls("apps.connections.open")][:1] == ["invalid_auth"]
