"""Text crafted to make the parsing slow: every regex applied to what people type stays linear,
so one hostile message (Slack allows 40,000 characters) cannot hold the event loop, and the app
keeps acknowledging everyone else within Slack's 3 seconds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot.command_line import UsageError, parse_command, slack_to_plain, strip_mention
from bot.slack import messages
from tests.support.e2e import results, run_command
from tests.support.harness import Harness, until

SLACK_MAX_TEXT = 40_000  # the longest message text Slack delivers


def hostile(unit: str, length: int = SLACK_MAX_TEXT) -> str:
    return (unit * (length // len(unit) + 1))[:length]


# Each repeats an opening that a pattern starts matching and never closes.
HOSTILE_UNITS = ("<@UBOT|", "<@UBOT|x", "<@UBOT|<", "<#C1|", "<!here|", "<a|", "<|", "<", "|")


def fastest(work: Callable[[], Any], rounds: int = 3) -> float:
    """The best of a few timings: the least disturbed by a busy machine."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        with contextlib.suppress(UsageError):
            work()
        best = min(best, time.perf_counter() - started)
    return best


PARSERS: dict[str, Callable[[str], Any]] = {
    "strip_mention": lambda text: strip_mention(text, "UBOT"),
    "slack_to_plain": slack_to_plain,
    "parse_command": parse_command,
    "field_error": messages.field_error,
}


@pytest.mark.parametrize("unit", HOSTILE_UNITS)
@pytest.mark.parametrize("parser", PARSERS)
def test_a_hostile_message_is_parsed_in_bounded_linear_time(parser: str, unit: str) -> None:
    parse = PARSERS[parser]
    text = hostile(unit)
    once = fastest(lambda: parse(text))
    four_times = fastest(lambda: parse(hostile(unit, 4 * SLACK_MAX_TEXT)))
    assert once < 0.5, f"{parser} took {once:.2f} s on 40,000 characters of {unit!r}"
    # Linear: 4x the text, about 4x the time; quadratic would be 16x. Generous for a busy CPU
    # (and a floor, as a millisecond is mostly noise).
    assert four_times < 10 * max(once, 0.002), f"{parser}: {once:.4f} s then {four_times:.4f} s"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<@UBOT> make it blue", ("make it blue", True)),
        ("<@UBOT|motion> make it blue", ("make it blue", True)),
        ("make it <@UBOT>  blue", ("make it blue", True)),
        ("<@UBOT> <@UBOT|motion>", ("", True)),
        ("<@UOTHER> make it blue", ("<@UOTHER> make it blue", False)),
        ("<@UOTHER|bob> thanks <@UBOT|motion>", ("<@UOTHER|bob> thanks", True)),
        ("a &lt;b&gt; c <@UBOT>", ("a &lt;b&gt; c", True)),
        ("no mention here", ("no mention here", False)),
    ],
)
def test_mentions_are_stripped_as_before_on_what_slack_sends(
    text: str, expected: tuple[str, bool]
) -> None:
    assert strip_mention(text, "UBOT") == expected


def test_a_hostile_run_of_unclosed_mentions_is_left_as_text() -> None:
    text = hostile("<@UBOT|")
    assert strip_mention(text, "UBOT") == (text, False)
    assert strip_mention(text + "<@UBOT>", "UBOT") == (text, True)


# ---------------------------------------------------------------- through the app


def ephemerals(harness: Harness) -> list[dict[str, Any]]:
    return [c.params for c in harness.posts("chat.postEphemeral")]


async def test_hostile_replies_and_mentions_are_answered_and_a_command_right_after_is_acked(
    harness: Harness,
) -> None:
    await harness.start()
    card = await run_command(harness, "a product teaser")
    await until(lambda: results(harness, card["ts"]), what="the first result")
    # Slack delivers each as an `app_mention` and its `message` twin.
    in_thread, reply = harness.slack.mention(
        "C0PUBLIC", hostile("<@U0BOT|"), user="U0ALICE", thread_ts=card["ts"]
    )
    in_channel, _ = harness.slack.mention("C0PUBLIC", hostile("<@U0BOT|x"), user="U0ALICE")
    deliveries = [
        asyncio.create_task(harness.event(event)) for event in (in_thread, reply, in_channel)
    ]
    await asyncio.sleep(0.05)  # the hostile deliveries are being read

    started = time.monotonic()
    response = await harness.command("a second teaser")
    acked_in = time.monotonic() - started
    assert response.status_code == 200
    assert acked_in < 3.0, f"/motion was acknowledged after {acked_in:.1f} s"
    assert [r.status_code for r in await asyncio.gather(*deliveries)] == [200, 200, 200]

    # Answered: the reply (one answer for the message and its app_mention twin) and the mention.
    too_long = await until(
        lambda: [m for m in harness.bot_replies(card["ts"]) if "40,000 characters" in m["text"]],
        what="the reply's answer",
    )
    assert len(too_long) == 1
    await until(lambda: harness.slack.reactions("C0PUBLIC", reply["ts"]) == ["x"])
    told = await until(lambda: ephemerals(harness), what="the mention's answer")
    assert len(told) == 1 and "40,000 characters" in told[0]["text"]
    assert harness.sandbox.count("followup") == 0
