"""`bot.slack.files` against the Slack stand-in over real sockets, and the pure rules around it:
which hosts may receive the bot token, how a file becomes a Motion attachment."""

from __future__ import annotations

import pytest

from bot.motion import FileAttachment, MotionRequest
from bot.slack import messages
from bot.slack.files import DownloadRefused, FileUnreadable, SlackFiles, is_slack_file_host
from tests.support.harness import BOT_TOKEN
from tests.support.slack import SlackDouble

PNG = b"\x89PNG\r\n\x1a\n" + b"\x07" * 5000


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("files.slack.com", True), ("slack-files.com", True), ("a.slack-edge.com", True),
        ("files-edge.slack.com", True), ("FILES.SLACK.COM", True), ("127.0.0.1", True),
        ("slack.com.evil.example", False), ("evilslack.com", False), ("slack-edge.com", False),
        ("files.slack.com.evil.example", False), ("localhost", False), ("", False),
    ],
)  # fmt: skip
def test_only_slacks_file_hosts_and_the_api_host_may_receive_the_token(
    host: str, allowed: bool
) -> None:
    assert is_slack_file_host(host, "127.0.0.1") is allowed


def test_the_token_goes_over_https_except_to_a_plain_http_api_host() -> None:
    files = SlackFiles("xoxb-x", "http://127.0.0.1:9/api/")
    assert files.may_receive_token("https://files.slack.com/files-pri/T-F/download/a.png")
    assert not files.may_receive_token("http://files.slack.com/files-pri/T-F/download/a.png")
    assert files.may_receive_token("http://127.0.0.1:9/files-pri/T-F/download/a.png")
    real = SlackFiles("xoxb-x", "https://slack.com/api/")
    assert not real.may_receive_token("http://slack.com/files-pri/T-F/download/a.png")


@pytest.mark.parametrize(
    ("mimetype", "kind"),
    [("image/png", "image"), ("video/mp4", "video"), ("audio/mpeg", "audio"),
     ("application/pdf", "file"), ("text/plain", "file"), ("", "file")],
)  # fmt: skip
def test_an_attachments_type_comes_from_the_mime_type(mimetype: str, kind: str) -> None:
    assert messages.file_kind(mimetype) == kind


def test_a_file_attachment_is_sent_with_its_name_type_and_content_type_after_the_links() -> None:
    file = FileAttachment("https://app.example/files/t", "n" * 300, "image", "image/png")
    request = MotionRequest("p", attachments=("https://example.com/a.png",), files=(file,))
    body = request.to_body()["attachments"]
    assert body[0]["url"] == "https://example.com/a.png"
    assert body[1] == {
        "url": "https://app.example/files/t", "name": "n" * 240, "type": "image",
        "content_type": "image/png",
    }  # fmt: skip
    assert MotionRequest.from_json(request.to_json()) == request
    assert request.attachment_count == 2
    many = MotionRequest("q", attachments=tuple(f"https://e.com/{i}" for i in range(6)))
    merged = many.merged_with(MotionRequest("r", files=(file,) * 6))
    assert merged.attachment_count == 10 and len(merged.files) == 4


async def test_files_info_answers_and_refusals_as_slack_spells_them() -> None:
    with SlackDouble(bot_token=BOT_TOKEN) as slack:
        logo = slack.add_file(title="Logo", mimetype="image/png", content=PNG)
        hidden = slack.add_file(title="x", mimetype="image/png", channel="C0NOTIN")
        files = SlackFiles(BOT_TOKEN, slack.base_url)
        wrong = SlackFiles("xoxb-wrong", slack.base_url)
        try:
            info = await files.info(logo)
            assert (info.title, info.mimetype, info.size) == ("Logo", "image/png", len(PNG))
            for file_id, code in ((hidden, "file_not_found"), ("F0NOPE", "file_not_found")):
                with pytest.raises(FileUnreadable) as refused:
                    await files.info(file_id)
                assert (refused.value.code, refused.value.permanent) == (code, True)
            with pytest.raises(FileUnreadable) as refused:
                await wrong.info(logo)
            assert refused.value.code == "invalid_auth"
            slack.files_read_scope = False
            with pytest.raises(FileUnreadable) as refused:
                await files.info(logo)
            assert refused.value.code == "missing_scope"
        finally:
            await files.aclose()
            await wrong.aclose()


async def test_a_download_is_streamed_and_refused_past_the_cap_or_in_a_redirect_loop() -> None:
    with SlackDouble(bot_token=BOT_TOKEN) as slack:
        logo = slack.add_file(title="Logo", mimetype="image/png", content=PNG)
        loop = slack.add_file(title="loop", mimetype="image/png", file_id="F0LOOP")
        slack._files[loop].redirect_to = slack.download_url(loop)
        files = SlackFiles(BOT_TOKEN, slack.base_url)
        small = SlackFiles(BOT_TOKEN, slack.base_url, max_bytes=1000)
        try:
            async with files.download(await files.info(logo)) as download:
                got = b"".join([chunk async for chunk in download.chunks()])
            assert got == PNG and download.content_type == "image/png"
            with pytest.raises(DownloadRefused, match="over the cap"):
                async with small.download(await small.info(logo)):
                    pass
            with pytest.raises(DownloadRefused, match="redirects"):
                async with files.download(await files.info(loop)):
                    pass
        finally:
            await files.aclose()
            await small.aclose()


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://files.slack.com/x", True), ("https://FILES.Slack.COM./x", True),
        ("https://files.slack.com:443/x", True), ("https://files.slack.com:8443/x", False),
        ("https://files.slack.com@evil.example/x", False),
        ("https://files.slack.com\\@evil.example/x", False),
        ("https://evil.example#@files.slack.com/x", False),
        ("https://evil.example?.files.slack.com/x", False),
        ("https://user:pw@files.slack.com/x", False), ("https://evilslack.com/x", False),
        ("https://evil.example\t.slack.com/x", False), ("ftp://files.slack.com/x", False),
        ("https://files.slack.com\u3002evil.example/x", False),  # an ideographic full stop
        ("https://files.slack.com%2eevil.example/x", False),
        ("http://127.0.0.1:9/x", True), ("http://127.0.0.1:10/x", False),
        ("http://127.0.0.1/x", False), ("https://127.0.0.1:9/x", True),
    ],
)  # fmt: skip
def test_the_token_goes_only_to_the_exact_host_and_port_the_request_reaches(
    url: str, allowed: bool
) -> None:
    assert SlackFiles("xoxb-x", "http://127.0.0.1:9/api/").may_receive_token(url) is allowed
