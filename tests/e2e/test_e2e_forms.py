"""The form (`/motion new`, the shortcut), the buttons on results ("Refine", "New variation")
and the Home tab, end to end: signed requests to the real app, the Slack double (views.open
with its 3-second single-use triggers, view checks) and the sandbox."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import httpx

from bot.slack.messages import FORM_PROMPT_MAX
from tests.support.e2e import buttons, results, run_command, settle
from tests.support.harness import Harness, until

STYLE = "https://youtu.be/dQw4w9WgXcQ"


def errors_of(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    body = response.json() if response.content else {}
    assert body.get("response_action") == "errors", body
    return dict(body["errors"])


def closed(response: httpx.Response) -> bool:
    """A plain ack: the modal closes."""
    assert response.status_code == 200, response.text
    return not response.content or "response_action" not in response.text


async def opened_modal(h: Harness, before: int = 0, user: str = "U0ALICE") -> dict[str, Any]:
    views = await until(
        lambda: h.slack.views(user)[before:] or None, what="a modal opened with views.open"
    )
    return views[0]


def jobs_of(h: Harness, user: str = "U0ALICE") -> int:
    return len(h.bot.store.recent_jobs("T0001", user, limit=100))


async def finished_job(h: Harness, text: str = "a teaser for our spring sale") -> dict[str, Any]:
    card = await run_command(h, text)
    [result] = await until(lambda: results(h, card["ts"]), what="the result")
    return {"card": card, "result": result}


def button_value(message: dict[str, Any], action_id: str) -> str:
    return next(b["value"] for b in buttons(message) if b["action_id"] == action_id)


# ---------------------------------------------------------------- opening the form


async def test_motion_new_acks_first_and_opens_the_form_with_its_trigger(harness: Harness) -> None:
    await harness.start()
    fields = harness.command_fields("new", channel="C0PUBLIC")
    harness.slack.fail_next("views.open", delay=2.5)  # a slow Slack must not hold the ack up
    started = time.monotonic()
    response = await harness.post(urlencode(fields), "application/x-www-form-urlencoded")
    acked = time.monotonic()
    assert response.status_code == 200
    assert acked - started < 2.4, "the ack waited for views.open"
    view = await opened_modal(harness)
    [call] = [c for c in harness.slack.calls("views.open") if c.ok]
    assert call.params["trigger_id"] == fields["trigger_id"]
    assert call.at - started < 3.0, "views.open outside the trigger's 3 seconds"
    assert view["title"]["text"] == "New Motion video"
    by_id = {b.get("block_id"): b for b in view["blocks"]}
    assert by_id["channel"]["element"]["initial_conversation"] == "C0PUBLIC"
    assert by_id["prompt"]["element"]["max_length"] == FORM_PROMPT_MAX
    assert [o["value"] for o in by_id["aspect"]["element"]["options"]] == [
        "16:9", "9:16", "1:1", "4:5", "21:9",
    ]  # fmt: skip
    assert harness.sandbox.count("create") == 0


async def test_shortcut_opens_the_form_with_no_channel_and_requires_one(harness: Harness) -> None:
    await harness.start()
    await harness.shortcut("new_motion_video")
    view = await opened_modal(harness)
    channel = next(b for b in view["blocks"] if b.get("block_id") == "channel")
    assert "initial_conversation" not in channel["element"]
    assert channel["optional"] is False
    errors = errors_of(await harness.submit_view(view, {"prompt": "a teaser", "channel": None}))
    assert list(errors) == ["channel"]
    await settle(0.2)
    assert jobs_of(harness) == 0


async def test_a_trigger_opens_one_view_and_expires(harness: Harness) -> None:
    await harness.start()
    trigger = harness.slack.issue_trigger("U0ALICE")
    await harness.shortcut("new_motion_video", trigger_id=trigger)
    await opened_modal(harness)
    await harness.shortcut("new_motion_video", trigger_id=trigger)
    await until(lambda: len(harness.slack.calls("views.open")) == 2, what="the second views.open")
    assert harness.slack.calls("views.open")[1].error == "exchanged_trigger_id"
    late = harness.slack.issue_trigger("U0ALICE")
    harness.slack._triggers[late] = (time.monotonic() - 4, "U0ALICE", False)
    await harness.shortcut("new_motion_video", trigger_id=late)
    await until(lambda: len(harness.slack.calls("views.open")) == 3, what="the late views.open")
    assert harness.slack.calls("views.open")[2].error == "expired_trigger_id"
    assert len(harness.slack.views("U0ALICE")) == 1


# ---------------------------------------------------------------- submitting it


async def test_each_bad_field_gets_its_error_on_its_block(harness: Harness) -> None:
    await harness.start()
    await harness.command("new")
    view = await opened_modal(harness)
    cases: list[tuple[dict[str, str | None], str, str]] = [
        ({"prompt": "   "}, "prompt", "empty"),
        ({"prompt": "x" * (FORM_PROMPT_MAX + 1)}, "prompt", "3,000"),
        ({"prompt": "a teaser", "style": "https://vimeo.com/123"}, "style", "YouTube"),
        ({"prompt": "a teaser", "style": "not a link"}, "style", "YouTube"),
    ]
    for answers, block, words in cases:
        errors = errors_of(await harness.submit_view(view, {"channel": "C0PUBLIC", **answers}))
        assert list(errors) == [block], (answers, errors)
        assert words in errors[block]
        assert "`" not in errors[block]
    errors = errors_of(
        await harness.submit_view(view, {"prompt": "", "style": "ftp://x", "channel": "C0PUBLIC"})
    )
    assert set(errors) == {"prompt", "style"}
    await settle(0.2)
    assert jobs_of(harness) == 0
    assert harness.sandbox.count("create") == 0


async def test_a_valid_form_starts_one_job_and_one_create_even_replayed(harness: Harness) -> None:
    await harness.start()
    await harness.command("new", channel="C0PUBLIC")
    view = await opened_modal(harness)
    answers = {
        "prompt": "a teaser <!channel> & more", "style": STYLE, "aspect": "9:16",
        "duration": "10-30s", "channel": "C0PUBLIC",
    }  # fmt: skip
    assert closed(await harness.submit_view(view, answers))
    assert closed(await harness.submit_view(view, answers))  # Slack replays a submission
    card = (await until(lambda: harness.cards(), what="the job card"))[0]
    await until(lambda: results(harness, card["ts"]), what="the result")
    await settle(0.3)
    assert jobs_of(harness) == 1
    assert harness.sandbox.count("create") == 1
    assert harness.sandbox.creates[0] == {
        "prompt": "a teaser <!channel> & more", "style_reference_url": STYLE, "aspect_ratio": "9:16",
        "duration": "10-30s",
    }  # fmt: skip
    assert "<!channel>" not in card["text"]


async def test_form_outside_the_allowed_channels_is_refused_on_the_channel_field(
    harness: Harness,
) -> None:
    await harness.start(MOTION_ALLOWED_CHANNELS="G0MEMBER")
    await harness.shortcut("new_motion_video")
    view = await opened_modal(harness)
    errors = errors_of(
        await harness.submit_view(view, {"prompt": "a teaser", "channel": "C0PUBLIC"})
    )
    assert list(errors) == ["channel"]
    assert "#G0MEMBER" in errors["channel"]
    await settle(0.2)
    assert jobs_of(harness) == 0
    assert closed(await harness.submit_view(view, {"prompt": "a teaser", "channel": "G0MEMBER"}))
    await until(lambda: harness.cards("G0MEMBER"), what="the card in the allowed channel")
    assert jobs_of(harness) == 1


async def test_form_for_a_private_channel_the_app_is_not_in_says_to_invite_it(
    harness: Harness,
) -> None:
    await harness.start()
    await harness.shortcut("new_motion_video")
    view = await opened_modal(harness)
    assert closed(await harness.submit_view(view, {"prompt": "a teaser", "channel": "G0PRIVATE"}))
    hint = await until(
        lambda: [r for r in harness.slack.responses if r["tag"] == "form-U0ALICE"],
        what="the invite hint at the form's response_url",
    )
    assert "/invite" in hint[0]["text"]
    await settle(0.3)
    assert harness.sandbox.count("create") == 0


async def test_form_with_motion_confirm_previews_privately_then_start_runs_it_once(
    harness: Harness,
) -> None:
    await harness.start(MOTION_CONFIRM="true")
    await harness.command("new")
    view = await opened_modal(harness)
    assert closed(await harness.submit_view(view, {"prompt": "a teaser", "channel": "C0PUBLIC"}))
    [preview] = await until(
        lambda: [r for r in harness.slack.responses if r["tag"] == "form-U0ALICE"],
        what="the preview",
    )
    assert "Motion credits" in preview["text"]
    await settle(0.2)
    assert jobs_of(harness) == 0
    token = button_value(preview, "confirm_start")
    await harness.action("confirm_start", token)
    await harness.action("confirm_start", token)
    await until(lambda: harness.cards(), what="the card after Start")
    await until(lambda: harness.sandbox.count("create") == 1, what="the create")
    await settle(0.3)
    assert jobs_of(harness) == 1
    assert harness.sandbox.count("create") == 1


# ---------------------------------------------------------------- the buttons on results


async def test_result_carries_download_refine_and_new_variation(harness: Harness) -> None:
    await harness.start()
    done = await finished_job(harness)
    ids = [b["action_id"] for b in buttons(done["result"])]
    assert ids == ["download", "refine", "new_variation", "fresh_link"]  # no PUBLIC_URL


async def test_refine_submitted_twice_makes_one_followup(harness: Harness) -> None:
    await harness.start()
    done = await finished_job(harness)
    card, result = done["card"], done["result"]
    await harness.action("refine", button_value(result, "refine"), message_ts=result["ts"])
    view = await opened_modal(harness)
    assert view["title"]["text"] == "Refine video"
    answers = {"prompt": "make it brighter", "aspect": "1:1"}
    assert closed(await harness.submit_view(view, answers))
    assert closed(await harness.submit_view(view, answers))
    await until(lambda: len(results(harness, card["ts"])) == 2, what="the refined run's result")
    await settle(0.3)
    assert harness.sandbox.count("followup") == 1
    [followup] = harness.sandbox.calls_to("followup")
    assert "make it brighter" in str(followup)
    assert len(results(harness, card["ts"])) == 2
    assert len(harness.bot.store.runs(harness.bot.store.recent_jobs("T0001", "U0ALICE")[0].id)) == 2


async def test_refine_with_a_bad_field_keeps_the_form_open(harness: Harness) -> None:
    await harness.start()
    done = await finished_job(harness)
    await harness.action("refine", button_value(done["result"], "refine"))
    view = await opened_modal(harness)
    errors = errors_of(await harness.submit_view(view, {"prompt": ""}))
    assert list(errors) == ["prompt"]
    await settle(0.2)
    assert harness.sandbox.count("followup") == 0


async def test_refine_over_the_daily_limit_is_refused_on_the_form(harness: Harness) -> None:
    await harness.start(MOTION_RUNS_PER_USER_PER_DAY="1")
    done = await finished_job(harness)
    await harness.action("refine", button_value(done["result"], "refine"))
    view = await opened_modal(harness)
    errors = errors_of(await harness.submit_view(view, {"prompt": "brighter"}))
    assert list(errors) == ["prompt"]
    assert "You have used 1 of your 1 Motion runs for today" in errors["prompt"]
    await settle(0.2)
    assert harness.sandbox.count("followup") == 0


async def test_new_variation_pressed_twice_starts_one_new_job(harness: Harness) -> None:
    await harness.start()
    done = await finished_job(harness, "a teaser --aspect 9:16")
    value = button_value(done["result"], "new_variation")
    await harness.action("new_variation", value)
    await harness.action("new_variation", value)
    cards = await until(lambda: len(harness.cards()) == 2 and harness.cards(), what="new card")
    await until(lambda: harness.sandbox.count("create") == 2, what="the variation's create")
    await settle(0.3)
    assert len(harness.cards()) == 2
    assert harness.sandbox.count("create") == 2
    assert harness.sandbox.creates[1] == harness.sandbox.creates[0]
    assert cards[1]["ts"] != cards[0]["ts"]
    said = [r["text"] for r in harness.slack.responses if r["tag"] == "action-U0ALICE"]
    assert any("already started" in t for t in said), said
    link = await until(
        lambda: [
            m for m in harness.bot_replies(cards[0]["ts"]) if "Started a new job" in m["text"]
        ],
        what="the link from the old thread to the variation's",
    )
    assert len(link) == 1


async def test_new_variation_with_motion_confirm_previews_once(harness: Harness) -> None:
    bot = await harness.start()
    done = await finished_job(harness)
    await harness.stop(bot)
    await harness.start(MOTION_CONFIRM="true")
    value = button_value(done["result"], "new_variation")
    await harness.action("new_variation", value)
    await harness.action("new_variation", value)
    said = await until(
        lambda: len(action_texts(harness)) == 2 and action_texts(harness), what="both answers"
    )
    assert "Motion credits" in said[0]
    assert "already started" in said[1]
    await settle(0.2)
    assert len(harness.cards()) == 1


def action_texts(h: Harness) -> list[str]:
    return [r["text"] for r in h.slack.responses if r["tag"] == "action-U0ALICE"]


async def test_new_variation_outside_the_allowed_channels_is_refused(harness: Harness) -> None:
    bot = await harness.start()
    done = await finished_job(harness)
    await harness.stop(bot)
    await harness.start(MOTION_ALLOWED_CHANNELS="G0MEMBER")
    await harness.action("new_variation", button_value(done["result"], "new_variation"))
    said = await until(
        lambda: [r["text"] for r in harness.slack.responses if r["tag"] == "action-U0ALICE"],
        what="the refusal",
    )
    assert "can't be started in this channel" in said[0]
    await settle(0.2)
    assert len(harness.cards()) == 1
    assert harness.sandbox.count("create") == 1


# ---------------------------------------------------------------- App Home


async def test_home_shows_the_20_latest_of_30_jobs_within_100_blocks(harness: Harness) -> None:
    await harness.start()
    store = harness.bot.store
    for i in range(30):
        store.create_job(
            team_id="T0001", channel_id="C0PUBLIC", requester="U0ALICE", response_url=None,
            request={"prompt": f"job number {i} <!here>"}, sandbox=True, now=1_700_000_000 + i,
        )  # fmt: skip
    response = await harness.home_opened()
    assert response.status_code == 200
    home = await until(lambda: harness.slack.home("U0ALICE"), what="views.publish")
    blocks = home["blocks"]
    assert len(blocks) <= 100
    text = "\n".join(b["text"]["text"] for b in blocks if b.get("type") == "section")
    assert "job number 29" in text and "job number 10" in text
    assert "job number 9 " not in text
    assert "<!here>" not in text
    assert "Your Motion runs" in text
    assert any(b["action_id"] == "home_new_video" for b in buttons(home))


async def test_home_is_refreshed_each_time_and_links_a_finished_job(harness: Harness) -> None:
    await harness.start()
    await harness.home_opened()
    first = await until(lambda: harness.slack.home("U0ALICE"), what="the first publish")
    assert "No videos yet" in str(first["blocks"])
    await finished_job(harness)
    await harness.home_opened()
    await until(
        lambda: "download" in str((harness.slack.home("U0ALICE") or {}).get("blocks")),
        what="the refreshed Home tab",
    )
    home = harness.slack.home("U0ALICE") or {}
    assert "archives/C0PUBLIC" in str(home["blocks"])
    assert home["id"] == first["id"]
    await harness.home_opened(tab="messages")
    await settle(0.2)
    assert len(harness.slack.calls("views.publish")) == 2


async def test_new_video_on_home_opens_the_form(harness: Harness) -> None:
    await harness.start()
    await harness.home_opened()
    await until(lambda: harness.slack.home("U0ALICE"), what="the Home tab")
    await harness.home_action("home_new_video")
    view = await opened_modal(harness)
    assert view["callback_id"] == "new_motion_form"
