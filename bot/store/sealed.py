"""Every column that holds a secret, listed once, for key rotation and audits.

A secret is stored only as the ciphertext bot/workspaces/secrets.py makes of it; this module
does not know how it was sealed. `SealedRows` reads every sealed value with the workspace it
belongs to, and replaces one with its re-sealed form only if it is still the value read (a
token refreshed meanwhile is newer than the rotation and is left as it is). A table that
stores a new secret adds its columns to `SEALED`: its key must start with (enterprise_id,
team_id), so every secret is reported by workspace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.store.base import Database


@dataclass(frozen=True)
class SealedColumns:
    table: str
    key: tuple[str, ...]  # starts with ("enterprise_id", "team_id")
    columns: tuple[str, ...]


SEALED: tuple[SealedColumns, ...] = (
    SealedColumns(
        "installations",
        ("enterprise_id", "team_id"),
        ("sealed_bot_token", "sealed_bot_refresh_token"),
    ),
    SealedColumns(
        "installation_users",
        ("enterprise_id", "team_id", "user_id"),
        ("sealed_user_token", "sealed_user_refresh_token", "sealed_incoming_webhook_url"),
    ),
    SealedColumns("workspace_settings", ("enterprise_id", "team_id"), ("sealed_motion_api_key",)),
)


@dataclass(frozen=True)
class SealedValue:
    """One stored ciphertext, where it lives, and whose it is."""

    table: str
    key: tuple[str, ...]
    column: str
    value: str = field(repr=False)

    @property
    def enterprise_id(self) -> str | None:
        return self.key[0] or None

    @property
    def team_id(self) -> str | None:
        return self.key[1] or None

    @property
    def user_id(self) -> str | None:
        return self.key[2] if len(self.key) > 2 else None


def _spec(table: str, column: str) -> SealedColumns:
    """The registered spec for `table.column` (names in SQL come only from `SEALED`)."""
    for spec in SEALED:
        if spec.table == table and column in spec.columns:
            return spec
    raise ValueError(f"{table}.{column} is not a sealed column")


class SealedRows:
    def __init__(self, database: Database) -> None:
        self.database = database

    def sealed_values(self) -> list[SealedValue]:
        """Every stored ciphertext, table by table, row by row."""
        found: list[SealedValue] = []
        for spec in SEALED:
            for column in spec.columns:
                rows = self.database.rows(
                    f"SELECT {', '.join(spec.key)}, {column} AS value FROM {spec.table}"
                    f" WHERE {column} IS NOT NULL ORDER BY {', '.join(spec.key)}"
                )
                found += [
                    SealedValue(
                        spec.table, tuple(row[k] for k in spec.key), column, str(row["value"])
                    )
                    for row in rows
                ]
        return found

    def replace_sealed(self, changes: Sequence[tuple[SealedValue, str]]) -> int:
        """Each value replaced by its new ciphertext where it still holds the value read, in one
        transaction; returns how many were replaced."""
        replaced = 0
        with self.database.write() as tx:
            for old, new in changes:
                spec = _spec(old.table, old.column)
                where = " AND ".join(f"{k} = ?" for k in spec.key)
                replaced += tx.execute(
                    f"UPDATE {spec.table} SET {old.column} = ? WHERE {where} AND {old.column} = ?",
                    (new, *old.key, old.value),
                ).rowcount
        return replaced
