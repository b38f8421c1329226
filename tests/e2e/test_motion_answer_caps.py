"""Motion's answers are read with a cap: a body past MAX_ANSWER_BYTES (however it is sent:
announced, chunked, gzip-inflated) is refused after reading at most the cap plus one network
read, and treated like a body that is not JSON: a status call is tried again later, a create or
followup is an answer lost (never re-sent). `sources` past MAX_SOURCES are dropped.

Against the sandbox over real sockets; the client's own bytes are counted by a transport that
wraps httpx's real one and only counts what the network hands it."""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from bot.motion import AnswerLost, MotionClient, MotionError, Retry
from bot.motion.answers import MAX_SOURCES
from bot.motion.client import MAX_ANSWER_BYTES
from bot.sandbox import JobPlan, SandboxThread
from tests.support.e2e import results, run_command
from tests.support.harness import FAST_PLAN, Harness, until
from tests.support.motion import ScriptedSandbox

KEY = "motion_test"
HUGE = 50_000_000
NETWORK_READ = 64 * 1024  # the most httpcore takes from the socket at once
SLOW = JobPlan(queued_s=60, created_s=60, running_s=60, render_s=60)
DONE = JobPlan(queued_s=0, created_s=0, running_s=0, render_s=0)


class _CountedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, transport: CountingTransport) -> None:
        self._inner, self._transport = inner, transport

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._transport.body_bytes += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class CountingTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport; counts the body bytes it hands the client."""

    def __init__(self) -> None:
        super().__init__()
        self.body_bytes = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_CountedStream(response.stream, self),
            extensions=response.extensions,
        )


@pytest.fixture
def emulator() -> Iterator[ScriptedSandbox]:
    sandbox = ScriptedSandbox(default_plan=SLOW, api_keys={KEY})
    with SandboxThread(sandbox):
        yield sandbox


@pytest.fixture
def counting() -> CountingTransport:
    return CountingTransport()


@pytest.fixture
async def motion(
    emulator: ScriptedSandbox, counting: CountingTransport
) -> AsyncIterator[MotionClient]:
    assert emulator.base_url
    client = MotionClient(emulator.base_url, KEY, timeout=10.0, transport=counting)
    yield client
    await client.aclose()


def gzip_of(head: bytes, middle: bytes = b"", tail: bytes = b"", *, repeat: int = 1) -> bytes:
    """A gzip body built piece by piece (`middle` repeated): a bomb never held inflated here."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [squeeze.compress(head)]
    out.extend(squeeze.compress(middle) for _ in range(repeat))
    out += [squeeze.compress(tail), squeeze.flush()]
    return b"".join(out)


# ---------------------------------------------------------------- status calls


@pytest.mark.parametrize("announce_length", [False, True])
async def test_a_50_mb_status_answer_is_refused_after_at_most_the_cap_and_tried_again(
    motion: MotionClient, emulator: ScriptedSandbox, counting: CountingTransport,
    announce_length: bool,
) -> None:  # fmt: skip
    job_id = await motion.create({"prompt": "a fox"})
    emulator.fault_huge_body("status", HUGE, announce_length=announce_length)
    counting.body_bytes = 0  # the create's answer was read whole: count the status only
    with pytest.raises(AnswerLost) as caught:
        await motion.status(job_id)
    assert caught.value.retry is Retry.LATER and caught.value.status == 200
    assert "over 1024 KiB" in caught.value.message
    assert counting.body_bytes <= MAX_ANSWER_BYTES + NETWORK_READ
    if announce_length:  # refused on its Content-Length, before a byte of it was read
        assert counting.body_bytes == 0
    await until(lambda: emulator.huge_bytes_sent, what="the sandbox to see the hang-up")
    assert emulator.huge_bytes_sent[0] < HUGE // 2  # it stopped being read: not sent whole
    assert (await motion.status(job_id)).status == "queued"  # the next call is answered


async def test_a_gzip_answer_that_inflates_past_the_cap_is_refused(
    motion: MotionClient, emulator: ScriptedSandbox
) -> None:
    bomb = gzip_of(b'{"status": "running", "pad": "', b"x" * 1_000_000, b'"}', repeat=50)
    assert len(bomb) < MAX_ANSWER_BYTES // 4  # small on the wire, 50 MB inflated
    emulator.fault("status", status=200, body=bomb, headers={"Content-Encoding": "gzip"})
    with pytest.raises(AnswerLost) as caught:
        await motion.status("any-job")
    assert caught.value.retry is Retry.LATER and "over 1024 KiB" in caught.value.message


