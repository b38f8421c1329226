"""When to poll next: pure arithmetic, driven with any clock and a seeded random source."""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import pytest

from bot.schedule import LATE_SHARE, PLAN_EVERY, PollSchedule, generation_seconds


def schedule(
    initial: float = 3.0, maximum: float = 30.0, seed: int = 7, target: float = 5.0
) -> PollSchedule:
    return PollSchedule(initial=initial, maximum=maximum, rng=random.Random(seed), target=target)


# ---------------------------------------------------------------- normal polling


def test_first_delay_is_the_initial_wait() -> None:
    assert schedule().next_delay(elapsed=0, status="queued", rendering=False) == 3.0


def test_delay_never_drops_below_the_initial_wait() -> None:
    plan = schedule()
    for elapsed in (0, 1, 5, 10, 14.9):
        assert plan.next_delay(elapsed=elapsed, status="running", rendering=False) >= 3.0


def test_a_new_install_does_not_poll_like_the_three_second_loop() -> None:
    # Before anything is learned, the prior (runs take minutes) spaces the first half minute's
    # looks out; the first comes after POLL_INITIAL_SECONDS all the same.
    plan, now, looks = schedule(), 3.0, 1
    assert plan.next_delay(elapsed=0.0, status="queued", rendering=False) == 3.0
    while now < 30:
        now, looks = (
            now + plan.next_delay(elapsed=now, status="running", rendering=False),
            looks + 1,
        )
    assert looks <= 7  # the 3-second loop makes 10


def test_with_nothing_learned_the_plan_is_cautious() -> None:
    # What it knows may be off: it plans fewer late runs than once runs are known.
    fresh, known = schedule(), schedule()
    for i in range(300):
        known.learn("any", 90.0 * 2 ** ((i % 30 - 15) / 10))
    fresh.next_delay(elapsed=3.0, status="running", rendering=False)
    known.next_delay(elapsed=3.0, status="running", rendering=False)
    assert fresh._plans["any"].plan.late < 0.5 * LATE_SHARE
    assert 0.5 * LATE_SHARE < known._plans["any"].plan.late <= LATE_SHARE


def test_delay_stretches_for_a_run_far_past_the_typical_length() -> None:
    plan = schedule()
    typical = plan.next_delay(elapsed=90, status="running", rendering=False)
    assert plan.next_delay(elapsed=3_000, status="running", rendering=False) > typical


@pytest.mark.parametrize("elapsed", [150, 600, 3_600, 86_400, 10**9])
def test_delay_never_exceeds_the_maximum(elapsed: float) -> None:
    delay = schedule().next_delay(elapsed=elapsed, status="running", rendering=False)
    assert 3.0 <= delay <= 30.0


@pytest.mark.parametrize("elapsed", [10**5, 10**6, 10**9])
def test_delay_reaches_the_maximum_for_a_very_long_run(elapsed: float) -> None:
    assert schedule().next_delay(elapsed=elapsed, status="running", rendering=False) == 30.0


def test_delay_stays_between_initial_and_maximum_with_learned_run_times() -> None:
    plan = schedule()
    for i in range(60):
        plan.learn("10-30s", 40.0 + i)
    for elapsed in range(0, 400, 7):
        for bucket in ("10-30s", "1-5min", "any"):
            delay = plan.next_delay(
                elapsed=elapsed, status="running", rendering=False, bucket=bucket
            )
            assert 3.0 <= delay <= 30.0, (elapsed, bucket, delay)


def test_delay_respects_a_small_configured_maximum() -> None:
    plan = schedule(initial=0.05, maximum=0.2)
    for elapsed in (0, 1, 10, 1_000):
        assert plan.next_delay(elapsed=elapsed, status="running", rendering=False) <= 0.2


@pytest.mark.parametrize("elapsed", [0, 60, 10_000])
def test_delay_is_short_while_the_file_renders(elapsed: float) -> None:
    plan = schedule()
    rendering = plan.next_delay(elapsed=elapsed, status="completed", rendering=True)
    assert rendering <= 3.0  # never slower than the first wait: the link is seconds away


def test_rendering_polls_faster_than_a_long_run() -> None:
    plan = schedule()
    generating = plan.next_delay(elapsed=10_000, status="running", rendering=False)
    rendering = plan.next_delay(elapsed=10_000, status="completed", rendering=True)
    assert rendering < generating


