"""Installations of the app (many workspaces) and the OAuth states of installs in progress.

A workspace's installation is one row of `installations`, keyed by (enterprise_id, team_id):
'' stands for "none" in either (a PRIMARY KEY column cannot be NULL), and an org-wide install
(Enterprise Grid) has team_id ''. Installing again replaces the row: the latest installation
wins. Each person who installed has a row of `installation_users` (their own grant: a user
token when the app asks for user scopes, an incoming webhook when it asks for one).

This module never sees a secret: every token arrives and leaves as the ciphertext bot/workspaces
made of it (`sealed_…`), and the store only keeps it. Which columns are sealed is listed once,
in bot/store/sealed.py, for key rotation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from bot.store.base import Database
from bot.store.dialect import Tx
from bot.store.workspaces import remember_workspace

_WORKSPACE_KEY = ("enterprise_id", "team_id")
_BOT_COLUMNS = (
    "bot_id",
    "bot_user_id",
    "bot_scopes",
    "sealed_bot_token",
    "sealed_bot_refresh_token",
    "bot_token_expires_at",
)


@dataclass(frozen=True)
class InstalledBot:
    """A workspace's (or an enterprise's org-wide) installation: its bot, sealed.

    `sealed_bot_token` None: the bot was deleted (tokens_revoked) or never granted."""

    enterprise_id: str | None
    team_id: str | None
    installed_at: float
    is_enterprise_install: bool = False
    app_id: str | None = None
    enterprise_name: str | None = None
    enterprise_url: str | None = None
    team_name: str | None = None
    installer: str | None = None
    token_type: str | None = None
    bot_id: str | None = None
    bot_user_id: str | None = None
    bot_scopes: str | None = None  # comma-separated
    sealed_bot_token: str | None = field(default=None, repr=False)
    sealed_bot_refresh_token: str | None = field(default=None, repr=False)
    bot_token_expires_at: int | None = None  # Unix seconds; None: never expires


@dataclass(frozen=True)
class InstallerGrant:
    """What one installing person granted in one workspace: their user token (sealed), when the
    app asks for user scopes, and an incoming webhook (its URL sealed: it lets anyone post)."""

    enterprise_id: str | None
    team_id: str | None
    user_id: str
    installed_at: float
    user_scopes: str | None = None
    sealed_user_token: str | None = field(default=None, repr=False)
    sealed_user_refresh_token: str | None = field(default=None, repr=False)
    user_token_expires_at: int | None = None
    sealed_incoming_webhook_url: str | None = field(default=None, repr=False)
    incoming_webhook_channel: str | None = None
    incoming_webhook_channel_id: str | None = None
    incoming_webhook_configuration_url: str | None = None


def workspace_key(enterprise_id: str | None, team_id: str | None) -> tuple[str, str]:
    """How a workspace is keyed in the database: '' for a missing id."""
    return enterprise_id or "", team_id or ""


def _columns(row: InstalledBot | InstallerGrant) -> dict[str, Any]:
    values = asdict(row)
    values["enterprise_id"], values["team_id"] = workspace_key(row.enterprise_id, row.team_id)
    if isinstance(row, InstalledBot):
        values["is_enterprise_install"] = int(row.is_enterprise_install)
    return values


def _upsert(tx: Tx, table: str, key: tuple[str, ...], values: dict[str, Any]) -> None:
    """INSERT … ON CONFLICT (key) DO UPDATE: the new values replace the stored ones."""
    names = list(values)
    updates = ", ".join(f"{name} = excluded.{name}" for name in names if name not in key)
    tx.execute(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}",
        [values[name] for name in names],
    )


def _drop_if_empty(tx: Tx, key: tuple[str, str]) -> None:
    """A workspace row with neither a bot nor an installing person left is removed."""
    tx.execute(
        "DELETE FROM installations WHERE enterprise_id = ? AND team_id = ?"
        " AND sealed_bot_token IS NULL AND NOT EXISTS (SELECT 1 FROM installation_users u"
        " WHERE u.enterprise_id = installations.enterprise_id"
        " AND u.team_id = installations.team_id)",
        key,
    )


def _bot_from(row: dict[str, Any]) -> InstalledBot:
    values = {f.name: row[f.name] for f in fields(InstalledBot)}
    values["enterprise_id"] = row["enterprise_id"] or None
    values["team_id"] = row["team_id"] or None
    values["is_enterprise_install"] = bool(row["is_enterprise_install"])
    return InstalledBot(**values)


def _grant_from(row: dict[str, Any]) -> InstallerGrant:
    values = {f.name: row[f.name] for f in fields(InstallerGrant)}
    values["enterprise_id"] = row["enterprise_id"] or None
    values["team_id"] = row["team_id"] or None
    return InstallerGrant(**values)


class InstallationRows:
    def __init__(self, database: Database) -> None:
        self.database = database

    def save_installation(self, bot: InstalledBot, grant: InstallerGrant) -> None:
        """One install: the workspace's row and the installing person's grant, together. An
        install that granted no bot (user scopes only) keeps the bot stored before."""
        values = _columns(bot)
        if bot.sealed_bot_token is None:
            values = {k: v for k, v in values.items() if k not in _BOT_COLUMNS}
        with self.database.write() as tx:
            _upsert(tx, "installations", _WORKSPACE_KEY, values)
            _upsert(tx, "installation_users", (*_WORKSPACE_KEY, "user_id"), _columns(grant))
            remember_workspace(tx, bot.team_id or "")  # installed again after an uninstall

    def save_installed_bot(self, bot: InstalledBot) -> None:
        """A workspace's bot alone (a refreshed token): who installed it and how stay."""
        values = _columns(bot)
        for kept in ("installer", "token_type", "enterprise_url"):
            del values[kept]
        with self.database.write() as tx:
            _upsert(tx, "installations", _WORKSPACE_KEY, values)

    def installed_bot(self, enterprise_id: str | None, team_id: str | None) -> InstalledBot | None:
        rows = self.database.rows(
            "SELECT * FROM installations WHERE enterprise_id = ? AND team_id = ?",
            workspace_key(enterprise_id, team_id),
        )
        return _bot_from(rows[0]) if rows else None

    def installer_grant(
        self, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> InstallerGrant | None:
        """`user_id`'s grant in the workspace, or without `user_id` the latest one."""
        key = workspace_key(enterprise_id, team_id)
        if user_id is None:
            rows = self.database.rows(
                "SELECT * FROM installation_users WHERE enterprise_id = ? AND team_id = ?"
                " ORDER BY installed_at DESC, user_id LIMIT 1",
                key,
            )
        else:
            rows = self.database.rows(
                "SELECT * FROM installation_users WHERE enterprise_id = ? AND team_id = ?"
                " AND user_id = ?",
                (*key, user_id),
            )
        return _grant_from(rows[0]) if rows else None

    def installed_workspaces(self) -> list[InstalledBot]:
        """Every installation, by enterprise then team."""
        rows = self.database.rows("SELECT * FROM installations ORDER BY enterprise_id, team_id")
        return [_bot_from(row) for row in rows]

    def delete_installed_bot(self, enterprise_id: str | None, team_id: str | None) -> None:
        """The workspace's bot token and refresh token, gone (the bot's grant was revoked)."""
        key = workspace_key(enterprise_id, team_id)
        cleared = ", ".join(f"{name} = NULL" for name in _BOT_COLUMNS)
        with self.database.write() as tx:
            tx.execute(
                f"UPDATE installations SET {cleared} WHERE enterprise_id = ? AND team_id = ?", key
            )
            _drop_if_empty(tx, key)

    def delete_installer_grants(
        self, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        """`user_id`'s grant in the workspace, or without `user_id` every person's."""
        key = workspace_key(enterprise_id, team_id)
        params: tuple[str, ...]
        if user_id is None:
            where, params = "enterprise_id = ? AND team_id = ?", key
        else:
            where, params = "enterprise_id = ? AND team_id = ? AND user_id = ?", (*key, user_id)
        with self.database.write() as tx:
            tx.execute(f"DELETE FROM installation_users WHERE {where}", params)
            _drop_if_empty(tx, key)

    # ------------------------------------------------------------ token refresh, one at a time

    def take_refresh_lease(
        self, enterprise_id: str | None, team_id: str | None, *, refresh_token_read: str,
        owner: str, now: float, until: float,
    ) -> bool:  # fmt: skip
        """The right to spend the installation's refresh token (it works once): taken when the
        stored one is still `refresh_token_read` (the sealed value the caller read) and no
        other instance holds an unexpired lease on it. Outside any job's lease fence: the
        refresh is the installation's, not a job's."""
        return self._unfenced(
            "UPDATE installations SET refresh_owner = ?, refresh_until = ?"
            " WHERE enterprise_id = ? AND team_id = ? AND sealed_bot_refresh_token = ?"
            " AND (refresh_until IS NULL OR refresh_until <= ? OR refresh_owner = ?)",
            (owner, until, *workspace_key(enterprise_id, team_id), refresh_token_read, now, owner),
        )

    def save_refreshed_bot(
        self, enterprise_id: str | None, team_id: str | None, *, owner: str,
        sealed_token: str, sealed_refresh_token: str | None, expires_at: int | None,
    ) -> bool:  # fmt: skip
        """The new tokens of a refresh, stored by the lease's holder, which lets it go in the
        same statement; False when the lease was not this owner's any more (the installation
        was removed meanwhile: the new tokens are dropped with it)."""
        return self._unfenced(
            "UPDATE installations SET sealed_bot_token = ?, sealed_bot_refresh_token = ?,"
            " bot_token_expires_at = ?, refresh_owner = NULL, refresh_until = NULL"
            " WHERE enterprise_id = ? AND team_id = ? AND refresh_owner = ?",
            (
                sealed_token, sealed_refresh_token, expires_at,
                *workspace_key(enterprise_id, team_id), owner,
            ),
        )  # fmt: skip

    def release_refresh_lease(
        self, enterprise_id: str | None, team_id: str | None, owner: str
    ) -> None:
        """A refresh that failed lets the next caller try at once."""
        self._unfenced(
            "UPDATE installations SET refresh_owner = NULL, refresh_until = NULL"
            " WHERE enterprise_id = ? AND team_id = ? AND refresh_owner = ?",
            (*workspace_key(enterprise_id, team_id), owner),
        )

    def _unfenced(self, sql: str, params: tuple[Any, ...]) -> bool:
        with self.database.backend.write() as tx:
            return bool(tx.execute(sql, params).rowcount)

    def forget_installation(self, enterprise_id: str | None, team_id: str | None) -> None:
        """Everything the workspace's installation held (the app was uninstalled)."""
        key = workspace_key(enterprise_id, team_id)
        with self.database.write() as tx:
            tx.execute(
                "DELETE FROM installation_users WHERE enterprise_id = ? AND team_id = ?", key
            )
            tx.execute("DELETE FROM installations WHERE enterprise_id = ? AND team_id = ?", key)


class OAuthStateRows:
    """The `state` of each "Add to Slack" in progress: issued once, consumed at most once,
    refused after it expires."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def issue_oauth_state(self, state: str, expires_at: float, now: float) -> None:
        """Store a new state; states expired by `now` are swept out on the way."""
        with self.database.write() as tx:
            tx.execute("DELETE FROM oauth_states WHERE expires_at <= ?", (now,))
            tx.execute(
                "INSERT INTO oauth_states (state, expires_at) VALUES (?, ?)", (state, expires_at)
            )

    def consume_oauth_state(self, state: str, now: float) -> bool:
        """True once for a state issued and not yet expired; the state is gone afterwards
        whatever the answer, so a second redirect with it (or a late one) is refused."""
        expires_at = self.database.change_returning(
            "DELETE FROM oauth_states WHERE state = ? RETURNING expires_at", (state,)
        )
        return expires_at is not None and float(expires_at) > now
