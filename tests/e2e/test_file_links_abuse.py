"""`PUBLIC_URL/files/<token>` under abuse: a file is always a download that runs nothing on the
app's origin, and slow readers of one valid link can neither multiply nor hold their streams,
nor starve the intake's own `files.info`."""

from __future__ import annotations

import asyncio
import socket
import time
from urllib.parse import urlsplit

import pytest

from bot import file_links
from tests.e2e.test_e2e_files import file_link, start_public
from tests.support.harness import Harness, until

SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'
BIG = b"\0" * (24 * 1024 * 1024)  # more than loopback's socket buffers hold


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_a_file_is_served_as_a_sandboxed_download(harness: Harness, method: str) -> None:
    public = await start_public(harness)
    svg = harness.slack.add_file(
        title="logo", name="logo<x>.svg", mimetype="image/svg+xml", content=SVG
    )
    response = await harness.http.request(method, file_link(public, svg))
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="logo_x_.svg"'
    assert response.headers["content-security-policy"] == "sandbox"
    assert response.headers["x-content-type-options"] == "nosniff"
    if method == "GET":
        assert response.content == SVG


def slow_reader(url: str) -> socket.socket:
    """A fetcher that asks for the file and then never reads a byte."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
    return sock


def status_of(sock: socket.socket) -> int:
    sock.settimeout(5)
    head = sock.recv(64)
    return int(head.split(b" ", 2)[1])


async def test_twenty_slow_readers_of_one_link_do_not_starve_the_intake(
    harness: Harness,
) -> None:
    public = await start_public(harness)
    big = harness.slack.add_file(title="raw footage", mimetype="video/mp4", content=BIG)
    url = file_link(public, big)
    readers = [await asyncio.to_thread(slow_reader, url) for _ in range(20)]
    try:
        await asyncio.sleep(1.0)  # the first ones stream until their buffers are full
        statuses = await asyncio.gather(*(asyncio.to_thread(status_of, r) for r in readers))
        assert statuses.count(200) == file_links.MAX_STREAMS_PER_LINK
        assert statuses.count(429) == 20 - file_links.MAX_STREAMS_PER_LINK

        # Meanwhile a person attaches a file to a mention: files.info answers, the job starts.
        clip = harness.slack.add_file(title="demo", mimetype="image/png", content=b"png")
        mention, _ = harness.slack.mention(
            "C0PUBLIC", "<@U0BOT> a teaser", user="U0ALICE", file_ids=[clip]
        )
        started = time.monotonic()
        assert (await harness.event(mention)).status_code == 200
        assert time.monotonic() - started < 3.0
        await until(lambda: harness.bot_replies(mention["ts"]), what="the card in the thread")
    finally:
        for reader in readers:
            reader.close()


async def test_a_reader_that_stops_reading_is_cut_off_and_frees_its_slot(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_links, "WRITE_TIMEOUT_SECONDS", 1.0)
    public = await start_public(harness)
    big = harness.slack.add_file(title="raw footage", mimetype="video/mp4", content=BIG)
    url = file_link(public, big)
    readers = [
        await asyncio.to_thread(slow_reader, url) for _ in range(file_links.MAX_STREAMS_PER_LINK)
    ]
    try:
        busy = await harness.http.head(url)
        assert busy.status_code == 429

        # Each stalled stream is cut after its write timeout: the link answers again.
        async def served() -> bool:
            return (await harness.http.head(url)).status_code == 200

        deadline = time.monotonic() + 10
        while not await served():
            assert time.monotonic() < deadline, "the stalled streams still hold the link"
            await asyncio.sleep(0.3)
    finally:
        for reader in readers:
            reader.close()
