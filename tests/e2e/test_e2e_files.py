"""Slack files as attachments, end to end: files in the Slack stand-in (files.info, private
downloads that need the bot token, redirects across hosts), the app's signed
`PUBLIC_URL/files/<token>` links, and the sandbox fetching each attachment as Motion would
(a plain GET), so a test proves the bytes travel Slack → app → Motion and that every refusal
happens before anything is recorded or sent."""

from __future__ import annotations

import hashlib
import socket
import time
from typing import Any

import httpx

from bot.links import FILE_TOKEN_SECONDS, LinkSigner
from tests.support.e2e import READY, buttons, results, run_command, settle, wait_reply
from tests.support.foreign import ForeignHost
from tests.support.harness import SIGNING_SECRET, Harness, until

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 300  # ~77 kB: several chunks
CLIP = b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 5000
BOT = "<@U0BOT>"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start_public(h: Harness, **overrides: str) -> str:
    """The app with PUBLIC_URL (its own address, plain http on loopback as config allows), and
    the sandbox fetching attachments; returns PUBLIC_URL."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    h.sandbox.fetch_attachments = True
    await h.start(PORT=str(port), PUBLIC_URL=public, **overrides)
    return public


async def finished_thread(h: Harness) -> str:
    card = await run_command(h, "a product teaser")
    await until(lambda: results(h, card["ts"]), what="the first result")
    return str(card["ts"])


async def reply_with_files(h: Harness, thread: str, text: str, file_ids: list[str]) -> Any:
    event = h.slack.file_reply(
        "C0PUBLIC", text, user="U0ALICE", thread_ts=thread, file_ids=file_ids
    )
    response = await h.event(event)
    assert response.status_code == 200
    return event


def file_link(public: str, file_id: str, *, clock: float | None = None) -> str:
    """A link as the app signs it (same secret), optionally signed at another moment."""
    at = clock if clock is not None else time.time()
    signer = LinkSigner(SIGNING_SECRET, clock=lambda: at)
    token = signer.sign("file", {"t": "T0001", "f": file_id}, ttl_seconds=FILE_TOKEN_SECONDS)
    return f"{public}/files/{token}"


def slack_file_calls(h: Harness) -> int:
    return len(h.slack.calls("files.info")) + len(h.slack.downloads)


# ---------------------------------------------------------------- the happy paths


async def test_a_reply_with_a_file_is_a_followup_whose_link_motion_fetches_through_the_app(
    harness: Harness,
) -> None:
    public = await start_public(harness)
    thread = await finished_thread(harness)
    logo = harness.slack.add_file(title="Brand logo (final)", mimetype="image/png", content=PNG)
    reply = await reply_with_files(harness, thread, "put this logo in the last shot", [logo])

    await until(lambda: len(results(harness, thread)) == 2, what="the followup's result")
    [body] = harness.sandbox.followups
    assert body["prompt"] == "put this logo in the last shot"
    [attachment] = body["attachments"]
    assert attachment["url"].startswith(f"{public}/files/")
    assert {k: v for k, v in attachment.items() if k != "url"} == {
        "name": "Brand logo (final)",
        "type": "image",
        "content_type": "image/png",
    }
    [fetch] = harness.sandbox.fetches
    assert (fetch.url, fetch.status, fetch.content_type) == (attachment["url"], 200, "image/png")
    assert (fetch.size, fetch.sha256) == (len(PNG), hashlib.sha256(PNG).hexdigest())
    assert harness.slack.downloads == [(logo, True)]  # fetched from Slack with the token
    await until(lambda: "arrow_forward" in harness.slack.reactions("C0PUBLIC", reply["ts"]))
    assert harness.sandbox.count("followup") == 1


async def test_the_link_streams_the_file_with_its_type_and_answers_head(harness: Harness) -> None:
    public = await start_public(harness)
    clip = harness.slack.add_file(title="intro.mp4", mimetype="video/mp4", content=CLIP)
    url = file_link(public, clip)
    async with httpx.AsyncClient() as client:
        got = await client.get(url)
        head = await client.head(url)
    assert got.status_code == 200 and got.content == CLIP
    assert got.headers["content-type"] == "video/mp4"
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(CLIP))


async def test_a_redirect_to_another_slack_host_is_followed_with_the_token(
    harness: Harness,
) -> None:
    public = await start_public(harness)
    edge = harness.slack.add_file(title="edge copy", mimetype="image/png", content=PNG)
    moved = harness.slack.add_file(
        title="moved", mimetype="image/png", redirect_to=harness.slack.download_url(edge)
    )
    async with httpx.AsyncClient() as client:
        got = await client.get(file_link(public, moved))
    assert got.status_code == 200 and got.content == PNG
    assert harness.slack.downloads == [(moved, True), (edge, True)]


async def test_a_mention_outside_a_thread_starts_a_job_whose_card_opens_that_messages_thread(
    harness: Harness,
) -> None:
    await start_public(harness)
    clip = harness.slack.add_file(title="Product demo", mimetype="video/mp4", content=CLIP)
    mention, twin = harness.slack.mention(
        "C0PUBLIC", f"{BOT} a launch teaser --aspect 9:16", user="U0ALICE", file_ids=[clip]
    )
    for event in (twin, mention, twin):  # Slack delivers both, in any order, maybe twice
        assert (await harness.event(event)).status_code == 200

    [card] = await until(lambda: harness.bot_replies(mention["ts"]), what="the card in the thread")
    assert harness.thread(mention["ts"])[0]["ts"] == card["ts"]  # the app's first reply there
    assert "launch teaser" in card["text"]
    first_post = harness.posts()[0]  # the card, posted as a reply in the message's thread
    assert first_post.params["thread_ts"] == mention["ts"]
    assert first_post.params["channel"] == "C0PUBLIC"
    await until(lambda: results(harness, mention["ts"]), what="the result in the same thread")
    [create] = harness.sandbox.creates
    assert create["prompt"] == "a launch teaser" and create["aspect_ratio"] == "9:16"
    assert [a["type"] for a in create["attachments"]] == ["video"]
    assert [f.status for f in harness.sandbox.fetches] == [200]

    assert (await harness.event(twin)).status_code == 200  # once the thread is the job's
    await settle()
    assert harness.sandbox.count("create") == 1 and harness.sandbox.count("followup") == 0
    assert harness.slack.reactions("C0PUBLIC", mention["ts"]) == []

    reply = harness.reply_event(mention["ts"], "make it brighter")  # the thread is the job's
    assert (await harness.event(reply)).status_code == 200
    await until(lambda: harness.sandbox.count("followup") == 1, what="the followup")


async def test_a_mention_in_a_thread_that_is_no_job_starts_one_there(harness: Harness) -> None:
    await harness.start()
    root = harness.slack.add_human_message("C0PUBLIC", "ideas for the launch?", user="U0BOB")
    mention, _ = harness.slack.mention(
        "C0PUBLIC", f"{BOT} a 10 second sting", user="U0ALICE", thread_ts=root
    )
    assert (await harness.event(mention)).status_code == 200
    [card] = await until(lambda: harness.bot_replies(root), what="the card in the thread")
    assert "10 second sting" in card["text"]
    await wait_reply(harness, root, READY)
    assert harness.bot_replies(mention["ts"]) == []  # no thread hangs off the reply itself
    assert harness.sandbox.creates[0]["prompt"] == "a 10 second sting"


async def test_a_mention_with_no_prompt_gets_a_private_hint_and_starts_nothing(
    harness: Harness,
) -> None:
    await harness.start()
    mention, twin = harness.slack.mention("C0PUBLIC", f"{BOT}  ", user="U0ALICE")
    for event in (mention, mention):
        assert (await harness.event(event, event_id="EvSAME")).status_code == 200
    assert (await harness.event(twin)).status_code == 200
    [hint] = await until(lambda: harness.posts("chat.postEphemeral"), what="the hint")
    assert hint.params["user"] == "U0ALICE" and hint.params["thread_ts"] == mention["ts"]
    assert "Mention me with what the video should show" in hint.params["text"]
    await settle()
    assert len(harness.posts("chat.postEphemeral")) == 1
    assert harness.sandbox.count("create") == 0 and harness.posts() == []


async def test_a_mention_goes_through_the_spend_controls(harness: Harness) -> None:
    await harness.start(MOTION_CONFIRM="true")
    mention, _ = harness.slack.mention("C0PUBLIC", f"{BOT} a teaser", user="U0ALICE")
    assert (await harness.event(mention)).status_code == 200
    [preview] = await until(lambda: harness.posts("chat.postEphemeral"), what="the preview")
    assert preview.params["thread_ts"] == mention["ts"]
    await settle()
    assert harness.sandbox.count("create") == 0 and harness.bot_replies(mention["ts"]) == []
    start = next(
        e["value"]
        for b in preview.params["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == "confirm_start"
    )
    assert (await harness.action("confirm_start", start)).status_code == 200
    await until(lambda: harness.bot_replies(mention["ts"]), what="the card, in the thread")
    await until(lambda: harness.sandbox.count("create") == 1)


async def test_the_forms_file_field_attaches_the_picked_files(harness: Harness) -> None:
    await start_public(harness)
    response = await harness.command("new")
    assert response.status_code == 200
    view = (await until(lambda: harness.slack.views("U0ALICE"), what="the form"))[0]
    [field] = [b for b in view["blocks"] if b.get("block_id") == "files"]
    assert field["element"]["type"] == "file_input" and field["element"]["max_files"] == 10
    uploaded = harness.slack.add_file(
        title="storyboard.pdf", mimetype="application/pdf", content=b"%PDF-1.7 ...",
        channel=None, for_app=True,
    )  # fmt: skip
    submitted = await harness.submit_view(
        view, {"prompt": "an explainer from the storyboard", "channel": "C0PUBLIC",
               "files": uploaded},
    )  # fmt: skip
    assert submitted.status_code == 200 and "response_action" not in submitted.text
    await until(lambda: harness.sandbox.count("create") == 1, what="the create")
    [attachment] = harness.sandbox.creates[0]["attachments"]
    assert (attachment["name"], attachment["type"], attachment["content_type"]) == (
        "storyboard.pdf", "file", "application/pdf",
    )  # fmt: skip
    await until(lambda: harness.sandbox.fetches, what="Motion's fetch")
    assert harness.sandbox.fetches[0].status == 200


# ---------------------------------------------------------------- refusals before anything is sent


async def refused_reply(h: Harness, thread: str, text: str, file_ids: list[str]) -> str:
    """Reply with files; returns the app's thread answer once it came. Nothing was sent."""
    before = len(h.bot_replies(thread))
    reply = await reply_with_files(h, thread, text, file_ids)
    [said] = await until(lambda: h.bot_replies(thread)[before:], what="the refusal")
    await until(lambda: "x" in h.slack.reactions("C0PUBLIC", reply["ts"]), what="the ✗ reaction")
    await settle()
    assert h.sandbox.count("followup") == 0
    assert "Nothing was started" in said["text"]
    return str(said["text"])


