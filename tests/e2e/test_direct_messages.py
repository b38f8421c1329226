"""A message to the app in its Messages tab (a DM) is a prompt: its card is the app's reply in
that message's thread, replies there are followups, and `MOTION_ALLOW_DMS=false` answers it
briefly and starts nothing. The real app over real sockets; the stand-in's DM between alice and
the app is `D0ALICE` (`message.im`, channel_type "im")."""

from __future__ import annotations

from typing import Any

from bot.local.tryout import free_port
from tests.support.e2e import READY, replies, results, run_command, settle
from tests.support.harness import Harness, until

DM = "D0ALICE"


def dm_cards(harness: Harness, dm_ts: str) -> list[dict[str, Any]]:
    """The app's cards in the DM message's thread."""
    return [
        m for m in harness.bot_replies(dm_ts, DM)
        if (m.get("metadata") or {}).get("event_payload", {}).get("kind") == "card"
    ]  # fmt: skip


def private_answers(harness: Harness, thread_ts: str) -> list[Any]:
    return [
        c for c in harness.slack.calls("chat.postEphemeral")
        if c.ok and c.params.get("channel") == DM and c.params.get("thread_ts") == thread_ts
    ]  # fmt: skip


def jobs(harness: Harness) -> int:
    return int(harness.bot.store._value("SELECT COUNT(*) FROM jobs"))


async def test_a_dm_starts_a_job_in_its_thread_and_replies_there_are_followups(
    harness: Harness,
) -> None:
    await harness.start()
    event = harness.slack.direct_message("a fox in the snow --aspect 9:16", user="U0ALICE")
    assert event["channel"] == DM and event["channel_type"] == "im"
    assert (await harness.event(event)).status_code == 200
    [card] = await until(lambda: dm_cards(harness, event["ts"]), what="the card in the DM thread")
    assert "a fox in the snow" in card["text"]
    await until(lambda: results(harness, event["ts"], channel=DM), what="the result")
    [create] = harness.sandbox.creates
    assert create["prompt"] == "a fox in the snow" and create["aspect_ratio"] == "9:16"

    reply = harness.slack.dm_reply("make it warmer", user="U0ALICE", thread_ts=event["ts"])
    assert (await harness.event(reply)).status_code == 200
    await until(lambda: len(results(harness, event["ts"], channel=DM)) == 2, what="run 2")
    assert [f["prompt"] for f in harness.sandbox.followups] == ["make it warmer"]
    assert jobs(harness) == 1 and len(dm_cards(harness, event["ts"])) == 1


async def test_a_redelivered_dm_starts_one_job(harness: Harness) -> None:
    await harness.start()
    event = harness.slack.direct_message("a fox", user="U0ALICE")
    await harness.event(event, event_id="Ev0DM")
    await harness.event(event, event_id="Ev0DM", retry=1)
    await harness.event(event, event_id="Ev0DMOTHER")
    await until(lambda: results(harness, event["ts"], channel=DM), what="the result")
    await settle()
    assert jobs(harness) == 1 and harness.sandbox.count("create") == 1
    assert len(dm_cards(harness, event["ts"])) == 1


async def test_with_dms_off_a_dm_is_answered_briefly_and_starts_nothing(
    harness: Harness,
) -> None:
    await harness.start(MOTION_ALLOW_DMS="false")
    event = harness.slack.direct_message("a fox in the snow", user="U0ALICE")
    assert (await harness.event(event)).status_code == 200
    await harness.event(event, retry=1)  # a redelivery is not answered twice
    [answer] = await until(lambda: private_answers(harness, event["ts"]), what="the answer")
    assert (
        "direct message" in answer.params["text"] and "Nothing was started" in answer.params["text"]
    )
    await settle()
    assert len(private_answers(harness, event["ts"])) == 1
    assert jobs(harness) == 0 and harness.sandbox.count("create") == 0
    assert harness.bot_replies(event["ts"], DM) == []


async def test_with_dms_off_followups_in_an_older_dm_thread_are_refused(
    harness: Harness,
) -> None:
    await harness.start()
    event = harness.slack.direct_message("a fox", user="U0ALICE")
    await harness.event(event)
    await until(lambda: results(harness, event["ts"], channel=DM), what="the result")
    await harness.stop()
    await harness.start(MOTION_ALLOW_DMS="false")
    reply = harness.slack.dm_reply("make it warmer", user="U0ALICE", thread_ts=event["ts"])
    await harness.event(reply)
    await until(lambda: private_answers(harness, event["ts"]), what="the refusal")
    await settle()
    assert harness.sandbox.followups == []


