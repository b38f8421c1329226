"""`/metrics` scraped from the real app over real sockets, both ways it can be served (METRICS_PORT:
a listener of its own; METRICS_TOKEN: on PORT behind a bearer token, 404 otherwise), parsed with
prometheus_client's own text parser, and its values moving as jobs run, fail and are refused."""

from __future__ import annotations

import json
import time

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bot.app import MotionBot
from bot.sandbox import JobPlan
from bot.store import LEASE_SECONDS, Store
from tests.support.e2e import results, run_command, settle
from tests.support.harness import BOT_TOKEN, FAST_PLAN, MOTION_KEY, SIGNING_SECRET, Harness, until

TOKEN = "metrics-token-0123456789abcdef"
NEVER = JobPlan(queued_s=0.05, created_s=0.05, running_s=3600, render_s=1)
# Every family the docs list (docs/operations.md), by the name the parser gives it.
FAMILIES = {
    "motion_jobs": "gauge",
    "motion_jobs_held": "gauge",
    "motion_poll_lag_seconds": "histogram",
    "motion_api_calls": "counter",
    "slack_api_calls": "counter",
    "motion_outbox_waiting": "gauge",
    "motion_outbox_oldest_waiting_seconds": "gauge",
    "motion_ack_seconds": "histogram",
    "motion_leases_taken_over": "counter",
    "motion_uploads": "counter",
    "motion_runs_refused": "counter",
    "motion_runs_ended": "counter",
}


class Scrape:
    """One answer of /metrics, parsed by prometheus_client's parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def samples(self, family: str) -> list[Sample]:
        return self.families[family].samples

    def value(self, sample: str, **labels: str) -> float:
        """The sample named `sample` with exactly these labels; 0 when there is none yet."""
        for family in self.families.values():
            for found in family.samples:
                if found.name == sample and found.labels == labels:
                    return float(found.value)
        return 0.0


async def scrape_port(h: Harness, bot: MotionBot, token: str | None = TOKEN) -> Scrape:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = await h.http.get(f"http://127.0.0.1:{bot.port}/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return Scrape(answer.text)


async def scrape_until(
    h: Harness, bot: MotionBot, sample: str, at_least: float, timeout: float = 10, **labels: str
) -> Scrape:
    """Scrape until `sample` reaches `at_least`: the doubles record a call before the app has
    its answer, and so before the app counts it."""
    deadline = time.monotonic() + timeout
    while True:
        scrape = await scrape_port(h, bot)
        if scrape.value(sample, **labels) >= at_least or time.monotonic() > deadline:
            return scrape
        await settle(0.05)


async def start_with_token(h: Harness, **env: str) -> MotionBot:
    return await h.start(METRICS_TOKEN=TOKEN, **env)


# ---------------------------------------------------------------- where it is served


async def test_metrics_are_off_by_default(harness: Harness) -> None:
    bot = await harness.start()
    assert bot.metrics is None and bot.metrics_port is None
    answer = await harness.http.get(f"http://127.0.0.1:{bot.port}/metrics")
    assert answer.status_code == 404


async def test_metrics_port_serves_every_family_on_a_listener_of_its_own(
    harness: Harness,
) -> None:
    bot = await harness.start(METRICS_PORT="0")
    assert bot.metrics_port is not None and bot.metrics_port != bot.port
    answer = await harness.http.get(f"http://127.0.0.1:{bot.metrics_port}/metrics")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    scrape = Scrape(answer.text)
    assert {name: scrape.families[name].type for name in FAMILIES} == FAMILIES
    assert scrape.value("motion_jobs", state="open") == 0  # every state, from the start
    assert scrape.value("motion_outbox_waiting") == 0
    assert "process_cpu_seconds" in scrape.families  # the process itself
    # Not on PORT: without METRICS_TOKEN it does not exist there.
    on_port = await harness.http.get(f"http://127.0.0.1:{bot.port}/metrics")
    assert on_port.status_code == 404
    other = await harness.http.get(f"http://127.0.0.1:{bot.metrics_port}/slack/events")
    assert other.status_code == 404  # the listener serves /metrics and nothing else


async def test_metrics_token_serves_metrics_on_port_only_to_the_right_bearer(
    harness: Harness,
) -> None:
    bot = await start_with_token(harness)
    url = f"http://127.0.0.1:{bot.port}/metrics"
    scrape = await scrape_port(harness, bot)
    assert {name: scrape.families[name].type for name in FAMILIES} == FAMILIES
    unknown = await harness.http.get(f"http://127.0.0.1:{bot.port}/no-such-path")
    refused = {
        "missing": await harness.http.get(url),
        "wrong": await harness.http.get(url, headers={"Authorization": "Bearer " + "x" * 30}),
        "a prefix": await harness.http.get(url, headers={"Authorization": f"Bearer {TOKEN[:-1]}"}),
        "another scheme": await harness.http.get(url, headers={"Authorization": f"Basic {TOKEN}"}),
        "POST": await harness.http.post(url, headers={"Authorization": f"Bearer {TOKEN}"}),
    }
    for why, answer in refused.items():
        # exactly what a path that does not exist gets: nothing hints that /metrics is there
        assert answer.status_code == 404, why
        assert answer.text == unknown.text, why
        assert answer.headers["Content-Type"] == unknown.headers["Content-Type"], why
        assert "metrics" not in answer.text.lower() and "www-authenticate" not in answer.headers


async def test_in_socket_mode_the_token_opens_port_for_metrics_and_acks_are_timed(
    harness: Harness,
) -> None:
    """Socket Mode has no port of its own; with METRICS_TOKEN, PORT is opened for /metrics
    (never for /slack/events), and each request's ack over the socket is timed."""
    bot = await start_with_token(harness, SLACK_APP_TOKEN="xapp-test", SLACK_SIGNING_SECRET="")
    await until(harness.slack.socket_connected, timeout=5, what="the Socket Mode connection")
    before = await scrape_port(harness, bot)
    fields = dict(harness.command_fields("a teaser"))
    envelope_id = harness.slack.socket_send("slash_commands", fields)
    assert await harness.slack.socket_ack_async(envelope_id, timeout=3) is not None
    acks = before.value("motion_ack_seconds_count") + 1
    after = await scrape_until(harness, bot, "motion_ack_seconds_count", acks)  # told after
    assert after.value("motion_ack_seconds_count") == acks
    assert 0 < after.value("motion_ack_seconds_sum") < 3
    events = await harness.http.post(f"http://127.0.0.1:{bot.port}/slack/events")
    assert events.status_code == 404


