"""Slack deliveries already taken: a delivery's keys are claimed once, so a redelivered event,
a second press of a button or a replayed click changes nothing the second time.

`claim_events` claims inside the transaction of the change a delivery makes (a followup, a job,
a preview, an error reply), so a crash leaves both or neither; `EventRows` claims, reads and
forgets keys on their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bot.store.base import Database
from bot.store.dialect import Tx


def claim_events(conn: Tx, keys: Iterable[str], now: float, team_id: str) -> bool:
    """Claim every key or none; an already-claimed key rolls the claim back. Each claim names
    the workspace whose delivery it is (`team_id`), so an uninstall forgets it too."""
    conn.execute("SAVEPOINT claim")
    for key in keys:
        cursor = conn.execute(
            "INSERT INTO events (key, received_at, team_id) VALUES (?, ?, ?)"
            " ON CONFLICT(key) DO NOTHING",
            (key, now, team_id),
        )
        if cursor.rowcount != 1:
            conn.execute("ROLLBACK TO SAVEPOINT claim")
            conn.execute("RELEASE SAVEPOINT claim")
            return False
    conn.execute("RELEASE SAVEPOINT claim")
    return True


def claim_events_for_job(conn: Tx, keys: Iterable[str], now: float, job_id: int) -> bool:
    """`claim_events` for a delivery about a job: the claim names the job's workspace."""
    row = conn.execute("SELECT team_id FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return claim_events(conn, keys, now, str(row[0]) if row else "")


class EventRows:
    def __init__(self, database: Database) -> None:
        self.database = database

    def claim_event(self, key: str, now: float, team_id: str = "") -> bool:
        """True the first time a Slack delivery is seen; False for any redelivery."""
        return (
            self.database.change(
                "INSERT INTO events (key, received_at, team_id) VALUES (?, ?, ?)"
                " ON CONFLICT(key) DO NOTHING",
                (key, now, team_id),
            )
            == 1
        )

    def claim_all(self, keys: Sequence[str], now: float, team_id: str) -> bool:
        """Claim every key of a delivery or none (False when one was claimed before): one
        transaction, so a failure in between never leaves half a delivery taken."""
        with self.database.write() as conn:
            return claim_events(conn, keys, now, team_id)

    def event_claimed(self, key: str) -> bool:
        """Whether a delivery key was already claimed (a read: the claim itself stays atomic)."""
        return self.database.value("SELECT 1 FROM events WHERE key = ?", (key,)) is not None

    def forget_event(self, key: str) -> None:
        self.database.change("DELETE FROM events WHERE key = ?", (key,))

    def forget_events_before(self, cutoff: float) -> None:
        """Slack's redeliveries stop within minutes; a result's "New variation" stays on the
        message for good, so its claim ("variation:<run>") is never forgotten."""
        self.database.change(
            "DELETE FROM events WHERE received_at < ? AND key NOT LIKE 'variation:%'", (cutoff,)
        )
