"""The metrics' pure parts, without a socket: outcomes as labels, the bearer check, the families
in a registry of each app's own, and the snapshot read from a store on a file."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator

import pytest
from aiohttp.test_utils import make_mocked_request
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.metrics import Metrics, bearer_matches
from bot.motion.client import outcome_of as motion_outcome
from bot.slack.out import outcome_of as slack_outcome
from bot.store import Store
from tests.unit.test_store import new_job

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = Store(database_url)
    yield opened
    opened.close()


def scraped(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "2xx"), (201, "2xx"), (400, "4xx_400"), (404, "4xx_404"), (429, "429"),
     (499, "4xx_499"), (500, "5xx"), (503, "5xx"), (302, "error"), (101, "error")],
)  # fmt: skip
def test_a_motion_status_is_an_outcome_from_a_short_list(status: int, outcome: str) -> None:
    assert motion_outcome(status) == outcome


def slack_error(status: int, error: str) -> SlackApiError:
    response = AsyncSlackResponse(
        client=None,
        http_verb="POST",
        api_url="https://slack.example/api/chat.postMessage",
        req_args={},
        data={"ok": False, "error": error},
        headers={},
        status_code=status,
    )
    return SlackApiError("failed", response)


@pytest.mark.parametrize(
    ("status", "error", "outcome"),
    [(429, "ratelimited", "429"), (503, "service_unavailable", "5xx"),
     (200, "channel_not_found", "error_permanent"), (200, "internal_error", "error_retryable"),
     (200, "a_code_nobody_has_seen_" + "x" * 40, "error_retryable")],
)  # fmt: skip
def test_a_slack_error_is_a_class_never_its_code(status: int, error: str, outcome: str) -> None:
    assert slack_outcome(slack_error(status, error)) == outcome


@pytest.mark.parametrize(
    ("header", "matches"),
    [(f"Bearer {TOKEN}", True), (f"bearer {TOKEN}", True), (f"Bearer  {TOKEN} ", True),
     (f"Bearer {TOKEN}x", False), (f"Bearer {TOKEN[:-1]}", False), (f"Basic {TOKEN}", False),
     (TOKEN, False), ("Bearer ", False), ("", False), ("Bearer é" + TOKEN, False)],
)  # fmt: skip
def test_only_the_configured_bearer_token_matches(header: str, matches: bool) -> None:
    headers = {"Authorization": header} if header else {}
    request = make_mocked_request("GET", "/metrics", headers=headers)
    assert bearer_matches(request, hashlib.sha256(TOKEN.encode()).digest()) is matches


def test_observers_move_their_families_and_two_apps_never_share_one(store: Store) -> None:
    first, second = Metrics(store), Metrics(store)
    first.motion_call("status", "2xx")
    first.motion_call("status", "2xx")
    first.motion_call("create", "4xx_402")
    first.slack_call("chat.postMessage", "429")
    first.poll_lag(0.2)
    first.poll_lag(-0.01)  # a job claimed a hair before its due time counts as on time
    first.ack(0.03)
    first.leases_taken_over(2)
    first.upload("uploaded")
    first.run_refused("user_day")
    first.run_ended("done")
    one, two = scraped(first), scraped(second)
    assert one[("motion_api_calls_total", (("kind", "status"), ("outcome", "2xx")))] == 2
    assert one[("motion_api_calls_total", (("kind", "create"), ("outcome", "4xx_402")))] == 1
    assert one[("slack_api_calls_total", (("method", "chat.postMessage"), ("outcome", "429")))] == 1
    assert one[("motion_poll_lag_seconds_count", ())] == 2
    assert one[("motion_poll_lag_seconds_bucket", (("le", "0.01"),))] == 1
    assert one[("motion_ack_seconds_count", ())] == 1
    assert one[("motion_leases_taken_over_total", ())] == 2
    assert one[("motion_uploads_total", (("outcome", "uploaded"),))] == 1
    assert one[("motion_runs_refused_total", (("reason", "user_day"),))] == 1
    assert one[("motion_runs_ended_total", (("outcome", "done"),))] == 1
    assert two[("motion_api_calls_total", (("kind", "status"), ("outcome", "2xx")))] == 0
    assert two[("motion_leases_taken_over_total", ())] == 0


def test_known_outcomes_show_at_zero_before_anything_happens(store: Store) -> None:
    values = scraped(Metrics(store))
    assert values[("motion_api_calls_total", (("kind", "followup"), ("outcome", "5xx")))] == 0
    assert values[("motion_uploads_total", (("outcome", "failed"),))] == 0
    assert values[("motion_runs_refused_total", (("reason", "channel"),))] == 0


def test_store_families_come_from_the_snapshot_never_from_a_scrape(store: Store) -> None:
    metrics = Metrics(store)
    metrics.jobs_held = lambda: 3
    before = scraped(metrics)
    assert ("motion_jobs", (("state", "open"),)) not in before  # no snapshot yet: absent
    assert before[("motion_jobs_held", ())] == 3
    new_job(store)
    assert asyncio.run(metrics.refresh()) is not None
    after = scraped(metrics)
    assert after[("motion_jobs", (("state", "open"),))] == 1
    assert after[("motion_jobs", (("state", "abandoned"),))] == 0
    assert after[("motion_outbox_waiting", ())] == 0
    assert after[("motion_outbox_oldest_waiting_seconds", ())] == 0
    new_job(store, channel="C2")
    assert scraped(metrics)[("motion_jobs", (("state", "open"),))] == 1  # until the next refresh


def test_a_store_that_cannot_be_read_leaves_its_families_without_samples(store: Store) -> None:
    metrics = Metrics(store)
    asyncio.run(metrics.refresh())
    store.close()
    assert asyncio.run(metrics.refresh()) is None
    assert ("motion_jobs", (("state", "open"),)) not in scraped(metrics)
