"""Fixtures: the Slack Web API double and the Motion sandbox on real sockets, and the app itself
in HTTP mode, driven by signed requests exactly as Slack would send them (tests/support/)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.sandbox import SandboxThread
from tests.support.harness import BOT_TOKEN, FAST_PLAN, MOTION_KEY, SIGNING_SECRET, Harness
from tests.support.motion import ScriptedSandbox
from tests.support.slack import SlackDouble


@pytest.fixture
def slack() -> Iterator[SlackDouble]:
    with SlackDouble(bot_token=BOT_TOKEN) as double:
        yield double


@pytest.fixture
def sandbox() -> Iterator[ScriptedSandbox]:
    emulator = ScriptedSandbox(default_plan=FAST_PLAN, api_keys={MOTION_KEY})
    with SandboxThread(emulator):
        yield emulator


@pytest.fixture
def env(slack: SlackDouble, sandbox: ScriptedSandbox, tmp_path: Path) -> dict[str, str]:
    """The environment a deployment would have, pointed at the doubles."""
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.base_url,
        "PORT": "0",
        "MOTION_API_KEY": MOTION_KEY,
        "MOTION_API_URL": sandbox.base_url or "",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'motion.db'}",
        "POLL_INITIAL_SECONDS": "0.05",
        "POLL_MAX_SECONDS": "0.2",
    }


@pytest.fixture
async def harness(
    env: dict[str, str], slack: SlackDouble, sandbox: ScriptedSandbox
) -> AsyncIterator[Harness]:
    h = Harness(env, slack, sandbox)
    try:
        yield h
    finally:
        await h.aclose()
