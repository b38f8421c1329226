"""When to ask Motion again: pure arithmetic, so tests and benchmarks can drive it with any clock.

Polls are cheap for us but may cost credits and always cost the provider; the schedule starts at
POLL_INITIAL_SECONDS, stretches as a run ages (long runs finish later, so waiting longer costs
little delay relative to the run), and tightens again while the file renders, when the link is
seconds away.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

GROWTH = 0.2  # wait about a fifth of the time the run has been going
RENDER_SECONDS = 2.0
ERROR_FLOOR = 1.0


@dataclass
class PollSchedule:
    initial: float = 3.0
    maximum: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self, *, elapsed: float, status: str | None, rendering: bool) -> float:
        """Seconds until the next status call for a run that has been going `elapsed` seconds."""
        if rendering:
            return min(self.initial, RENDER_SECONDS)
        if status == "awaiting_user_input":
            return self.maximum  # a person has to act in the web app: no rush
        return min(self.maximum, max(self.initial, elapsed * GROWTH))

    def error_delay(self, errors: int, retry_after: float | None = None) -> float:
        """Capped exponential backoff with full jitter; Retry-After is a floor, never ignored."""
        cap = max(self.maximum, self.initial) * 2
        ceiling = min(cap, self.initial * (2 ** max(0, errors - 1)))
        delay = max(min(ERROR_FLOOR, self.initial), self.rng.uniform(0, ceiling))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay
