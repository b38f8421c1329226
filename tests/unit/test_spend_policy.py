"""The spend policy's decisions and its UTC periods (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.jobs.spend import SpendPolicy, next_day, next_month, utc_day, utc_month


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_days_and_months_are_utc_and_reset_at_midnight_and_on_the_first() -> None:
    late = at("2025-12-31T23:59:59")
    assert (utc_day(late), utc_month(late)) == ("2025-12-31", "2025-12")
    assert next_day(late) == datetime(2026, 1, 1, tzinfo=UTC)
    assert next_month(late) == datetime(2026, 1, 1, tzinfo=UTC)
    midnight = at("2026-02-01T00:00:00")
    assert (utc_day(midnight), utc_month(midnight)) == ("2026-02-01", "2026-02")
    assert next_day(midnight) == datetime(2026, 2, 2, tzinfo=UTC)
    assert next_month(at("2024-02-29T12:00:00")) == datetime(2024, 3, 1, tzinfo=UTC)


def test_no_allowed_channels_means_every_channel() -> None:
    assert SpendPolicy().channel_allowed("C0ANY")
    policy = SpendPolicy(allowed_channels=("C0VIDEOS",))
    assert policy.channel_allowed("C0VIDEOS") and not policy.channel_allowed("C0OTHER")


def test_admins_are_exactly_the_listed_ids() -> None:
    policy = SpendPolicy(admins=frozenset({"U0ADMIN"}))
    assert policy.is_admin("U0ADMIN") and not policy.is_admin("U0ALICE")
    assert not SpendPolicy().is_admin("")


def test_a_spend_carries_the_periods_and_limits_and_tokens_are_unguessable() -> None:
    policy = SpendPolicy(runs_per_user_per_day=3, runs_per_month=50)
    spend = policy.spend("T1", "U1", at("2025-06-30T23:00:00"), "tok")
    assert (spend.day, spend.month, spend.per_user_per_day, spend.per_month) == (
        "2025-06-30", "2025-06", 3, 50,
    )  # fmt: skip
    tokens = {policy.new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) >= 24 for t in tokens)
