"""The plan's arithmetic, checked against runs drawn from the same distributions."""

from __future__ import annotations

import math
import random

import pytest

from bot.poll_plan import Plan, solve

STEP = 1.0


def lognormal_cells(median: float, sigma: float, cells: int) -> list[float]:
    def cdf(x: float) -> float:
        return 0.0 if x <= 0 else 0.5 * math.erfc(-math.log(x / median) / sigma / math.sqrt(2))

    return [0.0] + [cdf(i * STEP) - cdf((i - 1) * STEP) for i in range(1, cells)]


def uniform_cells(low: float, high: float) -> list[float]:
    return [
        max(0.0, min(high, (j + 0.5) * STEP) - max(low, (j - 0.5) * STEP)) / (high - low)
        for j in range(math.ceil(high / STEP) + 2)
    ]


def plan_for(median: float, sigma: float, render: tuple[float, float], **kwargs: float) -> Plan:
    options = {"step": STEP, "delay": 5.0, "late_share": 0.05, "shortest": 3.0, "longest": 30.0}
    options |= kwargs
    return solve(
        lognormal_cells(median, sigma, int(median * math.exp(4 * sigma))),
        uniform_cells(*render),
        **options,  # type: ignore[arg-type]
    )


def follow(plan: Plan, generation: float, render: float) -> tuple[int, float]:
    """Calls and delay for one run looked at as the plan says (first look at `first`)."""
    now, calls = 0.0, 0
    while True:
        ended = now >= generation
        if ended and now >= generation + render:
            return calls, now - generation - render
        now += plan.rendering_gap(now - generation) if ended else plan.generating_gap(now)
        calls += 1


@pytest.mark.parametrize(
    ("median", "sigma", "render"), [(30, 0.3, (1, 5)), (120, 1.0, (10, 60)), (60, 0.6, (1, 20))]
)
def test_runs_drawn_from_the_distribution_are_late_as_often_as_planned(
    median: float, sigma: float, render: tuple[float, float]
) -> None:
    plan = plan_for(median, sigma, render, first=3.0)
    rng = random.Random(5)
    runs = [
        (rng.lognormvariate(math.log(median), sigma), rng.uniform(*render)) for _ in range(4000)
    ]
    followed = [follow(plan, g, r) for g, r in runs]
    late = sum(delay > 5.0 for _, delay in followed) / len(followed)
    calls = sum(c for c, _ in followed) / len(followed)
    assert plan.late <= 0.05
    assert late <= plan.late + 0.01  # 4,000 runs: within ~3 standard errors of the plan
    assert calls == pytest.approx(plan.calls, rel=0.1)


def test_allowing_more_late_runs_spends_fewer_calls() -> None:
    strict = plan_for(120, 0.6, (1, 20), late_share=0.01)
    loose = plan_for(120, 0.6, (1, 20), late_share=0.10)
    assert strict.late <= 0.01 and loose.late <= 0.10
    assert loose.calls < strict.calls * 0.9


def test_gaps_stay_within_bounds_and_the_first_look_is_kept() -> None:
    plan = plan_for(120, 1.0, (1, 5), first=3.0, render_longest=15.0)
    assert plan.generating_gap(0.0) == 3.0
    gaps = [plan.generating_gap(float(age)) for age in range(0, 2000, 7)]
    assert all(1.0 <= g <= 30.0 for g in gaps)
    assert all(1.0 <= plan.rendering_gap(float(a)) <= 15.0 for a in range(0, 100, 3))


def test_a_render_known_to_take_a_while_is_not_looked_at_in_its_first_seconds() -> None:
    plan = plan_for(60, 0.3, (20, 40))
    assert plan.rendering_gap(0.0) >= 15.0
    assert plan.rendering_gap(30.0) <= 6.0  # where renders end, as often as the delay needs


def test_a_look_that_came_late_keeps_the_next_planned_look() -> None:
    plan = plan_for(120, 0.6, (1, 20))
    planned = plan.generating_gap(100.0)
    assert plan.generating_gap(100.4) == pytest.approx(planned - 0.4)