# ---------------------------------------------------------------- values that move


async def test_values_move_as_a_job_runs(harness: Harness) -> None:
    bot = await start_with_token(harness)
    before = await scrape_port(harness, bot)
    card = await run_command(harness, "a teaser")
    await until(lambda: results(harness, card["ts"]), what="the result")
    await scrape_until(harness, bot, "motion_runs_ended_total", 1, outcome="done")
    posts = before.value("slack_api_calls_total", method="chat.postMessage", outcome="ok")
    await scrape_until(
        harness, bot, "slack_api_calls_total", posts + 2, method="chat.postMessage", outcome="ok"
    )  # the card and the result, their answers back
    assert bot.metrics is not None
    await bot.metrics.refresh()  # the snapshot, as its refresher takes it every few seconds
    after = await scrape_port(harness, bot)

    def grew(sample: str, **labels: str) -> float:
        return after.value(sample, **labels) - before.value(sample, **labels)

    assert grew("motion_api_calls_total", kind="create", outcome="2xx") == 1
    assert grew("motion_api_calls_total", kind="status", outcome="2xx") >= 2
    assert grew("motion_api_calls_total", kind="status", outcome="5xx") == 0
    assert grew("motion_ack_seconds_count") >= 1
    assert 0 < after.value("motion_ack_seconds_sum") < 3 * after.value("motion_ack_seconds_count")
    assert grew("motion_poll_lag_seconds_count") >= 2
    assert grew("slack_api_calls_total", method="chat.postMessage", outcome="ok") >= 2
    assert grew("slack_api_calls_total", method="chat.update", outcome="ok") >= 1
    assert grew("motion_runs_ended_total", outcome="done") == 1
    assert after.value("motion_jobs", state="open") == 1
    assert after.value("motion_jobs", state="new") == 0
    assert after.value("motion_outbox_waiting") == 0
    assert after.value("motion_outbox_oldest_waiting_seconds") == 0
    assert after.value("motion_jobs_held") >= 0


