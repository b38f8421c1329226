"""The video in the thread and links that never expire, end to end: the real app over real
sockets, the sandbox's CDN serving MP4 bytes (with URLs that expire) and the Slack stand-in's
external upload (files.getUploadURLExternal, the upload URL, files.completeUploadExternal)."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from typing import Any

import httpx
import pytest

from bot.links import signer_for
from bot.sandbox import JobPlan, video_bytes
from tests.support.e2e import buttons, results, run_command, settle, wait_reply
from tests.support.harness import BOT_TOKEN, FAST_PLAN, SIGNING_SECRET, Harness, until

PROMPT = "a teaser for our spring sale"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_public(harness: Harness, **env: str) -> str:
    """Start the app with PUBLIC_URL pointing at itself; returns PUBLIC_URL."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    await harness.start(PORT=str(port), PUBLIC_URL=public, **env)
    return public


async def finished(harness: Harness, text: str = PROMPT) -> tuple[dict[str, Any], dict[str, Any]]:
    card = await run_command(harness, text)
    [result] = await until(lambda: results(harness, card["ts"]), what="the result")
    return card, result


def videos(harness: Harness, card: dict[str, Any]) -> list[dict[str, Any]]:
    return harness.slack.shared_files("C0PUBLIC", card["ts"])


def ok_calls(harness: Harness, method: str) -> list[Any]:
    return [c for c in harness.slack.calls(method) if c.ok]


def download_button(message: dict[str, Any]) -> str:
    return next(b["url"] for b in buttons(message) if b["action_id"] == "download")


# ---------------------------------------------------------------- the video in the thread


async def test_a_small_video_is_uploaded_once_into_its_thread_after_the_result(
    harness: Harness,
) -> None:
    harness.sandbox.plan_next(JobPlan(**{**FAST_PLAN.__dict__, "video_bytes": 300_000}))
    await harness.start(UPLOAD_MAX_MB="1")
    card, result = await finished(harness)
    [video] = await until(lambda: videos(harness, card), what="the video in the thread")
    await settle(1.0)
    assert len(videos(harness, card)) == 1
    assert float(video["ts"]) > float(result["ts"]), "the video came before the result"
    assert video["user"] == harness.slack.bot_user_id and video["subtype"] == "file_share"
    [job_id] = harness.sandbox.job_ids
    [shared] = video["files"]
    assert shared["name"] == "motion-run-1.mp4" and shared["size"] == 300_000
    assert shared["title"].startswith("Run 1: a teaser")
    stored = harness.slack.files[shared["id"]]
    assert stored.digest == hashlib.sha256(video_bytes(job_id, 1, 300_000)).hexdigest()
    [reserve] = ok_calls(harness, "files.getUploadURLExternal")
    assert reserve.params["length"] == "300000"
    [complete] = ok_calls(harness, "files.completeUploadExternal")
    assert complete.params["channel_id"] == "C0PUBLIC"
    assert complete.params["thread_ts"] == card["ts"]
    # streamed from the CDN: one GET of the MP4, the bytes never fetched twice
    assert [m for m, _ in harness.sandbox.cdn_requests] == ["GET"]


@pytest.mark.parametrize(("cap", "size"), [("0.1", 200_000), ("0", 1_000)])
async def test_a_video_over_upload_max_mb_or_with_uploads_off_keeps_only_its_link(
    harness: Harness, cap: str, size: int
) -> None:
    harness.sandbox.plan_next(JobPlan(**{**FAST_PLAN.__dict__, "video_bytes": size}))
    await harness.start(UPLOAD_MAX_MB=cap)
    card, result = await finished(harness)
    await settle(1.0)
    [job_id] = harness.sandbox.job_ids
    assert harness.sandbox.download_url(job_id, 1) in result["text"]
    assert videos(harness, card) == []
    assert harness.slack.calls("files.getUploadURLExternal") == []
    posts = harness.bot.store.open_uploads(harness.bot.store.recent_jobs("T0001", "U0ALICE")[0].id)
    assert posts == []  # nothing left to do: given up for its size, or never recorded


