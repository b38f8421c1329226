"""Issue 11's capabilities in Socket Mode, tried as a new user on a laptop would: no PUBLIC_URL,
no HTTP port, every event, button, shortcut and form delivered over the Slack double's
WebSocket (tests/support/socket_mode.py) and acked there. The last tests set PUBLIC_URL in
Socket Mode, where the app then serves its public links (and /healthz) on PORT.

Payloads are built here exactly as `Harness` builds them for HTTP (same fields), because Socket
Mode delivers the same JSON, only inside an envelope."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx

from bot.app import MotionBot
from bot.links import FILE_TOKEN_SECONDS, signer_for
from bot.sandbox import JobPlan
from tests.e2e.test_e2e_files import free_port
from tests.e2e.test_socket_mode import APP_TOKEN, acked, command_payload
from tests.support.e2e import buttons, card_text, results, settle
from tests.support.harness import BOT_TOKEN, FAST_PLAN, Harness, until

BOT = "<@U0BOT>"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
NEVER = JobPlan(queued_s=0.02, created_s=0.02, running_s=3600)


# -- what Slack sends over the socket -------------------------------------------------------------


def user_of(user: str) -> dict[str, str]:
    return {"id": user, "username": "alice", "team_id": "T0001"}


def button_payload(
    h: Harness, message: dict[str, Any], action_id: str, *, user: str = "U0ALICE"
) -> dict[str, Any]:
    """A press of `action_id` on `message`, as Slack sends it (the same JSON as over HTTP)."""
    [button] = [b for b in buttons(message) if b["action_id"] == action_id]
    return {
        "type": "block_actions",
        "team": {"id": "T0001", "domain": "sandbox-team"},
        "user": user_of(user),
        "api_app_id": "A0APP",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": "C0PUBLIC"},
        "trigger_id": h.slack.issue_trigger(user),
        "channel": {"id": "C0PUBLIC", "name": "general"},
        "message": {"ts": message["ts"], "type": "message"},
        "response_url": h.slack.response_url(f"action-{user}"),
        "actions": [
            {
                "action_id": action_id,
                "block_id": "b1",
                "value": button.get("value", ""),
                "type": "button",
                "action_ts": str(time.time()),
            }
        ],
    }


async def start_socket(h: Harness, **env: str) -> MotionBot:
    """The app in Socket Mode (no signing secret, no PUBLIC_URL unless given), connected."""
    bot = await h.start(SLACK_APP_TOKEN=APP_TOKEN, SLACK_SIGNING_SECRET="", **env)
    assert bot.settings.socket_mode
    await until(h.slack.socket_connected, timeout=5, what="the Socket Mode connection")
    return bot


async def send(h: Harness, kind: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Deliver one envelope and return its ack's payload (it must come within 3 s)."""
    return await acked(h.slack, h.slack.socket_send(kind, payload))


async def send_event(h: Harness, event: dict[str, Any]) -> None:
    assert await send(h, "events_api", h.envelope(event)) == {}


async def socket_job(h: Harness, prompt: str = "a product teaser") -> dict[str, Any]:
    """`/motion prompt` over the socket; returns the card once it is in the channel."""
    payload = await send(h, "slash_commands", command_payload(h, prompt))
    assert "Starting your video" in payload["text"]
    return (await until(lambda: h.cards(), what="the job card"))[-1]


def kind_of(message: dict[str, Any]) -> str | None:
    return ((message.get("metadata") or {}).get("event_payload") or {}).get("kind")


def current(h: Harness, message: dict[str, Any]) -> dict[str, Any]:
    found = h.slack.message("C0PUBLIC", message["ts"])
    assert found is not None
    return found


def ephemeral_texts(h: Harness, user: str) -> list[str]:
    return [r["text"] for r in h.slack.responses if r["tag"] == f"action-{user}"] + [
        c.params["text"] for c in h.posts("chat.postEphemeral") if c.params["user"] == user
    ]


# -- Socket Mode without PUBLIC_URL ---------------------------------------------------------------