async def test_the_outbox_gauges_show_messages_slack_would_not_take(harness: Harness) -> None:
    bot = await start_with_token(harness)
    metrics = bot.metrics
    assert metrics is not None
    await run_command(harness, "a teaser")
    harness.slack.fail_next("chat.postMessage", error="internal_error", times=1000)
    waiting = 0.0
    deadline = time.monotonic() + 15
    while not waiting and time.monotonic() < deadline:
        await metrics.refresh()  # as its refresher does every few seconds
        waiting = (await scrape_port(harness, bot)).value("motion_outbox_waiting")
        await settle(0.05)
    assert waiting >= 1, "the result never waited in the outbox"
    first = (await scrape_port(harness, bot)).value("motion_outbox_oldest_waiting_seconds")
    await settle(0.5)
    later = await scrape_port(harness, bot)
    oldest = later.value("motion_outbox_oldest_waiting_seconds")
    assert first + 0.4 < oldest < 15  # it grows between refreshes, with no query
    refused = later.value(
        "slack_api_calls_total", method="chat.postMessage", outcome="error_retryable"
    )
    assert refused >= 1


async def test_motion_failures_are_counted_by_outcome(harness: Harness) -> None:
    bot = await start_with_token(harness)
    harness.sandbox.fault("status", status=503, body=json.dumps({"error": "unavailable"}))
    harness.sandbox.fault_rate_limited("status", retry_after=0.1)
    harness.sandbox.fault("status", status=418, body=json.dumps({"error": "teapot"}))
    card = await run_command(harness, "a teaser")
    await until(lambda: results(harness, card["ts"]), what="the result, after the failures")
    scrape = await scrape_port(harness, bot)
    assert scrape.value("motion_api_calls_total", kind="status", outcome="5xx") == 1
    assert scrape.value("motion_api_calls_total", kind="status", outcome="429") == 1
    assert scrape.value("motion_api_calls_total", kind="status", outcome="4xx_418") == 1
    assert scrape.value("motion_api_calls_total", kind="create", outcome="2xx") == 1


async def test_slack_429s_are_counted_and_so_is_the_retry_that_follows(harness: Harness) -> None:
    bot = await start_with_token(harness)
    harness.slack.fail_next("chat.postMessage", status=429, retry_after=1)
    card = await run_command(harness, "a teaser")
    await until(lambda: results(harness, card["ts"]), what="the result")
    scrape = await scrape_until(
        harness, bot, "slack_api_calls_total", 2, method="chat.postMessage", outcome="ok"
    )
    assert scrape.value("slack_api_calls_total", method="chat.postMessage", outcome="429") == 1
    assert scrape.value("slack_api_calls_total", method="chat.postMessage", outcome="ok") >= 2


async def test_runs_refused_by_the_spend_controls_are_counted_by_reason(harness: Harness) -> None:
    bot = await start_with_token(
        harness, MOTION_ALLOWED_CHANNELS="C0PUBLIC", MOTION_RUNS_PER_USER_PER_DAY="1"
    )
    assert (await harness.command("elsewhere", channel="C0ELSEWHERE")).status_code == 200
    await run_command(harness, "the one run of the day")
    assert (await harness.command("one too many")).status_code == 200
    scrape = await scrape_port(harness, bot)
    assert scrape.value("motion_runs_refused_total", reason="channel") == 1
    assert scrape.value("motion_runs_refused_total", reason="user_day") == 1
    assert scrape.value("motion_runs_refused_total", reason="workspace_month") == 0