def test_render_delay_is_not_longer_than_a_small_initial_wait() -> None:
    plan = schedule(initial=0.5, maximum=5)
    assert plan.next_delay(elapsed=500, status="completed", rendering=True) <= 0.5


@pytest.mark.parametrize("elapsed", [0, 5, 10_000])
def test_awaiting_user_input_waits_the_maximum(elapsed: float) -> None:
    delay = schedule().next_delay(elapsed=elapsed, status="awaiting_user_input", rendering=False)
    assert delay == 30.0


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("errors", [1, 2, 3, 5, 8])
def test_error_delay_jitter_stays_within_the_backoff_bounds(errors: int) -> None:
    plan = schedule()
    ceiling = min(2 * 30.0, 3.0 * 2 ** (errors - 1))
    samples = [plan.error_delay(errors) for _ in range(500)]
    assert min(samples) >= 1.0
    assert max(samples) <= ceiling
    assert len(set(samples)) > 100  # jittered, not one fixed value


def test_error_delay_is_reproducible_with_a_seeded_random_source() -> None:
    first = [schedule(seed=3).error_delay(n) for n in range(1, 10)]
    second = [schedule(seed=3).error_delay(n) for n in range(1, 10)]
    assert first == second


def test_error_delay_grows_with_consecutive_errors() -> None:
    plan = schedule(initial=1.0, maximum=100.0)
    means = [statistics.mean(plan.error_delay(errors) for _ in range(400)) for errors in (1, 3, 5)]
    assert means[0] < means[1] < means[2]


def test_error_delay_is_capped_for_a_long_run_of_errors() -> None:
    plan = schedule()
    samples = [plan.error_delay(errors) for errors in (20, 50, 1_000) for _ in range(300)]
    assert max(samples) <= 60.0
    assert max(samples) > 30.0 * 0.5  # still a real backoff, not the initial wait


def test_error_delay_never_exceeds_the_configured_longest_wait() -> None:
    # POLL_MAX_SECONDS is "the longest wait between two status calls of one job" (SPEC).
    plan = schedule()
    samples = [plan.error_delay(errors) for errors in (6, 10, 50) for _ in range(300)]
    assert max(samples) <= 30.0


@pytest.mark.parametrize("retry_after", [0.5, 7.0, 45.0, 120.0])
@pytest.mark.parametrize("errors", [1, 4, 30])
def test_error_delay_is_never_shorter_than_retry_after(retry_after: float, errors: int) -> None:
    plan = schedule()
    for _ in range(200):
        assert plan.error_delay(errors, retry_after) >= retry_after


def test_a_long_retry_after_is_honoured_beyond_the_cap() -> None:
    assert schedule().error_delay(1, 600.0) == 600.0


def test_error_delay_with_a_tiny_initial_wait_still_backs_off() -> None:
    plan = schedule(initial=0.05, maximum=0.2)
    samples = [plan.error_delay(errors) for errors in (1, 2, 10) for _ in range(200)]
    assert min(samples) >= 0.05 / 3  # the floor is a third of the first wait (1 s at 3 s)
    assert max(samples) <= 0.4


# ---------------------------------------------------------------- learning from finished runs


def learned(samples: list[float], bucket: str = "any", **kwargs: float) -> PollSchedule:
    schedule = PollSchedule(initial=3.0, maximum=30.0, **kwargs)  # type: ignore[arg-type]
    for seconds in samples:
        schedule.learn(bucket, seconds)
    return schedule


def test_learned_schedule_polls_densely_where_runs_tend_to_finish() -> None:
    # Runs that all finish between 100 and 140 s: little reason to look at 20 s, every reason
    # to look often around 120 s.
    schedule = learned([100 + i for i in range(41)])
    early = schedule.next_delay(elapsed=20, status="running", rendering=False)
    bulk = schedule.next_delay(elapsed=115, status="running", rendering=False)
    assert early >= 10.0
    assert bulk <= 6.0 < early  # (the render after `completed` adds a little slack to the bulk)