async def test_without_public_url_a_file_is_refused_with_what_to_do_instead(
    harness: Harness,
) -> None:
    await harness.start()
    thread = await finished_thread(harness)
    logo = harness.slack.add_file(title="logo", mimetype="image/png", content=PNG)
    said = await refused_reply(harness, thread, "use the logo", [logo])
    assert "PUBLIC_URL" in said and "--attach" in said
    assert "whoever runs this app" in said  # PUBLIC_URL is the app's setting, not Slack's
    assert harness.slack.calls("files.info") == []
    usage = harness.bot.store.usage_of("T0001", "U0ALICE", *_periods())
    assert usage.today == 1  # the first job only: the refused followup was never counted


async def test_a_file_over_100_mb_is_refused(harness: Harness) -> None:
    await start_public(harness)
    thread = await finished_thread(harness)
    big = harness.slack.add_file(
        title="raw footage.mov", mimetype="video/quicktime", content=b"x", size=150 * 1024**2
    )
    said = await refused_reply(harness, thread, "cut this down", [big])
    assert "150 MB" in said and "100 MB" in said
    assert harness.slack.downloads == []


async def test_a_file_the_app_may_not_read_is_refused(harness: Harness) -> None:
    await start_public(harness)
    thread = await finished_thread(harness)
    gone = harness.slack.add_file(title="draft", mimetype="image/png", content=PNG)
    event = harness.slack.file_reply(
        "C0PUBLIC", "use it", user="U0ALICE", thread_ts=thread, file_ids=[gone]
    )
    harness.slack.delete_file(gone)  # deleted before the app looked
    response = await harness.event(event)
    assert response.status_code == 200
    [said] = await until(lambda: harness.bot_replies(thread)[1:], what="the refusal")
    assert "gone or not visible to the app" in said["text"]
    await until(lambda: "x" in harness.slack.reactions("C0PUBLIC", event["ts"]))
    harness.slack.files_read_scope = False
    logo = harness.slack.add_file(title="logo", mimetype="image/png", content=PNG)
    said = await refused_reply(harness, thread, "use this one", [logo])
    assert "files:read" in said


