"""When to ask Motion again: pure arithmetic, so tests and benchmarks can drive it with any clock.

Status calls may cost credits and always cost the provider, yet a late look delays the video.
The gap before the next call is `sqrt(2 / (eagerness · hazard))`, the rule that minimises calls
plus delay when the chance of finishing per unit of time is `hazard`: few calls while almost
nothing finishes, dense ones where most runs end. The hazard is estimated from the app's own
finished runs (per requested duration), from the runs still going (each one is known to take at
least as long as it has run so far, so a burst of new jobs is not misled by its first, shortest
finishers), and from a broad prior that stands for a few runs of typical length, so a new
install is frugal from its first job. No gap is longer than half of the run's age, which bounds
how late a run shorter than anything seen can be noticed. While the file renders after
`completed` the schedule looks every `POLL_INITIAL_SECONDS`, since the link is close.

The delay it aims at (`target`, POLL_TARGET_P95_SECONDS) sets the eagerness: the constants were
tuned for a p95 delay within 5 s at the default 3-s `initial` (measured: ~3–4 s on the README's
workload, bench/polling.py), and a gap grows in proportion to the target, so doubling the
target about halves the calls where runs end. It steers the schedule; it does not bound the
delay of a workload unlike the one it was tuned on (docs/performance.md, the sweep).

Scale-free: every time constant is a multiple of `initial` (POLL_INITIAL_SECONDS), so a
deployment whose runs take a tenth as long, with a tenth of the settings, makes the same calls
per job with a tenth of the delay.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field

# Every duration below is in units of `initial` (POLL_INITIAL_SECONDS; 3 s by default).
EAGERNESS = 6.5  # a unit of delay is worth this many calls; higher: more calls, less delay
TUNED_TARGET = 5.0 / 3.0  # ...at this target (5 s at the default 3-s initial), in units
PRIOR_MEDIAN = 30.0  # the prior: generation times lognormal around 30 units (90 s at 3 s)...
PRIOR_SPREAD = 1.0  # ...with this σ of the logarithm (a factor ~7 either way covers 95 %)...
PRIOR_WEIGHT = 10.0  # ...worth this many finished runs
AGE_SHARE = 0.5  # with little history, no gap longer than this share of the run's age
DOUBT = 1.0  # few runs seen ending near this age: look more often (hazard × 1 + DOUBT/√(1+n))
WINDOW = 3.5  # units of history looked at to estimate the hazard...
WINDOW_SHARE = 0.25  # ...or this share of the elapsed time, whichever is longer
RENDER_GAP = 1.0  # units between looks while the file renders
ERROR_FLOOR = 1.0 / 3.0  # shortest error backoff (1 s at the default)
MIN_SAMPLES = 20  # a bucket with fewer finished runs borrows the "any" bucket's history
THIN = 1.0  # while fewer than SETTLED runs have finished, up to this much more eager
SETTLED = 150  # finished runs after which the age cap is lifted
HISTORY = 500  # most recent generation times kept per bucket
OPEN_RUNS = 20_000  # runs still going remembered at most (the oldest are forgotten first)
ANY = "any"


@dataclass
class PollSchedule:
    initial: float = 3.0
    maximum: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    eagerness: float = EAGERNESS
    target: float = 5.0  # POLL_TARGET_P95_SECONDS: the p95 delay aimed at
    _samples: dict[str, deque[float]] = field(default_factory=dict)
    _sorted: dict[str, list[float]] = field(default_factory=dict)
    _open: OrderedDict[Hashable, tuple[str, float]] = field(default_factory=OrderedDict)
    _open_sorted: dict[str, list[float]] = field(default_factory=dict)

    def learn(self, bucket: str, seconds: float, *, key: Hashable | None = None) -> None:
        """Remember how long a run took to reach `completed` (also into the "any" bucket);
        `key` names the run if it was followed with `next_delay(key=...)`."""
        if key is not None:
            self._close(key)
        if not math.isfinite(seconds) or seconds <= 0:
            return
        for name in {bucket, ANY}:
            samples = self._samples.setdefault(name, deque(maxlen=HISTORY))
            samples.append(seconds)
            self._sorted.pop(name, None)

    def samples(self, bucket: str) -> list[float]:
        if bucket not in self._sorted:
            self._sorted[bucket] = sorted(self._samples.get(bucket, ()))
        return self._sorted[bucket]

    def next_delay(self, *, elapsed: float, status: str | None, rendering: bool,
                   bucket: str = ANY, key: Hashable | None = None) -> float:  # fmt: skip
        """Seconds until the next status call for a run that has been going `elapsed` seconds.

        `key` names the run (any hashable, e.g. its database id): while it generates, it counts
        as a run known to last at least `elapsed`, until `learn(..., key=key)`."""
        if rendering:  # the only place allowed below POLL_INITIAL_SECONDS: the link is close
            if key is not None:
                self._close(key)
            return min(self.maximum, self.initial * RENDER_GAP)
        if status == "awaiting_user_input":
            return self.maximum  # a person has to act in the web app: no rush
        age = max(0.0, elapsed) / self.initial  # in units from here on
        if key is not None:
            self._track(key, bucket, elapsed)
        if len(self.samples(bucket)) < MIN_SAMPLES:
            bucket = ANY
        seen = len(self.samples(bucket))
        eagerness = self.eagerness * (1 + THIN * max(0.0, 1 - seen / SETTLED))
        eagerness *= (TUNED_TARGET * self.initial / self.target) ** 2  # gaps ∝ the target
        gap = math.sqrt(2.0 / (eagerness * self._hazard(bucket, age)))
        if len(self.samples(bucket)) < SETTLED:  # little seen yet: a short run is possible
            gap = min(gap, max(1.0, AGE_SHARE * age))
        return min(self.maximum, max(self.initial, gap * self.initial))

    def _hazard(self, bucket: str, age: float) -> float:
        """Chance per unit of time that a run still going at `age` units finishes soon: the
        runs that ended in the window ahead over the time all runs spent in it (finished runs,
        runs still going as far as they got, and the prior's pseudo-runs)."""
        window = max(WINDOW, WINDOW_SHARE * age)
        unit, end = self.initial, age + window
        history = self.samples(bucket)
        low, high = (
            bisect.bisect_right(history, age * unit),
            bisect.bisect_right(history, end * unit),
        )
        ending = high - low
        seen = (len(history) - high) * window + sum(history[low:high]) / unit - ending * age
        going = self._open_sorted.get(bucket, [])
        low, high = bisect.bisect_right(going, age * unit), bisect.bisect_right(going, end * unit)
        seen += (len(going) - high) * window + sum(going[low:high]) / unit - (high - low) * age
        ending_prior = PRIOR_WEIGHT * (_survival(age) - _survival(end))
        exposure = seen + PRIOR_WEIGHT * _survival_integral(age, end)
        if exposure < 1e-9 or ending + ending_prior <= 0:
            return 1e-9  # far past every run and the prior: the longest gap
        hazard = (ending + ending_prior) / exposure
        if seen > 0:  # real runs reached this age, but few ended here yet: look more often
            hazard *= 1 + DOUBT / math.sqrt(1 + ending)
        return hazard

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


def _survival(age: float) -> float:
    """The prior's share of runs still generating after `age` units (lognormal)."""
    if age <= 0:
        return 1.0
    z = (math.log(age) - math.log(PRIOR_MEDIAN)) / PRIOR_SPREAD
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _survival_integral(start: float, end: float, steps: int = 8) -> float:
    """Units of time the prior's runs spend generating between `start` and `end` (Simpson)."""
    width = (end - start) / steps
    total = _survival(start) + _survival(end)
    for i in range(1, steps):
        total += (4 if i % 2 else 2) * _survival(start + i * width)
    return total * width / 3


def generation_seconds(*, completed_at: float | None, sent_at: float, previous_look: float,
                       now: float) -> float:  # fmt: skip
    """How long a run took, for learning: Motion's `completed_at` when it has one, kept within
    the window in which we saw it finish (which also absorbs clock skew between us and Motion),
    else the middle of that window."""
    low, high = max(0.0, previous_look - sent_at), max(0.0, now - sent_at)
    if completed_at is None:
        return (low + high) / 2
    return min(high, max(low, completed_at - sent_at))
