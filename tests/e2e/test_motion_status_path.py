"""Status calls on the lighter path (bot/motion/gets.py), over real sockets: the same request
as httpx would send, every way an answer may be framed, the caps, and what a broken or slow
server makes of a call. A scripted raw server plays Motion where the sandbox cannot misbehave
the way a test needs; the sandbox plays it everywhere else."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest

from bot.motion import AnswerLost, MotionClient, Retry
from bot.motion.client import MAX_ANSWER_BYTES
from bot.sandbox import BASE_PATH, JobPlan, SandboxThread
from tests.support.harness import until
from tests.support.motion import ScriptedSandbox

KEY = "motion_test"
SLOW = JobPlan(queued_s=60, created_s=60, running_s=60, render_s=60)
RUNNING = b'{"job_id": "job_1", "status": "running"}'

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawMotion:
    """A TCP server answering each connection with `handler`; keeps every request head."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.heads: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def head(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        return head

    async def __aenter__(self) -> str:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}{BASE_PATH}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


def answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture
def emulator() -> Iterator[ScriptedSandbox]:
    sandbox = ScriptedSandbox(default_plan=SLOW, api_keys={KEY})
    with SandboxThread(sandbox):
        yield sandbox


@pytest.fixture
async def motion(emulator: ScriptedSandbox) -> AsyncIterator[MotionClient]:
    assert emulator.base_url
    client = MotionClient(emulator.base_url, KEY, timeout=10.0)
    yield client
    await client.aclose()


