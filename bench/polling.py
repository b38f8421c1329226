"""Polling efficiency in simulated time: the app's poll schedule against the provider's 3-second loop.

Workload (fixed seed): 2,000 runs, generation time lognormal (median 120 s, σ 0.6), then 1–20 s
of rendering before the download URL appears. Each run is followed the way JobService follows it:
first look after POLL_INITIAL_SECONDS, then `PollSchedule.next_delay`, with the schedule learning
online from each finished run through `generation_seconds` (Motion's `completed_at`, clamped to
the window in which the app saw the run finish). The schedule starts cold and is never told the
distribution. Runs are submitted one after another, each learning from those before it.

Targets: at most a third of the 3-second loop's status calls, with p95 notification delay ≤ 5 s
(delay = when the app saw the URL minus when the URL appeared). Also reported: a setting that
matches the 3-second loop's delay with fewer calls.

    python bench/polling.py [--jobs 2000] [--seed 7]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from dataclasses import dataclass

from _common import percentile, verdict

from bot.schedule import PollSchedule, generation_seconds


@dataclass(frozen=True)
class Run:
    generation: float  # seconds until status "completed"
    render: float  # then seconds until output.download_url appears

    @property
    def url_at(self) -> float:
        return self.generation + self.render


def workload(jobs: int, seed: int) -> list[Run]:
    rng = random.Random(seed)
    return [
        Run(math.exp(math.log(120) + 0.6 * rng.gauss(0, 1)), rng.uniform(1, 20))
        for _ in range(jobs)
    ]


def provider_loop(run: Run, every: float = 3.0) -> tuple[int, float]:
    """The provider's sample: a status call every 3 s until the URL is there."""
    calls = math.ceil(run.url_at / every)
    return calls, calls * every - run.url_at


def follow(run: Run, schedule: PollSchedule) -> tuple[int, float]:
    """Follow one run with the app's schedule in simulated time; returns (calls, delay)."""
    now, previous, calls, learned = schedule.initial, 0.0, 1, False
    while True:
        if now >= run.generation and not learned:
            seconds = generation_seconds(
                completed_at=run.generation, sent_at=0.0, previous_look=previous, now=now
            )
            schedule.learn("any", seconds)
            learned = True
        if now >= run.url_at:
            return calls, now - run.url_at
        rendering = now >= run.generation
        status = "completed" if rendering else "running"
        delay = schedule.next_delay(elapsed=now, status=status, rendering=rendering)
        previous, now, calls = now, now + delay, calls + 1


def measure(runs: list[Run], **settings: float) -> dict[str, float]:
    schedule = PollSchedule(initial=3.0, maximum=30.0, **settings)  # type: ignore[arg-type]
    results = [follow(run, schedule) for run in runs]
    return summary(results[:100]) | {f"warm_{k}": v for k, v in summary(results[100:]).items()}


def summary(results: list[tuple[int, float]]) -> dict[str, float]:
    calls = [c for c, _ in results]
    delays = [d for _, d in results]
    return {
        "calls_per_job": round(sum(calls) / len(calls), 2),
        "delay_p50": round(percentile(delays, 0.50), 2),
        "delay_p95": round(percentile(delays, 0.95), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    runs = workload(args.jobs, args.seed)

    base = summary([provider_loop(run) for run in runs])
    app = measure(runs)
    cold = {k: v for k, v in app.items() if not k.startswith("warm_")}
    warm = {k[5:]: v for k, v in app.items() if k.startswith("warm_")}
    matching = measure(runs, eagerness=6.0, render_seconds=2.0)
    matching_warm = {k[5:]: v for k, v in matching.items() if k.startswith("warm_")}
    figures = {
        "jobs": args.jobs,
        "seed": args.seed,
        "provider_3s_loop": base,
        "app_first_100_jobs_cold": cold,
        "app_jobs_101_on": warm,
        "matching_setting_eagerness_6_render_2s_jobs_101_on": matching_warm,
    }
    failures = []
    third = base["calls_per_job"] / 3
    if warm["calls_per_job"] > third:
        failures.append(
            f"calls per job {warm['calls_per_job']} > a third of the loop's ({third:.2f})"
        )
    if warm["delay_p95"] > 5.0:
        failures.append(f"p95 delay {warm['delay_p95']} s > 5 s")
    if (
        matching_warm["delay_p50"] > base["delay_p50"]
        or matching_warm["delay_p95"] > base["delay_p95"]
        or matching_warm["calls_per_job"] >= base["calls_per_job"]
    ):
        failures.append("the matching setting does not match the 3-s loop's delay with fewer calls")
    return verdict("polling", figures, failures)


if __name__ == "__main__":
    sys.exit(main())
