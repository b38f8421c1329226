"""What a job's handling depends on that a workspace may choose: where results are announced,
whether followups need an @mention, whether a DM to the app is a prompt, the spend policy
(channels, admins, limits, confirm), and which Motion key its runs use.

Every stage asks `SettingsSource.for_team` with the job's or the request's workspace rather
than holding one set of values. `SameForEveryTeam`: the environment's, for every workspace
(tests, tools). `SettingsFromStore` (what the app runs): each workspace's own choices, kept in
the database and changed in Slack (App Home → Settings), over the built-in defaults; a setting
whose environment variable is set is the operator's and the workspace's choice is never read.

Why read through, not a cache: a change saved on one instance must hold on every instance for
its next request, and a cache would need a read to know it is still good anyway. The read is
one row by its key (tens of µs on SQLite, one round trip on PostgreSQL), made where the store's
other calls of the same request are made (off the loop for the ack paths). The one exception
is the poller's status calls (`MotionRoutes`): a job's key is kept for a few seconds, and a
refused key is read afresh before the job is given up.

Whether a workspace is in sandbox mode, for the note on a request's own replies (help, lists,
usage, "already done"…), is read without a database read (`sandbox_of`): remembered from the
last read of its settings on this instance and from a save of its key here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from bot.config import Settings
from bot.jobs.spend import SpendPolicy
from bot.motion import MotionRoute
from bot.store import MOTION_API_KEY, Job, Store, StoredSettings
from bot.workspaces.secrets import Secrets, SecretUnreadable

log = logging.getLogger(__name__)
ROUTE_SECONDS = 5.0  # how long the poller keeps a workspace's key between two reads
_OPENED_KEPT = 1000  # opened keys kept, by ciphertext
# `Store.off_loop`, for a settings read: runs `for_team(team_id)` on the store's workers.
OffLoopCall = Callable[[Callable[[str], "WorkspaceSettings"], str], Awaitable["WorkspaceSettings"]]


@dataclass(frozen=True)
class WorkspaceSettings:
    notify_channel: str | None = None  # MOTION_NOTIFY_CHANNEL: every result announced there too
    followup_requires_mention: bool = False  # a thread reply is a followup only with @app
    allow_dms: bool = True  # MOTION_ALLOW_DMS: a DM to the app (its Messages tab) is a prompt
    spend: SpendPolicy = field(default_factory=SpendPolicy)
    sandbox: bool = False  # no Motion key for this workspace: its runs go to the emulator
    # Where its runs go when not the Motion client's own base and key (its own key).
    motion: MotionRoute | None = None


class SettingsSource(Protocol):
    def for_team(self, team_id: str) -> WorkspaceSettings:
        """The settings that apply to work in workspace `team_id`, as they are now."""
        ...

    def sandbox_of(self, team_id: str) -> bool:
        """Whether work asked for in `team_id` goes to the emulator (no Motion key), as known
        here without reading the database: for the sandbox note on a request's replies."""
        ...

    def forget_keys(self) -> None:
        """Drop every Motion key held opened in memory (a key replaced, a workspace gone)."""
        ...


def environment_settings(config: Settings) -> WorkspaceSettings:
    """The environment's values: the operator's where a variable is set, else the built-in
    defaults (an unset variable reads as its default)."""
    return WorkspaceSettings(
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
        sandbox=config.sandbox,
    )


@dataclass(frozen=True)
class SameForEveryTeam:
    """One set of settings for every workspace: the environment's, read once at start."""

    settings: WorkspaceSettings = field(default_factory=WorkspaceSettings)

    def for_team(self, team_id: str) -> WorkspaceSettings:
        return self.settings

    def sandbox_of(self, team_id: str) -> bool:
        return self.settings.sandbox

    def forget_keys(self) -> None:
        """Nothing is held: the environment's key is the only one."""

    @classmethod
    def from_config(cls, config: Settings) -> SameForEveryTeam:
        return cls(environment_settings(config))