async def test_a_video_whose_size_the_cdn_does_not_announce_keeps_only_its_link(
    harness: Harness,
) -> None:
    harness.sandbox.cdn_sends_length = False
    await harness.start(UPLOAD_MAX_MB="5")
    card, _ = await finished(harness)
    await until(lambda: harness.sandbox.cdn_requests, what="the download")
    await settle(1.0)
    assert videos(harness, card) == []
    assert harness.slack.calls("files.getUploadURLExternal") == []
    [post] = [p for p in _posts(harness) if p["kind"] == "upload"]
    assert post["state"] == "dropped" and "no length" in post["error"]
    assert len(results(harness, card["ts"])) == 1


async def test_a_failing_upload_neither_delays_nor_repeats_the_result_or_later_posts(
    harness: Harness,
) -> None:
    await harness.start(UPLOAD_MAX_MB="5")
    # run 1's upload: Slack is slow to reserve the file, then the bytes are refused twice
    harness.slack.fail_next("files.getUploadURLExternal", delay=2.0)
    harness.slack.fail_next_upload(500, times=2)
    card, result = await finished(harness)
    assert videos(harness, card) == []
    await harness.event(harness.reply_event(card["ts"], "<@U0BOT> make it longer"))
    second = await wait_reply(harness, card["ts"], "run 2")
    assert videos(harness, card) == [], "run 2's result waited for run 1's upload"
    assert float(second["ts"]) > float(result["ts"])
    await until(lambda: len(videos(harness, card)) == 2, timeout=30, what="both videos")
    await settle(1.0)
    assert len(results(harness, card["ts"])) == 2  # each result once
    titles = sorted(v["files"][0]["name"] for v in videos(harness, card))
    assert titles == ["motion-run-1.mp4", "motion-run-2.mp4"]


async def test_a_refused_upload_is_given_up_and_the_next_run_still_gets_its_video(
    harness: Harness,
) -> None:
    await harness.start(UPLOAD_MAX_MB="5")
    harness.slack.fail_next("files.completeUploadExternal", error="not_in_channel")
    card, _ = await finished(harness)
    await until(lambda: harness.slack.calls("files.completeUploadExternal"), what="a complete")
    await harness.event(harness.reply_event(card["ts"], "<@U0BOT> again, in blue"))
    await wait_reply(harness, card["ts"], "run 2")
    [video] = await until(lambda: videos(harness, card), what="run 2's video")
    await settle(1.0)
    assert video["files"][0]["name"] == "motion-run-2.mp4"
    assert len(videos(harness, card)) == 1
    assert len(harness.slack.calls("files.completeUploadExternal")) == 2  # run 1 not retried


async def test_a_lost_completion_answer_leaves_one_video(harness: Harness) -> None:
    await harness.start(UPLOAD_MAX_MB="5")
    harness.slack.fail_next("files.completeUploadExternal", drop="after")
    card, _ = await finished(harness)
    await until(lambda: harness.slack.calls("files.info"), timeout=20, what="the look")
    await settle(1.0)
    assert len(videos(harness, card)) == 1
    assert len(harness.slack.calls("files.getUploadURLExternal")) == 1  # no second file
    [post] = [p for p in _posts(harness) if p["kind"] == "upload"]
    assert (
        post["state"] == "done" and post["slack_ts"] == videos(harness, card)[0]["files"][0]["id"]
    )


async def test_a_restart_between_upload_started_and_recorded_leaves_one_video(
    harness: Harness,
) -> None:
    first = await harness.start(UPLOAD_MAX_MB="5")
    # the completion reaches Slack late, after the app was killed; it still takes effect
    harness.slack.fail_next("files.completeUploadExternal", delay=1.5, drop="after")
    card, _ = await finished(harness)
    await until(lambda: harness.slack.calls("files.getUploadURLExternal"), what="the reserve")
    await asyncio.sleep(0.3)
    await first.stop(timeout=0.05)  # as a kill: the upload is left "started"
    harness.bots.remove(first)
    [post] = [p for p in _posts_of(first.settings.database_path) if p["kind"] == "upload"]
    assert post["state"] == "sending" and post["slack_ts"]
    await harness.start(UPLOAD_MAX_MB="5")
    await until(lambda: videos(harness, card), timeout=20, what="the video")
    await settle(2.5)  # the late completion lands meanwhile
    assert len(videos(harness, card)) == 1
    assert len(harness.slack.calls("files.getUploadURLExternal")) == 1


