"""MotionClient against the real emulator over sockets: every failure has the right type."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from bot.motion import (
    AuthenticationError,
    BadRequest,
    Conflict,
    InsufficientCredits,
    MotionClient,
    MotionError,
    NotFound,
    RateLimited,
    Retry,
    ServerError,
    parse_retry_after,
)
from bot.sandbox import BASE_PATH, JobPlan, SandboxThread
from tests.support.motion import ScriptedSandbox

KEY = "motion_test"
# Long phases: a job stays "queued" for the whole test unless a plan says otherwise.
SLOW = JobPlan(queued_s=60, created_s=60, running_s=60, render_s=60)
DONE = JobPlan(queued_s=0, created_s=0, running_s=0, render_s=0)
BODY = {"prompt": "a fox in the snow"}


@pytest.fixture
def sandbox() -> Iterator[ScriptedSandbox]:
    emulator = ScriptedSandbox(default_plan=SLOW, api_keys={KEY})
    with SandboxThread(emulator):
        yield emulator


@pytest.fixture
async def motion(sandbox: ScriptedSandbox) -> AsyncIterator[MotionClient]:
    assert sandbox.base_url
    client = MotionClient(sandbox.base_url, KEY, timeout=2.0)
    yield client
    await client.aclose()


@pytest.fixture
async def impatient(sandbox: ScriptedSandbox) -> AsyncIterator[MotionClient]:
    assert sandbox.base_url
    client = MotionClient(sandbox.base_url, KEY, timeout=0.3)
    yield client
    await client.aclose()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{BASE_PATH}"


# ---------------------------------------------------------------- the happy path


async def test_create_returns_the_job_id_and_sends_the_body(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    job_id = await motion.create({"prompt": "a fox", "aspect_ratio": "9:16"})
    assert sandbox.job_ids == [job_id]
    assert sandbox.creates == [{"prompt": "a fox", "aspect_ratio": "9:16"}]


async def test_status_url_is_built_from_the_job_id_without_doubling_the_base_path(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    job_id = await motion.create(BODY)
    status = await motion.status(job_id)
    assert status.job_id == job_id
    assert status.status == "queued"
    paths = [call.path for call in sandbox.calls]
    assert paths == [f"{BASE_PATH}/sessions", f"{BASE_PATH}/sessions/{job_id}"]
    assert all(path.count("/api/motion") == 1 for path in paths)


async def test_followup_on_a_completed_job_keeps_the_job_id(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.plan_next(DONE)
    job_id = await motion.create(BODY)
    assert await motion.followup(job_id, {"prompt": "now in blue"}) == job_id
    assert sandbox.followups == [{"prompt": "now in blue"}]


async def test_finished_job_has_a_ready_download_url_and_sources(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.plan_next(JobPlan(queued_s=0, created_s=0, running_s=0, render_s=0, source_count=3))
    status = await motion.status(await motion.create(BODY))
    assert status.status == "completed"
    assert status.output is not None
    assert status.output.ready
    assert status.download_url and status.download_url.startswith("http://127.0.0.1:")  # its CDN
    assert len(status.sources) == 3
    assert all("source_kind" in s and "provider" in s for s in status.sources)
    assert status.render_failed is False


async def test_status_without_output_and_sources_keys_reads_as_null_and_empty(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.plan_next(JobPlan(queued_s=60, created_s=60, running_s=60, omit_keys=True))
    status = await motion.status(await motion.create(BODY))
    assert status.output is None
    assert status.sources == []
    assert status.download_url is None
    assert status.render_failed is False


async def test_completed_without_a_download_url_is_not_ready(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.plan_next(JobPlan(queued_s=0, created_s=0, running_s=0, render_s=60))
    status = await motion.status(await motion.create(BODY))
    assert status.status == "completed"
    assert status.output is not None
    assert status.output.status == "pending"
    assert status.output.ready is False
    assert status.download_url is None
    assert status.render_failed is False


async def test_output_status_failed_is_a_render_failure(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.plan_next(JobPlan(queued_s=0, created_s=0, running_s=0, render_s=0, render_fails=True))
    status = await motion.status(await motion.create(BODY))
    assert status.status == "completed"
    assert status.render_failed is True
    assert status.download_url is None


async def test_failed_job_carries_motions_error(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.plan_next(
        JobPlan(queued_s=0, created_s=0, running_s=0, fail_error="Scene planning failed")
    )
    status = await motion.status(await motion.create(BODY))
    assert status.status == "failed"
    assert status.error == "Scene planning failed"
    assert status.download_url is None


# ---------------------------------------------------------------- documented errors


async def test_bad_request_is_bad_request_with_motions_details(motion: MotionClient) -> None:
    body = {"prompt": "", "attachments": [{"url": f"https://x.example/{i}"} for i in range(11)]}
    with pytest.raises(BadRequest) as caught:
        await motion.create(body)
    assert caught.value.status == 400
    details = caught.value.details
    assert any(d.startswith("prompt:") for d in details)
    assert any(d.startswith("attachments:") and "at most 10" in d for d in details)


async def test_non_youtube_style_is_a_bad_request(motion: MotionClient) -> None:
    with pytest.raises(BadRequest) as caught:
        await motion.create({"prompt": "x", "style_reference_url": "https://vimeo.com/1"})
    assert any("style_reference_url" in d for d in caught.value.details)


async def test_wrong_key_is_an_authentication_error(sandbox: ScriptedSandbox) -> None:
    assert sandbox.base_url
    client = MotionClient(sandbox.base_url, "motion_revoked", timeout=2.0)
    try:
        with pytest.raises(AuthenticationError) as on_read:
            await client.status("405d47cf-f72b-4852-b570-0de2446dbba1")
        with pytest.raises(AuthenticationError) as on_write:
            await client.create(BODY)
    finally:
        await client.aclose()
    assert on_read.value.status == on_write.value.status == 401
    assert sandbox.job_ids == []


@pytest.mark.parametrize(("balance", "minimum"), [(0, 1), (120, 300)])
async def test_insufficient_credits_reads_balance_and_minimum_from_the_body(
    motion: MotionClient, sandbox: ScriptedSandbox, balance: int, minimum: int
) -> None:
    sandbox.set_balance(balance, minimum)
    with pytest.raises(InsufficientCredits) as caught:
        await motion.create(BODY)
    assert caught.value.status == 402
    assert caught.value.current_balance == balance
    assert caught.value.minimum_required == minimum
    assert f"at least {minimum} credits" in caught.value.message
    assert sandbox.job_ids == []


async def test_unknown_job_is_not_found(motion: MotionClient) -> None:
    with pytest.raises(NotFound) as caught:
        await motion.status("405d47cf-f72b-4852-b570-0de2446dbba1")
    assert caught.value.status == 404


async def test_followup_on_an_unknown_job_is_not_found(motion: MotionClient) -> None:
    with pytest.raises(NotFound):
        await motion.followup("405d47cf-f72b-4852-b570-0de2446dbba1", BODY)


async def test_followup_while_running_is_a_conflict_with_the_jobs_status(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    job_id = await motion.create(BODY)
    with pytest.raises(Conflict) as caught:
        await motion.followup(job_id, {"prompt": "now in blue"})
    assert caught.value.status == 409
    assert caught.value.job_status == "queued"
    assert sandbox.followups == []


# ---------------------------------------------------------------- undocumented trouble


async def test_rate_limit_gives_retry_after_in_seconds(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault_rate_limited("status", retry_after=7)
    with pytest.raises(RateLimited) as caught:
        await motion.status("any-job")
    assert caught.value.status == 429
    assert caught.value.retry_after == 7.0
    assert caught.value.retry is Retry.LATER


async def test_rate_limit_gives_retry_after_from_an_http_date(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    sandbox.fault(
        "create", status=429, body='{"error": "slow down"}', headers={"Retry-After": when}
    )
    with pytest.raises(RateLimited) as caught:
        await motion.create(BODY)
    assert caught.value.retry_after is not None
    assert 27 <= caught.value.retry_after <= 31
    assert sandbox.job_ids == []


async def test_rate_limit_without_retry_after_has_none(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault("status", status=429)
    with pytest.raises(RateLimited) as caught:
        await motion.status("any-job")
    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
    ],
)
def test_parse_retry_after_reads_seconds_and_http_dates(
    header: str | None, seconds: float | None
) -> None:
    now = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()
    assert parse_retry_after(header, now=now) == seconds


async def test_json_500_on_a_read_is_a_server_error(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault("status", status=500, body='{"error": "internal error reading a job"}')
    with pytest.raises(ServerError) as caught:
        await motion.status("any-job")
    assert caught.value.status == 500
    assert caught.value.message == "internal error reading a job"


async def test_html_502_on_a_read_is_a_server_error(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault_html_502("status")
    with pytest.raises(ServerError) as caught:
        await motion.status("any-job")
    assert caught.value.status == 502
    assert caught.value.retry is Retry.LATER


async def test_html_502_on_a_create_is_outcome_unknown(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault_html_502("create")
    with pytest.raises(MotionError) as caught:
        await motion.create(BODY)
    assert caught.value.retry is Retry.UNSAFE
    assert caught.value.status == 502


async def test_html_502_on_a_followup_is_outcome_unknown(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault_html_502("followup")
    with pytest.raises(MotionError) as caught:
        await motion.followup("any-job", BODY)
    assert caught.value.retry is Retry.UNSAFE


async def test_slow_answer_on_a_read_is_transient_not_outcome_unknown(
    impatient: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault("status", delay=1.0)
    started = time.monotonic()
    with pytest.raises(MotionError) as caught:
        await impatient.status("any-job")
    assert caught.value.retry is Retry.LATER
    assert time.monotonic() - started < 0.9


async def test_slow_answer_on_a_create_is_outcome_unknown(
    impatient: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault("create", delay=1.0, after_processing=True)
    started = time.monotonic()
    with pytest.raises(MotionError) as caught:
        await impatient.create(BODY)
    assert caught.value.retry is Retry.UNSAFE
    assert time.monotonic() - started < 0.9
    assert len(sandbox.job_ids) == 1  # it did take effect


async def test_slow_answer_on_a_followup_is_outcome_unknown(
    impatient: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault("followup", delay=1.0)
    with pytest.raises(MotionError) as caught:
        await impatient.followup("any-job", BODY)
    assert caught.value.retry is Retry.UNSAFE


async def test_dropped_connection_after_a_create_is_outcome_unknown_and_the_job_exists(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault("create", drop=True, after_processing=True)
    with pytest.raises(MotionError) as caught:
        await motion.create(BODY)
    assert caught.value.retry is Retry.UNSAFE
    assert len(sandbox.job_ids) == 1
    assert sandbox.creates == [BODY]


async def test_dropped_connection_on_a_read_is_transient(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault("status", drop=True)
    with pytest.raises(MotionError) as caught:
        await motion.status("any-job")
    assert caught.value.retry is Retry.LATER


async def test_connection_refused_is_transient_not_outcome_unknown() -> None:
    client = MotionClient(closed_port_url(), KEY, timeout=2.0)
    try:
        with pytest.raises(MotionError) as on_write:
            await client.create(BODY)
        with pytest.raises(MotionError) as on_read:
            await client.status("any-job")
    finally:
        await client.aclose()
    assert on_write.value.retry is Retry.LATER
    assert on_read.value.retry is Retry.LATER


async def test_non_json_success_on_a_create_is_outcome_unknown(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault("create", status=200, body="OK", after_processing=True)
    with pytest.raises(MotionError) as caught:
        await motion.create(BODY)
    assert caught.value.retry is Retry.UNSAFE
    assert caught.value.status == 200
    assert len(sandbox.job_ids) == 1


async def test_non_json_success_on_a_read_is_transient_not_outcome_unknown(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault("status", status=200, body="<html>maintenance</html>")
    with pytest.raises(MotionError) as caught:
        await motion.status("any-job")
    assert caught.value.retry is Retry.LATER


async def test_create_answer_without_a_job_id_is_outcome_unknown(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault("create", status=202, body='{"status": "queued"}', after_processing=True)
    with pytest.raises(MotionError) as caught:
        await motion.create(BODY)
    assert caught.value.retry is Retry.UNSAFE


# ---------------------------------------------------------------- one pool, one limit


async def test_requests_in_flight_never_exceed_the_cap(sandbox: ScriptedSandbox) -> None:
    assert sandbox.base_url
    client = MotionClient(sandbox.base_url, KEY, max_in_flight=4, timeout=5.0)
    try:
        job_id = await client.create(BODY)
        sandbox.fault("status", delay=0.1, times=30)
        answers = await asyncio.gather(*(client.status(job_id) for _ in range(30)))
    finally:
        await client.aclose()
    assert [a.job_id for a in answers] == [job_id] * 30
    assert client.peak_in_flight == 4
    assert client.in_flight == 0
    assert sandbox.count("status") == 30


@pytest.mark.parametrize(
    ("status", "body", "retry"),
    [
        (500, '{"error": "internal error creating a job"}', Retry.NO),  # Motion: not started
        (503, '{"error": "try later"}', Retry.LATER),  # Motion: not now
        (503, "<html>down</html>", Retry.UNSAFE),  # a proxy's page: it may be through
        (504, '{"error": "gateway timeout"}', Retry.UNSAFE),
        (403, "<html>blocked</html>", Retry.UNSAFE),  # not Motion's own answer
        (422, '{"error": "unprocessable"}', Retry.NO),
    ],
)
async def test_a_write_error_says_whether_it_may_be_retried(
    motion: MotionClient, sandbox: ScriptedSandbox, status: int, body: str, retry: Retry
) -> None:
    sandbox.fault("create", status=status, body=body)
    with pytest.raises(MotionError) as caught:
        await motion.create(BODY)
    assert caught.value.status == status
    assert caught.value.retry is retry
    assert isinstance(caught.value, ServerError) == (status >= 500)


async def test_every_error_of_a_read_may_be_retried_except_motions_own_answers(
    motion: MotionClient, sandbox: ScriptedSandbox
) -> None:
    for status, body in [(500, '{"error": "x"}'), (502, "<html/>"), (503, "{}"), (504, "")]:
        sandbox.fault("status", status=status, body=body)
        with pytest.raises(ServerError) as caught:
            await motion.status("any-job")
        assert caught.value.retry is Retry.LATER, status
    with pytest.raises(NotFound) as missing:
        await motion.status("any-job")
    assert missing.value.retry is Retry.NO


async def test_status_calls_never_wait_behind_slow_writes(sandbox: ScriptedSandbox) -> None:
    assert sandbox.base_url
    client = MotionClient(sandbox.base_url, KEY, max_in_flight=4, timeout=5.0)
    try:
        job_id = await client.create(BODY)
        sandbox.fault("create", delay=1.0, times=20)
        creates = [asyncio.create_task(client.create(BODY)) for _ in range(20)]
        await asyncio.sleep(0.1)  # every write slot is taken by a slow create
        began = asyncio.get_running_loop().time()
        answers = await asyncio.gather(*(client.status(job_id) for _ in range(5)))
        waited = asyncio.get_running_loop().time() - began
        assert client.in_flight <= 4
        await asyncio.gather(*creates)
    finally:
        await client.aclose()
    assert client.reserved_for_reads == 1
    assert [a.job_id for a in answers] == [job_id] * 5
    assert waited < 0.5  # not behind a single 1-second create
    assert client.peak_in_flight == 4


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    """Keep-alive: a connection Motion (or a proxy) closed between two calls is noticed by the
    pool's readability check before the next call, which goes out on a new connection; the
    call made on the dead one would fail as "Motion did not answer"."""
    connections = 0
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 41\r\n\r\n"
        b'{"job_id": "job_1", "status": "running"}\n'
    )

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)  # keep-alive by HTTP/1.1's default, then closed at once
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = MotionClient(f"http://127.0.0.1:{port}{BASE_PATH}", KEY, timeout=2.0)
    try:
        first = await client.status("job_1")
        await asyncio.sleep(0.2)  # the server's FIN arrives: the idle socket turns readable
        second = await client.status("job_1")
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
    assert first.status == second.status == "running"
    assert connections == 2
