"""bench/polling.py drives the real app in virtual time: a short version runs with the tests."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import polling  # noqa: E402


def test_the_polling_bench_follows_real_jobs_in_virtual_time() -> None:
    began = time.monotonic()
    figures = polling.measure(24, seed=5, scale=0.5, history_runs=50)
    real = time.monotonic() - began
    assert figures["virtual_seconds"] > 10 * real  # minutes of polling in seconds
    assert math.isfinite(figures["delay_max"])  # every job's URL was seen...
    assert math.isfinite(figures["posted_p95"])  # ...and its result posted to Slack
    assert figures["calls_per_job"] < figures["loop_calls_per_job"]
    assert figures["delay_p95"] < 5.0