async def test_more_than_ten_attachments_links_included_are_refused(harness: Harness) -> None:
    await start_public(harness)
    thread = await finished_thread(harness)
    files = [
        harness.slack.add_file(title=f"frame {i}", mimetype="image/png", content=PNG)
        for i in range(8)
    ]
    links = " ".join(f"--attach https://example.com/{i}.png" for i in range(3))
    said = await refused_reply(harness, thread, f"use all of these {links}", files)
    assert "11 attachments" in said and "at most 10" in said


async def test_a_mention_with_an_unreadable_file_starts_nothing(harness: Harness) -> None:
    await start_public(harness)
    gone = harness.slack.add_file(title="draft", mimetype="image/png", content=PNG)
    mention, _ = harness.slack.mention(
        "C0PUBLIC", f"{BOT} a teaser", user="U0ALICE", file_ids=[gone]
    )
    harness.slack.delete_file(gone)
    assert (await harness.event(mention)).status_code == 200
    [said] = await until(lambda: harness.posts("chat.postEphemeral"), what="the refusal")
    assert "could not be attached" in said.params["text"]
    await settle()
    assert harness.sandbox.count("create") == 0 and harness.posts() == []
    assert harness.bot.store.recent_jobs("T0001", "U0ALICE") == []


# ---------------------------------------------------------------- the link itself