def test_a_few_finished_runs_move_the_schedule_less_than_many() -> None:
    cold = PollSchedule(initial=3.0, maximum=30.0)
    few, many = learned([120.0] * 3), learned([120.0 + i * 0.1 for i in range(300)])
    kwargs = {"elapsed": 20, "status": "running", "rendering": False}
    gaps = [plan.next_delay(**kwargs) for plan in (cold, few, many)]  # type: ignore[arg-type]
    assert abs(gaps[1] - gaps[0]) < abs(gaps[2] - gaps[0])


def test_a_run_longer_than_any_seen_is_looked_at_less_often() -> None:
    schedule = learned([60 + i for i in range(200)])
    bulk = schedule.next_delay(elapsed=70, status="running", rendering=False)
    assert schedule.next_delay(elapsed=2_000, status="running", rendering=False) > 2 * bulk


def test_each_requested_duration_learns_on_its_own() -> None:
    schedule = learned([20 + i * 0.5 for i in range(30)], bucket="<10s")
    for i in range(30):
        schedule.learn("1-5min", 300 + i)
    short = schedule.next_delay(elapsed=25, status="running", rendering=False, bucket="<10s")
    long = schedule.next_delay(elapsed=25, status="running", rendering=False, bucket="1-5min")
    assert short < long


def test_a_bucket_with_too_few_runs_borrows_from_all_runs() -> None:
    schedule = learned([100 + i for i in range(40)], bucket="10-30s")
    rare = schedule.next_delay(elapsed=110, status="running", rendering=False, bucket="1-5min")
    known = schedule.next_delay(elapsed=110, status="running", rendering=False, bucket="10-30s")
    assert rare == known


def test_nonsense_samples_are_not_learned() -> None:
    schedule = learned([float("nan"), -1.0, 0.0, float("inf")])
    assert schedule.samples("any") == []


def test_generation_time_uses_completed_at_within_the_window_we_saw_it_finish() -> None:
    # Seen running at 100 s, completed at 130 s; Motion says it completed at 112 s.
    assert (
        generation_seconds(completed_at=1112.0, sent_at=1000.0, previous_look=1100.0, now=1130.0)
        == 112.0
    )
    # A skewed clock cannot move it outside what we saw.
    assert (
        generation_seconds(completed_at=900.0, sent_at=1000.0, previous_look=1100.0, now=1130.0)
        == 100.0
    )
    assert (
        generation_seconds(completed_at=2000.0, sent_at=1000.0, previous_look=1100.0, now=1130.0)
        == 130.0
    )
    # Without completed_at: the middle of the window.
    assert (
        generation_seconds(completed_at=None, sent_at=1000.0, previous_look=1100.0, now=1130.0)
        == 115.0
    )


# ---------------------------------------------------------------- runs still going, scale


def test_runs_still_going_keep_the_first_finishers_from_rushing_everyone() -> None:
    # A burst: 100 runs, 20 of which finished quickly; the other 80 are known to be still
    # going at 60 s. Without them, the history says "everything ends by 45 s".
    naive, aware = schedule(), schedule()
    for i in range(20):
        naive.learn("any", 30 + i * 0.75)
        aware.learn("any", 30 + i * 0.75, key=("done", i))
    for i in range(80):
        aware.going(i, "any", 60 + i * 0.1)
    kwargs = {"elapsed": 40, "status": "running", "rendering": False}
    assert aware.next_delay(**kwargs) > naive.next_delay(**kwargs)  # type: ignore[arg-type]


def test_a_finished_run_is_no_longer_counted_as_going() -> None:
    plan = schedule()
    plan.next_delay(elapsed=50, status="running", rendering=False, key="run-1")
    plan.next_delay(elapsed=10, status="running", rendering=False, key="run-2")
    plan.learn("any", 55, key="run-1")
    plan.next_delay(elapsed=5, status="completed", rendering=True, key="run-2")
    assert plan._open == {} and plan._open_sorted == {"any": []}


