"""When to ask Motion again: pure arithmetic, so tests and benchmarks can drive it with any clock.

Status calls may cost credits and always cost the provider, yet a late look delays the video.
The schedule spends as few calls as it can while keeping the share of runs announced more than
`target` (POLL_TARGET_P95_SECONDS) after their video was ready within `LATE_SHARE`, so the p95
delay stays within the target: `bot.poll_plan` works out the looks from how long generations and
renders take here. Those come from the app's own finished runs (per requested duration), from
the runs still going (each is known to last at least as long as it has run so far, so a burst
of new jobs is not misled by its first, shortest finishers) and from a broad prior that stands
for a few runs of typical length, so a new install has a plan from its first job. With few runs
seen, the plan aims at a smaller share of late runs, since what it knows may be off.

Once Motion says `completed` (and when), the run is rendering: the render's own plan says when
the link is likely, and a look made before `completed_at` is known falls back to looking every
`POLL_INITIAL_SECONDS`.

Scale-free: the grid and the prior are multiples of `target` and `initial`, so a deployment whose
runs take a tenth as long, with a tenth of the settings, makes the same calls per job with a
tenth of the delay.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import math
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field

from bot.poll_plan import Plan, solve

log = logging.getLogger(__name__)

# Durations in units of `initial` (POLL_INITIAL_SECONDS; 3 s by default) unless said otherwise.
PRIOR_MEDIAN = 30.0  # the prior: generation times lognormal around 30 units (90 s at 3 s)...
PRIOR_SPREAD = 1.0  # ...with this σ of the logarithm (a factor ~7 either way covers 95 %)...
PRIOR_WEIGHT = 10.0  # ...worth this many finished runs
RENDER_PRIOR = 3.0  # renders: lognormal around this many units (9 s at 3 s)...
RENDER_SPREAD = 1.0  # ...with this σ of the logarithm...
RENDER_WEIGHT = 3.0  # ...worth this many renders
SMOOTH_MIN, SMOOTH_MAX = 0.03, 0.3  # smoothing of learned times, as a share of the age
LATE_SHARE = 0.03  # planned share of runs announced later than the target (p95 needs ≤ 5 %)
CAUTION = 0.35  # with nothing learned, aim at this fraction of LATE_SHARE...
SETTLED = 150  # ...rising to all of it once this many runs have finished
CELLS_PER_TARGET = 5  # the plan's grid: this many cells per `target`...
MAX_CELLS = 3000  # ...and no more cells than this (a coarser grid for very long runs...
COARSEST = 0.5  # ...but cells of at most half the target: runs beyond the grid are cut off)
HORIZON = 0.001  # the grid ends where fewer than this share of runs are still generating
REPLAN_SHARE = 0.1  # plan again once the runs known grew by this share...
REPLAN_MIN = 3  # ...and at least by this many...
PLAN_EVERY = 2.0  # in the app (background), seconds at least between two plans of a bucket
WORK_PER_LOOK = 1_000  # ...as long as plans cost at most this much work per look on average
WORK_ALLOWANCE = 5_000_000  # (plus this much to begin with: ~2 s of CPU), so planning stays a
# small part of a status call's cost however fast runs come and go
RENDER_GAP = 1.0  # units between looks at a render whose start is not known
RENDER_LONGEST = 3.0  # while rendering, no gap longer than this many targets
ERROR_FLOOR = 1.0 / 3.0  # shortest error backoff (1 s at the default)
MIN_SAMPLES = 20  # a bucket with fewer finished runs borrows the "any" bucket's history
HISTORY = 500  # most recent generation (and render) times kept per bucket
OPEN_RUNS = 20_000  # runs still going remembered at most (the oldest are forgotten first)
ANY = "any"
RENDER = "(render)"  # run_history's bucket for render times


@dataclass(frozen=True)
class _Facts:
    """What a plan is worked out from: finished and still-going generation times, render times
    (each sorted, in seconds)."""

    finished: list[float]
    going: list[float]
    renders: list[float]


@dataclass
class _Planned:
    plan: Plan
    finished: int
    going: int
    oldest: float
    renders: int


@dataclass
class PollSchedule:
    initial: float = 3.0
    maximum: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    target: float = 5.0  # POLL_TARGET_P95_SECONDS: the p95 delay aimed at
    late_share: float = LATE_SHARE
    background: bool = False  # work plans out on a thread, so the event loop never waits
    _samples: dict[str, deque[float]] = field(default_factory=dict)
    _sorted: dict[str, list[float]] = field(default_factory=dict)
    _renders: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    _open: OrderedDict[Hashable, tuple[str, float]] = field(default_factory=OrderedDict)
    _open_sorted: dict[str, list[float]] = field(default_factory=dict)
    _plans: dict[str, _Planned] = field(default_factory=dict)
    _looks: int = 0  # next_delay calls that asked for a plan
    _work: int = 0  # what working plans out has cost, in poll_plan's units
    _planning: set[str] = field(default_factory=set)  # buckets being planned on a thread
    # Runs learned so far, per bucket (never capped, unlike the history kept): a plan is
    # redone when these move, also once the history is full.
    _learned: dict[str, int] = field(default_factory=dict)
    _started: dict[str, float] = field(default_factory=dict)  # when a thread last began, per bucket

    def learn(self, bucket: str, seconds: float, *, key: Hashable | None = None) -> None:
        """Remember how long a run took to reach `completed` (also into the "any" bucket);
        `key` names the run if it was followed with `next_delay(key=...)`. The RENDER bucket
        holds render times (as run_history keeps them)."""
        if key is not None:
            self._close(key)
        if not math.isfinite(seconds) or seconds <= 0:
            return
        if bucket == RENDER:
            self._learned[RENDER] = self._learned.get(RENDER, 0) + 1
            self._renders.append(seconds)
            return
        for name in {bucket, ANY}:
            self._learned[name] = self._learned.get(name, 0) + 1
            samples = self._samples.setdefault(name, deque(maxlen=HISTORY))
            samples.append(seconds)
            self._sorted.pop(name, None)

    def learn_render(self, seconds: float) -> None:
        """Remember how long a render took (from `completed_at` to the link)."""
        self.learn(RENDER, seconds)

    def samples(self, bucket: str) -> list[float]:
        if bucket not in self._sorted:
            self._sorted[bucket] = sorted(self._samples.get(bucket, ()))
        return self._sorted[bucket]

    def next_delay(self, *, elapsed: float, status: str | None, rendering: bool,
                   bucket: str = ANY, key: Hashable | None = None,
                   rendered: float | None = None) -> float:  # fmt: skip
        """Seconds until the next status call for a run that has been going `elapsed` seconds.

        `key` names the run (any hashable, e.g. its database id): while it generates, it counts
        as a run known to last at least `elapsed`, until `learn(..., key=key)`. `rendered`:
        while rendering, seconds since Motion's `completed_at`, when known."""
        if len(self.samples(bucket)) < MIN_SAMPLES:
            bucket = ANY
        if rendering:
            if key is not None:
                self._close(key)
            if rendered is None:  # the render's start is unknown: the link may be close
                return min(self.maximum, self.initial * RENDER_GAP)
            gap = self._plan(bucket).rendering_gap(max(0.0, rendered))
            return min(self.maximum, max(self.initial, gap))
        if status == "awaiting_user_input":
            return self.maximum  # a person has to act in the web app: no rush
        if key is not None:
            self._track(key, bucket, elapsed)
        if elapsed <= 0:
            return min(self.maximum, self.initial)  # the first look: POLL_INITIAL_SECONDS
        gap = self._plan(bucket).generating_gap(elapsed)
        return min(self.maximum, max(self.initial, gap))

    def _plan(self, bucket: str) -> Plan:
        """The bucket's plan, worked out again once what is known of its runs has moved (on a
        thread of its own when `background`, meanwhile keeping the plan it has)."""
        learned, renders = self._learned.get(bucket, 0), self._learned.get(RENDER, 0)
        going = self._open_sorted.get(bucket, [])
        oldest = going[-1] if going else 0.0
        known = self._plans.get(bucket)
        self._looks += 1
        if known is not None and (
            bucket in self._planning
            or self._work > WORK_ALLOWANCE + WORK_PER_LOOK * self._looks  # spent its share
            or (  # in the app, at most one plan a while: a burst of jobs is not a burst of plans
                self.background
                and time.monotonic() - self._started.get(bucket, -math.inf) < PLAN_EVERY
            )
            or not (
                _grew(known.finished, learned)
                or _grew(known.going, len(going))
                or _grew(known.renders, renders)
                or oldest > known.oldest * (1 + REPLAN_SHARE) + self.initial
            )
        ):
            return known.plan
        # What is known now, copied: a planning thread must not read lists the loop changes.
        facts = _Facts(list(self.samples(bucket)), list(going), sorted(self._renders))
        counts = _Planned(known.plan if known else self._stand_in, learned, len(going), oldest,
                          renders)  # fmt: skip
        if not self.background:
            return self._work_out(bucket, facts, counts)
        self._planning.add(bucket)
        self._started[bucket] = time.monotonic()
        try:
            threading.Thread(
                target=self._work_out, args=(bucket, facts, counts), name="poll-plan", daemon=True
            ).start()
        except RuntimeError:  # no thread to be had: plan here, this once
            self._planning.discard(bucket)
            return self._work_out(bucket, facts, counts)
        return counts.plan  # the plan it has, or (none yet) a look every target meanwhile

    def _work_out(self, bucket: str, facts: _Facts, counts: _Planned) -> Plan:
        """Solve a plan from `facts` and keep it with the counts it was made from. A failure is
        logged and the plan it had kept, so it is not tried again before the counts move."""
        try:
            plan = self._solve(facts, counts.plan.price if counts.plan.work else None)
        except Exception:
            log.exception("the poll schedule could not work out a plan; keeping the one it had")
            plan = counts.plan
        finally:
            self._planning.discard(bucket)
        self._work += plan.work
        self._plans[bucket] = dataclasses.replace(counts, plan=plan)
        return plan

    @property
    def _stand_in(self) -> Plan:
        """Before the first plan is worked out (on a thread): a look every target, no later."""
        gap = min(self.maximum, max(self.initial, self.target))
        return Plan(step=gap, generating=(gap,), rendering=(gap,), calls=0, late=0, price=0,
                    work=0)  # fmt: skip

    def _grid_step(self) -> float:
        """Cells of a fifth of the target, fitted so POLL_INITIAL_SECONDS is a whole number."""
        step = self.target / CELLS_PER_TARGET
        cells = self.initial / step
        if abs(cells - round(cells)) < 1e-6 and round(cells) >= 1:
            return step  # (as is: the same arithmetic at any scale)
        return self.initial / max(1, math.ceil(cells))

    def _solve(self, facts: _Facts, hint: float | None) -> Plan:
        step = self._grid_step()
        generation = self._generation_chances(facts, step)
        if len(generation) > MAX_CELLS:  # very long runs: a coarser grid, never past half the
            coarser = min(math.ceil(len(generation) / MAX_CELLS), COARSEST * self.target / step)
            step *= max(1, math.floor(coarser))  # target (a late run must still be told apart)
            generation = _truncated(self._generation_chances(facts, step), MAX_CELLS)
        settled = min(1.0, len(facts.finished) / SETTLED)
        return solve(
            generation,
            self._render_chances(facts.renders, step),
            step=step,
            delay=self.target,
            late_share=self.late_share * (CAUTION + (1 - CAUTION) * settled),
            shortest=self.initial,
            longest=self.maximum,
            render_longest=min(self.maximum, max(self.initial, RENDER_LONGEST * self.target)),
            first=self.initial,
            price_hint=hint,
        )

    def _generation_chances(self, facts: _Facts, step: float) -> list[float]:
        """Chance that a generation ends in each cell of the grid: runs that finished, runs
        still going (censored at their age) and the prior, by Kaplan–Meier with pseudo-runs."""
        finished, going = facts.finished, facts.going
        median, spread = PRIOR_MEDIAN * self.initial, PRIOR_SPREAD
        chances, alive, cell = [0.0], 1.0, 1
        end_i = 0  # finished runs ending before this cell
        gone_g = 0  # runs still going whose age ends before this cell
        while alive > HORIZON:
            low, high = (cell - 1) * step, cell * step
            while end_i < len(finished) and finished[end_i] <= low:
                end_i += 1
            ending = bisect.bisect_right(finished, high, lo=end_i) - end_i
            while gone_g < len(going) and going[gone_g] < high:
                gone_g += 1
            risk = (len(finished) - end_i) + (len(going) - gone_g)
            prior_alive = _lognormal_survival(low, median, spread)
            prior_ending = prior_alive - _lognormal_survival(high, median, spread)
            exposure = risk + PRIOR_WEIGHT * prior_alive
            hazard = (ending + PRIOR_WEIGHT * prior_ending) / exposure if exposure > 0 else 1.0
            hazard = min(1.0, hazard)
            chances.append(alive * hazard)
            alive *= 1 - hazard
            cell += 1
            if cell > 20 * MAX_CELLS:
                break
        chances[-1] += alive  # the few still going past the grid end there
        return _smoothed(chances, _bandwidth(finished))

    def _render_chances(self, renders: list[float], step: float) -> list[float]:
        """Chance that a render takes each cell of the grid: the renders seen and a broad prior
        (lognormal), smoothed like the generations."""
        median, spread = RENDER_PRIOR * self.initial, RENDER_SPREAD
        top = max([median * math.exp(3 * spread), *renders])
        cells = min(math.ceil(top / step) + 1, MAX_CELLS - 1)  # longer renders: in the last
        chances = [0.0] * (cells + 1)
        for j in range(1, cells + 1):
            low, high = (j - 0.5) * step, (j + 0.5) * step
            ending = _lognormal_survival(low, median, spread)
            chances[j] = RENDER_WEIGHT * (ending - _lognormal_survival(high, median, spread))
        seen = [0.0] * (cells + 1)
        for seconds in renders:
            seen[min(cells, max(1, round(seconds / step)))] += 1.0
        smoothed = _smoothed(seen, _bandwidth(renders))
        return [a + b for a, b in zip(chances, smoothed, strict=True)]

    def going(self, key: Hashable, bucket: str, elapsed: float) -> None:
        """A run still generating after `elapsed` seconds (e.g. found in the database at start)."""
        self._track(key, bucket, elapsed)

    def forget(self, key: Hashable) -> None:
        """The run ended without reaching `completed` (failed, stopped): it is no longer going."""
        self._close(key)

    def _track(self, key: Hashable, bucket: str, elapsed: float) -> None:
        self._close(key)
        self._open[key] = (bucket, elapsed)
        for name in {bucket, ANY}:
            bisect.insort(self._open_sorted.setdefault(name, []), elapsed)
        while len(self._open) > OPEN_RUNS:
            self._close(next(iter(self._open)))

    def _close(self, key: Hashable) -> None:
        previous = self._open.pop(key, None)
        if previous is None:
            return
        bucket, elapsed = previous
        for name in {bucket, ANY}:
            going = self._open_sorted[name]
            del going[bisect.bisect_left(going, elapsed)]

    def error_delay(self, errors: int, retry_after: float | None = None) -> float:
        """Capped exponential backoff with full jitter; Retry-After is a floor, never ignored."""
        cap = max(self.maximum, self.initial)  # POLL_MAX_SECONDS bounds error waits too
        ceiling = min(cap, self.initial * (2 ** max(0, errors - 1)))
        delay = max(ERROR_FLOOR * self.initial, self.rng.uniform(0, ceiling))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay


