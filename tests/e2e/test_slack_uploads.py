"""Slack's external upload as the app drives it (`SlackOut.upload_file`, `find_shared_file`),
against the stand-in over real sockets: the three steps, and Slack's errors in its own words."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bot.slack.out import SlackFailure, SlackOut, make_client
from tests.support.harness import BOT_TOKEN
from tests.support.slack import SlackDouble

BODY = bytes(range(256)) * 1000  # 256,000 bytes


async def chunks(data: bytes, size: int = 10_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
async def out(slack: SlackDouble) -> AsyncIterator[SlackOut]:
    client = make_client(BOT_TOKEN, slack.base_url, retry_writes=False)
    yield SlackOut(client)
    if client.session is not None:
        await client.session.close()


async def upload(
    out: SlackOut, channel: str, thread: str, data: bytes = BODY
) -> tuple[str, list[str]]:
    seen: list[str] = []
    file_id = await out.upload_file(
        channel, thread, filename="motion-run-1.mp4", title="Run 1: a teaser",
        length=len(data), chunks=chunks(data), on_file_id=seen.append,
    )  # fmt: skip
    return file_id, seen


async def test_a_file_is_reserved_streamed_and_shared_into_the_thread(
    slack: SlackDouble, out: SlackOut
) -> None:
    root = slack.add_human_message("C0PUBLIC", "a card")
    file_id, seen = await upload(out, "C0PUBLIC", root)
    assert seen == [file_id]  # heard before the completion
    [video] = slack.shared_files("C0PUBLIC", root)
    assert video["files"][0]["id"] == file_id and video["user"] == slack.bot_user_id
    assert slack.files[file_id].received == len(BODY)
    assert await out.find_shared_file("C0PUBLIC", file_id) is True
    [reserve] = slack.calls("files.getUploadURLExternal")
    assert reserve.params == {"filename": "motion-run-1.mp4", "length": str(len(BODY))}


async def test_slack_errors_are_spelled_as_slack_spells_them(
    slack: SlackDouble, out: SlackOut
) -> None:
    root = slack.add_human_message("C0PUBLIC", "a card")
    with pytest.raises(SlackFailure) as refused:
        await upload(out, "C0NOTIN", root)
    assert refused.value.code == "not_in_channel" and refused.value.permanent
    with pytest.raises(SlackFailure) as missing:
        await upload(out, "C0PUBLIC", "1234.000001")
    assert missing.value.code == "thread_not_found"
    with pytest.raises(SlackFailure) as bad:
        await out._call("files.getUploadURLExternal", _form=True, filename="x.mp4", length="0")
    assert bad.value.code == "invalid_arguments"
    assert await out.find_shared_file("C0PUBLIC", "F0NOPE") is None  # file_not_found


async def test_the_upload_url_checks_the_length_and_can_fail(
    slack: SlackDouble, out: SlackOut
) -> None:
    root = slack.add_human_message("C0PUBLIC", "a card")
    reserved = await out._call(
        "files.getUploadURLExternal", _form=True, filename="x.mp4", length="10"
    )
    async with httpx.AsyncClient() as web:
        short = await web.post(reserved["upload_url"], content=b"12345")
    assert short.status_code == 400 and "invalid_length" in short.text
    with pytest.raises(SlackFailure) as incomplete:  # its bytes never arrived
        await out.complete_file("C0PUBLIC", root, reserved["file_id"], "x")
    assert incomplete.value.code == "file_not_found"
    slack.fail_next_upload(500)
    with pytest.raises(SlackFailure) as failed:
        await upload(out, "C0PUBLIC", root)
    assert failed.value.code == "upload_http_500"
    slack.fail_next_upload(0)  # the connection drops
    with pytest.raises(SlackFailure) as dropped:
        await upload(out, "C0PUBLIC", root)
    assert not dropped.value.permanent
    assert slack.shared_files("C0PUBLIC", root) == []


async def test_a_file_id_completes_once(slack: SlackDouble, out: SlackOut) -> None:
    root = slack.add_human_message("C0PUBLIC", "a card")
    file_id, _ = await upload(out, "C0PUBLIC", root)
    with pytest.raises(SlackFailure) as again:
        await out.complete_file("C0PUBLIC", root, file_id, "Run 1")
    assert again.value.code == "file_already_completed"
    assert len(slack.shared_files("C0PUBLIC", root)) == 1
