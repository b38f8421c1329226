"""The Slack double, exercised through the real slack_sdk clients over real sockets.

These tests pin the double's answers to Slack's documented behaviour, so the app's tests can
trust that a pass against the double means the app handles what Slack really does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.local.server import SlackStandIn
from bot.local.workspace import Change
from tests.support.blockkit import block_errors
from tests.support.slack import SlackDouble

TOKEN = "xoxb-test"


@pytest.fixture
def slack() -> Iterator[SlackDouble]:
    with SlackDouble(bot_token=TOKEN) as double:
        yield double


@pytest.fixture
def client(slack: SlackDouble) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=slack.base_url)


async def slack_error(call: Awaitable[Any]) -> SlackApiError:
    """Await a client call that must fail and return the error slack_sdk raised."""
    with pytest.raises(SlackApiError) as raised:
        await call
    return raised.value


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


# -- auth and routing ---------------------------------------------------------------------------


async def test_auth_test_describes_the_bot(client: AsyncWebClient) -> None:
    resp = await client.auth_test()

    assert resp.data == {
        "ok": True,
        "url": "https://sandbox-team.slack.com/",
        "team": "Sandbox",
        "user": "motion",
        "team_id": "T0001",
        "user_id": "U0BOT",
        "bot_id": "B0BOT",
        "is_enterprise_install": False,
    }


async def test_wrong_or_missing_token_is_refused(slack: SlackDouble) -> None:
    wrong = AsyncWebClient(token="xoxb-wrong", base_url=slack.base_url)
    anonymous = AsyncWebClient(base_url=slack.base_url)

    assert (await slack_error(wrong.auth_test())).response["error"] == "invalid_auth"
    assert (await slack_error(anonymous.auth_test())).response["error"] == "not_authed"
    assert [c.error for c in slack.calls("auth.test")] == ["invalid_auth", "not_authed"]


async def test_unknown_method(client: AsyncWebClient) -> None:
    error = await slack_error(client.api_call("chat.teleport"))

    assert error.response["error"] == "unknown_method"


# -- posting, threads, updates ------------------------------------------------------------------


async def test_post_reply_broadcast_and_update_round_trip(
    slack: SlackDouble, client: AsyncWebClient
) -> None:
    metadata = {"event_type": "motion_job", "event_payload": {"job_id": "job_1"}}
    root = await client.chat_postMessage(
        channel="C0PUBLIC", text="Job queued", blocks=[section("*Queued*")], metadata=metadata
    )
    reply = await client.chat_postMessage(channel="C0PUBLIC", text="hi", thread_ts=root["ts"])
    broadcast = await client.chat_postMessage(
        channel="C0PUBLIC", text="Done <@U0ALICE>", thread_ts=root["ts"], reply_broadcast=True
    )
    updated = await client.chat_update(
        channel="C0PUBLIC", ts=root["ts"], text="Job done", blocks=[section("*Done*")]
    )

    assert root["channel"] == "C0PUBLIC"
    assert root["message"]["user"] == "U0BOT" and root["message"]["bot_id"] == "B0BOT"
    assert root["message"]["metadata"] == metadata
    assert root["ts"] < reply["ts"] < broadcast["ts"]
    assert reply["message"]["thread_ts"] == root["ts"]
    assert broadcast["message"]["subtype"] == "thread_broadcast"
    assert updated["text"] == "Job done" and updated["ts"] == root["ts"]

    stored_root = slack.message("C0PUBLIC", root["ts"])
    assert stored_root is not None
    assert stored_root["text"] == "Job done"
    assert stored_root["blocks"] == [section("*Done*")]
    assert stored_root["metadata"] == metadata
    assert stored_root["reply_count"] == 2
    assert [m["ts"] for m in slack.messages("C0PUBLIC", thread_ts=root["ts"])] == [
        reply["ts"],
        broadcast["ts"],
    ]
    assert slack.calls("chat.postMessage")[0].params["metadata"] == metadata
    assert slack.calls("chat.postMessage")[2].params["reply_broadcast"] is True


async def test_reply_to_unknown_thread(client: AsyncWebClient) -> None:
    error = await slack_error(
        client.chat_postMessage(channel="C0PUBLIC", text="hi", thread_ts="1.000001")
    )

    assert error.response["error"] == "thread_not_found"


async def test_membership_decides_not_in_channel_or_channel_not_found(
    client: AsyncWebClient,
) -> None:
    outcomes = {}
    for channel in ("C0NOTIN", "G0PRIVATE", "D0DM", "C0NOSUCH"):
        error = await slack_error(client.chat_postMessage(channel=channel, text="hi"))
        outcomes[channel] = error.response["error"]

    assert outcomes == {
        "C0NOTIN": "not_in_channel",
        "G0PRIVATE": "channel_not_found",
        "D0DM": "channel_not_found",
        "C0NOSUCH": "channel_not_found",
    }
    assert (await client.chat_postMessage(channel="G0MEMBER", text="hi"))["ok"]


async def test_message_needs_text_or_blocks(client: AsyncWebClient) -> None:
    error = await slack_error(client.api_call("chat.postMessage", json={"channel": "C0PUBLIC"}))

    assert error.response["error"] == "no_text"


async def test_join_public_channel_but_not_private_or_dm(
    slack: SlackDouble, client: AsyncWebClient
) -> None:
    joined = await client.conversations_join(channel="C0NOTIN")
    again = await client.conversations_join(channel="C0NOTIN")
    private = await slack_error(client.conversations_join(channel="G0PRIVATE"))
    dm = await slack_error(client.conversations_join(channel="D0DM"))
    missing = await slack_error(client.conversations_join(channel="C0NOSUCH"))

    assert joined["channel"]["id"] == "C0NOTIN"
    assert joined["channel"]["is_channel"] is True and joined["channel"]["is_member"] is True
    assert "warning" not in joined.data
    assert again["warning"] == "already_in_channel"
    assert private.response["error"] == "method_not_supported_for_channel_type"
    assert dm.response["error"] == "method_not_supported_for_channel_type"
    assert missing.response["error"] == "channel_not_found"
    assert (await client.chat_postMessage(channel="C0NOTIN", text="now I can"))["ok"]
    info = await client.conversations_info(channel="C0NOTIN")
    assert info["channel"]["is_member"] is True and info["channel"]["is_private"] is False


async def test_update_text_limit_is_4000_while_post_truncates_at_40000(
    slack: SlackDouble, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(channel="C0PUBLIC", text="x" * 40_001)
    too_long = await slack_error(
        client.chat_update(channel="C0PUBLIC", ts=posted["ts"], text="y" * 4001)
    )
    at_limit = await client.chat_update(channel="C0PUBLIC", ts=posted["ts"], text="y" * 4000)

    assert posted["warning"] == "message_truncated"
    assert len(posted["message"]["text"]) == 40_000
    assert too_long.response["error"] == "msg_too_long"
    assert at_limit["ok"]


async def test_update_only_the_bots_existing_messages(
    slack: SlackDouble, client: AsyncWebClient
) -> None:
    human_ts = slack.add_human_message("C0PUBLIC", "my prompt")

    missing = await slack_error(client.chat_update(channel="C0PUBLIC", ts="1.000001", text="x"))
    theirs = await slack_error(client.chat_update(channel="C0PUBLIC", ts=human_ts, text="x"))

    assert missing.response["error"] == "message_not_found"
    assert theirs.response["error"] == "cant_update_message"


async def test_block_limits_give_invalid_blocks(client: AsyncWebClient) -> None:
    too_many = await slack_error(
        client.chat_postMessage(channel="C0PUBLIC", text="t", blocks=[section("b")] * 51)
    )
    long_section = await slack_error(
        client.chat_postMessage(channel="C0PUBLIC", text="t", blocks=[section("s" * 3001)])
    )

    assert too_many.response["error"] == "invalid_blocks"
    assert too_many.response["errors"] == ["no more than 50 items allowed [json-pointer:/blocks]"]
    assert long_section.response["error"] == "invalid_blocks"
    assert long_section.response["errors"] == [
        "must be less than 3001 characters [json-pointer:/blocks/0/text/text]"
    ]
    assert (
        await client.chat_postMessage(channel="C0PUBLIC", text="t", blocks=[section("s" * 3000)])
    )["ok"]


def test_block_checks_cover_headers_buttons_context_actions_and_ids() -> None:
    button = {"type": "button", "text": {"type": "plain_text", "text": "b" * 76}, "url": "u" * 3001}
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}},
        {"type": "actions", "block_id": "i" * 256, "elements": [button]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11},
        {
            "type": "actions",
            "elements": [{"type": "button", "text": {"type": "plain_text", "text": "ok"}}] * 26,
        },
        {"type": "sparkles"},
    ]

    pointers = [e.split("[json-pointer:")[1].rstrip("]") for e in block_errors(blocks)]

    assert pointers == [
        "/blocks/0/text/text",
        "/blocks/1/block_id",
        "/blocks/1/elements/0/text/text",
        "/blocks/1/elements/0/url",
        "/blocks/2/elements",
        "/blocks/3/elements",
        "/blocks/4/type",
    ]
    assert block_errors([section("fine"), {"type": "divider"}]) == []


# -- permalinks, reactions, replies, users, ephemerals -------------------------------------------


async def test_permalinks_for_top_level_and_reply(
    slack: SlackDouble, client: AsyncWebClient
) -> None:
    root = await client.chat_postMessage(channel="C0PUBLIC", text="root")
    reply = await client.chat_postMessage(channel="C0PUBLIC", text="r", thread_ts=root["ts"])

    top = await client.chat_getPermalink(channel="C0PUBLIC", message_ts=root["ts"])
    in_thread = await client.chat_getPermalink(channel="C0PUBLIC", message_ts=reply["ts"])
    missing = await slack_error(client.chat_getPermalink(channel="C0PUBLIC", message_ts="1.2"))

    digits = root["ts"].replace(".", "")
    assert top["permalink"] == f"https://sandbox-team.slack.com/archives/C0PUBLIC/p{digits}"
    assert in_thread["permalink"].endswith(f"?thread_ts={root['ts']}&cid=C0PUBLIC")
    assert missing.response["error"] == "message_not_found"


async def test_reactions_on_a_human_message(slack: SlackDouble, client: AsyncWebClient) -> None:
    ts = slack.add_human_message("C0PUBLIC", "make it blue")

    await client.reactions_add(channel="C0PUBLIC", timestamp=ts, name="eyes")
    twice = await slack_error(client.reactions_add(channel="C0PUBLIC", timestamp=ts, name="eyes"))
    await client.reactions_remove(channel="C0PUBLIC", timestamp=ts, name="eyes")
    gone = await slack_error(client.reactions_remove(channel="C0PUBLIC", timestamp=ts, name="eyes"))
    nowhere = await slack_error(client.reactions_add(channel="C0PUBLIC", timestamp="1.2", name="x"))

    assert twice.response["error"] == "already_reacted"
    assert gone.response["error"] == "no_reaction"
    assert nowhere.response["error"] == "message_not_found"
    await client.reactions_add(channel="C0PUBLIC", timestamp=ts, name="white_check_mark")
    assert slack.reactions("C0PUBLIC", ts) == ["white_check_mark"]


async def test_replies_come_in_ts_order_with_metadata_and_pages(
    slack: SlackDouble, client: AsyncWebClient
) -> None:
    metadata = {"event_type": "motion_job", "event_payload": {"job_id": "j"}}
    root = await client.chat_postMessage(channel="C0PUBLIC", text="card", metadata=metadata)
    human = slack.add_human_message("C0PUBLIC", "followup", thread_ts=root["ts"])
    bot = await client.chat_postMessage(channel="C0PUBLIC", text="result", thread_ts=root["ts"])

    everything = await client.conversations_replies(channel="C0PUBLIC", ts=root["ts"])
    first_page = await client.conversations_replies(channel="C0PUBLIC", ts=root["ts"], limit=2)
    second_page = await client.conversations_replies(
        channel="C0PUBLIC", ts=root["ts"], cursor=first_page["response_metadata"]["next_cursor"]
    )
    unknown = await slack_error(client.conversations_replies(channel="C0PUBLIC", ts="1.2"))
    outside = await slack_error(client.conversations_replies(channel="C0NOTIN", ts=root["ts"]))

    assert [m["ts"] for m in everything["messages"]] == [root["ts"], human, bot["ts"]]
    assert everything["messages"][0]["metadata"] == metadata
    assert everything["messages"][1]["user"] == "U0ALICE"
    assert everything["has_more"] is False
    assert [m["ts"] for m in first_page["messages"]] == [root["ts"], human]
    assert first_page["has_more"] is True
    assert [m["ts"] for m in second_page["messages"]] == [bot["ts"]]
    assert unknown.response["error"] == "thread_not_found"
    assert outside.response["error"] == "not_in_channel"


async def test_history_comes_newest_first_in_pages_with_a_cursor(
    slack: SlackDouble, client: AsyncWebClient
) -> None:
    old = await client.chat_postMessage(channel="C0PUBLIC", text="card")
    newer = [slack.add_human_message("C0PUBLIC", f"chatter {i}") for i in range(3)]

    first_page = await client.conversations_history(channel="C0PUBLIC", limit=2)
    second_page = await client.conversations_history(
        channel="C0PUBLIC", limit=2, cursor=first_page["response_metadata"]["next_cursor"]
    )
    bad = await slack_error(client.conversations_history(channel="C0PUBLIC", cursor="eA=="))

    assert [m["ts"] for m in first_page["messages"]] == [newer[2], newer[1]]
    assert first_page["has_more"] is True
    assert [m["ts"] for m in second_page["messages"]] == [newer[0], old["ts"]]
    assert second_page["has_more"] is False
    assert "response_metadata" not in second_page
    assert bad.response["error"] == "invalid_cursor"


async def test_users_info(client: AsyncWebClient) -> None:
    alice = await client.users_info(user="U0ALICE")
    nobody = await slack_error(client.users_info(user="U0NOBODY"))

    assert alice["user"]["id"] == "U0ALICE"
    assert alice["user"]["profile"]["display_name"] == "alice"
    assert nobody.response["error"] == "user_not_found"


async def test_ephemeral_needs_the_user_in_the_channel(
    slack: SlackDouble, client: AsyncWebClient
) -> None:
    slack.add_channel("C0SMALL", name="small", members={"U0ALICE"})

    sent = await client.chat_postEphemeral(channel="C0SMALL", user="U0ALICE", text="only you")
    error = await slack_error(client.chat_postEphemeral(channel="C0SMALL", user="U0BOB", text="x"))

    assert sent["message_ts"]
    assert error.response["error"] == "user_not_in_channel"
    assert slack.messages("C0SMALL") == []
    assert "only you" in slack.all_text()


# -- response_url --------------------------------------------------------------------------------


async def test_response_url_records_and_stops_after_five_uses(slack: SlackDouble) -> None:
    url = slack.response_url("motion-command")
    webhook = AsyncWebhookClient(url)

    statuses = []
    for n in range(6):
        resp = await webhook.send(text=f"reply {n}", response_type="ephemeral")
        statuses.append((resp.status_code, resp.body))

    assert statuses == [(200, "ok")] * 5 + [(404, "used_url")]
    assert [r["text"] for r in slack.responses] == [f"reply {n}" for n in range(5)]
    assert slack.responses[0]["url"] == url
    assert slack.responses[0]["tag"] == "motion-command"
    assert slack.responses[0]["response_type"] == "ephemeral"
    assert url.startswith(f"{slack.root_url}/commands/T0001/")


async def test_all_text_collects_every_text_sent(
    slack: SlackDouble, client: AsyncWebClient
) -> None:
    await client.chat_postMessage(channel="C0PUBLIC", text="posted", blocks=[section("in a block")])
    await AsyncWebhookClient(slack.response_url()).send(text="via response_url")
    await slack_error(client.chat_postMessage(channel="C0NOTIN", text="refused but sent"))

    text = slack.all_text()

    for expected in ("posted", "in a block", "via response_url", "refused but sent"):
        assert expected in text


async def test_observers_hear_each_visible_change_in_order() -> None:
    """The stand-in alone (no test extras), as `python -m bot try` uses it."""
    heard: list[Change] = []
    with SlackStandIn(bot_token=TOKEN) as standin:
        standin.observe(heard.append)
        client = AsyncWebClient(token=TOKEN, base_url=standin.base_url)
        posted = await client.chat_postMessage(channel="C0PUBLIC", text="card")
        await client.chat_update(channel="C0PUBLIC", ts=posted["ts"], text="card, edited")
        reply = standin.thread_reply("C0PUBLIC", "warmer", user="U0ALICE", thread_ts=posted["ts"])
        await client.reactions_add(channel="C0PUBLIC", timestamp=reply["ts"], name="eyes")
        await client.chat_postEphemeral(channel="C0PUBLIC", user="U0ALICE", text="just you")
        await AsyncWebhookClient(standin.response_url()).send(text="via response_url")
        await slack_error(client.chat_postMessage(channel="C0NOTIN", text="refused"))
        envelope = standin.event_callback(reply)
        command = standin.slash_command("/motion", "hi", channel="C0PUBLIC", user="U0ALICE")

    assert [(c.kind, c.message.get("text"), c.reaction) for c in heard] == [
        ("posted", "card", None),
        ("edited", "card, edited", None),
        ("posted", "warmer", None),
        ("reaction_added", "warmer", "eyes"),
        ("ephemeral", "just you", None),
        ("response", "via response_url", None),
    ]
    assert reply["thread_ts"] == posted["ts"] and reply["parent_user_id"] == "U0BOT"
    assert envelope["type"] == "event_callback" and envelope["event"] == reply
    assert command["channel_name"] == "general" and command["user_name"] == "alice"
    assert "/commands/T0001/" in command["response_url"]


# -- faults --------------------------------------------------------------------------------------


async def test_rate_limit_is_retried_by_slack_sdk_after_retry_after(slack: SlackDouble) -> None:
    client = AsyncWebClient(
        token=TOKEN,
        base_url=slack.base_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    slack.fail_next("chat.postMessage", status=429, retry_after=1)

    started = time.monotonic()
    resp = await client.chat_postMessage(channel="C0PUBLIC", text="eventually")

    assert resp["ok"]
    assert time.monotonic() - started >= 1.0
    assert [(c.ok, c.error) for c in slack.calls("chat.postMessage")] == [
        (False, "ratelimited"),
        (True, None),
    ]
    assert len(slack.messages("C0PUBLIC")) == 1


async def test_rate_limit_without_retry_handler_surfaces_429(
    slack: SlackDouble, client: AsyncWebClient
) -> None:
    slack.fail_next("chat.update", status=429, retry_after=7)

    error = await slack_error(client.chat_update(channel="C0PUBLIC", ts="1.2", text="x"))

    assert error.response.status_code == 429
    assert error.response.headers["Retry-After"] == "7"
    assert error.response["error"] == "ratelimited"


async def test_injected_error_delay_and_times(slack: SlackDouble, client: AsyncWebClient) -> None:
    slack.fail_next("chat.postMessage", error="fatal_error", times=2)
    slack.fail_next("chat.postMessage", delay=0.2)

    first = await slack_error(client.chat_postMessage(channel="C0PUBLIC", text="a"))
    second = await slack_error(client.chat_postMessage(channel="C0PUBLIC", text="b"))
    started = time.monotonic()
    slow = await client.chat_postMessage(channel="C0PUBLIC", text="c")

    assert first.response["error"] == second.response["error"] == "fatal_error"
    assert slow["ok"] and time.monotonic() - started >= 0.2
    assert [m["text"] for m in slack.messages("C0PUBLIC")] == ["c"]


async def test_dropped_answer_after_posting_makes_a_retrying_client_post_twice(
    slack: SlackDouble,
) -> None:
    fast_retry = AsyncConnectionErrorRetryHandler(
        interval_calculator=FixedValueRetryIntervalCalculator(0.01)
    )
    client = AsyncWebClient(token=TOKEN, base_url=slack.base_url, retry_handlers=[fast_retry])
    slack.fail_next("chat.postMessage", drop="after")

    resp = await client.chat_postMessage(channel="C0PUBLIC", text="card")

    assert resp["ok"]
    assert [m["text"] for m in slack.messages("C0PUBLIC")] == ["card", "card"]


# -- the sync client, form encoding, waiting -----------------------------------------------------


def test_sync_client_with_form_encoded_json_strings_and_flags(slack: SlackDouble) -> None:
    client = WebClient(token=TOKEN, base_url=slack.base_url)
    root = client.chat_postMessage(channel="C0PUBLIC", text="root")
    metadata = {"event_type": "motion_job", "event_payload": {"job_id": "j"}}

    client.api_call(
        "chat.postMessage",
        data={
            "channel": "C0PUBLIC",
            "text": "form",
            "thread_ts": root["ts"],
            "reply_broadcast": "1",
            "unfurl_links": "false",
            "blocks": json.dumps([section("formed")]),
            "metadata": json.dumps(metadata),
        },
    )

    params = slack.calls("chat.postMessage")[1].params
    assert params["blocks"] == [section("formed")]
    assert params["metadata"] == metadata
    assert params["reply_broadcast"] is True and params["unfurl_links"] is False
    [reply] = slack.messages("C0PUBLIC", thread_ts=root["ts"])
    assert reply["subtype"] == "thread_broadcast" and reply["metadata"] == metadata


def test_wait_for_reports_the_last_calls_on_timeout(slack: SlackDouble) -> None:
    WebClient(token=TOKEN, base_url=slack.base_url).auth_test()

    with pytest.raises(AssertionError, match=r"auth\.test ok"):
        slack.wait_for(lambda s: bool(s.calls("chat.postMessage")), timeout=0.1)
    slack.wait_for(lambda s: bool(s.calls("auth.test")), timeout=0.1)


async def test_wait_for_async_lets_the_loop_run(slack: SlackDouble, client: AsyncWebClient) -> None:
    task = asyncio.create_task(client.chat_postMessage(channel="C0PUBLIC", text="later"))

    await slack.wait_for_async(lambda s: len(s.messages("C0PUBLIC")) == 1, timeout=2)
    await task


# -- views: modals and the Home tab ----------------------------------------------------------------


def modal(**extra: Any) -> dict[str, Any]:
    prompt = {
        "type": "input",
        "block_id": "prompt",
        "label": {"type": "plain_text", "text": "Prompt"},
        "element": {"type": "plain_text_input", "action_id": "value"},
    }
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": "New Motion video"},
        "submit": {"type": "plain_text", "text": "Start"},
        "blocks": [prompt],
        **extra,
    }


async def test_views_open_takes_a_fresh_trigger_once(
    slack: SlackDouble, client: AsyncWebClient
) -> None:
    trigger = slack.issue_trigger("U0ALICE")
    opened = await client.views_open(trigger_id=trigger, view=modal(private_metadata="{}"))
    view = opened["view"]
    assert view["id"].startswith("V") and view["user"] == "U0ALICE"
    assert view["private_metadata"] == "{}" and view["state"] == {"values": {}}
    assert slack.views("U0ALICE")[0]["id"] == view["id"]
    again = await slack_error(client.views_open(trigger_id=trigger, view=modal()))
    assert again.response["error"] == "exchanged_trigger_id"
    unknown = await slack_error(client.views_open(trigger_id="1.2.3", view=modal()))
    assert unknown.response["error"] == "invalid_trigger_id"
    late = slack.issue_trigger("U0ALICE")
    slack._triggers[late] = (time.monotonic() - 3.5, "U0ALICE", False)
    expired = await slack_error(client.views_open(trigger_id=late, view=modal()))
    assert expired.response["error"] == "expired_trigger_id"


@pytest.mark.parametrize(
    "view",
    [
        modal(title={"type": "plain_text", "text": "A title longer than 24 chars"}),
        modal(submit=None),
        modal(blocks=[section("x")] * 101),
        modal(private_metadata="x" * 3001),
        {"type": "modal", "blocks": []},
        modal(blocks=[{"type": "input", "label": {"type": "plain_text", "text": "x"}}]),
    ],
    ids=["long-title", "inputs-without-submit", "101-blocks", "long-metadata", "no-title",
         "input-without-element"],
)  # fmt: skip
async def test_views_open_refuses_what_slack_refuses(
    slack: SlackDouble, client: AsyncWebClient, view: dict[str, Any]
) -> None:
    view = {k: v for k, v in view.items() if v is not None}
    failure = await slack_error(
        client.views_open(trigger_id=slack.issue_trigger("U0ALICE"), view=view)
    )
    assert failure.response["error"] == "invalid_arguments"
    assert failure.response["response_metadata"]["messages"]
    assert slack.views() == []


async def test_views_update_push_and_publish(slack: SlackDouble, client: AsyncWebClient) -> None:
    opened = (await client.views_open(trigger_id=slack.issue_trigger("U0BOB"), view=modal()))[
        "view"
    ]
    updated = await client.views_update(view_id=opened["id"], view=modal(callback_id="next"))
    assert updated["view"]["id"] == opened["id"] and updated["view"]["callback_id"] == "next"
    stale = await slack_error(
        client.views_update(view_id=opened["id"], hash="0.stale", view=modal())
    )
    assert stale.response["error"] == "hash_conflict"
    missing = await slack_error(client.views_update(view_id="VNOPE", view=modal()))
    assert missing.response["error"] == "not_found"
    pushed = await client.views_push(trigger_id=slack.issue_trigger("U0BOB"), view=modal())
    assert pushed["view"]["id"] != opened["id"]
    home = {"type": "home", "blocks": [section("hello")] * 100}
    first = (await client.views_publish(user_id="U0BOB", view=home))["view"]
    second = (await client.views_publish(user_id="U0BOB", view=home))["view"]
    assert first["id"] == second["id"] and slack.home("U0BOB")["type"] == "home"
    too_many = await slack_error(
        client.views_publish(user_id="U0BOB", view={"type": "home", "blocks": [section("x")] * 101})
    )
    assert too_many.response["error"] == "invalid_arguments"
    nobody = await slack_error(client.views_publish(user_id="U0NOBODY", view=home))
    assert nobody.response["error"] == "user_not_found"