async def test_a_reply_with_a_file_is_refused_with_what_to_do_instead_and_nothing_runs(
    harness: Harness,
) -> None:
    await start_socket(harness)
    assert harness.bot.settings.public_url is None
    card = await socket_job(harness)
    await until(lambda: results(harness, card["ts"]), what="the first result")
    logo = harness.slack.add_file(title="logo", mimetype="image/png", content=PNG)
    reply = harness.slack.file_reply(
        "C0PUBLIC", "put the logo in", user="U0ALICE", thread_ts=card["ts"], file_ids=[logo]
    )
    before = len(harness.bot_replies(card["ts"]))
    await send_event(harness, reply)

    [said] = await until(lambda: harness.bot_replies(card["ts"])[before:], what="the refusal")
    assert "PUBLIC_URL" in said["text"] and "--attach" in said["text"]
    assert "Nothing was started" in said["text"]
    await until(lambda: "x" in harness.slack.reactions("C0PUBLIC", reply["ts"]), what="✗")
    await settle()
    assert harness.sandbox.count("followup") == 0
    assert harness.slack.calls("files.info") == [] and harness.slack.downloads == []


async def test_a_mention_with_a_file_is_refused_privately_in_its_thread_and_starts_no_job(
    harness: Harness,
) -> None:
    await start_socket(harness)
    logo = harness.slack.add_file(title="logo", mimetype="image/png", content=PNG)
    mention, twin = harness.slack.mention(
        "C0PUBLIC", f"{BOT} a logo sting", user="U0ALICE", file_ids=[logo]
    )
    for event in (mention, twin):
        await send_event(harness, event)
    [told] = await until(lambda: harness.posts("chat.postEphemeral"), what="the private answer")
    assert told.params["user"] == "U0ALICE" and told.params["thread_ts"] == mention["ts"]
    assert "PUBLIC_URL" in told.params["text"] and "--attach" in told.params["text"]
    assert harness.bot_replies(mention["ts"]) == []  # said privately, nothing in the thread
    await settle()
    assert harness.sandbox.count("create") == 0
    assert harness.bot.store.recent_jobs("T0001", "U0ALICE") == []
    assert harness.slack.calls("files.info") == []


async def test_a_mention_starts_a_job_whose_card_is_the_first_reply_in_its_thread(
    harness: Harness,
) -> None:
    await start_socket(harness)
    mention, twin = harness.slack.mention(
        "C0PUBLIC", f"{BOT} a launch teaser --aspect 9:16", user="U0ALICE"
    )
    for event in (twin, mention, twin):  # Slack delivers both, maybe one twice
        await send_event(harness, event)

    [card] = await until(lambda: harness.bot_replies(mention["ts"]), what="the card")
    assert harness.thread(mention["ts"])[0]["ts"] == card["ts"]
    assert kind_of(card) == "card" and "launch teaser" in card["text"]
    await until(lambda: results(harness, mention["ts"]), what="the result in the same thread")
    await settle()
    assert harness.sandbox.creates == [{"prompt": "a launch teaser", "aspect_ratio": "9:16"}]
    assert [m["ts"] for m in harness.cards()] == [mention["ts"]]  # no card of its own at top


async def test_the_result_links_motion_and_fresh_link_answers_privately_and_video_is_uploaded(
    harness: Harness,
) -> None:
    """Uploads need no PUBLIC_URL: the app pushes the bytes to Slack itself."""
    harness.sandbox.plan_next(JobPlan(**{**FAST_PLAN.__dict__, "video_bytes": 200_000}))
    bot = await start_socket(harness, UPLOAD_MAX_MB="1")
    assert bot.port is None and bot.settings.public_url is None
    card = await socket_job(harness)
    [result] = await until(lambda: results(harness, card["ts"]), what="the result")
    [job_id] = harness.sandbox.job_ids
    motion_url = harness.sandbox.download_url(job_id, 1)
    download = next(b for b in buttons(result) if b["action_id"] == "download")
    assert download["url"] == motion_url  # Motion's own URL: there is no app link to give
    assert [b["action_id"] for b in buttons(result)] == [
        "download", "refine", "new_variation", "fresh_link",
    ]  # fmt: skip

    [video] = await until(
        lambda: harness.slack.shared_files("C0PUBLIC", card["ts"]), what="the uploaded video"
    )
    assert float(video["ts"]) > float(result["ts"])
    [shared] = video["files"]
    assert shared["name"] == "motion-run-1.mp4" and shared["size"] == 200_000
    [complete] = [c for c in harness.slack.calls("files.completeUploadExternal") if c.ok]
    assert complete.params["thread_ts"] == card["ts"]

    harness.sandbox.expire_download_urls()
    posted = len(harness.posts())
    payload = button_payload(harness, result, "fresh_link", user="U0BOB")
    started = time.monotonic()
    assert await send(harness, "interactive", payload) == {}
    assert time.monotonic() - started < 3
    told = await until(lambda: ephemeral_texts(harness, "U0BOB"), what="the private answer")
    current = harness.sandbox.download_url(job_id, 1)
    assert current != motion_url
    assert current.replace("&", "&amp;") in told[0]
    await settle()
    assert len(harness.posts()) == posted  # answered privately: nothing new in the thread
    assert len(harness.slack.shared_files("C0PUBLIC", card["ts"])) == 1


