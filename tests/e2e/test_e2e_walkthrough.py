"""A new user's first session in HTTP mode with PUBLIC_URL, every capability of issue 11 in one
thread and in order, asserting what the person sees in Slack (and what Motion got):

mention with a file → the card as the first reply → the result with a lasting /v/ link and the
video uploaded under it → a reply with a file, as a followup → Refine → New variation → Stop
tracking on the variation's job."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from typing import Any

import httpx

from bot.links import FILE_TOKEN_SECONDS
from bot.sandbox import JobPlan
from tests.e2e.test_e2e_files import free_port
from tests.support.e2e import buttons, card_text, results, settle
from tests.support.harness import FAST_PLAN, Harness, until

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64
CLIP = b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 4000
SMALL = JobPlan(**{**FAST_PLAN.__dict__, "video_bytes": 150_000})
NEVER = JobPlan(queued_s=0.02, created_s=0.02, running_s=3600)


def kind_of(message: dict[str, Any]) -> str | None:
    return ((message.get("metadata") or {}).get("event_payload") or {}).get("kind")


def button(message: dict[str, Any], action_id: str) -> dict[str, Any]:
    return next(b for b in buttons(message) if b["action_id"] == action_id)


def videos(h: Harness, thread: str) -> list[dict[str, Any]]:
    """The videos the app uploaded into the thread (people's files are file_share messages too)."""
    found = h.slack.shared_files("C0PUBLIC", thread)
    return [m for m in found if m.get("user") == h.slack.bot_user_id]


async def press(h: Harness, message: dict[str, Any], action_id: str) -> None:
    value = button(message, action_id)["value"]
    response = await h.action(action_id, value, message_ts=message["ts"])
    assert response.status_code == 200, response.text


async def test_a_new_user_goes_through_every_capability_in_one_thread(harness: Harness) -> None:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    harness.sandbox.fetch_attachments = True
    for _ in range(3):  # the first job's three runs are short, with a small MP4 each
        harness.sandbox.plan_next(SMALL)
    await harness.start(PORT=str(port), PUBLIC_URL=public, UPLOAD_MAX_MB="5")
    slack, sandbox = harness.slack, harness.sandbox

    # 1. A message that @mentions the app, with a clip attached.
    clip = slack.add_file(title="Product demo", mimetype="video/mp4", content=CLIP)
    mention, twin = slack.mention(
        "C0PUBLIC", "<@U0BOT> a launch teaser --aspect 9:16", user="U0ALICE", file_ids=[clip]
    )
    for event in (mention, twin):
        assert (await harness.event(event)).status_code == 200
    thread = mention["ts"]

    # 2. The card is the app's first reply in that message's thread.
    [card] = await until(lambda: harness.bot_replies(thread), what="the card")
    assert harness.thread(thread)[0]["ts"] == card["ts"] and kind_of(card) == "card"
    assert "launch teaser" in card["text"] and "<@U0ALICE>" in card["text"]

    # 3. The result, with a link to the app that lasts, then the video playing in the thread.
    [result] = await until(lambda: results(harness, thread), what="the first result")
    assert "run 1 of your Motion video is ready" in result["text"]
    link = button(result, "download")["url"]
    assert link.startswith(f"{public}/v/") and link in result["text"]
    assert [b["action_id"] for b in buttons(result)] == ["download", "refine", "new_variation"]
    [first_video] = await until(lambda: videos(harness, thread), what="run 1's video")
    assert first_video["files"][0]["name"] == "motion-run-1.mp4"
    assert float(first_video["ts"]) > float(result["ts"])
    [create] = sandbox.creates
    assert create["prompt"] == "a launch teaser" and create["aspect_ratio"] == "9:16"
    [attachment] = create["attachments"]
    assert attachment["url"].startswith(f"{public}/files/") and attachment["type"] == "video"
    [job_id] = sandbox.job_ids
    async with httpx.AsyncClient(timeout=10) as web:
        clicked = await web.get(link)
    assert clicked.status_code in (302, 303)
    assert clicked.headers["location"] == sandbox.download_url(job_id, 1)

    # 4. A reply with a file in the thread is a followup with that file.
    logo = slack.add_file(title="Brand logo", mimetype="image/png", content=PNG)
    reply = slack.file_reply(
        "C0PUBLIC", "end on our logo", user="U0ALICE", thread_ts=thread, file_ids=[logo]
    )
    assert (await harness.event(reply)).status_code == 200
    second = (await until(lambda: results(harness, thread)[1:], what="run 2's result"))[0]
    assert "run 2 of your Motion video is ready" in second["text"]
    [followup] = sandbox.followups
    assert followup["prompt"] == "end on our logo"
    assert [a["content_type"] for a in followup["attachments"]] == ["image/png"]
    fetched = {f.sha256 for f in sandbox.fetches if f.status == 200}
    assert hashlib.sha256(PNG).hexdigest() in fetched  # Motion got the logo through the app
    assert hashlib.sha256(CLIP).hexdigest() in fetched
    await until(lambda: "arrow_forward" in slack.reactions("C0PUBLIC", reply["ts"]), what="▶")
    await until(lambda: len(videos(harness, thread)) == 2, what="run 2's video")

    # 5. Refine on the latest result: a form, then a third run in the same thread.
    await press(harness, second, "refine")
    [form] = await until(lambda: slack.views("U0ALICE"), what="the Refine form")
    assert form["title"]["text"] == "Refine video"
    submitted = await harness.submit_view(form, {"prompt": "slower cuts", "aspect": "1:1"})
    assert submitted.status_code == 200 and "response_action" not in submitted.text
    third = (await until(lambda: results(harness, thread)[2:], what="run 3's result"))[0]
    assert "run 3 of your Motion video is ready" in third["text"]
    assert sandbox.followups[1]["prompt"] == "slower cuts"
    assert sandbox.followups[1]["aspect_ratio"] == "1:1"
    await until(lambda: len(videos(harness, thread)) == 3, what="run 3's video")

    # 6. New variation: a new job of its own, linked from this thread; it is slow this time.
    sandbox.plan_next(NEVER)
    await press(harness, third, "new_variation")
    await until(
        lambda: [m for m in harness.bot_replies(thread) if "Started a new job" in m["text"]],
        what="the link to the new job",
    )
    new_card = (await until(lambda: harness.cards()[1:], what="the new job's card"))[0]
    assert new_card["ts"] != card["ts"]
    await until(lambda: sandbox.count("create") == 2, what="the variation's create")
    variation = sandbox.creates[1]  # the request behind run 3: its prompts, files and aspect
    assert variation["prompt"] == "a launch teaser\n\nend on our logo\n\nslower cuts"
    assert [a["name"] for a in variation["attachments"]] == ["Product demo", "Brand logo"]
    assert variation["aspect_ratio"] == "1:1"

    # 7. Stop tracking, from the new job's card, by its requester.
    stoppable = await until(
        lambda: (
            "stop_tracking" in [b["action_id"] for b in buttons(current(harness, new_card))]
            and current(harness, new_card)
        ),
        what="Stop tracking on the new card",
    )
    await press(harness, stoppable, "stop_tracking")
    [stopped] = await until(
        lambda: [
            m for m in harness.bot_replies(new_card["ts"]) if kind_of(m) == "tracking_stopped"
        ],
        what="the stop message",
    )
    assert "<@U0ALICE> stopped tracking this job" in stopped["text"]
    assert "Motion may still finish the video" in stopped["text"]
    await until(lambda: "⛔ Stopped" in card_text(harness, new_card["ts"]), what="card stopped")
    await settle(0.5)
    polled = sandbox.count("status")
    await settle(1.0)
    assert sandbox.count("status") == polled, "the stopped job is still polled"

    # What the first thread shows, in order, and nothing more.
    mine = [m for m in harness.thread(thread) if m.get("user") == slack.bot_user_id]
    kinds = [kind_of(m) or m.get("subtype") for m in mine]
    assert kinds[0] == "card" and kinds.count("result") == 3 and kinds.count("file_share") == 3
    assert results(harness, new_card["ts"]) == []
    assert sandbox.count("create") == 2 and sandbox.count("followup") == 2


def current(h: Harness, message: dict[str, Any]) -> dict[str, Any]:
    found = h.slack.message("C0PUBLIC", message["ts"])
    assert found is not None
    return found


def link_expiry(url: str) -> int:
    """The expiry inside a PUBLIC_URL/files/<token> link (its payload is base64url JSON)."""
    payload = url.rsplit("/", 1)[-1].split(".", 1)[0]
    return int(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])


