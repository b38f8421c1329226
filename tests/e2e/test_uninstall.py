"""Uninstall: `app_uninstalled` and `tokens_revoked` (alone, together, in either order) forget a
workspace with live jobs, finished jobs, a waiting followup and usage: nothing with its id
stays in any table, not a byte of its prompts in the SQLite file or its WAL, its jobs are no
longer polled, a late delivery gets a 2xx and does nothing, and the other workspace's job goes on
unharmed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.links import FILE_TOKEN_SECONDS, signer_for
from bot.local import payloads
from bot.sandbox import JobPlan
from bot.slack.ids import ActionId
from tests.conftest import ON_POSTGRES
from tests.e2e.test_e2e_video import start_public
from tests.e2e.test_workspace_bounds import command_as, event_as, press
from tests.support.e2e import results, run_command, settle
from tests.support.harness import FAST_PLAN, SIGNING_SECRET, TEAM, Harness, until
from tests.unit.test_forget_workspace import rows_naming

A, B = TEAM, "T0OTHER"
A_WORDS = ("Aardvark", "okapi", "ibex")  # only ever in workspace A's prompts
LONG = JobPlan(**{**FAST_PLAN.__dict__, "running_s": 60.0})
B_PLAN = JobPlan(**{**FAST_PLAN.__dict__, "running_s": 2.5})
# B's job only posts its result, edits its card and reacts: anything else came from A's deliveries.
NEVER_FOR_B = ("chat.postEphemeral", "views.open", "views.publish", "files.info")


async def workspace_a_and_b(harness: Harness) -> dict[str, Any]:
    """A with a finished job, a live one with a waiting followup, usage and handled events;
    B with a job still running."""
    harness.sandbox.plan_next(FAST_PLAN, LONG, B_PLAN)
    done = await run_command(harness, "an Aardvark at dawn")
    await until(lambda: results(harness, done["ts"]), what="A's finished job")
    live = await run_command(harness, "an okapi in the rain, slowly")
    store = harness.bot.store
    [live_job, _] = store.recent_jobs(A, "U0ALICE")
    await until(lambda: (store.job(live_job.id) or live_job).motion_job_id, what="A's live job")
    await harness.event(harness.reply_event(live["ts"], "<@U0BOT> add an ibex"))
    await until(
        lambda: [r.state for r in store.runs(live_job.id)] == ["running", "waiting"],
        what="A's waiting followup",
    )
    assert "Starting your video" in await command_as(harness, B, "a heron, for the other team")
    await until(lambda: store.recent_jobs(B, "U0ALICE"), what="B's job")
    [b_job] = store.recent_jobs(B, "U0ALICE")
    await until(lambda: (store.job(b_job.id) or b_job).motion_job_id, what="B's job in Motion")
    motion_job = store.job(live_job.id).motion_job_id  # type: ignore[union-attr]
    return {"live": live, "motion_job": motion_job, "b_job": b_job.id}


async def forget(harness: Harness, *kinds: str) -> None:
    for n, kind in enumerate(kinds):
        event = (
            payloads.app_uninstalled()
            if kind == "app_uninstalled"
            else payloads.tokens_revoked(bot=["U0BOT"], oauth=["U0ALICE"])
        )
        await event_as(harness, A, event, f"Ev0FORGET{n}")


def on_disk(harness: Harness) -> bytes:
    path = Path(harness.bot.store.path.removeprefix("sqlite:///"))
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


@pytest.mark.parametrize(
    "kinds",
    [
        ("app_uninstalled",),
        ("tokens_revoked",),
        ("app_uninstalled", "tokens_revoked"),
        ("tokens_revoked", "app_uninstalled"),
    ],
)
async def test_an_uninstalled_workspace_is_forgotten_everywhere_and_the_other_goes_on(
    harness: Harness, kinds: tuple[str, ...]
) -> None:
    public = await start_public(harness)
    a = await workspace_a_and_b(harness)
    store = harness.bot.store
    assert rows_naming(store, A) and rows_naming(store, "okapi")

    await forget(harness, *kinds)

    assert rows_naming(store, A) == []
    for word in A_WORDS:
        assert rows_naming(store, word) == [], word
    if not ON_POSTGRES:
        raw = on_disk(harness)
        assert not [w for w in A_WORDS if w.encode() in raw]
        assert A.encode() not in raw
    # Polling stopped: no more status calls for A's job, however long we wait.
    status_calls = [c for c in harness.sandbox.calls_to("status") if c.job_id == a["motion_job"]]
    harness.slack.reset_calls()
    cards = len(harness.cards())

    # Late deliveries for A: a 2xx each, and nothing done.
    assert await command_as(harness, A, "an Aardvark, late") == ""
    await event_as(harness, A, harness.reply_event(a["live"]["ts"], "<@U0BOT> more"), "Ev0LATE")
    response = await harness.action(ActionId.STOP_TRACKING, "1")
    assert response.status_code == 200
    signer = signer_for(SIGNING_SECRET, "")
    file_token = signer.sign("file", {"t": A, "f": "F0AAAA"}, ttl_seconds=FILE_TOKEN_SECONDS)
    assert (await harness.http.get(f"{public}/files/{file_token}")).status_code == 403

    # B's job goes on to its result meanwhile.
    b_job = store.job(a["b_job"])
    assert b_job is not None and b_job.thread_ts
    await until(lambda: results(harness, b_job.thread_ts or ""), what="B's result")
    await settle(1.0)
    assert [c for c in harness.sandbox.calls_to("status") if c.job_id == a["motion_job"]] == (
        status_calls
    )
    since = harness.slack.calls()
    assert not [c.method for c in since if a["live"]["ts"] in json.dumps(c.params)]
    assert not [c.method for c in since if c.method in NEVER_FOR_B]
    assert len(harness.cards()) == cards  # no card for the late command
    assert not [r for r in harness.slack.responses if r["tag"] == "action-U0ALICE"]
    assert rows_naming(store, A) == [] and store.recent_jobs(A, "U0ALICE") == []
    assert store.recent_jobs(B, "U0ALICE")[0].id == a["b_job"]


async def test_tokens_revoked_for_people_only_keeps_the_workspace(harness: Harness) -> None:
    await harness.start()
    card = await run_command(harness, "an Aardvark that stays")
    await until(lambda: results(harness, card["ts"]), what="A's result")
    await event_as(harness, A, payloads.tokens_revoked(oauth=["U0ALICE"]), "Ev0PEOPLE")
    await settle()
    assert [j.prompt for j in harness.bot.store.recent_jobs(A, "U0ALICE")] == [
        "an Aardvark that stays"
    ]
    assert harness.bot.store.forgotten_digests(1e12 - 1e11) == frozenset()
    assert "Starting your video" in await command_as(harness, A, "another one")


async def test_a_forgotten_workspace_is_dropped_and_another_is_served(harness: Harness) -> None:
    """An uninstall with nothing stored yet still drops the workspace's late requests (for an
    hour, or until it installs the app again); another workspace's are served as ever."""
    await harness.start()
    await event_as(harness, A, payloads.app_uninstalled(), "Ev0GONE")
    assert await command_as(harness, A, "an Aardvark") == ""
    [press_answer] = await press(harness, ActionId.STOP_TRACKING, "1", team=B)
    assert "gone" in json.dumps(press_answer)  # B is served as ever


async def test_one_workspace_reinstalled_and_restarted_is_served_again(harness: Harness) -> None:
    """One workspace: Slack says nothing when the app is added back; its operator restarts the
    app with the new token. The forgetting holds until then (a late command does nothing), and
    after the restart the workspace is served at once, not an hour later."""
    bot = await harness.start()
    await event_as(harness, A, payloads.app_uninstalled(), "Ev0GONE")
    assert await command_as(harness, A, "an Aardvark") == ""
    assert harness.bot.store.recent_jobs(A, "U0ALICE") == []
    await harness.stop(bot)
    await harness.start()
    assert "Starting your video" in await command_as(harness, A, "an okapi, back again")
    await until(lambda: harness.bot.store.recent_jobs(A, "U0ALICE"), what="A's job again")