async def test_a_stuck_notice_appears_keep_waiting_asks_again_and_stop_tracking_works(
    harness: Harness,
) -> None:
    await start_socket(harness, STUCK_AFTER_MINUTES="0.01")
    harness.sandbox.plan_next(NEVER)
    card = await socket_job(harness, "a slow teaser")
    [notice] = await until(
        lambda: [m for m in harness.bot_replies(card["ts"]) if kind_of(m) == "stuck_notice"],
        timeout=10,
        what="the stuck notice",
    )
    assert "Run 1 is still not finished" in notice["text"]
    assert [b["action_id"] for b in buttons(notice)] == ["stuck_keep_waiting", "stop_tracking"]

    keep = button_payload(harness, notice, "stuck_keep_waiting", user="U0BOB")
    assert await send(harness, "interactive", keep) == {}
    await until(
        lambda: "<@U0BOB> chose to keep waiting" in current(harness, notice)["text"],
        what="the notice saying who chose to keep waiting",
    )
    assert buttons(current(harness, notice)) == []
    later = await until(
        lambda: [m for m in harness.bot_replies(card["ts"]) if kind_of(m) == "stuck_notice"][1:],
        timeout=10,
        what="the second notice, as long again later",
    )
    stop = button_payload(harness, later[0], "stop_tracking")
    assert await send(harness, "interactive", stop) == {}
    [said] = await until(
        lambda: [m for m in harness.bot_replies(card["ts"]) if kind_of(m) == "tracking_stopped"],
        what="the stop message",
    )
    assert "<@U0ALICE> stopped tracking this job" in said["text"]
    await until(lambda: "⛔ Stopped" in card_text(harness, card["ts"]), what="the card stopped")
    await settle(0.5)
    polled = harness.sandbox.count("status")
    await settle(1.0)
    assert harness.sandbox.count("status") == polled, "the stopped job is still polled"
    assert results(harness, card["ts"]) == []


