"""Each workspace's own settings (Settings in Slack) and the log of their changes.

One row of `workspace_settings` per workspace, a column per setting, NULL for "the built-in
default": a setting the environment sets is the operator's, and the jobs layer never reads it
from here (bot/jobs/settings.py). Settings are named as their environment variables are
(`MOTION_RUNS_PER_MONTH`), here, in the log and on the form.

The Motion key arrives and leaves only as the ciphertext bot/workspaces/secrets.py made of it
(`sealed_motion_api_key`, listed in bot/store/sealed.py for key rotation); the log never holds a
key, only what the caller says of it (its last 4 characters at most).

A change is one transaction: the row is read and locked, only the settings whose value differs
are written, and each is logged with its old and new value, so two admins saving at once each
log exactly what they changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.store.base import Database
from bot.store.dialect import Tx

MOTION_API_KEY = "MOTION_API_KEY"
# Each plain setting's column (the key is apart: it is sealed, and never logged).
COLUMNS: dict[str, str] = {
    "MOTION_ALLOWED_CHANNELS": "allowed_channels",
    "MOTION_ALLOW_DMS": "allow_dms",
    "MOTION_NOTIFY_CHANNEL": "notify_channel",
    "MOTION_RUNS_PER_USER_PER_DAY": "runs_per_user_per_day",
    "MOTION_RUNS_PER_MONTH": "runs_per_month",
    "MOTION_CONFIRM": "confirm",
    "FOLLOWUP_REQUIRES_MENTION": "followup_requires_mention",
    "MOTION_ADMINS": "admins",
}
_LISTS = frozenset({"allowed_channels", "admins"})
_FLAGS = frozenset({"allow_dms", "confirm", "followup_requires_mention"})
CHANGES_KEPT = 100  # per workspace; the form shows the last 20
# A plain setting's value as the store takes and gives it: ids, a flag, a number; None: default.
SettingValue = tuple[str, ...] | bool | int | str | None


@dataclass(frozen=True)
class StoredSettings:
    """What a workspace chose; None where it chose nothing (the built-in default applies)."""

    team_id: str
    enterprise_id: str | None = None
    values: Mapping[str, SettingValue] = field(default_factory=dict)  # by setting name
    sealed_motion_api_key: str | None = field(default=None, repr=False)
    updated_at: float | None = None

    def value(self, setting: str) -> SettingValue:
        return self.values.get(setting)


@dataclass(frozen=True)
class KeyChange:
    """A new Motion key (sealed), or its removal (`sealed` None), and how the log names the
    old and the new one: never more than their last 4 characters."""

    sealed: str | None = field(repr=False)
    old_hint: str | None
    new_hint: str | None


@dataclass(frozen=True)
class SettingChange:
    """One logged change: who, when, which setting, the old and the new value as text (for
    the key, the hints the caller gave; None: unset / the default)."""

    setting: str
    user_id: str
    changed_at: float
    old_value: str | None
    new_value: str | None


def logged(value: SettingValue) -> str | None:
    """A setting's value as the log keeps it."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value) or None
    return str(value)


def _stored(column: str, value: SettingValue) -> Any:
    if column in _LISTS:
        return ",".join(value) if isinstance(value, tuple) and value else None
    if column in _FLAGS:
        return None if value is None else int(bool(value))
    return value


def _read(column: str, value: Any) -> SettingValue:
    if value is None:
        return None
    if column in _LISTS:
        return tuple(item for item in str(value).split(",") if item)
    if column in _FLAGS:
        return bool(value)
    return int(value) if isinstance(value, int | float) else str(value)


def _settings_from(row: dict[str, Any]) -> StoredSettings:
    return StoredSettings(
        team_id=row["team_id"],
        enterprise_id=row["enterprise_id"] or None,
        values={name: _read(column, row[column]) for name, column in COLUMNS.items()},
        sealed_motion_api_key=row["sealed_motion_api_key"],
        updated_at=row["updated_at"],
    )