async def test_a_tampered_or_expired_link_is_403_without_asking_slack(harness: Harness) -> None:
    public = await start_public(harness)
    logo = harness.slack.add_file(title="logo", mimetype="image/png", content=PNG)
    good = file_link(public, logo)
    payload, _, mac = good.rpartition(".")
    tampered = f"{payload}.{'A' if mac[0] != 'A' else 'B'}{mac[1:]}"
    expired = file_link(public, logo, clock=time.time() - FILE_TOKEN_SECONDS - 60)
    other_kind = f"{public}/files/" + LinkSigner(SIGNING_SECRET).sign(
        "video", {"t": "T0001", "f": logo}, ttl_seconds=3600
    )
    async with httpx.AsyncClient() as client:
        for url in (tampered, expired, other_kind, f"{public}/files/not-a-token"):
            answer = await client.get(url)
            assert answer.status_code == 403, url
    assert slack_file_calls(harness) == 0


async def test_an_html_answer_is_an_error_and_motion_refuses_the_run(harness: Harness) -> None:
    public = await start_public(harness)
    thread = await finished_thread(harness)
    login = harness.slack.add_file(
        title="logo", mimetype="image/png", redirect_to=f"{harness.slack.root_url}/signin"
    )
    async with httpx.AsyncClient() as client:
        assert (await client.get(file_link(public, login))).status_code == 502
    await reply_with_files(harness, thread, "use the logo", [login])
    await until(lambda: harness.sandbox.fetches, what="Motion's fetch")
    assert harness.sandbox.fetches[-1].status == 502
    await until(lambda: harness.sandbox.count("followup") == 1)
    assert [c.status for c in harness.sandbox.calls_to("followup")] == [400]
    assert len(results(harness, thread)) == 1  # no second result