def _posts(harness: Harness) -> list[dict[str, Any]]:
    return _posts_of(harness.bot.settings.database_path)


def _posts_of(url: str) -> list[dict[str, Any]]:
    from bot.store import Store

    store = Store(url, instance="reader")
    try:
        return store._rows("SELECT * FROM posts ORDER BY id")
    finally:
        store.close()


# ---------------------------------------------------------------- links that never expire


async def test_a_lasting_link_redirects_to_the_current_url_after_motion_changed_it(
    harness: Harness,
) -> None:
    public = await start_public(harness)
    card, result = await finished(harness)
    [job_id] = harness.sandbox.job_ids
    link = download_button(result)
    assert link.startswith(f"{public}/v/") and link in result["text"]
    assert harness.sandbox.download_url(job_id, 1) not in result["text"]
    assert "may expire" not in result["text"]
    # the card's run line and the App Home link there too
    await until(
        lambda: f"{public}/v/" in str(harness.slack.message("C0PUBLIC", card["ts"])),
        what="the card's link",
    )
    await harness.home_opened()
    home = await until(lambda: harness.slack.home("U0ALICE"), what="the Home tab")
    assert f"{public}/v/" in str(home["blocks"])
    assert harness.sandbox.download_url(job_id, 1) not in str(home["blocks"])
    async with httpx.AsyncClient(timeout=10) as web:
        first = await web.get(link)
        assert first.status_code in (302, 303)
        old = first.headers["Location"]
        assert old == harness.sandbox.download_url(job_id, 1)
        harness.sandbox.expire_download_urls()
        assert (await web.get(old)).status_code == 403  # Motion's URL expired
        await asyncio.sleep(5.2)  # past the few seconds a status answer is kept
        second = await web.get(link)
        new = second.headers["Location"]
        assert new != old and new == harness.sandbox.download_url(job_id, 1)
        mp4 = await web.get(new)
        assert mp4.status_code == 200 and mp4.headers["Content-Type"] == "video/mp4"
        assert mp4.content == video_bytes(job_id, 1, len(mp4.content))


async def test_an_old_runs_link_redirects_to_the_url_recorded_for_it(harness: Harness) -> None:
    await start_public(harness)
    card, result = await finished(harness)
    await harness.event(harness.reply_event(card["ts"], "<@U0BOT> now in red"))
    await until(lambda: len(results(harness, card["ts"])) == 2, what="run 2's result")
    [job_id] = harness.sandbox.job_ids
    recorded = harness.sandbox.download_url(job_id, 1)
    harness.sandbox.expire_download_urls()
    statuses = harness.sandbox.count("status")
    async with httpx.AsyncClient(timeout=10) as web:
        answer = await web.get(download_button(result))
    assert answer.status_code in (302, 303)
    assert answer.headers["Location"] == recorded
    assert harness.sandbox.count("status") == statuses  # nothing to ask Motion


async def test_a_tampered_link_is_refused(harness: Harness) -> None:
    await start_public(harness)
    _, result = await finished(harness)
    link = download_button(result)
    token = link.rsplit("/", 1)[1]
    body, _, mac = token.partition(".")
    forged = f"{body[:-2]}{'A' if body[-2] != 'A' else 'B'}{body[-1]}.{mac}"
    async with httpx.AsyncClient(timeout=10) as web:
        for bad in (forged, token[:-3], "nonsense"):
            answer = await web.get(link.rsplit("/", 1)[0] + "/" + bad)
            assert answer.status_code == 403
            assert "not valid" in answer.text and "Traceback" not in answer.text


async def test_a_burst_of_clicks_costs_one_status_call(harness: Harness) -> None:
    await start_public(harness)
    _, result = await finished(harness)
    await settle(0.5)
    link = download_button(result)
    before = harness.sandbox.count("status")
    async with httpx.AsyncClient(timeout=10) as web:
        answers = await asyncio.gather(*(web.get(link) for _ in range(25)))
    assert {a.status_code for a in answers} <= {302, 303}
    assert len({a.headers["Location"] for a in answers}) == 1
    assert harness.sandbox.count("status") - before == 1


