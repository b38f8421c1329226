"""The whole loop through signed HTTP requests: /motion → card → Motion job → result in thread."""

from __future__ import annotations

import time

from tests.support.harness import Harness, until


async def test_command_runs_the_whole_loop_to_a_result_in_the_thread(harness: Harness) -> None:
    await harness.start()
    started = time.monotonic()
    response = await harness.command("a teaser for our spring sale --aspect 9:16")
    ack_seconds = time.monotonic() - started
    assert response.status_code == 200
    assert ack_seconds < 3.0
    assert "card will appear in this channel" in response.text

    card = (await until(lambda: harness.cards(), what="the job card"))[0]
    results = await until(
        lambda: [m for m in harness.bot_replies(card["ts"]) if "is ready" in m["text"]],
        what="the result reply",
    )
    assert len(results) == 1
    assert harness.sandbox.count("create") == 1
    assert harness.sandbox.creates[0] == {
        "prompt": "a teaser for our spring sale",
        "aspect_ratio": "9:16",
    }
    result = results[0]
    assert "<@U0ALICE>" in result["text"]
    assert f"{harness.sandbox.download_base}/" in result["text"]
    await until(
        lambda: "Done" in harness.slack.message("C0PUBLIC", card["ts"])["text"], what="card done"
    )


async def test_a_run_teaches_the_schedule_its_render_time_once(harness: Harness) -> None:
    """The time from Motion's `completed_at` to the link is kept (run_history's "(render)"
    bucket, so a restart has it) and taught to the schedule, once per run."""
    from bot.sandbox import JobPlan
    from bot.schedule import RENDER

    harness.sandbox.plan_next(JobPlan(queued_s=0.05, created_s=0.05, running_s=0.3, render_s=1.0))
    bot = await harness.start()
    await harness.command("a render that takes a second")
    card = (await until(lambda: harness.cards(), what="the job card"))[0]
    await until(
        lambda: [m for m in harness.bot_replies(card["ts"]) if "is ready" in m["text"]],
        what="the result reply",
    )
    renders = [s for bucket, s in bot.store.generation_times() if bucket == RENDER]
    assert len(renders) == 1
    # Looks are at most POLL_MAX_SECONDS (0.2 s) apart here: the middle of the last window.
    assert 0.85 <= renders[0] <= 1.25
    assert list(bot.service.ctx.schedule._renders) == renders


async def test_a_render_seen_across_a_restart_is_not_learned(harness: Harness) -> None:
    """Across a restart the link's window is as long as the outage: too loose to learn from."""
    import asyncio

    from bot.sandbox import JobPlan
    from bot.schedule import RENDER

    harness.sandbox.plan_next(JobPlan(queued_s=0.05, created_s=0.05, running_s=0.3, render_s=1.5))
    first = await harness.start()
    await harness.command("a render the app sleeps through")
    card = (await until(lambda: harness.cards(), what="the job card"))[0]
    await until(  # seen completed (its generation learned): the file is rendering now
        lambda: [b for b, _ in first.store.generation_times() if b != RENDER],
        what="the run seen rendering",
    )
    await harness.stop(first)
    await asyncio.sleep(1.8)  # the link appears meanwhile
    second = await harness.start()
    await until(
        lambda: [m for m in harness.bot_replies(card["ts"]) if "is ready" in m["text"]],
        what="the result reply",
    )
    assert [s for b, s in second.store.generation_times() if b == RENDER] == []
    assert list(second.service.ctx.schedule._renders) == []