async def test_a_redirect_to_a_foreign_host_is_refused_and_it_never_sees_the_token(
    harness: Harness,
) -> None:
    public = await start_public(harness)
    with ForeignHost() as foreign:
        async with httpx.AsyncClient() as client:  # the stranger is reachable by name
            assert (await client.get(f"{foreign.url}/probe")).status_code == 200
        away = harness.slack.add_file(
            title="logo", mimetype="image/png", redirect_to=f"{foreign.url}/logo.png"
        )
        async with httpx.AsyncClient() as client:
            answer = await client.get(file_link(public, away))
        assert answer.status_code == 502
        assert foreign.seen() == [{"path": "/probe", "authorization": None}]
    assert harness.slack.downloads == [(away, True)]


async def test_the_stand_in_answers_a_download_without_the_token_with_its_sign_in_page(
    harness: Harness,
) -> None:
    logo = harness.slack.add_file(title="logo", mimetype="image/png", content=PNG)
    async with httpx.AsyncClient() as client:
        anonymous = await client.get(harness.slack.download_url(logo))
        wrong = await client.get(
            harness.slack.download_url(logo), headers={"Authorization": "Bearer xoxb-wrong"}
        )
    for answer in (anonymous, wrong):
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/html")
        assert b"Sign in" in answer.content


async def test_without_public_url_the_file_route_is_not_there(harness: Harness) -> None:
    port = free_port()
    await harness.start(PORT=str(port))
    logo = harness.slack.add_file(title="logo", mimetype="image/png", content=PNG)
    async with httpx.AsyncClient() as client:
        answer = await client.get(file_link(f"http://127.0.0.1:{port}", logo))
    assert answer.status_code == 404
    assert slack_file_calls(harness) == 0


def _periods() -> tuple[str, str]:
    from bot.jobs.spend import utc_day, utc_month

    now = time.time()
    return utc_day(now), utc_month(now)


# ---------------------------------------------------------------- one job per thread


async def test_two_mentions_in_one_thread_at_once_start_one_job(harness: Harness) -> None:
    await harness.start()
    root = harness.slack.add_human_message("C0PUBLIC", "launch video?", user="U0BOB")
    first, _ = harness.slack.mention("C0PUBLIC", f"{BOT} a teaser", user="U0ALICE", thread_ts=root)
    second, _ = harness.slack.mention("C0PUBLIC", f"{BOT} a sting", user="U0BOB", thread_ts=root)
    harness.slack.fail_next("chat.postMessage", delay=1.0)  # the first card is slow to appear
    for event in (first, second):
        assert (await harness.event(event)).status_code == 200
    [told] = await until(lambda: harness.posts("chat.postEphemeral"), what="the second is told")
    assert told.params["user"] == "U0BOB" and "already lives in this thread" in told.params["text"]
    [card] = await until(lambda: harness.bot_replies(root), what="the one card")
    assert "a teaser" in card["text"]
    await wait_reply(harness, root, READY)
    assert harness.sandbox.count("create") == 1