async def test_the_shortcut_opens_the_form_and_its_submission_starts_a_job(
    harness: Harness,
) -> None:
    await start_socket(harness)
    shortcut = {
        "type": "shortcut",
        "token": "legacy-verification-token",
        "action_ts": str(time.time()),
        "team": {"id": "T0001", "domain": "sandbox-team"},
        "user": user_of("U0ALICE"),
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": "new_motion_video",
        "trigger_id": harness.slack.issue_trigger("U0ALICE"),
    }
    assert await send(harness, "interactive", shortcut) == {}
    [view] = await until(lambda: harness.slack.views("U0ALICE"), what="the form")
    assert view["title"]["text"] == "New Motion video"

    def submission(answers: dict[str, str | None]) -> dict[str, Any]:
        values = harness.view_state(view, answers, harness.slack.file_object)
        return {
            "type": "view_submission",
            "team": {"id": "T0001", "domain": "sandbox-team"},
            "user": {**user_of("U0ALICE"), "name": "alice"},
            "api_app_id": "A0APP",
            "token": "legacy-verification-token",
            "trigger_id": harness.slack.issue_trigger("U0ALICE"),
            "view": {**view, "state": {"values": values}},
            "response_urls": [],
            "is_enterprise_install": False,
        }

    refused = await send(harness, "interactive", submission({"prompt": "", "channel": None}))
    assert refused["response_action"] == "errors"  # shown on the fields, in the ack
    assert set(refused["errors"]) >= {"prompt", "channel"}
    picked = harness.slack.add_file(
        title="logo.png", mimetype="image/png", content=PNG, channel=None, for_app=True
    )
    answers = {"prompt": "a teaser", "channel": "C0PUBLIC", "files": picked}
    with_file = await send(harness, "interactive", submission(answers))
    assert list(with_file["errors"]) == ["files"] and "PUBLIC_URL" in with_file["errors"]["files"]
    answers = {"prompt": "a teaser from the form", "channel": "C0PUBLIC", "aspect": "1:1"}
    closed = await send(harness, "interactive", submission(answers))
    assert "response_action" not in closed  # the modal closes
    [card] = await until(lambda: harness.cards(), what="the form's job card")
    await until(lambda: results(harness, card["ts"]), what="the form job's result")
    assert harness.sandbox.creates == [{"prompt": "a teaser from the form", "aspect_ratio": "1:1"}]


async def test_app_home_is_published_when_opened(harness: Harness) -> None:
    await start_socket(harness)
    card = await socket_job(harness, "a home tab teaser")
    await until(lambda: results(harness, card["ts"]), what="the result")
    opened = {"type": "app_home_opened", "user": "U0ALICE", "channel": "D0HOME", "tab": "home"}
    await send_event(harness, {**opened, "event_ts": str(time.time())})
    home = await until(lambda: harness.slack.home("U0ALICE"), what="views.publish")
    text = str(home["blocks"])
    assert "Your Motion runs" in text and "a home tab teaser" in text
    assert any(b["action_id"] == "home_new_video" for b in buttons(home))


# -- Socket Mode with PUBLIC_URL: the public links are served on PORT ------------------------------


async def test_with_public_url_files_v_links_and_healthz_are_served_on_port(
    harness: Harness,
) -> None:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    harness.sandbox.fetch_attachments = True
    bot = await start_socket(harness, PORT=str(port), PUBLIC_URL=public)
    assert bot.port == port
    card = await socket_job(harness)
    [result] = await until(lambda: results(harness, card["ts"]), what="the result")
    download = next(b for b in buttons(result) if b["action_id"] == "download")
    assert download["url"].startswith(f"{public}/v/")
    assert "fresh_link" not in [b["action_id"] for b in buttons(result)]

    logo = harness.slack.add_file(title="logo", mimetype="image/png", content=PNG)
    reply = harness.slack.file_reply(
        "C0PUBLIC", "add the logo", user="U0ALICE", thread_ts=card["ts"], file_ids=[logo]
    )
    await send_event(harness, reply)
    await until(lambda: len(results(harness, card["ts"])) == 2, what="the followup's result")
    [fetch] = harness.sandbox.fetches  # Motion fetched PUBLIC_URL/files/<token> from the app
    assert fetch.url.startswith(f"{public}/files/") and fetch.status == 200
    assert fetch.sha256 == hashlib.sha256(PNG).hexdigest()

    async with httpx.AsyncClient(timeout=10) as web:
        health = await web.get(f"{public}/healthz")
        moved = await web.get(download["url"])
        signer = signer_for(None, BOT_TOKEN)  # Socket Mode signs with the bot token
        token = signer.sign("file", {"t": "T0001", "f": logo}, ttl_seconds=FILE_TOKEN_SECONDS)
        got = await web.get(f"{public}/files/{token}")
        refused = await web.post(f"{public}/slack/events", content="{}")
    assert health.status_code == 200
    assert health.json()["mode"] == "socket" and health.json()["ok"] is True
    assert moved.status_code in (302, 303, 307)
    [job_id] = harness.sandbox.job_ids
    assert moved.headers["location"] == harness.sandbox.download_url(job_id, 1)
    assert got.status_code == 200 and got.content == PNG
    assert refused.status_code in (404, 405)  # Slack's requests come over the socket only