async def test_a_video_upload_is_counted(harness: Harness) -> None:
    harness.sandbox.plan_next(JobPlan(**{**FAST_PLAN.__dict__, "video_bytes": 2_000}))
    bot = await start_with_token(harness, UPLOAD_MAX_MB="1")
    card = await run_command(harness, "a teaser")
    await until(lambda: results(harness, card["ts"]), what="the result")
    uploaded = await until(
        lambda: harness.slack.calls("files.completeUploadExternal"), what="the upload"
    )
    assert uploaded
    scrape = await scrape_until(harness, bot, "motion_uploads_total", 1, outcome="uploaded")
    assert scrape.value("motion_uploads_total", outcome="uploaded") == 1
    assert scrape.value("motion_uploads_total", outcome="failed") == 0


async def test_a_lease_taken_over_from_a_dead_instance_is_counted(harness: Harness) -> None:
    harness.sandbox.plan_next(NEVER)
    bot = await start_with_token(harness)
    await run_command(harness, "a slow teaser")
    await until(lambda: harness.sandbox.count("status") >= 1, what="a status call")
    [job] = bot.store.recent_jobs("T0001", "U0ALICE")
    assert (await scrape_port(harness, bot)).value("motion_leases_taken_over_total") == 0
    dead = Store(harness.env["DATABASE_URL"], instance="dead")
    try:  # another instance takes the job between two looks, then dies holding its lease
        await until(
            lambda: dead.claim_job(job.id, time.time() - LEASE_SECONDS + 0.3),
            what="the job between two looks",
        )
        polls = harness.sandbox.count("status")
        taken_over = 0.0
        deadline = time.monotonic() + 10
        while not taken_over and time.monotonic() < deadline:
            await settle(0.05)
            taken_over = (await scrape_port(harness, bot)).value("motion_leases_taken_over_total")
        assert taken_over == 1
        await until(lambda: harness.sandbox.count("status") > polls, what="a look after it")
    finally:
        dead.close()


# ---------------------------------------------------------------- what labels never hold


async def test_no_label_holds_a_person_a_prompt_a_channel_or_a_secret(harness: Harness) -> None:
    prompt, user, channel = "a zebra named Quixotic", "U0PRIVATE9", "C0SECRET7"
    harness.slack.add_user(user, name="pat")
    harness.slack.add_channel(channel, name="launch-plans")
    bot = await start_with_token(harness, MOTION_ALLOWED_CHANNELS=f"C0PUBLIC,{channel}")
    card = await run_command(harness, prompt, user=user, channel=channel)
    await until(lambda: results(harness, card["ts"], channel=channel), what="the result")
    await harness.command("refused here", channel="C0OTHER9", user=user)
    assert bot.metrics is not None
    await bot.metrics.refresh()
    scrape = await scrape_port(harness, bot)
    forbidden = [prompt, "Quixotic", user, channel, "C0OTHER9", "T0001", BOT_TOKEN]
    forbidden += [SIGNING_SECRET, MOTION_KEY, TOKEN, str(card["ts"])]
    values = {v for f in scrape.families.values() for s in f.samples for v in s.labels.values()}
    assert values, "no label at all: nothing was checked"
    assert [(v, f) for v in values for f in forbidden if f.lower() in v.lower()] == []
    assert [f for f in forbidden if f in scrape.text] == []
    names = {k for f in scrape.families.values() for s in f.samples for k in s.labels}
    assert names <= {"state", "kind", "outcome", "method", "reason", "le"}


async def test_two_apps_in_one_process_keep_their_own_counts(harness: Harness) -> None:
    first = await start_with_token(harness)
    await run_command(harness, "a teaser")
    await until(lambda: harness.sandbox.count("create") == 1, what="the create")
    await scrape_until(harness, first, "motion_api_calls_total", 1, kind="create", outcome="2xx")
    second = await start_with_token(harness)
    one, two = await scrape_port(harness, first), await scrape_port(harness, second)
    assert one.value("motion_api_calls_total", kind="create", outcome="2xx") == 1
    assert two.value("motion_api_calls_total", kind="create", outcome="2xx") == 0