async def test_two_previews_started_in_one_thread_make_one_job_and_give_the_count_back(
    harness: Harness,
) -> None:
    await harness.start(MOTION_CONFIRM="true")
    root = harness.slack.add_human_message("C0PUBLIC", "launch video?", user="U0BOB")
    starts = []
    for n, text in enumerate(("a teaser", "a sting")):
        mention, _ = harness.slack.mention(
            "C0PUBLIC", f"{BOT} {text}", user="U0ALICE", thread_ts=root
        )
        assert (await harness.event(mention)).status_code == 200
        previews = await until(
            lambda n=n: harness.posts("chat.postEphemeral")[n:], what="a preview"
        )
        starts.append(
            next(
                e["value"]
                for b in previews[0].params["blocks"]
                if b["type"] == "actions"
                for e in b["elements"]
                if e["action_id"] == "confirm_start"
            )
        )
    assert (await harness.action("confirm_start", starts[0])).status_code == 200
    await until(lambda: harness.bot_replies(root), what="the first card")
    assert (await harness.action("confirm_start", starts[1])).status_code == 200
    await until(
        lambda: any(
            "already lives in this thread" in c.params["text"]
            for c in harness.posts("chat.postEphemeral")
        ),
        what="the second is told",
    )
    await wait_reply(harness, root, READY)
    await settle()
    assert harness.sandbox.count("create") == 1 and len(harness.bot_replies(root)) >= 1
    assert [m for m in harness.bot_replies(root) if "a sting" in m["text"]] == []
    usage = harness.bot.store.usage_of("T0001", "U0ALICE", *_periods())
    assert usage.today == 1  # the abandoned second job gave its count back


async def test_a_refused_file_on_the_form_is_shown_under_its_field(harness: Harness) -> None:
    await harness.start()  # no PUBLIC_URL
    assert (await harness.command("new")).status_code == 200
    view = (await until(lambda: harness.slack.views("U0ALICE"), what="the form"))[0]
    uploaded = harness.slack.add_file(
        title="logo.png", mimetype="image/png", content=PNG, channel=None, for_app=True
    )
    answer = await harness.submit_view(
        view, {"prompt": "a teaser", "channel": "C0PUBLIC", "files": uploaded}
    )
    body = answer.json()
    assert body["response_action"] == "errors" and list(body["errors"]) == ["files"]
    assert "PUBLIC_URL" in body["errors"]["files"]
    await settle()
    assert harness.sandbox.count("create") == 0
    assert harness.bot.store.recent_jobs("T0001", "U0ALICE") == []


# ---------------------------------------------------------------- review: the link's edges


async def test_the_files_bytes_are_never_kept_by_a_cache_and_never_sniffed(
    harness: Harness,
) -> None:
    public = await start_public(harness)
    clip = harness.slack.add_file(title="intro.mp4", mimetype="video/mp4", content=CLIP)
    url = file_link(public, clip)
    async with httpx.AsyncClient() as client:
        got = await client.get(url)
        head = await client.head(url)
    for answer in (got, head):
        assert answer.status_code == 200
        cache = answer.headers.get("cache-control", "")
        assert "no-store" in cache and "private" in cache
        assert answer.headers.get("x-content-type-options") == "nosniff"


async def test_another_port_on_the_api_host_never_gets_the_token(harness: Harness) -> None:
    public = await start_public(harness)
    with ForeignHost() as foreign:
        port = foreign.url.rsplit(":", 1)[1]
        away = harness.slack.add_file(
            title="logo", mimetype="image/png", redirect_to=f"http://127.0.0.1:{port}/logo.png"
        )
        async with httpx.AsyncClient() as client:
            answer = await client.get(file_link(public, away))
        assert answer.status_code == 502
        assert foreign.seen() == []


async def test_a_download_slack_cuts_short_is_a_502_not_a_crash(harness: Harness) -> None:
    public = await start_public(harness)
    cut = harness.slack.add_file(title="logo", mimetype="image/png", content=PNG)
    harness.slack.cut_download(cut, after=0)  # headers say the whole file, then nothing
    async with httpx.AsyncClient() as client:
        answer = await client.get(file_link(public, cut))
    assert answer.status_code == 502
    assert "Traceback" not in answer.text
    assert harness.slack.downloads == [(cut, True)]


async def test_a_file_title_in_a_refusal_is_escaped(harness: Harness) -> None:
    await start_public(harness)
    thread = await finished_thread(harness)
    big = harness.slack.add_file(
        title="<!channel> <@U0BOB> big.mov", mimetype="video/quicktime", content=b"x",
        size=150 * 1024**2,
    )  # fmt: skip
    said = await refused_reply(harness, thread, "cut this down", [big])
    assert "<!channel>" not in said and "<@U0BOB>" not in said
    assert "&lt;!channel&gt;" in said