def follow_burst(
    scale: float, seed: int = 3, jobs: int = 120, target: float = 5.0
) -> tuple[list[int], list[float]]:
    """Follow concurrent runs with one schedule, as JobService does (first look after the
    initial wait, learning each run when it is seen completed); durations × `scale`."""
    rng = random.Random(seed)
    runs = [
        (
            rng.uniform(0, 60) * scale,
            rng.lognormvariate(4.8, 0.6) * scale,
            rng.uniform(1, 20) * scale,
        )
        for _ in range(jobs)
    ]
    plan = schedule(initial=3.0 * scale, maximum=30.0 * scale, target=target * scale)
    for _ in range(50):
        plan.learn("any", rng.lognormvariate(4.8, 0.6) * scale)
    looks = [(start + 3.0 * scale, i) for i, (start, _, _) in enumerate(runs)]
    calls, delays, learned_runs = [0] * jobs, [0.0] * jobs, set()
    while looks:
        looks.sort()
        now, i = looks.pop(0)
        start, generation, render = runs[i]
        calls[i] += 1
        elapsed = now - start
        if elapsed >= generation and i not in learned_runs:
            plan.learn("any", generation, key=i)
            learned_runs.add(i)
        if elapsed >= generation + render:
            delays[i] = elapsed - generation - render
            continue
        rendering = elapsed >= generation
        status = "completed" if rendering else "running"
        delay = plan.next_delay(elapsed=elapsed, status=status, rendering=rendering, key=i)
        looks.append((now + delay, i))
    return calls, delays


def test_the_schedule_is_scale_free() -> None:
    # Every duration and the three POLL_* settings divided by 10: the same calls per job, a tenth
    # of the delay (up to floating-point rounding at a look that lands exactly on an edge).
    calls, delays = follow_burst(1.0)
    calls_tenth, delays_tenth = follow_burst(0.1)
    assert sum(calls_tenth) == pytest.approx(sum(calls), rel=0.01)
    # Run by run nearly the same (a look landing on a cell's edge may tip one plan the other way,
    # and the runs after it see a different history).
    assert sum(a == b for a, b in zip(calls, calls_tenth, strict=True)) >= 0.9 * len(calls)
    assert sum(delays_tenth) == pytest.approx(sum(delays) / 10, rel=0.05)
    assert statistics.quantiles(delays_tenth, n=20)[-1] == pytest.approx(
        statistics.quantiles(delays, n=20)[-1] / 10, rel=0.05
    )


def test_a_longer_target_spends_fewer_calls_for_a_longer_delay() -> None:
    """POLL_TARGET_P95_SECONDS steers the schedule: at the default it is the schedule as tuned,
    twice as long spends fewer calls and lets the delay grow, half as long the reverse."""
    calls, delays = follow_burst(1.0)
    calls_short, delays_short = follow_burst(1.0, target=2.5)
    calls_long, delays_long = follow_burst(1.0, target=10.0)
    assert sum(calls_short) > sum(calls) * 1.15 > sum(calls_long) * 1.3
    p95 = [statistics.quantiles(d, n=20)[-1] for d in (delays_short, delays, delays_long)]
    assert p95[0] < p95[1] < p95[2]
    assert p95[1] <= 5.0  # the default meets its target on the workload it was tuned on


def test_the_target_moves_the_gaps_where_runs_end_but_not_the_caps() -> None:
    def gap(target: float, elapsed: float) -> float:
        plan = schedule(target=target)
        for i in range(300):
            plan.learn("any", 60.0 + (i % 60))  # runs end between 60 and 120 s
        return plan.next_delay(elapsed=elapsed, status="running", rendering=False)

    assert gap(10.0, 90.0) > gap(5.0, 90.0) * 1.3
    assert gap(2.0, 90.0) >= 3.0  # never below POLL_INITIAL_SECONDS
    assert gap(1000.0, 600.0) <= 30.0  # POLL_MAX_SECONDS caps every gap
    assert schedule(target=5.0).next_delay(elapsed=0.0, status="running", rendering=True) == 3.0


def test_a_run_that_ended_without_completing_no_longer_counts_as_going() -> None:
    with_failed = PollSchedule(3.0, 30.0)
    without = PollSchedule(3.0, 30.0)
    for key in range(50):
        with_failed.next_delay(elapsed=600.0, status="running", rendering=False, key=key)
        with_failed.forget(key)
    assert with_failed.next_delay(elapsed=60.0, status="running", rendering=False) == (
        without.next_delay(elapsed=60.0, status="running", rendering=False)
    )