def _truncated(chances: list[float], cells: int) -> list[float]:
    """At most `cells` cells: whatever lies beyond is put in the last (those few runs are
    looked at every POLL_MAX_SECONDS there)."""
    if len(chances) <= cells:
        return chances
    return [*chances[: cells - 1], sum(chances[cells - 1 :])]


def _bandwidth(samples: list[float]) -> float:
    """Half-width of the smoothing, as a share of the age (Silverman's rule on the logarithms):
    a plan worked out from a few hundred runs must not fit the gaps between them."""
    logs = [math.log(x) for x in samples if x > 0]
    if len(logs) < 2:
        return SMOOTH_MAX
    mean = sum(logs) / len(logs)
    spread = math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))
    return min(SMOOTH_MAX, max(SMOOTH_MIN, 1.06 * spread * math.pow(len(logs), -0.2)))


def _smoothed(chances: list[float], share: float) -> list[float]:
    """Each cell's chance spread evenly over the cells within `share` of its age (at least one
    cell either way), keeping the total."""
    out = [0.0] * len(chances)
    last = len(chances) - 1
    delta = [0.0] * (len(chances) + 1)
    for i, c in enumerate(chances):
        if c <= 0:
            continue
        half = max(1, round(i * share))
        low, high = max(1, i - half), min(last, i + half)
        each = c / (high - low + 1)
        delta[low] += each
        delta[high + 1] -= each
    running = 0.0
    for i in range(len(chances)):
        running += delta[i]
        out[i] = running
    return out


def _grew(before: int, now: int) -> bool:
    """Whether a count moved enough to plan again (from or to none always does)."""
    return (before == 0) != (now == 0) or abs(now - before) >= max(
        REPLAN_MIN, REPLAN_SHARE * before
    )


def _lognormal_survival(seconds: float, median: float, spread: float) -> float:
    """The prior's share of runs still generating after `seconds`."""
    if seconds <= 0:
        return 1.0
    z = (math.log(seconds) - math.log(median)) / spread
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def generation_seconds(*, completed_at: float | None, sent_at: float, previous_look: float,
                       now: float) -> float:  # fmt: skip
    """How long a run took, for learning: Motion's `completed_at` when it has one, kept within
    the window in which we saw it finish (which also absorbs clock skew between us and Motion),
    else the middle of that window."""
    low, high = max(0.0, previous_look - sent_at), max(0.0, now - sent_at)
    if completed_at is None:
        return (low + high) / 2
    return min(high, max(low, completed_at - sent_at))
