"""Fixtures: the Slack Web API double and the Motion sandbox on real sockets, and the app itself
in HTTP mode, driven by signed requests exactly as Slack would send them (tests/support/)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from bot.sandbox import SandboxThread
from tests.support.harness import BOT_TOKEN, FAST_PLAN, MOTION_KEY, SIGNING_SECRET, Harness
from tests.support.motion import ScriptedSandbox
from tests.support.slack import SlackDouble

# The backend every test runs on: SQLite files by default; with TEST_DATABASE_URL set to a
# PostgreSQL server (e.g. postgresql://postgres@/postgres?host=/tmp&port=5433), PostgreSQL, each
# test in a fresh schema of its own.
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
ON_POSTGRES = TEST_DATABASE_URL.startswith(("postgres://", "postgresql://"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: the behaviour exists only on SQLite")
    config.addinivalue_line("markers", "postgres_only: the behaviour exists only on PostgreSQL")


def pytest_report_header(config: pytest.Config) -> str:
    return f"database: {'PostgreSQL (TEST_DATABASE_URL)' if ON_POSTGRES else 'SQLite'}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if ON_POSTGRES and item.get_closest_marker("sqlite_only"):
            item.add_marker(pytest.mark.skip(reason="SQLite only"))
        if not ON_POSTGRES and item.get_closest_marker("postgres_only"):
            item.add_marker(pytest.mark.skip(reason="PostgreSQL only (set TEST_DATABASE_URL)"))


def with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for this test: a SQLite file, or a PostgreSQL schema."""
    if not ON_POSTGRES:
        yield f"sqlite:///{tmp_path / 'motion.db'}"
        return
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(TEST_DATABASE_URL, schema)
    finally:
        with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


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
def env(slack: SlackDouble, sandbox: ScriptedSandbox, database_url: str) -> dict[str, str]:
    """The environment a deployment would have, pointed at the doubles."""
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.base_url,
        "PORT": "0",
        "MOTION_API_KEY": MOTION_KEY,
        "MOTION_API_URL": sandbox.base_url or "",
        "DATABASE_URL": database_url,
        "POLL_INITIAL_SECONDS": "0.05",
        "POLL_MAX_SECONDS": "0.2",
        # Off unless a test is about the video in the thread (tests/e2e/test_e2e_video.py): an
        # upload is one more message in the thread, which other tests' counts do not expect.
        "UPLOAD_MAX_MB": "0",
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