async def test_a_file_slack_would_compress_reaches_motion_byte_for_byte(harness: Harness) -> None:
    public = await start_public(harness)
    harness.slack.compress_downloads = True  # a CDN that gzips whenever the client allows it
    notes = b"scene 1: the logo fades in\n" * 2000
    script = harness.slack.add_file(title="script.txt", mimetype="text/plain", content=notes)
    async with httpx.AsyncClient() as client:
        got = await client.get(file_link(public, script))
    assert got.status_code == 200
    assert got.content == notes
    assert got.headers.get("content-length") in (None, str(len(notes)))
    assert "content-encoding" not in got.headers


def _token_expiry(url: str) -> int:
    import base64
    import json

    body = url.rsplit("/", 1)[1].split(".", 1)[0]
    return int(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["exp"])


async def test_a_new_variation_sends_its_files_with_a_link_signed_when_it_is_sent(
    harness: Harness,
) -> None:
    """A file link lives 24 hours, a result's "New variation" may be pressed any day after:
    each send gets links signed then, so Motion can still fetch the file."""
    await start_public(harness)
    clip = harness.slack.add_file(title="Product demo", mimetype="video/mp4", content=CLIP)
    mention, _ = harness.slack.mention(
        "C0PUBLIC", f"{BOT} a launch teaser", user="U0ALICE", file_ids=[clip]
    )
    assert (await harness.event(mention)).status_code == 200
    [result] = await until(lambda: results(harness, mention["ts"]), what="the first result")
    [first] = harness.sandbox.creates
    await settle(1.1)  # the next signature is at least a second younger
    value = next(b["value"] for b in buttons(result) if b["action_id"] == "new_variation")
    pressed = time.time()
    assert (
        await harness.action("new_variation", value, message_ts=result["ts"])
    ).status_code == 200
    await until(lambda: len(harness.sandbox.creates) == 2, what="the variation's create")
    second = harness.sandbox.creates[1]
    [old], [new] = first["attachments"], second["attachments"]
    assert new["url"] != old["url"] and new["name"] == old["name"] == "Product demo"
    assert _token_expiry(new["url"]) >= int(pressed) + FILE_TOKEN_SECONDS - 1
    await until(lambda: len(harness.sandbox.fetches) == 2, what="Motion's second fetch")
    assert [f.status for f in harness.sandbox.fetches] == [200, 200]


async def test_slack_busy_about_a_file_says_nothing_was_started_and_what_to_do(
    harness: Harness,
) -> None:
    await start_public(harness)
    thread = await finished_thread(harness)
    logo = harness.slack.add_file(title="logo", mimetype="image/png", content=PNG)
    harness.slack.fail_next("files.info", status=503)
    said = await refused_reply(harness, thread, "use the logo", [logo])
    assert "Try again in a minute" in said
    assert harness.slack.downloads == []


async def test_a_files_info_slower_than_slacks_ack_window_is_answered_within_it(
    harness: Harness,
) -> None:
    """files.info is asked before the ack (a refused file must start nothing), so a slow
    Slack must not hold the answer past Slack's 3 seconds: it is told to try again."""
    await start_public(harness)
    thread = await finished_thread(harness)
    logo = harness.slack.add_file(title="logo", mimetype="image/png", content=PNG)
    harness.slack.fail_next("files.info", delay=6.0)
    before = len(harness.bot_replies(thread))
    started = time.monotonic()
    reply = await reply_with_files(harness, thread, "use the logo", [logo])
    acked = time.monotonic() - started
    assert acked < 3.0  # Slack's own bound (the app's is 2 s); the slow answer takes 6 s
    [said] = await until(lambda: harness.bot_replies(thread)[before:], what="the answer")
    assert "Nothing was started" in said["text"] and "Try again in a minute" in said["text"]
    await until(lambda: "x" in harness.slack.reactions("C0PUBLIC", reply["ts"]))
    assert harness.slack.downloads == []
    assert harness.sandbox.count("followup") == 0
