"""Each workspace's settings apply to its own work: the service asks its settings source with the
job's or the request's team_id, never one set of values for all. Listener callbacks are called
as Bolt would call them, with the real service over a real store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from slack_bolt.async_app import AsyncBoltContext

from bot.jobs import JobService, SpendPolicy, WorkspaceSettings
from bot.listeners import commands, events
from bot.listeners.context import SERVICE_KEY
from bot.motion import MotionClient
from bot.schedule import PollSchedule
from bot.slack.out import SlackOut, make_client
from bot.store import JobState, RunKind, Store
from tests.support.harness import BOT_TOKEN
from tests.support.slack import SlackDouble

NOW = 1_763_000_000.0
STRICT, RELAXED = "T0STRICT", "T0RELAXED"


@dataclass(frozen=True)
class ByTeam:
    """Settings kept per workspace, as an installation store would keep them."""

    teams: dict[str, WorkspaceSettings] = field(default_factory=dict)

    def for_team(self, team_id: str) -> WorkspaceSettings:
        return self.teams.get(team_id, WorkspaceSettings())


class Acks:
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def __call__(self, **kwargs: object) -> None:
        self.texts.append(str(kwargs.get("text", "")))


@pytest.fixture
async def service(database_url: str, slack: SlackDouble) -> AsyncIterator[JobService]:
    strict = WorkspaceSettings(
        followup_requires_mention=True,
        spend=SpendPolicy(allowed_channels=("C0VIDEOS",), admins=frozenset({"U0ADMIN"})),
    )
    relaxed = WorkspaceSettings(spend=SpendPolicy(confirm=True))
    store = Store(database_url)
    motion = MotionClient("http://127.0.0.1:9", "motion_unused")  # never called here
    built = JobService(
        store, motion, SlackOut(make_client(BOT_TOKEN, slack.base_url, retry_writes=False)),
        schedule=PollSchedule(3.0, 30.0), sandbox=False, clock=lambda: NOW,
        workspaces=ByTeam({STRICT: strict, RELAXED: relaxed}),
    )  # fmt: skip
    yield built
    await built.drain_background(2)
    await motion.aclose()
    store.close()


def context(service: JobService) -> AsyncBoltContext:
    return AsyncBoltContext({SERVICE_KEY: service, "bot_user_id": "U0BOT"})


def command(team_id: str, text: str) -> dict[str, str]:
    return {
        "team_id": team_id, "channel_id": "C0PUBLIC", "user_id": "U0ALICE", "text": text,
        "response_url": "http://127.0.0.1:9/never-used",
    }  # fmt: skip


def open_job(service: JobService, team_id: str, thread_ts: str) -> int:
    job_id, _ = service.store.create_job(
        team_id=team_id, channel_id="C0PUBLIC", requester="U0ALICE", response_url=None,
        request={"prompt": "a fox"}, sandbox=False, now=NOW,
    )  # fmt: skip
    service.store.record_card(job_id, thread_ts, "C0PUBLIC", "new", "d", NOW)
    return job_id


async def test_a_channel_one_workspace_allows_is_refused_only_where_it_is_not_allowed(
    service: JobService,
) -> None:
    strict, relaxed, plain = Acks(), Acks(), Acks()
    await commands.motion_command(strict, command(STRICT, "a fox"), context(service))
    await commands.motion_command(relaxed, command(RELAXED, "a fox"), context(service))
    await commands.motion_command(plain, command("T0OTHER", "a fox"), context(service))
    assert "can't be started in this channel" in strict.texts[0]
    assert "Start" in relaxed.texts[0] and "Starting your video" not in relaxed.texts[0]
    assert "Starting your video" in plain.texts[0]
    assert service.store.recent_jobs(STRICT, "U0ALICE") == []
    assert service.store.recent_jobs(RELAXED, "U0ALICE") == []  # a preview records no job
    [job] = service.store.recent_jobs("T0OTHER", "U0ALICE")
    assert job.state == JobState.NEW


async def test_an_admin_of_one_workspace_is_no_admin_of_another(service: JobService) -> None:
    assert "Everyone's runs" in str(service.usage_report(STRICT, "U0ADMIN").blocks)
    assert "Everyone's runs" not in str(service.usage_report(RELAXED, "U0ADMIN").blocks)
    relaxed_job = open_job(service, RELAXED, "1763000000.000100")
    said = service.stop_tracking(RELAXED, str(relaxed_job), "U0ADMIN", None, None)
    assert said is not None and "Only" in said.text
    strict_job = open_job(service, STRICT, "1763000000.000200")
    assert service.stop_tracking(STRICT, str(strict_job), "U0ADMIN", None, None) is None
    assert [j.state for j in map(service.store.job, (relaxed_job, strict_job)) if j] == [
        JobState.OPEN,
        JobState.STOPPED,
    ]


async def test_followups_need_a_mention_only_in_the_workspace_that_asks_for_it(
    service: JobService,
) -> None:
    strict_job = open_job(service, STRICT, "1763000000.000100")
    other_job = open_job(service, "T0OTHER", "1763000000.000200")
    for n, (team, thread) in enumerate(
        ((STRICT, "1763000000.000100"), ("T0OTHER", "1763000000.000200"))
    ):
        reply = {
            "type": "message", "channel": "C0PUBLIC", "user": "U0BOB", "text": "warmer",
            "ts": f"1763000100.00010{n}", "thread_ts": thread,
        }  # fmt: skip
        body = {"event_id": f"Ev000{n}", "team_id": team}
        await events.on_reply(reply, body, context(service))

    def followups(job_id: int) -> int:
        return sum(1 for r in service.store.runs(job_id) if r.kind == RunKind.FOLLOWUP)

    assert (followups(strict_job), followups(other_job)) == (0, 1)
