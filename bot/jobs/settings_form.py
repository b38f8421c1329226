"""Settings in Slack: who may change a workspace's settings, the form that shows them, and what
its submission changes.

Who: the workspace's Motion admins — its Slack admins and owners (`users.info`, asked with the
requesting workspace's own client) and the people on its admin list (`MOTION_ADMINS` or the
setting). Everything is decided here from the request, never from the form: a submission by
anyone else, or naming another workspace, changes nothing; a setting the operator set in the
environment is never written, whatever the submission holds.

The Motion key: shown as its last 4 characters only; an empty field keeps it; a new key is tried
with a status call for a job that cannot exist (404: it works; 401: refused) before it is sealed
and saved. Without SECRET_KEYS no key can be stored (never in clear): the field is read-only.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.jobs.context import JobContext
from bot.jobs.settings import SettingsFromStore, WorkspaceSettings
from bot.motion import PROBE_JOB_ID, AuthenticationError, MotionError, MotionRoute, NotFound
from bot.slack import messages
from bot.slack.ids import BlockId
from bot.slack.out import SlackOut
from bot.store import MOTION_API_KEY, KeyChange, SettingChange, SettingValue

log = logging.getLogger(__name__)
PROBE_SECONDS = 1.5  # the probe's share of a submission's 3 s
_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")
_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
MAX_RUNS = 1_000_000
KEY_REFUSED = "Motion refused this key. Copy it again from motion.so → Settings → API keys."
KEY_UNCHECKED = "Motion couldn't be asked about this key just now ({why}). Try again in a moment."
KEY_SHAPE = "A Motion API key starts with motion_ and has no spaces."
KEY_AND_REMOVE = "Either enter a new key or remove the stored one, not both."
NOT_A_NUMBER = "A whole number of at least 1, or empty for no limit."
NOT_CHANNELS = "Pick channels from the list."
NOT_PEOPLE = "Pick people from the list."


ADMIN_ASK_SECONDS = 0.8  # users.info within a form's or a click's ack


@dataclass(frozen=True)
class SettingsAnswers:
    """A submission as Slack sent it: each field on the form, by setting name (a field that
    was not on the form is absent), the key field, and the workspace the form was opened for."""

    form_team_id: str
    values: Mapping[str, tuple[str, ...] | str | bool | None] = field(default_factory=dict)
    key: str | None = field(default=None, repr=False)
    remove_key: bool = False


@dataclass(frozen=True)
class SettingsSaved:
    """What a submission did: `errors` by block_id keep the form open; `refused`: why nothing
    was even looked at; otherwise `changes` were saved (none: nothing differed)."""

    errors: dict[str, str] = field(default_factory=dict)
    changes: list[SettingChange] = field(default_factory=list)
    refused: str | None = None


class SettingsForms:
    def __init__(self, ctx: JobContext, source: SettingsFromStore) -> None:
        self.ctx = ctx
        self.source = source

    @property
    def key_state(self) -> messages.KeyState:
        if MOTION_API_KEY in self.source.locked:
            return messages.KeyState.OPERATOR
        if self.source.secrets is None:
            return messages.KeyState.UNAVAILABLE
        return messages.KeyState.NONE

    async def may_change(self, team_id: str, user_id: str, asker: SlackOut) -> bool:
        """One of the workspace's Motion admins: on its admin list, or a Slack admin or owner
        (Slack asked within `ADMIN_ASK_SECONDS`, so a form's ack keeps its 3 s: later is no
        admin, this once)."""
        settings = await self.ctx.store.read_off_loop(self.source.for_team, team_id)
        return await self.ctx.admins.is_admin(
            team_id, user_id, settings.spend, asker, within=ADMIN_ASK_SECONDS
        )

    def form_view(self, team_id: str) -> messages.SettingsFormView:
        """What the form shows now (store calls: run it off the loop)."""
        source, store = self.source, self.ctx.store
        stored = store.workspace_settings(team_id)
        settings = source.applied(stored)
        values = self.form_values(settings)
        state, last4 = self.key_state, None
        if state == messages.KeyState.NONE and stored.sealed_motion_api_key is not None:
            key = source.open_key(team_id, stored.sealed_motion_api_key)
            state, last4 = messages.KeyState.STORED, key[-4:] if key else "????"
        changes = [
            messages.ChangeShown(c.setting, c.user_id, c.changed_at, c.old_value, c.new_value)
            for c in store.settings_changes(team_id, messages.settings.CHANGES_SHOWN)
        ]
        return messages.SettingsFormView(
            team_id=team_id, key=state, key_last4=last4, values=values, locked=source.locked,
            changes=changes, sandbox=settings.sandbox,
        )  # fmt: skip

    @staticmethod
    def form_values(settings: WorkspaceSettings) -> dict[str, messages.settings.Shown]:
        """Each setting's value, by name, as the form shows it and the store keeps it."""
        spend = settings.spend
        return {
            "MOTION_ALLOWED_CHANNELS": spend.allowed_channels or None,
            "MOTION_ALLOW_DMS": settings.allow_dms,
            "MOTION_NOTIFY_CHANNEL": settings.notify_channel,
            "MOTION_RUNS_PER_USER_PER_DAY": spend.runs_per_user_per_day,
            "MOTION_RUNS_PER_MONTH": spend.runs_per_month,
            "MOTION_CONFIRM": spend.confirm,
            "FOLLOWUP_REQUIRES_MENTION": settings.followup_requires_mention,
            "MOTION_ADMINS": tuple(sorted(spend.admins)) or None,
        }

    async def open(self, trigger_id: str, team_id: str, user_id: str, asker: SlackOut) -> bool:
        """Open the form for one of the workspace's Motion admins; False (nothing shown) for
        anyone else."""
        if not await self.may_change(team_id, user_id, asker):
            log.info("settings: %s of %s is no Motion admin; nothing opened", user_id, team_id)
            return False
        view = await self.ctx.store.read_off_loop(self.form_view, team_id)
        await asker.open_view(trigger_id, messages.settings_form(view))
        return True

    async def submit(
        self, *, team_id: str, enterprise_id: str | None, user_id: str,
        answers: SettingsAnswers, asker: SlackOut,
    ) -> SettingsSaved:  # fmt: skip
        """Check every field, try a new key with Motion, then save what differs (one
        transaction, each change logged). Nothing is saved while any field has a problem."""
        if not team_id or answers.form_team_id != team_id:
            return SettingsSaved(refused="the form names another workspace")
        if not await self.may_change(team_id, user_id, asker):
            return SettingsSaved(refused="not one of the workspace's Motion admins")
        values, errors = self.checked(answers)
        key, key_error = await self._key_change(team_id, answers)
        if key_error:
            errors[str(BlockId.SETTING_KEY)] = messages.field_error(key_error)
        if errors:
            return SettingsSaved(errors=errors)
        store = self.ctx.store
        changes = await store.off_loop(
            store.change_settings, team_id, enterprise_id, user_id, self.ctx.clock(), values, key
        )
        self.ctx.routes.forget(team_id)
        if key is not None:  # the sandbox note on this workspace's replies, from now on
            self.source.key_saved(team_id, has_key=key.sealed is not None)
            self.source.forget_keys()  # the old key opened in memory, and its headers, go
            self.ctx.motion.forget_routes()
        return SettingsSaved(changes=changes)

    def checked(self, answers: SettingsAnswers) -> tuple[dict[str, SettingValue], dict[str, str]]:
        """Each field's value as the store keeps it, or its problem by block_id. A setting the
        operator set is left out whatever the submission says."""
        values: dict[str, SettingValue] = {}
        errors: dict[str, str] = {}
        defaults = self.form_values(self.source.environment)
        for name, raw in answers.values.items():
            setting = messages.SETTING_FIELDS.get(name)
            if setting is None or name in self.source.locked:
                continue
            value, problem = _value_of(setting.kind, raw)
            if problem is not None:
                errors[str(setting.block_id)] = messages.field_error(problem)
            else:  # the default is kept as "the default" (no choice), not as a value
                values[name] = None if value == defaults.get(name) else value
        return values, errors

    async def _key_change(
        self, team_id: str, answers: SettingsAnswers
    ) -> tuple[KeyChange | None, str | None]:
        """The key to store (or its removal), tried first; or why not. A key field where no
        key may be set (the operator's; no SECRET_KEYS) is ignored: a forged one too."""
        secrets = self.source.secrets
        new = (answers.key or "").strip()
        if self.key_state != messages.KeyState.NONE or secrets is None:
            return None, None
        if not new and not answers.remove_key:
            return None, None
        if new and answers.remove_key:
            return None, KEY_AND_REMOVE
        stored = await self.ctx.store.read_off_loop(self.ctx.store.workspace_settings, team_id)
        sealed = stored.sealed_motion_api_key
        old = None if sealed is None else self.source.open_key(team_id, sealed)[-4:] or "????"
        if not new:
            return (KeyChange(None, old, None), None) if sealed else (None, None)
        if not new.startswith("motion_") or any(c.isspace() for c in new):
            return None, KEY_SHAPE
        problem = await self.probe(new)
        if problem is not None:
            return None, problem
        return KeyChange(secrets.seal(new), old, new[-4:]), None

    async def probe(self, key: str) -> str | None:
        """A status call for a job that cannot exist, with `key`: None when Motion answers 404
        (the key works), else what to tell the admin."""
        route = MotionRoute(self.source.config.motion_api_url, key)
        try:
            async with asyncio.timeout(PROBE_SECONDS):
                await self.ctx.motion.status(PROBE_JOB_ID, route=route)
        except NotFound:
            return None
        except AuthenticationError:
            return KEY_REFUSED
        except MotionError as exc:
            return KEY_UNCHECKED.format(why=f"Motion answered {exc.status or exc.message}")
        except TimeoutError:
            return KEY_UNCHECKED.format(why="no answer in time")
        return KEY_UNCHECKED.format(why="it answered as if the job existed")


def _value_of(
    kind: messages.settings.SettingKind, raw: tuple[str, ...] | str | bool | None
) -> tuple[SettingValue, str | None]:
    """A field's state as a setting's value (None: the default), or the problem with it."""
    if kind == "flag":
        return bool(raw), None
    if kind in ("channels", "users"):
        ids = tuple(dict.fromkeys(raw)) if isinstance(raw, tuple) else ()
        pattern, problem = (_CHANNEL, NOT_CHANNELS) if kind == "channels" else (_USER, NOT_PEOPLE)
        if not all(pattern.match(i) for i in ids):
            return None, problem
        return ids or None, None
    text = raw.strip() if isinstance(raw, str) else ""
    if kind == "channel":
        return (text or None, None) if not text or _CHANNEL.match(text) else (None, NOT_CHANNELS)
    if not text:
        return None, None
    if not text.isdigit() or not 1 <= int(text) <= MAX_RUNS:
        return None, NOT_A_NUMBER
    return int(text), None
