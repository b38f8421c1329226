"""No stored byte holds a secret in clear: after installs, a re-install, a token refresh, a key
rotation and an uninstall, every byte of the SQLite file and its WAL (or, on PostgreSQL, every
row of every table, each column as text) is searched for every token, refresh token, webhook
URL and key the app was given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation

from bot.store import KeyChange, Store
from bot.workspaces.installations import StoreInstallations, StoreOAuthStates
from bot.workspaces.rotation import rotate_keys
from bot.workspaces.secrets import Secrets, new_key

OLD, NEW = new_key(), new_key()
T0 = 1_700_000_000.0
SECRETS = {
    "xoxb-T1-4f1d0c6a-first-bot-token",
    "xoxb-T1-8e2b77aa-second-bot-token",
    "xoxb-T1-c3d94e01-refreshed-bot-token",
    "xoxe-1-T1-5a6b7c8d-refresh-token",
    "xoxe-1-T1-9f8e7d6c-new-refresh-token",
    "xoxp-U1-1b2c3d4e-user-token",
    "xoxe-1-U1-2c3d4e5f-user-refresh-token",
    "https://hooks.slack.com/services/T1/B1/7g8h9i0j-webhook-secret",
    "xoxb-E1-0a9b8c7d-org-wide-bot-token",
    "xoxb-T2-6e5d4c3b-uninstalled-bot-token",
    "xoxe-1-T2-3b4c5d6e-uninstalled-refresh-token",
    "motion_T1_7c6b5a4d_first_workspace_key",
    "motion_T1_3e4f5a6b_replacing_workspace_key",
    OLD,
    NEW,
}


def installation(team_id: str | None, bot_token: str, **more: Any) -> Installation:
    values: dict[str, Any] = {
        "team_id": team_id,
        "team_name": f"Team {team_id} in clear",
        "bot_token": bot_token,
        "bot_id": "B1",
        "bot_user_id": "U0BOT",
        "user_id": "U1",
        "installed_at": T0,
    }
    return Installation(**{**values, **more})


async def live_a_little(store: Store) -> None:
    """Everything the store will do with secrets, under the old key then the new one."""
    installations = StoreInstallations(store, Secrets([OLD]))
    await installations.async_save(
        installation(
            "T1",
            "xoxb-T1-4f1d0c6a-first-bot-token",
            bot_refresh_token="xoxe-1-T1-5a6b7c8d-refresh-token",
            bot_token_expires_at=int(T0) + 60,
            user_token="xoxp-U1-1b2c3d4e-user-token",
            user_refresh_token="xoxe-1-U1-2c3d4e5f-user-refresh-token",
            incoming_webhook_url="https://hooks.slack.com/services/T1/B1/7g8h9i0j-webhook-secret",
        )
    )
    await installations.async_save(
        installation("T1", "xoxb-T1-8e2b77aa-second-bot-token", user_id="U2")
    )
    await installations.async_save(
        installation(
            None,
            "xoxb-E1-0a9b8c7d-org-wide-bot-token",
            enterprise_id="E1",
            is_enterprise_install=True,
        )
    )
    await installations.async_save(
        installation(
            "T2",
            "xoxb-T2-6e5d4c3b-uninstalled-bot-token",
            bot_refresh_token="xoxe-1-T2-3b4c5d6e-uninstalled-refresh-token",
        )
    )
    bot = await installations.async_find_bot(enterprise_id=None, team_id="T1")
    assert bot is not None
    await installations.async_save_bot(
        Bot(
            **{
                **bot.to_dict_for_copying(),
                "bot_token": "xoxb-T1-c3d94e01-refreshed-bot-token",
                "bot_refresh_token": "xoxe-1-T1-9f8e7d6c-new-refresh-token",
            }
        )
    )
    # A workspace's own Motion key (Settings in Slack), set then replaced, as the form saves it.
    for key in (
        "motion_T1_7c6b5a4d_first_workspace_key",
        "motion_T1_3e4f5a6b_replacing_workspace_key",
    ):
        store.change_settings(
            "T1", None, "U1", T0, {"MOTION_RUNS_PER_MONTH": 20},
            KeyChange(Secrets([OLD]).seal(key), None, key[-4:]),
        )  # fmt: skip
    rotate_keys(store, Secrets([NEW, OLD]))
    sealed_key = store.workspace_settings("T1").sealed_motion_api_key
    assert sealed_key is not None  # rotated: the new key alone opens it
    assert Secrets([NEW]).open(sealed_key) == "motion_T1_3e4f5a6b_replacing_workspace_key"
    await installations.async_delete_all(enterprise_id=None, team_id="T2")
    state = await StoreOAuthStates(store).async_issue()
    assert await StoreOAuthStates(store).async_consume(state)


def sqlite_bytes(path: str) -> bytes:
    """The database file and its WAL, byte for byte, as they are on disk."""
    file = Path(path.removeprefix("sqlite:///"))
    wal = file.with_name(file.name + "-wal")
    return file.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def postgres_text(store: Store) -> bytes:
    """Every row of every table of the store's schema, each as PostgreSQL's text of the row."""
    tables = [
        row["table_name"]
        for row in store.database.rows(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    ]
    assert {"installations", "installation_users", "oauth_states"} <= set(tables)
    text = [
        str(row["r"])
        for table in tables
        for row in store.database.rows(f'SELECT CAST(t AS text) AS r FROM "{table}" t')
    ]
    return "\n".join(text).encode()


def stored_bytes(store: Store, url: str) -> bytes:
    return sqlite_bytes(url) if store.dialect == "sqlite" else postgres_text(store)


def assert_nothing_in_clear(stored: bytes) -> None:
    found = [secret for secret in SECRETS if secret.encode() in stored]
    assert found == [], f"stored in clear: {found}"
    # and the search does read the rows: what is stored in clear on purpose is there
    assert b"Team T1 in clear" in stored and b"U0BOT" in stored


async def test_no_stored_byte_holds_a_secret_in_clear(database_url: str) -> None:
    store = Store(database_url)
    try:
        await live_a_little(store)
        assert_nothing_in_clear(stored_bytes(store, database_url))
        # the ciphertexts are there instead: T1's bot token and refresh token, U1's user token,
        # user refresh token and webhook, E1's bot token, T1's Motion key
        assert len(store.sealed_values()) == 7
    finally:
        store.close()
    if database_url.startswith("sqlite:///"):  # after the closing checkpoint too
        assert_nothing_in_clear(sqlite_bytes(database_url))


async def test_the_search_would_find_a_secret_stored_in_clear(database_url: str) -> None:
    """The check above can fail: a token written in clear into a text column is found."""
    store = Store(database_url)
    try:
        await live_a_little(store)
        store.database.change(
            "UPDATE installations SET team_name = ? WHERE team_id = 'T1'",
            ("Team T1 in clear xoxb-T1-8e2b77aa-second-bot-token",),
        )
        stored = stored_bytes(store, database_url)
        assert b"xoxb-T1-8e2b77aa-second-bot-token" in stored
    finally:
        store.close()
