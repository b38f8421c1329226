"""When to ask Motion again: pure arithmetic, so tests and benchmarks can drive it with any clock.

Status calls may cost credits and always cost the provider, yet a late look delays the video.
The schedule learns how long runs take (from the app's own finished runs, by requested
duration) and spends its calls where runs tend to finish: the gap before the next call is
`sqrt(2 / (eagerness · hazard))`, the rule that minimises calls plus delay when the chance of
finishing per second is `hazard` (few calls while almost nothing finishes, dense ones where
most runs end). While the file renders after `completed` it polls every few seconds, since the
link is close. With too little history it falls back to stretching the gap as a run ages.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import deque
from dataclasses import dataclass, field

GROWTH = 0.1  # cold schedule: wait about a tenth of the time the run has been going
RENDER_SECONDS = 3.0
ERROR_FLOOR = 1.0
MIN_SAMPLES = 20  # fewer finished runs than this: the cold schedule
HISTORY = 500  # most recent generation times kept per bucket
WINDOW = 10.0  # seconds of history looked at to estimate the hazard...
WINDOW_SHARE = 0.25  # ...or this share of the elapsed time, whichever is longer
EAGERNESS = 3.0  # higher: more calls, less delay (bench/polling.py shows the trade-off)
ANY = "any"


@dataclass
class PollSchedule:
    initial: float = 3.0
    maximum: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    eagerness: float = EAGERNESS
    render_seconds: float = RENDER_SECONDS
    _samples: dict[str, deque[float]] = field(default_factory=dict)
    _sorted: dict[str, list[float]] = field(default_factory=dict)

    def learn(self, bucket: str, seconds: float) -> None:
        """Remember how long a run took to reach `completed` (also into the "any" bucket)."""
        if not math.isfinite(seconds) or seconds <= 0:
            return
        for key in {bucket, ANY}:
            samples = self._samples.setdefault(key, deque(maxlen=HISTORY))
            samples.append(seconds)
            self._sorted.pop(key, None)

    def samples(self, bucket: str) -> list[float]:
        if bucket not in self._sorted:
            self._sorted[bucket] = sorted(self._samples.get(bucket, ()))
        return self._sorted[bucket]

    def next_delay(self, *, elapsed: float, status: str | None, rendering: bool,
                   bucket: str = ANY) -> float:  # fmt: skip
        """Seconds until the next status call for a run that has been going `elapsed` seconds."""
        if rendering:  # the only place allowed below POLL_INITIAL_SECONDS: the link is close
            return min(self.maximum, self.initial, self.render_seconds)
        if status == "awaiting_user_input":
            return self.maximum  # a person has to act in the web app: no rush
        history = self.samples(bucket)
        if len(history) < MIN_SAMPLES:
            history = self.samples(ANY)
        hazard = _hazard(history, elapsed) if len(history) >= MIN_SAMPLES else None
        if hazard is None:
            return self._clamp(elapsed * GROWTH)
        return self._clamp(math.sqrt(2.0 / (self.eagerness * hazard)))

    def _clamp(self, delay: float) -> float:
        return min(self.maximum, max(self.initial, delay))

    def error_delay(self, errors: int, retry_after: float | None = None) -> float:
        """Capped exponential backoff with full jitter; Retry-After is a floor, never ignored."""
        cap = max(self.maximum, self.initial)  # POLL_MAX_SECONDS bounds error waits too
        ceiling = min(cap, self.initial * (2 ** max(0, errors - 1)))
        delay = max(min(ERROR_FLOOR, self.initial), self.rng.uniform(0, ceiling))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay


def _hazard(history: list[float], elapsed: float) -> float | None:
    """Chance per second that a run still going at `elapsed` finishes soon; None past all data."""
    later = len(history) - bisect.bisect_right(history, elapsed)
    if later == 0:
        return None  # longer than any run seen: fall back to stretching
    window = max(WINDOW, WINDOW_SHARE * elapsed)
    ending = bisect.bisect_right(history, elapsed + window) - (len(history) - later)
    return max(ending, 0.5) / (later * window)


def generation_seconds(*, completed_at: float | None, sent_at: float, previous_look: float,
                       now: float) -> float:  # fmt: skip
    """How long a run took, for learning: Motion's `completed_at` when it has one, kept within
    the window in which we saw it finish (which also absorbs clock skew between us and Motion),
    else the middle of that window."""
    low, high = max(0.0, previous_look - sent_at), max(0.0, now - sent_at)
    if completed_at is None:
        return (low + high) / 2
    return min(high, max(low, completed_at - sent_at))