async def test_a_gzip_answer_within_the_cap_is_read(
    motion: MotionClient, emulator: ScriptedSandbox
) -> None:
    job_id = await motion.create({"prompt": "a fox"})
    body = json.dumps({"job_id": job_id, "status": "running", "error": None}).encode()
    emulator.fault("status", status=200, body=gzip_of(body), headers={"Content-Encoding": "gzip"})
    assert (await motion.status(job_id)).status == "running"


async def test_json_nested_past_pythons_stack_is_a_malformed_answer(
    motion: MotionClient, emulator: ScriptedSandbox
) -> None:
    emulator.fault("status", status=200, body="[" * 500_000)
    with pytest.raises(AnswerLost) as caught:
        await motion.status("any-job")
    assert caught.value.retry is Retry.LATER


# ---------------------------------------------------------------- writes: never re-sent


@pytest.mark.parametrize("status", [200, 202])
async def test_a_huge_answer_to_a_create_is_an_answer_lost_not_a_failure(
    motion: MotionClient, emulator: ScriptedSandbox, counting: CountingTransport, status: int
) -> None:
    emulator.fault_huge_body("create", HUGE, status=status, after_processing=True)
    with pytest.raises(MotionError) as caught:
        await motion.create({"prompt": "a fox"})
    assert caught.value.retry is Retry.UNSAFE  # it may have started: never re-sent blindly
    assert len(emulator.job_ids) == 1
    assert counting.body_bytes <= MAX_ANSWER_BYTES + NETWORK_READ


async def test_a_huge_answer_to_a_followup_is_an_answer_lost(
    motion: MotionClient, emulator: ScriptedSandbox
) -> None:
    emulator.plan_next(DONE)
    job_id = await motion.create({"prompt": "a fox"})
    emulator.fault_huge_body("followup", HUGE, status=202, after_processing=True)
    with pytest.raises(MotionError) as caught:
        await motion.followup(job_id, {"prompt": "now in blue"})
    assert caught.value.retry is Retry.UNSAFE
    assert emulator.followups == [{"prompt": "now in blue"}]


# ---------------------------------------------------------------- sources


def many_sources(count: int) -> list[dict[str, Any]]:
    return [
        {"source_kind": "stock_video", "provider": "pexels", "title": f"clip {i}"}
        for i in range(count)
    ]


async def test_a_status_with_5000_sources_keeps_the_first_500(
    motion: MotionClient, emulator: ScriptedSandbox
) -> None:
    emulator.plan_next(JobPlan(**{**DONE.__dict__, "sources": many_sources(5_000)}))
    status = await motion.status(await motion.create({"prompt": "a fox"}))
    assert MAX_SOURCES == 500
    assert len(status.sources) == MAX_SOURCES and status.sources_dropped == 4_500
    assert [s["title"] for s in status.sources[:2]] == ["clip 0", "clip 1"]
    assert len(status.credits) == MAX_SOURCES


# ---------------------------------------------------------------- through the app


async def test_the_app_keeps_following_a_job_through_a_50_mb_status_answer(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.sandbox.plan_next(JobPlan(**{**FAST_PLAN.__dict__, "running_s": 1.0}))
    harness.sandbox.fault_huge_body("status", HUGE, times=2)
    await harness.start()
    with caplog.at_level(logging.INFO, logger="bot"):
        card = await run_command(harness, "a product teaser")
        [result] = await until(lambda: results(harness, card["ts"]), what="the result")
    assert "run 1" in result["text"]
    assert len(harness.sandbox.huge_bytes_sent) == 2
    assert all(sent < HUGE // 2 for sent in harness.sandbox.huge_bytes_sent)
    refused = [r for r in caplog.records if "over 1024 KiB" in r.getMessage()]
    assert len(refused) == 2 and all(r.levelno == logging.INFO for r in refused)
    assert harness.sandbox.count("create") == 1  # followed, never started again


async def test_a_result_with_5000_sources_posts_with_the_first_500(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.sandbox.plan_next(JobPlan(**{**FAST_PLAN.__dict__, "sources": many_sources(5_000)}))
    await harness.start()
    with caplog.at_level(logging.WARNING, logger="bot"):
        card = await run_command(harness, "a product teaser")
        [result] = await until(lambda: results(harness, card["ts"]), what="the result")
        await harness.bot.service.drain_background()
    assert f"{MAX_SOURCES} sources" in json.dumps(result["blocks"])
    dropped = [r for r in caplog.records if "5000 sources" in r.getMessage()]
    assert len(dropped) == 1
    [run] = harness.bot.store.runs(harness.bot.store.recent_jobs("T0001", "U0ALICE")[0].id)
    assert len(run.sources) == MAX_SOURCES
