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