async def test_new_variation_hands_motion_file_links_signed_at_the_click(harness: Harness) -> None:
    """A file link lasts 24 hours from signing, and New variation may be pressed days later:
    the variation's files must get links of their own, or Motion's fetch would meet a 403."""
    port = free_port()
    harness.sandbox.fetch_attachments = True
    await harness.start(PORT=str(port), PUBLIC_URL=f"http://127.0.0.1:{port}")
    logo = harness.slack.add_file(title="logo", mimetype="image/png", content=PNG)
    mention, _ = harness.slack.mention(
        "C0PUBLIC", "<@U0BOT> a logo sting", user="U0ALICE", file_ids=[logo]
    )
    assert (await harness.event(mention)).status_code == 200
    [result] = await until(lambda: results(harness, mention["ts"]), what="the result")
    await asyncio.sleep(2.1)  # expiries are whole seconds: let the clock move on
    clicked = time.time()
    await press(harness, result, "new_variation")
    await until(lambda: harness.sandbox.count("create") == 2, what="the variation's create")

    first, second = (c["attachments"][0]["url"] for c in harness.sandbox.creates)
    assert second != first
    assert link_expiry(second) >= int(clicked) + FILE_TOKEN_SECONDS
    assert link_expiry(second) > link_expiry(first)
    await until(lambda: len(harness.sandbox.fetches) == 2, what="Motion's second fetch")
    assert [f.status for f in harness.sandbox.fetches] == [200, 200]
