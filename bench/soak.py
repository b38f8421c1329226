"""Crash-and-redelivery soak: jobs with followups while the app is SIGKILLed and Slack redelivers.

Workload (fixed seed): `--jobs` signed `/motion` commands, a few per second, each followed by one
thread reply once its first result is posted; a third of the replies are delivered again with
the same event_id (X-Slack-Retry-Num, http_timeout), and every delivery that fails because the
app is down is redelivered as Slack would. Motion (the sandbox) answers with 429s, 500s with a
JSON error, a proxy's HTML 502, answers later than the app's 1-s timeout, and answers lost after
the call took effect, all along the run. The app (`python -m bot`, HTTP mode) is killed with
SIGKILL `--kills` times at random moments and restarted at once on the same SQLite file; a
"Try again" button is pressed where Motion said it did not start a run.

Counted from the doubles at the end (after SIGTERM): one card and one create per command, one
followup call per reply, one result post per run; a lost answer may leave a run's outcome
unknown (0 or 1 calls), but then its thread says so.

Targets: zero lost, zero duplicated, every run's result posted exactly once.

With `--instances 3 --database postgresql://…`: three app processes share one PostgreSQL
database; every delivery goes to one of them at random, redeliveries to another than the
first; a killed instance restarts under a new name, so its jobs wait until another instance takes
them over (reported as takeover wait p50/max).

    python bench/soak.py [--jobs 200] [--kills 20] [--seed 1] [--keep]
    python bench/soak.py --instances 3 --database postgresql://user@host/db
    python bench/soak.py --uploads   # + each MP4 into its thread: at most one video per run
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from _common import verdict

from tests.support.soak import SoakConfig, run_soak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=4.0, help="commands per second")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--keep", action="store_true", help="keep the database and app log")
    parser.add_argument("--instances", type=int, default=1, help="app processes sharing the work")
    parser.add_argument(
        "--database",
        default=None,
        help="postgresql://… (an empty database or schema); default: a SQLite file",
    )
    parser.add_argument("--lease", type=float, default=None, help="MOTION_LEASE_SECONDS")
    parser.add_argument(
        "--uploads",
        action="store_true",
        help="also upload each video into its thread; kills then fall mid-upload too",
    )
    args = parser.parse_args()
    config = SoakConfig(
        jobs=args.jobs,
        kills=args.kills,
        seed=args.seed,
        commands_per_second=args.rate,
        timeout=args.timeout,
        instances=args.instances,
        database_url=args.database,
        lease_seconds=args.lease,
        uploads=args.uploads,
    )
    work_dir = Path(tempfile.mkdtemp(prefix="motion-soak-"))
    report = asyncio.run(run_soak(config, work_dir))
    for line in report.details[:50]:
        print(f"  {line}")
    status = verdict("soak", report.figures, report.failures)
    if status or args.keep:
        print(f"database and app log kept in {work_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