@dataclass(frozen=True)
class _Chosen:
    """A workspace's stored value of each setting, or the environment's when the operator set
    it (locked) or the workspace chose nothing."""

    stored: StoredSettings
    locked: frozenset[str]

    def _value(self, name: str) -> object:
        return None if name in self.locked else self.stored.value(name)

    def ids(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._value(name)
        return value if isinstance(value, tuple) else default

    def flag(self, name: str, default: bool) -> bool:
        value = self._value(name)
        return value if isinstance(value, bool) else default

    def count(self, name: str, default: int | None) -> int | None:
        value = self._value(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    def text(self, name: str, default: str | None) -> str | None:
        value = self._value(name)
        return value if isinstance(value, str) else default


class SettingsFromStore:
    """Each workspace's stored choices over the environment's (see the module docstring).

    `secrets`: SECRET_KEYS' (None: no key can be stored, nor opened). A workspace's own Motion
    key is used at MOTION_API_URL; without one (and without MOTION_API_KEY) it is in sandbox
    mode, and its runs go to the Motion client's own base (the emulator)."""

    def __init__(self, store: Store, config: Settings, secrets: Secrets | None) -> None:
        self.store = store
        self.config = config
        self.secrets = secrets
        self.environment = environment_settings(config)
        self.locked = config.operator_settings
        self._opened: dict[str, str] = {}  # ciphertext → key: Fernet once per stored key
        self._sandbox: dict[str, bool] = {}  # team id → in sandbox mode, as last read or saved

    def for_team(self, team_id: str) -> WorkspaceSettings:
        return self.applied(self.store.workspace_settings(team_id))

    def forget_keys(self) -> None:
        self._opened.clear()

    def sandbox_of(self, team_id: str) -> bool:
        """As of the last read of the workspace's settings on this instance (every `for_team`
        and `applied`), or of its key saved here; the environment's before any. So a key saved
        on another instance shows here from this instance's next read of that workspace (a run
        asked for, a list, Home, a stop…): until then its replies may still carry the note."""
        return self._sandbox.get(team_id, self.environment.sandbox)

    def key_saved(self, team_id: str, *, has_key: bool) -> None:
        """The workspace's own Motion key was stored (or removed) here: its replies say so at
        once. Only called where a key may be stored (MOTION_API_KEY unset)."""
        self._remember_sandbox(team_id, self.environment.sandbox and not has_key)

    def _remember_sandbox(self, team_id: str, sandbox: bool) -> None:
        # Dict writes are atomic: called from the store's workers as well as the loop.
        if len(self._sandbox) >= _OPENED_KEPT and team_id not in self._sandbox:
            self._sandbox.clear()
        self._sandbox[team_id] = sandbox

    def applied(self, stored: StoredSettings) -> WorkspaceSettings:
        """The settings in force for a workspace that chose `stored`."""
        env, chosen = self.environment, _Chosen(stored, self.locked)
        spend = SpendPolicy(
            allowed_channels=chosen.ids("MOTION_ALLOWED_CHANNELS", env.spend.allowed_channels),
            admins=frozenset(chosen.ids("MOTION_ADMINS", tuple(env.spend.admins))),
            runs_per_user_per_day=chosen.count(
                "MOTION_RUNS_PER_USER_PER_DAY", env.spend.runs_per_user_per_day
            ),
            runs_per_month=chosen.count("MOTION_RUNS_PER_MONTH", env.spend.runs_per_month),
            confirm=chosen.flag("MOTION_CONFIRM", env.spend.confirm),
        )
        route = self._route(stored)
        self._remember_sandbox(stored.team_id, env.sandbox and route is None)
        return WorkspaceSettings(
            notify_channel=chosen.text("MOTION_NOTIFY_CHANNEL", env.notify_channel),
            followup_requires_mention=chosen.flag(
                "FOLLOWUP_REQUIRES_MENTION", env.followup_requires_mention
            ),
            allow_dms=chosen.flag("MOTION_ALLOW_DMS", env.allow_dms),
            spend=spend,
            sandbox=env.sandbox and route is None,
            motion=route,
        )

    def _route(self, stored: StoredSettings) -> MotionRoute | None:
        """The workspace's own key at MOTION_API_URL; None: MOTION_API_KEY (everyone's), or no
        key at all (the sandbox)."""
        sealed = stored.sealed_motion_api_key
        if MOTION_API_KEY in self.locked or sealed is None:
            return None
        return MotionRoute(self.config.motion_api_url, self.open_key(stored.team_id, sealed))

    def open_key(self, team_id: str, sealed: str) -> str:
        """The stored key in clear; "" when SECRET_KEYS cannot open it (Motion then refuses
        the workspace's runs as it would a revoked key, and `check` says why)."""
        key = self._opened.get(sealed)
        if key is not None:
            return key
        if self.secrets is None:
            log.warning("workspace %s has a Motion key stored but SECRET_KEYS is unset", team_id)
            return ""
        try:
            key = self.secrets.open(sealed, f"the Motion key of workspace {team_id}")
        except SecretUnreadable as exc:
            log.warning("%s", exc)
            return ""
        if len(self._opened) >= _OPENED_KEPT:
            self._opened.clear()
        self._opened[sealed] = key
        return key


class MotionRoutes:
    """Where a job's Motion calls go: a sandbox job to the client's own base (the emulator);
    another to its workspace's key (`WorkspaceSettings.motion`), read afresh for a create or
    a followup and kept `ROUTE_SECONDS` for status calls (the poller's, /v/ links, uploads).
    A read runs on the store's workers (`off_loop`), never on the event loop."""

    def __init__(
        self,
        settings: SettingsSource,
        off_loop: OffLoopCall | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.off_loop = off_loop
        self.clock = clock
        self._kept: dict[str, tuple[float, MotionRoute | None]] = {}
        # Only stored settings without MOTION_API_KEY give a workspace a key of its own: else
        # every call uses the client's own, and nothing need be read for it.
        self.per_workspace = (
            isinstance(settings, SettingsFromStore) and MOTION_API_KEY not in settings.locked
        )

    async def for_job(self, job: Job, *, fresh: bool = False) -> MotionRoute | None:
        if job.sandbox or not self.per_workspace:
            return None
        kept = self._kept.get(job.team_id)
        if not fresh and kept is not None and self.clock() - kept[0] < ROUTE_SECONDS:
            return kept[1]
        if self.off_loop is None:
            settings = self.settings.for_team(job.team_id)
        else:
            settings = await self.off_loop(self.settings.for_team, job.team_id)
        if len(self._kept) >= _OPENED_KEPT:
            self._kept.clear()
        self._kept[job.team_id] = (self.clock(), settings.motion)
        return settings.motion

    def forget(self, team_id: str) -> None:
        """The workspace's key changed here: its next call reads it afresh."""
        self._kept.pop(team_id, None)
