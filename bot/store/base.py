"""The connection every part of the store shares, and its one way to write.

Write paths that change more than one row start with `BEGIN IMMEDIATE` (`write`): in WAL mode a
plain `BEGIN` that reads and then writes fails with "database is locked" when another connection
wrote in between, and the busy timeout does not help there.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlite_utils import Database

from bot.store.migrations import migrations


class Connection:
    def __init__(self, path: str) -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self.db = Database(conn)
        self.path = path
        if path != ":memory:":
            self.db.enable_wal()
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.db.execute("PRAGMA foreign_keys=ON")
        migrations.apply(self.db)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")  # a failed COMMIT must not leave the transaction open
            raise

    def ping(self) -> bool:
        return bool(self.db.execute("SELECT 1").fetchone() == (1,))

    def _rows(self, sql: str, params: tuple[Any, ...] | list[Any]) -> list[dict[str, Any]]:
        """Rows as dicts; plain sqlite3 because this is on the poller's hot path."""
        cursor = self.db.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _value(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        row = self.db.conn.execute(sql, params).fetchone()
        return row[0] if row else None