async def test_motion_failing_gives_a_plain_page_with_the_right_status(harness: Harness) -> None:
    await start_public(harness)
    _, result = await finished(harness)
    await settle(0.5)
    harness.sandbox.fault("status", status=500, body='{"error":"internal"}')
    async with httpx.AsyncClient(timeout=20) as web:
        answer = await web.get(download_button(result))
    assert answer.status_code == 502
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "Try the link again in a minute" in answer.text and "Traceback" not in answer.text


async def test_without_public_url_v_is_404_and_fresh_link_answers_privately(
    harness: Harness,
) -> None:
    await harness.start()
    card, result = await finished(harness)
    [job_id] = harness.sandbox.job_ids
    assert download_button(result) == harness.sandbox.download_url(job_id, 1)
    token = signer_for(SIGNING_SECRET, BOT_TOKEN).sign("video", {"j": 1, "r": 1}, None)
    async with httpx.AsyncClient(timeout=10) as web:
        assert (await web.get(f"http://127.0.0.1:{harness.bot.port}/v/{token}")).status_code == 404
    harness.sandbox.expire_download_urls()
    fresh = next(b for b in buttons(result) if b["action_id"] == "fresh_link")
    started = time.monotonic()
    response = await harness.action(
        "fresh_link", fresh["value"], message_ts=result["ts"], user="U0BOB"
    )
    assert response.status_code == 200 and time.monotonic() - started < 3
    [told] = await until(lambda: ok_calls(harness, "chat.postEphemeral"), what="the private answer")
    assert told.params["user"] == "U0BOB" and told.params["thread_ts"] == card["ts"]
    current = harness.sandbox.download_url(job_id, 1)
    assert current != download_button(result)
    assert "&amp;" in current.replace("&", "&amp;")  # the URL has a query to escape
    assert f"<{current.replace('&', '&amp;')}>" in told.params["text"]  # escaped, as Slack wants


async def test_a_lasting_link_never_redirects_to_anything_but_a_web_address(
    harness: Harness,
) -> None:
    await start_public(harness)
    harness.sandbox.download_base = "javascript:alert(document.domain)//"  # Motion gone wrong
    _, result = await finished(harness)
    async with httpx.AsyncClient(timeout=10) as web:
        answer = await web.get(download_button(result))
    assert answer.status_code == 502
    assert "location" not in answer.headers
    assert "Traceback" not in answer.text


@pytest.mark.parametrize("body", ["[]", '{"status": 7, "output": "x"}'])
async def test_an_odd_status_answer_gives_a_plain_page_not_a_crash(
    harness: Harness, body: str
) -> None:
    await start_public(harness)
    _, result = await finished(harness)
    await settle(5.2)  # past the few seconds a status answer is kept
    harness.sandbox.fault("status", status=200, body=body, times=50)
    async with httpx.AsyncClient(timeout=20) as web:
        answer = await web.get(download_button(result))
    assert answer.status_code in (302, 502), answer.text
    assert "Traceback" not in answer.text and "Internal Server Error" not in answer.text


async def test_a_mention_jobs_video_goes_into_the_mentions_thread_once(harness: Harness) -> None:
    """The card of a mention job is a reply; the thread's parent is the person's message, so
    the video is completed into that thread (thread_ts = the message), after the result."""
    harness.sandbox.plan_next(JobPlan(**{**FAST_PLAN.__dict__, "video_bytes": 200_000}))
    await harness.start(UPLOAD_MAX_MB="1")
    mention, _ = harness.slack.mention("C0PUBLIC", "<@U0BOT> a launch teaser", user="U0ALICE")
    assert (await harness.event(mention)).status_code == 200
    [result] = await until(lambda: results(harness, mention["ts"]), what="the result")
    [video] = await until(
        lambda: harness.slack.shared_files("C0PUBLIC", mention["ts"]), what="the video"
    )
    await settle(1.0)
    assert len(harness.slack.shared_files("C0PUBLIC", mention["ts"])) == 1
    assert float(video["ts"]) > float(result["ts"])
    [complete] = ok_calls(harness, "files.completeUploadExternal")
    assert complete.params["thread_ts"] == mention["ts"]
