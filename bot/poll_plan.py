"""The fewest status calls that keep runs' announcements within a delay: worked out, not tuned.

A status call tells only "still generating", "rendering since `completed_at`" or "ready"; no
progress. So the best a poller can do is a fixed sequence of looks while a run generates and,
once a look finds it rendering (and since when), a sequence of looks through the render. Given
how long generations and renders take (as probabilities on a grid), `solve` finds both sequences
by dynamic programming: the cost of a run is its calls plus `price` for a run announced more than
`delay` after its video was ready, and `price` is raised until the expected share of such late
runs is within `late_share` (that is what "p95 delay ≤ delay" asks when `late_share` is 5 %).

The same arithmetic serves two callers: the schedule (bot/schedule.py), which plans from the runs
it has learned, and `bench/polling.py --bound`, which plans from a workload's true distributions to
show the least any poller could spend on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

PRICE_LOW, PRICE_HIGH = 0.5, 1e6  # a late run is worth at least / at most this many calls
BRACKET = 2.0  # the search for the price steps by this factor from the hint...
BISECTIONS = 8  # ...then halves the bracket at most this often...
PRECISION = 0.1  # ...stopping once it is this narrow
FINE_GAPS = 10  # gaps up to this many cells are all tried; longer ones every other cell


@dataclass(frozen=True)
class Plan:
    """Gaps to take, by the age of a run (generating) or of its render (rendering)."""

    step: float  # seconds per grid cell
    generating: tuple[float, ...]  # seconds to wait after a look at age i·step
    rendering: tuple[float, ...]  # seconds to wait after a look at render age k·step
    calls: float  # expected status calls per run (the first look included)
    late: float  # expected share of runs announced more than `delay` after ready
    price: float  # the price of a late run that the plan was solved at
    work: int  # grid cells × gaps tried, over every solve: what working it out cost

    def generating_gap(self, age: float) -> float:
        """Seconds until the next look at a run still generating after `age` seconds."""
        return _lookup(self.generating, age, self.step)

    def rendering_gap(self, render_age: float) -> float:
        """Seconds until the next look at a run rendering for `render_age` seconds."""
        return _lookup(self.rendering, render_age, self.step)


def _lookup(gaps: tuple[float, ...], age: float, step: float) -> float:
    """The look planned after the grid point at or before `age`, as a wait from `age` (a look
    that came a little late keeps the plan's next one in place); at least one cell."""
    # (a hair of slack: ages summed from planned gaps land on grid points, give or take rounding)
    index = max(0, min(len(gaps) - 1, math.floor(max(0.0, age) / step + 1e-6)))
    if index == len(gaps) - 1:
        return gaps[index]  # past the grid: the last gap, from now
    return max(step, index * step + gaps[index] - age)


@dataclass(frozen=True)
class _Limits:
    """Gaps allowed, in cells."""

    shortest: int
    longest: int
    shortest_render: int
    longest_render: int
    first: int | None
    fine: int  # gaps up to this many cells are all tried; longer ones every other cell

    @property
    def gaps(self) -> tuple[int, ...]:
        return _gaps(self.shortest, self.longest, self.fine)

    @property
    def render_gaps(self) -> tuple[int, ...]:
        return _gaps(self.shortest_render, self.longest_render, self.fine)

    def work(self, generation_cells: int, render_cells: int) -> int:
        return generation_cells * (len(self.gaps) + self.longest) + render_cells * len(
            self.render_gaps
        )


def _gaps(shortest: int, longest: int, fine_up_to: int) -> tuple[int, ...]:
    """The gaps tried, in cells: every one up to `fine_up_to`, then every other, the longest."""
    fine = range(shortest, min(longest, fine_up_to) + 1)
    coarse = range(max(shortest, fine_up_to) + 2, longest, 2)
    return tuple(sorted({*fine, *coarse, longest}))


@dataclass(frozen=True)
class _Solution:
    calls: float
    late: float
    generating: tuple[float, ...]
    rendering: tuple[float, ...]


def solve(
    generation: Sequence[float],
    render: Sequence[float],
    *,
    step: float,
    delay: float,
    late_share: float,
    shortest: float,
    longest: float,
    render_longest: float | None = None,
    first: float | None = None,
    price_hint: float | None = None,
    fine_gaps: int = FINE_GAPS,
) -> Plan:
    """The cheapest plan whose expected share of late runs is within `late_share`.

    `generation[i]` is the chance that a run's generation ends in ((i-1)·step, i·step] (the list is
    scaled to sum to 1), `render[j]` that its render takes j·step. Gaps are between `shortest`
    and `longest` seconds (at least one step), `render_longest` while rendering; the first look
    comes `first` seconds after the create when given. `price_hint`, the price of an earlier
    plan for similar runs, shortens the search. Gaps longer than `fine_gaps` cells are tried
    every other cell (a bound wants them all).
    """
    gen, ren = _normalised(generation), _normalised(render)
    longest_cells = max(1, round(longest / step))
    shortest_cells = max(1, min(longest_cells, math.ceil(shortest / step - 1e-9)))
    render_cells = max(1, round((render_longest or longest) / step))
    shortest_render = min(shortest_cells, render_cells)
    first_cells = None if first is None else max(1, min(longest_cells, round(first / step)))
    # A generation is known to the cell (it ends somewhere within the one it is put at the end
    # of), so a run is counted late one cell early: the plan never relies on that cell.
    late_cells = delay / step - 1
    limits = _Limits(
        shortest_cells, longest_cells, shortest_render, render_cells, first_cells, fine_gaps
    )

    solves = 0

    def at(price: float) -> _Solution:
        nonlocal solves
        solves += 1
        return _solve_at(gen, ren, limits, late_cells, price)

    # Bracket the price (doubling away from the hint), then halve the bracket.
    price = min(PRICE_HIGH, max(PRICE_LOW, price_hint or 30.0))
    solution = at(price)
    if solution.late <= late_share:
        high, best = price, solution
        low = price
        while low > PRICE_LOW:
            low = max(PRICE_LOW, low / BRACKET)
            trial = at(low)
            if trial.late > late_share:
                break
            high, best = low, trial
        else:
            return _plan(step, best, high, solves * limits.work(len(gen), len(ren)))
    else:
        low, high = price, price
        while True:
            if high >= PRICE_HIGH:  # even a price beyond reason leaves runs late: the finest
                return _plan(step, solution, high, solves * limits.work(len(gen), len(ren)))
            high = min(PRICE_HIGH, high * BRACKET)
            solution = at(high)
            if solution.late <= late_share:
                best = solution
                break
            low = high
    for _ in range(BISECTIONS):
        if high / low < 1 + PRECISION:
            break
        middle = math.sqrt(low * high)
        trial = at(middle)
        if trial.late <= late_share:
            high, best = middle, trial
        else:
            low = middle
    return _plan(step, best, high, solves * limits.work(len(gen), len(ren)))


def _plan(step: float, solution: _Solution, price: float, work: int) -> Plan:
    return Plan(
        step=step,
        work=work,
        generating=tuple(g * step for g in solution.generating),
        rendering=tuple(g * step for g in solution.rendering),
        calls=solution.calls,
        late=solution.late,
        price=price,
    )


def _normalised(chances: Sequence[float]) -> list[float]:
    """Non-negative chances summing to 1; the first cell (age 0) holds nothing for a generation."""
    values = [max(0.0, c) for c in chances]
    total = sum(values)
    if total <= 0:
        return [0.0, 1.0]
    return [v / total for v in values]


def _solve_at(
    gen: list[float], ren: list[float], limits: _Limits, late_cells: float, price: float
) -> _Solution:
    """Both sequences at one price: costs, calls and late shares are carried unconditioned
    (multiplied by the chance of still being in that state), so they add up across outcomes."""
    # Render phase. survive[k] = P(R > k); late if the look comes more than `late_cells` after.
    last_render = len(ren) - 1
    below = [0.0] * (last_render + 2)  # below[k] = P(R < k)
    for j, q in enumerate(ren):
        below[j + 1] = below[j] + q
    survive = [1.0 - below[k + 1] for k in range(last_render + 1)] + [0.0]

    def p_less(k: float) -> float:  # P(R < k) for a possibly fractional k
        index = math.ceil(k)
        if index <= 0:
            return 0.0
        return below[min(index, last_render + 1)]

    r_long, render_gaps = limits.longest_render, limits.render_gaps
    r_cost = [0.0] * (last_render + r_long + 2)
    r_calls = [0.0] * len(r_cost)
    r_late = [0.0] * len(r_cost)
    r_gap = [r_long] * (last_render + 1)
    for k in range(last_render - 1, -1, -1):
        alive = survive[k]
        if alive <= 0:
            continue
        choice, value = r_long, math.inf
        seen_below = below[k + 1]
        for m in render_gaps:
            late = max(0.0, p_less(k + m - late_cells) - seen_below)
            value_m = alive + price * late + r_cost[k + m]
            if value_m < value:
                choice, value = m, value_m
        r_cost[k] = value
        r_calls[k] = alive + r_calls[k + choice]
        r_late[k] = max(0.0, p_less(k + choice - late_cells) - seen_below) + r_late[k + choice]
        r_gap[k] = choice

    # What a look at render age k (k cells after the generation ended) goes on to cost.
    cells = limits.longest
    after_cost, after_calls, after_late = [0.0] * cells, [0.0] * cells, [0.0] * cells
    for k in range(cells):
        done_late = p_less(k - late_cells)
        follow = min(k, last_render)
        after_cost[k] = price * done_late + r_cost[follow]
        after_calls[k] = r_calls[follow]
        after_late[k] = done_late + r_late[follow]

    # Generation phase, from the oldest age back to the create.
    gaps = limits.gaps
    last = len(gen) - 1
    g_alive = [0.0] * (last + cells + 2)  # P(G > i)
    for i in range(last - 1, -1, -1):
        g_alive[i] = g_alive[i + 1] + gen[i + 1]
    v_cost = [0.0] * (last + cells + 2)
    v_calls = [0.0] * len(v_cost)
    v_late = [0.0] * len(v_cost)
    g_gap = [cells] * (last + 1)
    # pending[m - 1]: a look m cells after one at age i, over the generations ending between.
    pending_cost = [0.0] * cells
    pending_calls = [0.0] * cells
    pending_late = [0.0] * cells
    for i in range(last - 1, -1, -1):
        p = gen[i + 1]
        # One cell earlier: each later look also covers a generation ending at i + 1.
        pending_cost = [0.0, *pending_cost[:-1]]
        pending_calls = [0.0, *pending_calls[:-1]]
        pending_late = [0.0, *pending_late[:-1]]
        if p > 0:
            for m in range(cells):  # the look at i + 1 + m finds it m cells into its render
                pending_cost[m] += p * after_cost[m]
                pending_calls[m] += p * after_calls[m]
                pending_late[m] += p * after_late[m]
        alive = g_alive[i]
        if alive <= 0:
            continue
        tried = gaps if i or limits.first is None else (limits.first,)
        choice, value = cells, math.inf
        for m in tried:
            value_m = alive + pending_cost[m - 1] + v_cost[i + m]
            if value_m < value:
                choice, value = m, value_m
        v_cost[i] = value
        v_calls[i] = alive + pending_calls[choice - 1] + v_calls[i + choice]
        v_late[i] = pending_late[choice - 1] + v_late[i + choice]
        g_gap[i] = choice
    return _Solution(
        calls=v_calls[0],
        late=v_late[0],
        generating=tuple(float(g) for g in g_gap),
        rendering=tuple(float(g) for g in r_gap),
    )
