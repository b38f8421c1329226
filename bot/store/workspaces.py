"""A workspace's rows, all of them: where each table keeps them, forgetting them at once (the app
was uninstalled, or its bot token revoked), and the digest that is all that stays behind.

`PER_WORKSPACE` lists every table that holds rows of a workspace and how to find them, in the
order they are deleted (rows that reference others first); `NOT_PER_WORKSPACE` lists the tables
that hold none, each with why. A unit test (tests/unit/test_forget_workspace.py) reads the schema
and fails when a table is in neither list or has a `team_id` column and is not in the first: a
table added later cannot be forgotten by mistake.

What stays: a SHA-256 digest of the workspace's id in `forgotten_workspaces`, for a short while
(`FORGOTTEN_FOR_SECONDS`), so a delivery that arrives late for the workspace is recognised and
dropped without keeping its id. A new installation of the workspace removes it at once.

On SQLite, deleted rows would linger in free pages and the WAL: the connection runs with
`secure_delete` on (bot/store/dialect.py), so freed space is overwritten with zeros, and the
WAL is checkpointed and truncated after forgetting (`Backend.checkpoint`). On PostgreSQL a
DELETE leaves dead tuples until VACUUM, which is the operator's (docs/operations.md says when).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bot.store.base import Database
from bot.store.dialect import Tx

FORGOTTEN_FOR_SECONDS = 3600.0  # Slack's last retry of an event comes minutes after the first


@dataclass(frozen=True)
class WorkspaceRows:
    """One table's rows of a workspace: `where` is a condition with one `?`, the team id."""

    table: str
    where: str = "team_id = ?"


_OF_ITS_JOBS = "job_id IN (SELECT id FROM jobs WHERE team_id = ?)"

# Deleted in this order: a row goes before the rows it references (runs before jobs, …).
PER_WORKSPACE: tuple[WorkspaceRows, ...] = (
    WorkspaceRows("run_spend"),
    WorkspaceRows("posts", _OF_ITS_JOBS),
    WorkspaceRows("step_executions"),
    WorkspaceRows("previews"),
    WorkspaceRows("runs", _OF_ITS_JOBS),
    WorkspaceRows("jobs"),
    WorkspaceRows("usage_counts"),
    WorkspaceRows("settings_changes"),
    WorkspaceRows("workspace_settings"),  # its Motion key (sealed) with it
    WorkspaceRows("events"),
    WorkspaceRows("installation_users"),
    WorkspaceRows("installations"),
)

NOT_PER_WORKSPACE: dict[str, str] = {
    "run_history": "how long videos took, by duration only: the poll schedule's learning",
    "oauth_states": "installs in progress: a random state and its expiry, no workspace yet",
    "forgotten_workspaces": "digests of forgotten workspaces' ids, never the ids",
    "schema_migrations": "which migrations ran (PostgreSQL)",
    "_sqlite_migrations": "which migrations ran (SQLite)",
}


def workspace_digest(team_id: str) -> str:
    """What is kept of a forgotten workspace: enough to recognise its id, not to read it."""
    return hashlib.sha256(f"motion-bot forgotten workspace:{team_id}".encode()).hexdigest()


def remember_workspace(tx: Tx, team_id: str) -> None:
    """A workspace installed (again): it is no longer forgotten. In the installation's own
    transaction."""
    if team_id:
        tx.execute(
            "DELETE FROM forgotten_workspaces WHERE digest = ?", (workspace_digest(team_id),)
        )


@dataclass(frozen=True)
class Forgotten:
    """What forgetting a workspace deleted: rows per table (only tables that had some)."""

    rows: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


class WorkspaceRowsRepo:
    def __init__(self, database: Database) -> None:
        self.database = database

    def forget_workspace(self, team_id: str, now: float) -> Forgotten:
        """Delete every row of the workspace, in one transaction, and keep its digest for late
        deliveries; then (SQLite) checkpoint the WAL so no old page of it stays there.
        Idempotent: a second call deletes nothing more and keeps the digest fresh."""
        assert team_id, "a workspace is named by its team id"
        deleted: dict[str, int] = {}
        with self.database.write() as tx:
            for rows in PER_WORKSPACE:
                count = tx.execute(
                    f"DELETE FROM {rows.table} WHERE {rows.where}", (team_id,)
                ).rowcount
                if count > 0:
                    deleted[rows.table] = count
            tx.execute(
                "INSERT INTO forgotten_workspaces (digest, forgotten_at) VALUES (?, ?)"
                " ON CONFLICT (digest) DO UPDATE SET forgotten_at = excluded.forgotten_at",
                (workspace_digest(team_id), now),
            )
        self.database.backend.checkpoint()
        return Forgotten(deleted)

    def forgotten_digests(self, now: float, since: float = 0.0) -> frozenset[str]:
        """The digests of workspaces forgotten within `FORGOTTEN_FOR_SECONDS` (and not before
        `since`)."""
        rows = self.database.rows(
            "SELECT digest FROM forgotten_workspaces WHERE forgotten_at >= ?",
            (max(now - FORGOTTEN_FOR_SECONDS, since),),
        )
        return frozenset(str(r["digest"]) for r in rows)

    def lift_forgotten(self, team_id: str) -> None:
        """The workspace is installed again (seen by a request Bolt authorized): its digest goes
        (an org-wide reinstall names no member workspace, so this is where theirs go)."""
        with self.database.write() as tx:
            remember_workspace(tx, team_id)

    def drop_forgotten_before(self, cutoff: float) -> int:
        """Digests older than any late delivery: not even they stay."""
        return self.database.change(
            "DELETE FROM forgotten_workspaces WHERE forgotten_at < ?", (cutoff,)
        )

    def teams_of_enterprise(self, enterprise_id: str) -> set[str]:
        """The workspaces of an Enterprise Grid org that have rows here (its jobs, settings
        and installations name it): what an org-wide uninstall forgets."""
        rows = self.database.rows(
            "SELECT DISTINCT team_id FROM jobs WHERE enterprise_id = ?"
            " UNION SELECT DISTINCT team_id FROM workspace_settings WHERE enterprise_id = ?"
            " UNION SELECT DISTINCT team_id FROM installations WHERE enterprise_id = ?",
            (enterprise_id, enterprise_id, enterprise_id),
        )
        return {str(r["team_id"]) for r in rows if r["team_id"]}

    def teams_with_rows(self) -> set[str]:
        """Every workspace that has a row in a table with a `team_id` column (for the sweep
        that finishes forgetting a workspace whose rows came in after it was forgotten)."""
        selects = " UNION ".join(
            f"SELECT DISTINCT team_id FROM {rows.table}"
            for rows in PER_WORKSPACE
            if rows.where == "team_id = ?"
        )
        return {str(r["team_id"]) for r in self.database.rows(selects) if r["team_id"]}
