"""The process's logging (bot/logs.py): what reaches the log during a database outage."""

from __future__ import annotations

import logging

from bot.logs import PoolChurn


def record(msg: str, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("psycopg.pool", level, __file__, 1, msg, ("motion-bot", "x"), None)


def test_the_pools_line_per_cut_connection_is_left_to_the_stores_one_line_per_outage() -> None:
    churn = PoolChurn()
    assert not churn.filter(record("error connecting in %r: %s"))
    assert not churn.filter(record("discarding closed connection: %s"))
    assert not churn.filter(record("discarding broken connection: %s"))
    assert churn.filter(record("rolling back returned connection: %s"))  # a bug: kept
    assert not churn.filter(record("reconnection attempt in pool %r failed after %s sec"))
    assert churn.filter(record("error connecting in %r: %s", logging.ERROR))