@pytest.mark.parametrize("job_id", ["job_1", "job 1/ä?x#y"])
async def test_a_status_call_sends_the_request_httpx_would_send(job_id: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await raw.head(reader)
            writer.write(answer(RUNNING))

    raw = RawMotion(handler)
    async with raw as url:
        lighter = MotionClient(url, KEY, timeout=2.0)
        # A transport given: every call goes through httpx, as before the lighter path.
        through_httpx = MotionClient(url, KEY, timeout=2.0, transport=httpx.AsyncHTTPTransport())
        try:
            await lighter.status(job_id)
            await through_httpx.status(job_id)
        finally:
            await lighter.aclose()
            await through_httpx.aclose()
    assert len(raw.heads) == 2 and raw.heads[0] == raw.heads[1]
    if job_id == "job_1":
        assert raw.heads[0].startswith(f"GET {BASE_PATH}/sessions/job_1 HTTP/1.1\r\n".encode())
    assert f"Authorization: Bearer {KEY}\r\n".encode() in raw.heads[0]


async def test_status_calls_reuse_their_keep_alive_connections() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await raw.head(reader)
            await asyncio.sleep(0.01)
            writer.write(answer(RUNNING))

    raw = RawMotion(handler)
    async with raw as url:
        client = MotionClient(url, KEY, timeout=2.0, max_in_flight=4)
        try:
            for _ in range(5):
                await client.status("job_1")
            for _ in range(3):
                await asyncio.gather(*(client.status("job_1") for _ in range(4)))
        finally:
            await client.aclose()
    assert len(raw.heads) == 17
    assert raw.connections == 4  # one, then as many as were ever in flight at once


@pytest.mark.parametrize(
    "framing",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % 27
        + RUNNING[:27]
        + b"\r\n"
        + b"%x;ext=1\r\n" % (len(RUNNING) - 27)
        + RUNNING[27:]
        + b"\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n" + answer(RUNNING),
        answer(zlib.compress(RUNNING), "Content-Encoding: deflate"),
    ],
    ids=["chunked-with-extension-and-trailer", "after-100-continue", "deflate"],
)
async def test_every_framing_of_an_answer_is_read(framing: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await raw.head(reader)
            for i in range(0, len(framing), 7):  # in small pieces, as a slow network would
                writer.write(framing[i : i + 7])
                await writer.drain()
                await asyncio.sleep(0)

    raw = RawMotion(handler)
    async with raw as url:
        client = MotionClient(url, KEY, timeout=2.0)
        try:
            first = await client.status("job_1")
            second = await client.status("job_1")
        finally:
            await client.aclose()
    assert first.status == second.status == "running"
    assert raw.connections == 1  # the answer was framed right: the connection was reused


async def test_an_answer_ended_by_closing_the_connection_is_read() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.head(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + RUNNING)
        await writer.drain()

    raw = RawMotion(handler)
    async with raw as url:
        client = MotionClient(url, KEY, timeout=2.0)
        try:
            first = await client.status("job_1")
            second = await client.status("job_1")
        finally:
            await client.aclose()
    assert first.status == second.status == "running"
    assert raw.connections == 2  # never reused: its end was the answer's


async def test_a_connection_closed_unanswered_as_the_call_went_out_is_tried_once_more() -> None:
    """The server's keep-alive ran out just as the request went out: the request is sent
    again on a new connection (a GET changes nothing), once."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.head(reader)
        writer.write(answer(RUNNING))
        await writer.drain()
        if raw.connections == 1:
            await raw.head(reader)  # the second request arrives: closed without a word
            return
        while True:
            await raw.head(reader)
            writer.write(answer(RUNNING))

    raw = RawMotion(handler)
    async with raw as url:
        client = MotionClient(url, KEY, timeout=2.0)
        try:
            first = await client.status("job_1")
            second = await client.status("job_1")
        finally:
            await client.aclose()
    assert first.status == second.status == "running"
    assert raw.connections == 2 and len(raw.heads) == 3


@pytest.mark.parametrize(
    "reply",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        answer(RUNNING, "Content-Length: 12", "Content-Length: 40"),
        b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" + RUNNING[:20],  # then the end
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 70_000,
    ],
    ids=["not-http", "two-lengths", "cut-short", "bad-chunk-size", "endless-headers"],
)
async def test_a_broken_answer_to_a_status_call_is_tried_again_later(reply: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.head(reader)
        writer.write(reply)
        await writer.drain()

    raw = RawMotion(handler)
    async with raw as url:
        client = MotionClient(url, KEY, timeout=2.0)
        try:
            with pytest.raises(AnswerLost) as caught:
                await client.status("job_1")
        finally:
            await client.aclose()
    assert caught.value.retry is Retry.LATER


async def test_an_answer_that_stalls_is_a_timeout_tried_again_later() -> None:
    outcomes: list[tuple[str, str]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" + RUNNING[:10])
        await writer.drain()
        await asyncio.sleep(5)

    raw = RawMotion(handler)
    async with raw as url:
        client = MotionClient(url, KEY, timeout=0.3, observe=lambda k, o: outcomes.append((k, o)))
        began = asyncio.get_running_loop().time()
        try:
            with pytest.raises(AnswerLost) as caught:
                await client.status("job_1")
        finally:
            await client.aclose()
    assert caught.value.retry is Retry.LATER
    assert asyncio.get_running_loop().time() - began < 2.0
    assert outcomes == [("status", "timeout")]


async def test_a_cookie_motion_sets_is_sent_back_by_every_later_call() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await raw.head(reader)
            writer.write(answer(RUNNING, "Set-Cookie: lb=node-3; Path=/"))

    raw = RawMotion(handler)
    async with raw as url:
        client = MotionClient(url, KEY, timeout=2.0)
        try:
            await client.status("job_1")
            await client.status("job_1")
        finally:
            await client.aclose()
    assert b"lb=node-3" not in raw.heads[0]
    assert b"Cookie: lb=node-3" in raw.heads[1]


# ---------------------------------------------------------------- the caps, on this path


@pytest.mark.parametrize("announce_length", [False, True])
async def test_a_50_mb_status_answer_is_refused_and_the_next_call_answered(
    motion: MotionClient, emulator: ScriptedSandbox, announce_length: bool
) -> None:
    job_id = await motion.create({"prompt": "a fox"})
    emulator.fault_huge_body("status", 50_000_000, announce_length=announce_length)
    with pytest.raises(AnswerLost) as caught:
        await motion.status(job_id)
    assert caught.value.retry is Retry.LATER and "over 1024 KiB" in caught.value.message
    await until(lambda: emulator.huge_bytes_sent, what="the sandbox to see the hang-up")
    assert emulator.huge_bytes_sent[0] < 25_000_000  # it stopped being read: not sent whole
    assert (await motion.status(job_id)).status == "queued"


async def test_a_gzip_status_answer_that_inflates_past_the_cap_is_refused(
    motion: MotionClient, emulator: ScriptedSandbox
) -> None:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [squeeze.compress(b'{"status": "running", "pad": "')]
    parts += [squeeze.compress(b"x" * 1_000_000) for _ in range(50)]
    bomb = b"".join([*parts, squeeze.compress(b'"}'), squeeze.flush()])
    assert len(bomb) < MAX_ANSWER_BYTES // 4
    emulator.fault("status", status=200, body=bomb, headers={"Content-Encoding": "gzip"})
    with pytest.raises(AnswerLost) as caught:
        await motion.status("any-job")
    assert caught.value.retry is Retry.LATER and "over 1024 KiB" in caught.value.message


async def test_a_gzip_status_answer_within_the_cap_is_read(
    motion: MotionClient, emulator: ScriptedSandbox
) -> None:
    job_id = await motion.create({"prompt": "a fox"})
    body = json.dumps({"job_id": job_id, "status": "running", "error": None}).encode()
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    gzipped = squeeze.compress(body) + squeeze.flush()
    emulator.fault("status", status=200, body=gzipped, headers={"Content-Encoding": "gzip"})
    assert (await motion.status(job_id)).status == "running"