_SELECTED = (
    "team_id", "enterprise_id", *COLUMNS.values(), "sealed_motion_api_key", "updated_at",
)  # fmt: skip
_SELECT = f"SELECT {', '.join(_SELECTED)} FROM workspace_settings WHERE team_id = ?"


class WorkspaceSettingRows:
    def __init__(self, database: Database) -> None:
        self.database = database

    def workspace_settings(self, team_id: str) -> StoredSettings:
        """The workspace's choices (all None for a workspace that never chose): one row, read
        by its key, so asking for every request stays cheap."""
        rows = self.database.rows(_SELECT, (team_id,))
        return _settings_from(rows[0]) if rows else StoredSettings(team_id)

    def change_settings(
        self,
        team_id: str,
        enterprise_id: str | None,
        user_id: str,
        now: float,
        values: Mapping[str, SettingValue],
        key: KeyChange | None = None,
    ) -> list[SettingChange]:
        """Write the settings in `values` (by name; None: back to the default) that differ from
        the stored ones, and `key` if given, each change logged; returns what changed."""
        unknown = set(values) - set(COLUMNS)
        if unknown:
            raise ValueError(f"not a workspace setting: {sorted(unknown)}")
        with self.database.write() as tx:
            rows = tx.execute(_SELECT + self.database.backend.for_update, (team_id,)).fetchall()
            current = (
                _settings_from(dict(zip(_SELECTED, rows[0], strict=True)))
                if rows
                else StoredSettings(team_id)
            )
            changes = [
                SettingChange(name, user_id, now, logged(current.value(name)), logged(value))
                for name, value in values.items()
                if logged(current.value(name)) != logged(value)
            ]
            if key is not None:
                changes.append(
                    SettingChange(MOTION_API_KEY, user_id, now, key.old_hint, key.new_hint)
                )
            if not changes:
                return []
            row = {"team_id": team_id, "enterprise_id": enterprise_id or "", "updated_at": now}
            row |= {COLUMNS[c.setting]: _stored(COLUMNS[c.setting], values[c.setting])
                    for c in changes if c.setting in COLUMNS}  # fmt: skip
            if key is not None:
                row["sealed_motion_api_key"] = key.sealed
            _upsert(tx, row)
            _log(tx, team_id, enterprise_id, changes)
        return changes

    def settings_changes(self, team_id: str, limit: int = 20) -> list[SettingChange]:
        """The workspace's latest changes, newest first."""
        rows = self.database.rows(
            "SELECT setting, user_id, changed_at, old_value, new_value FROM settings_changes"
            " WHERE team_id = ? ORDER BY id DESC LIMIT ?",
            (team_id, limit),
        )
        return [SettingChange(**row) for row in rows]


def _upsert(tx: Tx, row: dict[str, Any]) -> None:
    names = list(row)
    updates = ", ".join(f"{name} = excluded.{name}" for name in names if name != "team_id")
    tx.execute(
        f"INSERT INTO workspace_settings ({', '.join(names)})"
        f" VALUES ({', '.join('?' * len(names))})"
        f" ON CONFLICT (team_id) DO UPDATE SET {updates}",
        [row[name] for name in names],
    )


def _log(tx: Tx, team_id: str, enterprise_id: str | None, changes: list[SettingChange]) -> None:
    tx.executemany(
        "INSERT INTO settings_changes (team_id, enterprise_id, user_id, changed_at, setting,"
        " old_value, new_value) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                team_id,
                enterprise_id or "",
                c.user_id,
                c.changed_at,
                c.setting,
                c.old_value,
                c.new_value,
            )
            for c in changes
        ],
    )
    tx.execute(
        "DELETE FROM settings_changes WHERE team_id = ? AND id NOT IN (SELECT id FROM"
        " settings_changes WHERE team_id = ? ORDER BY id DESC LIMIT ?)",
        (team_id, team_id, CHANGES_KEPT),
    )
