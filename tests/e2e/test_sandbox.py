"""The Motion emulator, exercised the way the bot uses it: a real httpx client over sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.sandbox import JobPlan, MotionSandbox, SandboxThread, generated_sources, validate_request
from tests.support.motion import HTML_502, ScriptedSandbox

KEY = "motion_test_key"
OTHER_KEY = "motion_someone_else"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# Phases of FAST: queued [0, 1), created [1, 2), running [2, 12), completed at 12,
# output pending [12, 13), queued [13, 14), processing [14, 15), URL ready at 15.
FAST = JobPlan(queued_s=1, created_s=1, running_s=10, render_s=3)
DONE = 20.0


class FakeClock:
    """A clock the test moves by hand, so lifecycles take no real time."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sandbox(clock: FakeClock) -> ScriptedSandbox:
    return ScriptedSandbox(clock=clock, default_plan=FAST)


@pytest.fixture
async def base_url(sandbox: ScriptedSandbox) -> AsyncIterator[str]:
    url = await sandbox.start()
    yield url
    await sandbox.stop()


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=2) as http:
        yield http


async def create(client: httpx.AsyncClient, base_url: str = "", **body: Any) -> str:
    payload = {"prompt": "A fox in the snow", **body}
    response = await client.post(f"{base_url}/sessions", json=payload)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


