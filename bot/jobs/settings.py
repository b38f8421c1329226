"""What a job's handling depends on that a workspace may choose: where results are announced,
whether followups need an @mention, whether a DM to the app is a prompt, and the spend policy
(channels, admins, limits, confirm).

Every stage asks `SettingsSource.for_team` with the job's or the request's workspace rather
than holding one set of values, so settings kept per workspace can replace the environment's
without touching the stages. Today every workspace gets the environment's (`SameForEveryTeam`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from bot.config import Settings
from bot.jobs.spend import SpendPolicy


@dataclass(frozen=True)
class WorkspaceSettings:
    notify_channel: str | None = None  # MOTION_NOTIFY_CHANNEL: every result announced there too
    followup_requires_mention: bool = False  # a thread reply is a followup only with @app
    allow_dms: bool = True  # MOTION_ALLOW_DMS: a DM to the app (its Messages tab) is a prompt
    spend: SpendPolicy = field(default_factory=SpendPolicy)


class SettingsSource(Protocol):
    def for_team(self, team_id: str) -> WorkspaceSettings:
        """The settings that apply to work in workspace `team_id`, as they are now."""
        ...


@dataclass(frozen=True)
class SameForEveryTeam:
    """One set of settings for every workspace: the environment's, read once at start."""

    settings: WorkspaceSettings = field(default_factory=WorkspaceSettings)

    def for_team(self, team_id: str) -> WorkspaceSettings:
        return self.settings

    @classmethod
    def from_config(cls, config: Settings) -> SameForEveryTeam:
        return cls(
            WorkspaceSettings(
                notify_channel=config.notify_channel,
                followup_requires_mention=config.followup_requires_mention,
                allow_dms=config.allow_dms,
                spend=SpendPolicy(
                    allowed_channels=config.allowed_channels,
                    admins=frozenset(config.admins),
                    runs_per_user_per_day=config.runs_per_user_per_day,
                    runs_per_month=config.runs_per_month,
                    confirm=config.confirm,
                ),
            )
        )
