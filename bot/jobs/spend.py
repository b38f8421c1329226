"""Spend controls as one policy: where runs may be started, who the admins are, the run
limits and their UTC periods, and whether every run is first previewed (MOTION_CONFIRM).

Pure: it decides and computes; counting happens in the store, in the transaction that records
the run (`bot.store.usage`). Every entry point that starts a run goes through
`Intake.ask_for_run`, which asks this policy.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.store import Spend


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def utc_month(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m")


def next_day(now: float) -> datetime:
    """00:00 UTC after `now`: when the per-person daily count starts again."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return datetime.fromtimestamp(day.timestamp() + 86400, UTC)


def next_month(now: float) -> datetime:
    """The first of the next month, 00:00 UTC: when the workspace's monthly count starts again."""
    at = datetime.fromtimestamp(now, UTC)
    year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SpendPolicy:
    allowed_channels: tuple[str, ...] = ()  # empty: every channel
    admins: frozenset[str] = field(default_factory=frozenset)
    runs_per_user_per_day: int | None = None
    runs_per_month: int | None = None
    confirm: bool = False

    def channel_allowed(self, channel_id: str) -> bool:
        return not self.allowed_channels or channel_id in self.allowed_channels

    def is_admin(self, user_id: str) -> bool:
        """MOTION_ADMINS: may see everyone's usage and stop tracking any job."""
        return user_id in self.admins

    @property
    def limited(self) -> bool:
        return self.runs_per_user_per_day is not None or self.runs_per_month is not None

    def spend(
        self, team_id: str, user_id: str, now: float, preview_token: str | None = None
    ) -> Spend:
        """What one run by `user_id` at `now` is counted as, with the limits it must fit in."""
        return Spend(
            team_id=team_id,
            user_id=user_id,
            day=utc_day(now),
            month=utc_month(now),
            per_user_per_day=self.runs_per_user_per_day,
            per_month=self.runs_per_month,
            preview_token=preview_token,
        )

    @staticmethod
    def new_token() -> str:
        """A preview's reference: unguessable, and short enough for a button's value."""
        return secrets.token_urlsafe(18)