async def status(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/sessions/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


# --- lifecycle ---------------------------------------------------------------------------


async def test_full_lifecycle_reaches_a_download_url_on_a_fake_clock(
    client: httpx.AsyncClient, clock: FakeClock, sandbox: ScriptedSandbox
) -> None:
    job_id = await create(client)
    seen = []
    for at in (0, 1, 2, 12, 13, 14, 15):
        clock.now = 1_000.0 + at
        body = await status(client, job_id)
        seen.append((body["status"], (body["output"] or {}).get("status")))
        assert body["job_id"] == job_id
        assert ISO_MS.match(body["created_at"]) and ISO_MS.match(body["updated_at"])
    assert seen == [
        ("queued", None),
        ("created", None),
        ("running", None),
        ("completed", "pending"),
        ("completed", "queued"),
        ("completed", "processing"),
        ("completed", "completed"),
    ]
    assert set(body) == {
        "job_id", "status", "created_at", "updated_at", "completed_at", "error",
        "pending_user_input", "output", "sources",
    }  # fmt: skip
    assert ISO_MS.match(body["completed_at"])
    assert body["error"] is None and body["pending_user_input"] is False
    url = body["output"]["download_url"]
    assert url.startswith(f"{sandbox.download_base}/{job_id}/run-1.mp4?sig=")
    assert sandbox.download_base.startswith("http://127.0.0.1:")
    assert ISO_MS.match(body["output"]["expires_at"])
    assert len(body["sources"]) == 4


async def test_output_has_no_url_until_render_completes(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    job_id = await create(client)
    clock.advance(14.5)
    body = await status(client, job_id)
    assert body["status"] == "completed"
    assert body["output"] == {"status": "processing", "download_url": None, "expires_at": None}


async def test_timestamps_follow_the_clock_from_the_construction_anchor(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    job_id = await create(client)
    clock.advance(DONE)
    body = await status(client, job_id)
    assert body["completed_at"].endswith("Z")
    assert body["created_at"] < body["completed_at"] <= body["updated_at"]


async def test_create_answers_202_with_a_status_url_that_carries_the_base_path(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox
) -> None:
    response = await client.post("/sessions", json={"prompt": "hi", "unknown_field": 1})
    assert response.status_code == 202
    body = response.json()
    assert body == {
        "job_id": body["job_id"],
        "status": "queued",
        "status_url": f"/api/motion/sessions/{body['job_id']}",
    }
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                        body["job_id"])  # fmt: skip
    assert sandbox.creates == [{"prompt": "hi", "unknown_field": 1}]
    assert sandbox.job_ids == [body["job_id"]]


async def test_failed_job_carries_its_error_and_no_output(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox, clock: FakeClock
) -> None:
    sandbox.plan_next(JobPlan(queued_s=0, created_s=0, running_s=1, fail_error="Render crashed"))
    job_id = await create(client)
    clock.advance(2)
    body = await status(client, job_id)
    assert body["status"] == "failed"
    assert body["error"] == "Render crashed"
    assert body["output"] is None


async def test_render_can_fail_without_a_url(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox, clock: FakeClock
) -> None:
    sandbox.plan_next(JobPlan(render_fails=True))
    job_id = await create(client)
    clock.advance(DONE)
    body = await status(client, job_id)
    assert body["status"] == "completed"
    assert body["output"]["status"] == "failed"
    assert body["output"]["download_url"] is None


async def test_awaiting_user_input_interlude_returns_to_running(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox, clock: FakeClock
) -> None:
    # running [0, 5), awaiting [5, 15), running [15, 20), completed at 20
    sandbox.plan_next(JobPlan(queued_s=0, created_s=0, running_s=10, await_input_s=10))
    job_id = await create(client)
    seen = []
    for step in (1, 5, 10, 5):
        clock.advance(step)
        body = await status(client, job_id)
        seen.append((body["status"], body["pending_user_input"]))
    assert seen == [
        ("running", False),
        ("awaiting_user_input", True),
        ("running", False),
        ("completed", False),
    ]


async def test_omit_keys_leaves_out_output_and_sources_until_completed(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox, clock: FakeClock
) -> None:
    sandbox.plan_next(JobPlan(queued_s=0, created_s=0, running_s=1, omit_keys=True))
    job_id = await create(client)
    running = await status(client, job_id)
    assert "output" not in running and "sources" not in running
    clock.advance(DONE)
    completed = await status(client, job_id)
    assert completed["output"]["download_url"] and completed["sources"]


# --- sources ------------------------------------------------------------------------------


async def test_sources_vary_and_sometimes_miss_fields(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox, clock: FakeClock
) -> None:
    sandbox.plan_next(JobPlan(source_count=120))
    job_id = await create(client)
    clock.advance(DONE)
    sources = (await status(client, job_id))["sources"]
    assert len(sources) == 120
    assert all("source_kind" in source and "provider" in source for source in sources)
    assert any("title" not in source for source in sources)
    assert any("usages" not in source for source in sources)
    assert any("rights_status" not in source for source in sources)
    assert {"cleared", "licensed", "unknown", "restricted"} <= {
        source.get("rights_status") for source in sources
    }
    assert any("confidence" in source for source in sources)  # a field the docs don't name
    usage = next(source["usages"][0] for source in sources if "usages" in source)
    assert usage["end_seconds"] > usage["start_seconds"]


async def test_custom_sources_are_returned_verbatim(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox, clock: FakeClock
) -> None:
    hostile = [{"source_kind": "stock_video", "provider": "x", "title": "<!channel> *boom*"}]
    sandbox.plan_next(JobPlan(sources=hostile))
    job_id = await create(client)
    clock.advance(DONE)
    assert (await status(client, job_id))["sources"] == hostile


def test_generated_sources_are_deterministic() -> None:
    assert generated_sources("abc", 1, 10) == generated_sources("abc", 1, 10)
    assert generated_sources("abc", 1, 10) != generated_sources("abc", 2, 10)


# --- validation ---------------------------------------------------------------------------


def attachments(count: int) -> list[dict[str, str]]:
    return [{"url": f"https://files.example/{n}.png"} for n in range(count)]


@pytest.mark.parametrize(
    ("body", "code", "path"),
    [
        ({}, "invalid_type", ["prompt"]),
        ({"prompt": ""}, "too_small", ["prompt"]),
        ({"prompt": "x" * 12_001}, "too_big", ["prompt"]),
        ({"prompt": "😀" * 6_001}, "too_big", ["prompt"]),  # counted in UTF-16 units, as JS does
        ({"prompt": 5}, "invalid_type", ["prompt"]),
        ({"prompt": "p", "style_reference_url": "https://vimeo.com/1"}, "custom",
         ["style_reference_url"]),
        ({"prompt": "p", "style_reference_url": "https://youtube.com.evil.example/x"}, "custom",
         ["style_reference_url"]),
        ({"prompt": "p", "style_reference_url": None}, "invalid_type", ["style_reference_url"]),
        ({"prompt": "p", "attachments": attachments(11)}, "too_big", ["attachments"]),
        ({"prompt": "p", "attachments": {}}, "invalid_type", ["attachments"]),
        ({"prompt": "p", "attachments": [{"url": "http://files.example/a.png"}]}, "custom",
         ["attachments", 0, "url"]),
        ({"prompt": "p", "attachments": [{"url": "not a url"}]}, "invalid_string",
         ["attachments", 0, "url"]),
        ({"prompt": "p", "attachments": [{"name": "a.png"}]}, "invalid_type",
         ["attachments", 0, "url"]),
        ({"prompt": "p", "attachments": [{"url": "https://a.example/" + "x" * 4_090}]},
         "too_big", ["attachments", 0, "url"]),
        ({"prompt": "p", "attachments": [{"url": "https://a.example/a", "name": "n" * 241}]},
         "too_big", ["attachments", 0, "name"]),
        ({"prompt": "p", "attachments": [{"url": "https://a.example/a", "type": "doc"}]},
         "invalid_enum_value", ["attachments", 0, "type"]),
        ({"prompt": "p", "aspect_ratio": "3:2"}, "invalid_enum_value", ["aspect_ratio"]),
        ({"prompt": "p", "duration": "2h"}, "invalid_enum_value", ["duration"]),
        ({"prompt": "p", "design_system_id": "acme"}, "invalid_enum_value",
         ["design_system_id"]),
        ({"prompt": "p", "design_md": {"content": ""}}, "too_small", ["design_md", "content"]),
    ],
)  # fmt: skip
async def test_invalid_bodies_answer_400_with_zod_issues(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox, body: dict, code: str, path: list
) -> None:
    response = await client.post("/sessions", json=body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["error"] == "Invalid request"
    assert [(issue["code"], issue["path"]) for issue in payload["details"]] == [(code, path)]
    assert all(isinstance(issue["message"], str) for issue in payload["details"])
    assert sandbox.job_ids == []


async def test_too_many_attachments_matches_the_documented_issue(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/sessions", json={"prompt": "p", "attachments": attachments(11)})
    issue = response.json()["details"][0]
    assert issue["code"] == "too_big"
    assert issue["maximum"] == 10
    assert issue["type"] == "array"
    assert issue["inclusive"] is True
    assert issue["message"] == "Array must contain at most 10 element(s)"


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b""])
async def test_a_body_that_is_not_a_json_object_answers_400(
    client: httpx.AsyncClient, raw: bytes
) -> None:
    response = await client.post(
        "/sessions", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["details"][0]["path"] == []


def test_valid_bodies_pass_at_the_limits() -> None:
    body = {
        "prompt": "x" * 12_000,
        "style_reference_url": "https://youtu.be/dQw4w9WgXcQ",
        "attachments": [
            {
                "url": "https://a.example/" + "x" * 4_078,
                "name": "n" * 240,
                "type": "video",
                "content_type": "video/mp4",
            },
            *attachments(9),
        ],
        "aspect_ratio": "21:9",
        "duration": "<10s",
        "design_system_id": "linear",
        "design_md": {"filename": "DESIGN.md", "content": "# Brand"},
        "something_new": {"ignored": True},
    }
    assert validate_request(body) == []
    for host in ("youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com"):
        style = f"http://{host}/watch?v=1"
        assert validate_request({"prompt": "p", "style_reference_url": style}) == []


# --- auth, ownership, credits, conflicts ----------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer sk_live_123"}, {"Authorization": "motion_abc"}],
    ids=["missing", "wrong-prefix", "no-bearer"],
)
async def test_bad_keys_answer_401(base_url: str, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as http:
        for response in (
            await http.post("/sessions", json={"prompt": "p"}),
            await http.get("/sessions/whatever"),
        ):
            assert response.status_code == 401
            assert response.json()["error"] == "Invalid API key"
            assert response.json()["message"]


async def test_configured_keys_are_the_only_ones_accepted(clock: FakeClock) -> None:
    sandbox = MotionSandbox(clock=clock, api_keys={"motion_good"})
    url = await sandbox.start()
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            good = await http.post(
                "/sessions", json={"prompt": "p"}, headers={"Authorization": "Bearer motion_good"}
            )
            other = await http.post(
                "/sessions", json={"prompt": "p"}, headers={"Authorization": "Bearer motion_bad"}
            )
        assert (good.status_code, other.status_code) == (202, 401)
    finally:
        await sandbox.stop()


async def test_unknown_and_foreign_jobs_answer_404(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    job_id = await create(client)
    clock.advance(DONE)
    unknown = await client.get("/sessions/00000000-0000-4000-8000-000000000000")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "not_found", "message": "Job not found"}
    foreign = {"Authorization": f"Bearer {OTHER_KEY}"}
    assert (await client.get(f"/sessions/{job_id}", headers=foreign)).status_code == 404
    followup = await client.post(
        f"/sessions/{job_id}/followups", json={"prompt": "again"}, headers=foreign
    )
    assert followup.status_code == 404


async def test_insufficient_balance_answers_the_documented_402(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.set_balance(0)
    response = await client.post("/sessions", json={"prompt": "p"})
    assert response.status_code == 402
    assert response.json() == {
        "error": "insufficient_credits",
        "code": "insufficient_credits_minimum_kickoff_balance",
        "message": "Starting a new Mosaic Motion session requires at least 300 credits in your "
        "balance.",
        "minimum_required_credits": 300,
        "current_balance": 0,
    }
    sandbox.set_balance(5, minimum=1)
    assert (await client.post("/sessions", json={"prompt": "p"})).status_code == 202
    sandbox.set_balance(None)
    assert (await client.post("/sessions", json={"prompt": "p"})).status_code == 202


async def test_followup_while_running_answers_409(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    job_id = await create(client)
    clock.advance(5)
    response = await client.post(f"/sessions/{job_id}/followups", json={"prompt": "again"})
    assert response.status_code == 409
    assert response.json() == {
        "error": "followup_requires_completed_job",
        "message": "Followups can only be created for completed Mosaic Motion jobs.",
        "status": "running",
    }


async def test_followup_on_a_failed_job_answers_409(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox, clock: FakeClock
) -> None:
    sandbox.plan_next(JobPlan(fail_error="boom"))
    job_id = await create(client)
    clock.advance(DONE)
    response = await client.post(f"/sessions/{job_id}/followups", json={"prompt": "again"})
    assert response.status_code == 409
    assert response.json()["status"] == "failed"


# --- followups ------------------------------------------------------------------------------


async def test_followup_after_completion_runs_again_with_a_new_url(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox, clock: FakeClock
) -> None:
    job_id = await create(client)
    clock.advance(DONE)
    first = await status(client, job_id)
    response = await client.post(f"/sessions/{job_id}/followups", json={"prompt": "shorter"})
    assert response.status_code == 202
    assert response.json() == {
        "job_id": job_id,
        "status": "queued",
        "status_url": f"/api/motion/sessions/{job_id}",
    }
    rerun = await status(client, job_id)
    assert rerun["status"] == "queued"
    assert rerun["completed_at"] is None
    assert rerun["created_at"] == first["created_at"]
    clock.advance(DONE)
    second = await status(client, job_id)
    assert second["status"] == "completed"
    assert second["completed_at"] > first["completed_at"]
    assert "/run-2.mp4?" in second["output"]["download_url"]
    assert second["output"]["download_url"] != first["output"]["download_url"]
    assert sandbox.followups == [{"prompt": "shorter"}]
    assert sandbox.job(job_id).runs == 2


async def test_followups_consume_queued_plans_in_order(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox, clock: FakeClock
) -> None:
    sandbox.plan_next(JobPlan(running_s=1), JobPlan(fail_error="second run failed"))
    job_id = await create(client)
    clock.advance(DONE)
    await client.post(f"/sessions/{job_id}/followups", json={"prompt": "again"})
    clock.advance(DONE)
    body = await status(client, job_id)
    assert (body["status"], body["error"]) == ("failed", "second run failed")


@pytest.mark.parametrize("where", ["sandbox", "plan"])
async def test_stale_polls_repeat_the_previous_body_after_a_followup(
    clock: FakeClock, where: str
) -> None:
    sandbox = ScriptedSandbox(clock=clock, default_plan=FAST, stale_polls=2 * (where == "sandbox"))
    url = await sandbox.start()
    try:
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {KEY}"}
        ) as http:
            job_id = await create(http)
            clock.advance(DONE)
            before = await status(http, job_id)
            if where == "plan":
                sandbox.plan_next(dataclasses.replace(FAST, stale_polls=2))
            await http.post(f"/sessions/{job_id}/followups", json={"prompt": "again"})
            clock.advance(0.5)
            stale = [await status(http, job_id) for _ in range(2)]
            fresh = await status(http, job_id)
    finally:
        await sandbox.stop()
    assert stale == [before, before]
    assert fresh["status"] == "queued" and fresh["completed_at"] is None


# --- faults ----------------------------------------------------------------------------------


async def test_rate_limit_fault_answers_429_with_retry_after_then_recovers(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault_rate_limited("create", retry_after=2)
    limited = await client.post("/sessions", json={"prompt": "p"})
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert sandbox.job_ids == []
    assert (await client.post("/sessions", json={"prompt": "p"})).status_code == 202
    assert [call.status for call in sandbox.calls] == [429, 202]


async def test_html_502_fault_is_not_json(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox
) -> None:
    job_id = await create(client)
    sandbox.fault_html_502("status", times=2)
    for _ in range(2):
        response = await client.get(f"/sessions/{job_id}")
        assert response.status_code == 502
        assert response.headers["Content-Type"].startswith("text/html")
        assert response.text == HTML_502
    assert (await client.get(f"/sessions/{job_id}")).status_code == 200
    assert sandbox.count("status") == 3


async def test_fault_with_custom_status_and_json_body(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault("create", status=500, body='{"error": "internal"}')
    response = await client.post("/sessions", json={"prompt": "p"})
    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"error": "internal"}


async def test_delay_fault_answers_late(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault("create", delay=0.2)
    started = time.perf_counter()
    response = await client.post("/sessions", json={"prompt": "p"})
    assert response.status_code == 202
    assert time.perf_counter() - started >= 0.2


async def test_delayed_request_whose_client_gave_up_is_never_processed(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault("create", delay=0.15)
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/sessions", json={"prompt": "p"}, timeout=0.05)
    await asyncio.sleep(0.2)  # the handler sleeps out its delay, then finds the client gone
    assert sandbox.count("create") == 1
    assert sandbox.job_ids == []
    assert sandbox.calls[-1].status == 0


async def test_dropped_answer_after_processing_still_creates_the_job(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault("create", after_processing=True, drop=True)
    with pytest.raises(httpx.TransportError):
        await client.post("/sessions", json={"prompt": "lost answer"})
    assert len(sandbox.job_ids) == 1
    assert sandbox.creates == [{"prompt": "lost answer"}]
    call = sandbox.calls[-1]
    assert (call.status, call.accepted, call.job_id) == (0, True, sandbox.job_ids[0])
    assert (await client.post("/sessions", json={"prompt": "p"})).status_code == 202


async def test_drop_without_processing_creates_nothing(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox
) -> None:
    sandbox.fault("create", drop=True)
    with pytest.raises(httpx.TransportError):
        await client.post("/sessions", json={"prompt": "p"})
    assert sandbox.job_ids == []
    assert sandbox.count("create") == 1


async def test_after_processing_fault_replaces_a_successful_followup_answer(
    client: httpx.AsyncClient, sandbox: ScriptedSandbox, clock: FakeClock
) -> None:
    job_id = await create(client)
    clock.advance(DONE)
    sandbox.fault("followup", status=504, after_processing=True)
    response = await client.post(f"/sessions/{job_id}/followups", json={"prompt": "again"})
    assert response.status_code == 504
    assert sandbox.job(job_id).runs == 2
    assert (await status(client, job_id))["status"] == "queued"


def test_fault_rejects_an_unknown_endpoint(sandbox: ScriptedSandbox) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        sandbox.fault("download", status=500)


# --- running ----------------------------------------------------------------------------------


def test_sandbox_thread_serves_from_its_own_loop_and_stops_cleanly() -> None:
    sandbox = ScriptedSandbox(
        default_plan=JobPlan(queued_s=0, created_s=0, running_s=0, render_s=0)
    )
    with SandboxThread(sandbox) as base_url:
        root = base_url.removesuffix("/api/motion")
        with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as http:
            assert http.get(f"{root}/healthz").json() == {"ok": True}
            job_id = http.post(f"{base_url}/sessions", json={"prompt": "p"}).json()["job_id"]
            body = http.get(f"{base_url}/sessions/{job_id}").json()
    assert body["output"]["status"] == "completed"
    assert sandbox.count("create") == 1
    with httpx.Client() as http, pytest.raises(httpx.ConnectError):
        http.get(f"{root}/healthz")


async def test_sandbox_thread_is_scriptable_from_another_loop_and_stops_mid_request() -> None:
    sandbox = ScriptedSandbox(
        default_plan=JobPlan(queued_s=0, created_s=0, running_s=0, render_s=0)
    )
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(headers=headers, timeout=5) as http:
        with SandboxThread(sandbox) as base_url:
            sandbox.fault_rate_limited("create", retry_after=0.5)
            limited = await http.post(f"{base_url}/sessions", json={"prompt": "p"})
            assert limited.headers["Retry-After"] == "0.5"
            job_id = await create(http, base_url)
            sandbox.fault("status", delay=10)
            slow = asyncio.create_task(http.get(f"{base_url}/sessions/{job_id}"))
            await asyncio.sleep(0.1)
            started = time.perf_counter()
        assert time.perf_counter() - started < 2
        with pytest.raises(httpx.TransportError):
            await slow