async def test_allowed_channels_do_not_refuse_a_dm(harness: Harness) -> None:
    await harness.start(MOTION_ALLOWED_CHANNELS="G0MEMBER")
    event = harness.slack.direct_message("a fox", user="U0ALICE")
    await harness.event(event)
    await until(lambda: results(harness, event["ts"], channel=DM), what="the result")
    refused = await harness.command("a fox in general")  # a channel is still refused
    assert "can't be started in this channel" in refused.text


async def test_the_apps_own_messages_and_other_subtypes_start_nothing(harness: Harness) -> None:
    await harness.start()
    event = harness.slack.direct_message("a fox", user="U0ALICE")
    others = [
        {**event, "ts": "1763000000.000100", "bot_id": "B0BOT", "user": "U0BOT"},
        {**event, "ts": "1763000000.000200", "subtype": "message_changed"},
        {**event, "ts": "1763000000.000300", "subtype": "message_deleted"},
        {**event, "ts": "1763000000.000400", "subtype": "channel_join"},
        {**event, "ts": "1763000000.000500", "subtype": "bot_message", "bot_id": "B0OTHER"},
    ]
    for other in others:
        assert (await harness.event(other)).status_code == 200
    await settle(0.6)
    assert jobs(harness) == 0 and harness.slack.calls("chat.postEphemeral") == []


async def test_an_empty_dm_gets_a_hint_and_starts_nothing(harness: Harness) -> None:
    await harness.start()
    event = harness.slack.direct_message("   ", user="U0ALICE")
    await harness.event(event)
    [hint] = await until(lambda: private_answers(harness, event["ts"]), what="the hint")
    assert "Send me what the video should show" in hint.params["text"]
    assert jobs(harness) == 0


async def test_a_dm_with_a_bad_option_says_what_to_fix(harness: Harness) -> None:
    await harness.start()
    event = harness.slack.direct_message("a fox --aspect 3:2", user="U0ALICE")
    await harness.event(event)
    [answer] = await until(lambda: private_answers(harness, event["ts"]), what="the answer")
    assert "--aspect 3:2" in answer.params["text"]
    assert jobs(harness) == 0


async def test_list_and_home_show_dm_jobs_as_direct_message(harness: Harness) -> None:
    await harness.start()
    event = harness.slack.direct_message("a fox from my DMs", user="U0ALICE")
    await harness.event(event)
    await until(lambda: results(harness, event["ts"], channel=DM), what="the DM job's result")
    card = await run_command(harness, "a fox in general")
    await until(lambda: results(harness, card["ts"]), what="the channel job's result")
    await harness.command("list")
    [listing] = await until(
        lambda: [r for r in harness.slack.responses if "recent Motion jobs" in r.get("text", "")],
        what="/motion list",
    )
    lines = listing["text"].splitlines()
    dm_line = next(line for line in lines if "a fox from my DMs" in line)
    channel_line = next(line for line in lines if "a fox in general" in line)
    assert "Direct message" in dm_line and "<#C0PUBLIC>" in channel_line
    assert "Direct message" not in channel_line
    await harness.home_opened()
    home = await until(lambda: harness.slack.home("U0ALICE"), what="the Home tab")
    text = str(home["blocks"])
    assert "Direct message" in text and "<#C0PUBLIC>" in text


async def test_a_dm_prompt_is_previewed_under_confirm(harness: Harness) -> None:
    await harness.start(MOTION_CONFIRM="true")
    event = harness.slack.direct_message("a fox", user="U0ALICE")
    await harness.event(event)
    [preview] = await until(lambda: private_answers(harness, event["ts"]), what="the preview")
    assert "Start" in str(preview.params.get("blocks"))
    assert jobs(harness) == 0 and not replies(harness, event["ts"], READY, channel=DM)


async def test_a_dm_with_a_file_attaches_it_as_a_reply_would(harness: Harness) -> None:
    port = free_port()
    harness.sandbox.fetch_attachments = True
    await harness.start(PORT=str(port), PUBLIC_URL=f"http://127.0.0.1:{port}")
    logo = harness.slack.add_file(
        title="logo", mimetype="image/png", content=b"\x89PNG\r\n\x1a\n" + b"0" * 64, channel=None
    )
    event = harness.slack.direct_message("use this logo", user="U0ALICE", file_ids=[logo])
    assert event["subtype"] == "file_share"
    await harness.event(event)
    await until(lambda: results(harness, event["ts"], channel=DM), what="the result")
    [create] = harness.sandbox.creates
    assert create["prompt"] == "use this logo"
    assert [a["type"] for a in create["attachments"]] == ["image"]
    assert [f.status for f in harness.sandbox.fetches] == [200]
