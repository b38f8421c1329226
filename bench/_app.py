"""Run the real app as a child process (`python -m bot`) against the local doubles."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from _common import ROOT

BOT_TOKEN = "xoxb-bench-token"
SIGNING_SECRET = "bench-signing-secret"
MOTION_KEY = "motion_bench"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A PostgreSQL URL whose sessions use a new, empty schema, dropped afterwards: a
    benchmark never reads what an earlier run left."""
    import secrets
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    import psycopg

    schema = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    try:
        yield urlunsplit(parts._replace(query=urlencode(query)))
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def _many_workspaces(port: int) -> dict[str, str]:
    """The settings of a deployment serving many workspaces, its OAuth client being the
    stand-in's."""
    from bot.local.oauth import CLIENT_ID, CLIENT_SECRET
    from bot.workspaces.secrets import new_key

    return {
        "SLACK_CLIENT_ID": CLIENT_ID,
        "SLACK_CLIENT_SECRET": CLIENT_SECRET,
        "SECRET_KEYS": new_key(),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
    }


@contextlib.contextmanager
def running_app(
    slack_url: str, motion_url: str, *, database_url: str | None = None,
    many_workspaces: bool = False, **extra: str,
) -> Iterator[tuple[int, str]]:  # fmt: skip
    """Start the app in HTTP mode; yields (port, database: a SQLite path or the PostgreSQL URL
    given); stops it with SIGTERM. `many_workspaces`: installed through OAuth ("Add to Slack",
    the stand-in's client id and secret), one token per workspace, no SLACK_BOT_TOKEN."""
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        database = database_url or str(Path(folder) / "bench.db")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MOTION_"))},
            **(_many_workspaces(port) if many_workspaces else {"SLACK_BOT_TOKEN": BOT_TOKEN}),
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack_url,
            "PORT": str(port),
            "MOTION_API_KEY": MOTION_KEY,
            "MOTION_API_URL": motion_url,
            "DATABASE_URL": database_url or f"sqlite:///{database}",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            **extra,
        }
        process = subprocess.Popen([sys.executable, "-m", "bot"], cwd=folder, env=env)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the app did not start")
                time.sleep(0.1)
            yield port, database
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