def test_a_restart_tells_the_schedule_about_the_runs_still_going(tmp_path: Path) -> None:
    """The runs a previous process left generating count as going from the first look on,
    so a restart with many long runs does not poll like a fresh install."""
    from bot.jobs import JobService
    from bot.motion import MotionClient
    from bot.slack.out import SlackOut, make_client
    from bot.store import Store

    store = Store(str(tmp_path / "motion.db"))
    now = 1_763_000_000.0
    for i in range(200):
        job_id, run_id = store.create_job(
            team_id="T", channel_id="C", requester="U", response_url=None,
            request={"prompt": f"p{i}"}, sandbox=False, now=now - 1200,
        )  # fmt: skip
        store.mark_sending(run_id, baseline_completed_at=None, baseline_url=None, now=now - 1200)
        store.mark_running(run_id, job_id, f"m{i}", now - 1200)
    restarted, fresh = PollSchedule(3.0, 30.0), PollSchedule(3.0, 30.0)
    service = JobService(
        store, MotionClient("http://127.0.0.1:9", "motion_x"), SlackOut(make_client("x", "http://127.0.0.1:9/")),
        schedule=restarted, sandbox=False, clock=lambda: now,
    )  # fmt: skip
    service.recover()
    look = {"elapsed": 600.0, "status": "running", "rendering": False}
    assert restarted.next_delay(**look) > fresh.next_delay(**look)
    store.close()


def test_a_background_schedule_keeps_its_plan_until_the_new_one_is_worked_out() -> None:
    """In the app, plans are worked out on a thread: a look never waits for one (but the very
    first), and the new plan takes over once it is there."""
    import threading
    import time

    plan = schedule()
    plan.background = True
    for i in range(40):
        plan.learn("any", 100.0 + i)
    # No plan yet: a look every target (5 s) while the first is worked out on a thread.
    assert plan.next_delay(elapsed=20.0, status="running", rendering=False) == 5.0
    for _ in range(200):
        if not plan._planning:
            break
        time.sleep(0.05)
    first = plan.next_delay(elapsed=20.0, status="running", rendering=False)
    assert plan._plans["any"].finished == 40 and first > 5.0
    for i in range(40):
        plan.learn("any", 20.0 + i * 0.25)  # now runs end around 20-30 s too
    # Within PLAN_EVERY of the last plan, a burst of news starts no new one...
    assert plan.next_delay(elapsed=20.0, status="running", rendering=False) == first
    assert not plan._planning and plan._plans["any"].finished == 40
    plan._started["any"] -= PLAN_EVERY  # ...after it, one is started
    # The old plan answers (the new one, once there, looks sooner): handed to a thread.
    assert plan.next_delay(elapsed=20.0, status="running", rendering=False) == first
    for _ in range(200):
        if not plan._planning:
            break
        time.sleep(0.05)
    assert not plan._planning and plan._plans["any"].finished == 80
    assert plan.next_delay(elapsed=20.0, status="running", rendering=False) < first
    assert not any(t.name == "poll-plan" for t in threading.enumerate())


def test_one_very_long_run_does_not_spoil_everyone_elses_plan() -> None:
    # A run left going for five hours (Keep waiting) among 499 of about 90 s: the grid may
    # grow coarser but never so coarse that late runs cannot be told apart.
    with_it, without = schedule(), schedule()
    for i in range(499):
        with_it.learn("any", 80.0 + (i % 20))
        without.learn("any", 80.0 + (i % 20))
    with_it.learn("any", 18_000.0)
    with_it.going("stuck", "any", 20_000.0)
    near, far = (
        [p.next_delay(elapsed=e, status="running", rendering=False) for e in (3.0, 70.0, 85.0)]
        for p in (with_it, without)
    )
    plan = with_it._plans["any"].plan
    assert plan.step <= 2.5 and plan.late <= LATE_SHARE
    assert all(a <= b + 1.0 for a, b in zip(near, far, strict=True))  # no lazier than without
    assert near[2] <= 6.0


def test_runs_learned_after_the_history_is_full_still_move_the_plan() -> None:
    plan = schedule()
    for i in range(500):
        plan.learn("any", 85.0 + (i % 10))
    slow = plan.next_delay(elapsed=3.0, status="running", rendering=False)
    for i in range(500):  # the history (500 kept) now holds only these
        plan.learn("any", 10.0 + (i % 5))
    fast = plan.next_delay(elapsed=3.0, status="running", rendering=False)
    assert fast < slow and fast <= 15.0  # runs now end by 15 s: the plan followed them
