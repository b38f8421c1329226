"""Small helpers for the end-to-end tests: find the card, the thread's replies, buttons, counts.

Everything here only reads what the doubles recorded (or sends what Slack would send); nothing
reaches into the app's internals except where a test says so explicitly.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlencode

from bot.local import payloads
from tests.support.harness import SIGNING_SECRET, Harness, until
from tests.support.motion import Call, ScriptedSandbox

READY = "is ready"  # the result reply's head: "✅ <@U…> run N of your Motion video is ready."


async def run_command(
    harness: Harness, text: str, *, channel: str = "C0PUBLIC", user: str = "U0ALICE"
) -> dict[str, Any]:
    """Send `/motion text` and return the job card once it is in the channel."""
    before = {m["ts"] for m in harness.cards(channel)}
    response = await harness.command(text, channel=channel, user=user)
    assert response.status_code == 200, response.text
    cards = await until(
        lambda: [m for m in harness.cards(channel) if m["ts"] not in before],
        what=f"the job card in {channel}",
    )
    return cards[0]


def replies(
    harness: Harness, card_ts: str, needle: str = "", *, channel: str = "C0PUBLIC"
) -> list[dict[str, Any]]:
    """The app's replies in the card's thread whose text contains `needle`."""
    return [m for m in harness.bot_replies(card_ts, channel) if needle in m["text"]]


async def wait_reply(
    harness: Harness, card_ts: str, needle: str, *, channel: str = "C0PUBLIC", timeout: float = 15
) -> dict[str, Any]:
    found = await until(
        lambda: replies(harness, card_ts, needle, channel=channel),
        timeout=timeout,
        what=f"a reply containing {needle!r}",
    )
    return found[0]


def results(harness: Harness, card_ts: str, *, channel: str = "C0PUBLIC") -> list[dict[str, Any]]:
    return replies(harness, card_ts, READY, channel=channel)


def card_text(harness: Harness, card_ts: str, *, channel: str = "C0PUBLIC") -> str:
    message = harness.slack.message(channel, card_ts)
    assert message is not None, f"card {card_ts} is gone"
    return message["text"]


async def wait_card(
    harness: Harness, card_ts: str, label: str, *, channel: str = "C0PUBLIC"
) -> str:
    """Wait until the card (edited in place) shows `label`; returns its text."""
    await until(
        lambda: label in card_text(harness, card_ts, channel=channel),
        what=f"the card to show {label!r}",
    )
    return card_text(harness, card_ts, channel=channel)


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    """Every button element in a message's actions blocks."""
    return [
        element
        for block in message.get("blocks") or []
        if block.get("type") == "actions"
        for element in block.get("elements") or []
        if element.get("type") == "button"
    ]


def section_texts(message: dict[str, Any]) -> list[str]:
    return [
        block["text"]["text"]
        for block in message.get("blocks") or []
        if block.get("type") == "section" and isinstance(block.get("text"), dict)
    ]


def motion_calls(sandbox: ScriptedSandbox, endpoint: str) -> list[Call]:
    return sandbox.calls_to(endpoint)


async def settle(seconds: float = 0.4) -> None:
    """Give a wrong implementation time to do the extra call a test says must not happen."""
    await asyncio.sleep(seconds)


def command_body(harness: Harness, text: str, *, channel: str = "C0PUBLIC") -> str:
    """The form body of a slash command exactly as `Harness.command` sends it."""
    return urlencode(harness.command_fields(text, channel=channel))


def signature(body: str, timestamp: int, secret: str = SIGNING_SECRET) -> str:
    """`X-Slack-Signature` for `body`, signed with the tests' secret unless told otherwise."""
    return payloads.signature(body, timestamp, secret)


def now() -> int:
    return int(time.time())
