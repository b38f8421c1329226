"""The command line as an operator uses it: real `python -m bot` processes — each subcommand's
`--help`, `keygen`, and `rotate-keys` on a database holding installations (SQLite, or
PostgreSQL with TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from slack_sdk.oauth.installation_store.models.installation import Installation

from bot.store import Store
from bot.workspaces.installations import StoreInstallations
from bot.workspaces.secrets import Secrets, new_key
from tests.support.harness import ROOT_DIR

OLD, NEW, GONE = new_key(), new_key(), new_key()


def run_bot(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "MOTION_", "DATABASE_", "SECRET_", "LOG_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env={**clean, **(env or {}), "PYTHONPATH": str(ROOT_DIR)},
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_keygen_prints_a_new_fernet_key_and_nothing_else(tmp_path: Path) -> None:
    first, second = run_bot(tmp_path, "keygen"), run_bot(tmp_path, "keygen")
    for done in (first, second):
        assert done.returncode == 0 and done.stderr == ""
        assert done.stdout.endswith("\n") and done.stdout.count("\n") == 1
        Fernet(done.stdout.strip())  # raises on anything Fernet would not take
    assert first.stdout != second.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ((), "keygen print a new key for SECRET_KEYS rotate-keys re-encrypt"),
        (("run",), "Socket Mode with SLACK_APP_TOKEN"),
        (("check",), "say what to fix"),
        (("try",), "--followup TEXT"),
        (("keygen",), "Print a new Fernet key"),
        (("rotate-keys",), "then drop the old key"),
    ],
)
def test_every_command_has_its_own_help(
    tmp_path: Path, command: tuple[str, ...], says: str
) -> None:
    done = run_bot(tmp_path, *command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m bot {' '.join(command)}".rstrip())
    assert says in " ".join(done.stdout.split())


def test_an_unknown_command_or_option_is_refused_with_the_usage(tmp_path: Path) -> None:
    cases = ((("launch",), "invalid choice: 'launch'"), (("check", "--all"), "--all"))
    for args, says in cases:
        done = run_bot(tmp_path, *args)
        assert done.returncode == 2
        assert done.stderr.startswith("usage: python -m bot") and says in done.stderr


def install(database_url: str) -> None:
    """T1 and an org-wide install of E1 under OLD; T2 under a key nobody lists any more."""

    async def save() -> None:
        store = Store(database_url)
        try:
            for team, enterprise, key in (("T1", None, OLD), (None, "E1", OLD), ("T2", None, GONE)):
                await StoreInstallations(store, Secrets([key])).async_save(
                    Installation(
                        enterprise_id=enterprise,
                        team_id=team,
                        bot_token=f"xoxb-{team or enterprise}-token",
                        bot_id="B1",
                        bot_user_id="U0BOT",
                        bot_refresh_token=f"xoxe-1-{team or enterprise}-refresh",
                        user_id="U1",
                        is_enterprise_install=enterprise is not None,
                    )
                )
        finally:
            store.close()

    asyncio.run(save())


def bot_tokens(database_url: str, keys: list[str]) -> dict[str, str | None]:
    async def find() -> dict[str, str | None]:
        store = Store(database_url)
        try:
            installations = StoreInstallations(store, Secrets(keys))
            found: dict[str, str | None] = {}
            for name, team, enterprise in (
                ("T1", "T1", None),
                ("E1", None, "E1"),
                ("T2", "T2", None),
            ):
                bot = await installations.async_find_bot(
                    enterprise_id=enterprise, team_id=team, is_enterprise_install=bool(enterprise)
                )
                found[name] = bot.bot_token if bot else None
            return found
        finally:
            store.close()

    return asyncio.run(find())


def test_rotate_keys_reencrypts_every_installation_and_reports_what_no_key_opens(
    database_url: str, tmp_path: Path
) -> None:
    install(database_url)
    done = run_bot(
        tmp_path, "rotate-keys", env={"DATABASE_URL": database_url, "SECRET_KEYS": f"{NEW},{OLD}"}
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Re-encrypted 4 stored secret(s) under the first key."
    assert lines[1].startswith("✗ workspace T2: its bot token opens with no key in SECRET_KEYS")
    assert lines[2].startswith("✗ workspace T2: its bot refresh token opens with no key")
    assert "2 stored secret(s) could not be opened" in lines[3]
    for secret in (NEW, OLD, GONE, "xoxb-T2-token", "xoxb-T1-token"):
        assert secret not in done.stdout + done.stderr
    # the old key dropped: the new one opens everything that was readable, and T2 still
    # opens with its own key put back
    assert bot_tokens(database_url, [NEW]) == {
        "T1": "xoxb-T1-token",
        "E1": "xoxb-E1-token",
        "T2": None,
    }
    assert bot_tokens(database_url, [GONE])["T2"] == "xoxb-T2-token"


def test_rotate_keys_exits_0_when_every_secret_opens(database_url: str, tmp_path: Path) -> None:
    install(database_url)
    keys = f"{NEW},{OLD},{GONE}"
    done = run_bot(tmp_path, "rotate-keys", env={"DATABASE_URL": database_url, "SECRET_KEYS": keys})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "Re-encrypted 6 stored secret(s) under the first key.\n"
    assert bot_tokens(database_url, [NEW]) == {
        "T1": "xoxb-T1-token",
        "E1": "xoxb-E1-token",
        "T2": "xoxb-T2-token",
    }


def test_rotate_keys_needs_secret_keys_and_nothing_of_slack(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'motion.db'}"
    missing = run_bot(tmp_path, "rotate-keys", env={"DATABASE_URL": url})
    assert missing.returncode == 2
    assert "motion-bot cannot rotate keys" in missing.stderr
    assert "SECRET_KEYS is missing" in missing.stderr and "SLACK_" not in missing.stderr
    wrong = run_bot(tmp_path, "rotate-keys", env={"DATABASE_URL": url, "SECRET_KEYS": "s3cr3t"})
    assert wrong.returncode == 2
    assert "SECRET_KEYS entry 1 is not a Fernet key" in wrong.stderr
    assert "s3cr3t" not in wrong.stderr
    empty = run_bot(tmp_path, "rotate-keys", env={"DATABASE_URL": url, "SECRET_KEYS": NEW})
    assert empty.returncode == 0 and empty.stdout == "No stored secrets: nothing to re-encrypt.\n"
