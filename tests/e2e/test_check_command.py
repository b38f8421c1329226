"""`python -m bot check` as an admin runs it: a real process, the doubles on real sockets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.harness import ROOT_DIR


def run_check(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MOTION_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", "check"],
        env={**clean, **env, "PYTHONPATH": str(ROOT_DIR)},
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_check_passes_when_everything_works(env: dict[str, str], tmp_path: Path) -> None:
    result = run_check(env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓ Slack bot token works" in result.stdout
    assert "✓ Motion API key works" in result.stdout
    assert "✓ Database" in result.stdout
    assert env["SLACK_BOT_TOKEN"] not in result.stdout + result.stderr
    assert env["MOTION_API_KEY"] not in result.stdout + result.stderr


def test_check_names_each_broken_piece(env: dict[str, str], tmp_path: Path) -> None:
    broken = {
        **env,
        "SLACK_BOT_TOKEN": "xoxb-revoked-token",
        "MOTION_API_KEY": "motion_wrong_key",
    }
    result = run_check(broken, tmp_path)
    assert result.returncode == 1
    assert "✗ Slack bot token: Slack answered invalid_auth" in result.stdout
    assert "✗ Motion API key was refused (401)" in result.stdout
    assert "✓ Database" in result.stdout
    assert "2 check(s) failed" in result.stdout


def test_check_reports_the_sandbox_when_no_motion_key(env: dict[str, str], tmp_path: Path) -> None:
    no_key = {k: v for k, v in env.items() if k not in ("MOTION_API_KEY", "MOTION_API_URL")}
    result = run_check(no_key, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sandbox" in result.stdout


def test_missing_configuration_names_every_problem_and_exits(tmp_path: Path) -> None:
    result = run_check({"DATABASE_URL": "mysql://db/motion"}, tmp_path)
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN is missing" in result.stderr
    assert "SLACK_SIGNING_SECRET is missing" in result.stderr
    assert (
        "DATABASE_URL must be a SQLite URL such as sqlite:///motion-bot.db or a PostgreSQL URL"
        in result.stderr
    )


def test_check_tries_the_app_level_token_in_socket_mode(
    env: dict[str, str], tmp_path: Path
) -> None:
    socket = {**env, "SLACK_APP_TOKEN": "xapp-test", "SLACK_SIGNING_SECRET": ""}
    good = run_check(socket, tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "✓ Socket Mode: SLACK_APP_TOKEN works" in good.stdout
    bad = run_check({**socket, "SLACK_APP_TOKEN": "xapp-revoked"}, tmp_path)
    assert bad.returncode == 1
    assert "✗ Socket Mode: Slack refused SLACK_APP_TOKEN (invalid_auth)" in bad.stdout
    assert "xapp-revoked" not in bad.stdout + bad.stderr
