"""The settings form (App Home → Settings, for the workspace's Motion admins): every setting a
workspace may choose, each on its own field (so a problem shows under it), the operator's
settings shown read-only, the Motion key as its last 4 characters only, and the last changes.

Settings are named as their environment variables are (`MOTION_RUNS_PER_MONTH`); each has one
field, `SETTING_FIELDS`, whose block_id the submission is read by."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from bot.slack.ids import BlockId, CallbackId
from bot.slack.messages.base import (
    MAX_VIEW_BLOCKS,
    SANDBOX_NOTE,
    Blocks,
    context,
    escape,
    input_block,
    mention,
    plain_text,
    section,
    shorten,
)
from bot.slack.messages.forms import MAX_VIEW_TITLE

SettingKind = Literal["channels", "flag", "channel", "count", "users"]
# What a setting holds, as the form shows it: ids, a flag, a number; None: the default.
Shown = tuple[str, ...] | bool | int | str | None
FLAG_ON = "on"  # a checkbox's value: ticked
CHANGES_SHOWN = 20
KEY_NAME = "MOTION_API_KEY"


@dataclass(frozen=True)
class SettingField:
    block_id: BlockId
    label: str
    kind: SettingKind
    hint: str | None = None
    option: str | None = None  # a flag's checkbox text


SETTING_FIELDS: dict[str, SettingField] = {
    "MOTION_ALLOWED_CHANNELS": SettingField(
        BlockId.SETTING_CHANNELS, "Channels where videos can be started", "channels",
        hint="None picked: every channel. Direct messages are set below.",
    ),
    "MOTION_ALLOW_DMS": SettingField(
        BlockId.SETTING_DMS, "Direct messages", "flag",
        option="A message to the app in its Messages tab starts a video",
    ),
    "MOTION_NOTIFY_CHANNEL": SettingField(
        BlockId.SETTING_NOTIFY, "Also announce every finished video in", "channel",
        hint="Optional: a channel that gets a notice with a link to each video's thread.",
    ),
    "MOTION_RUNS_PER_USER_PER_DAY": SettingField(
        BlockId.SETTING_PER_DAY, "Runs per person per day", "count",
        hint="Empty: no limit. Counts reset at 00:00 UTC.",
    ),
    "MOTION_RUNS_PER_MONTH": SettingField(
        BlockId.SETTING_PER_MONTH, "Runs per month, whole workspace", "count",
        hint="Empty: no limit. Counts reset on the first of the month (UTC).",
    ),
    "MOTION_CONFIRM": SettingField(
        BlockId.SETTING_CONFIRM, "Confirm before spending", "flag",
        option="Show every run privately with Start / Cancel before it uses credits",
    ),
    "FOLLOWUP_REQUIRES_MENTION": SettingField(
        BlockId.SETTING_MENTION, "Followups", "flag",
        option="Only thread replies that @mention the app are followups",
    ),
    "MOTION_ADMINS": SettingField(
        BlockId.SETTING_ADMINS, "Motion admins", "users",
        hint="Besides the workspace's admins and owners: they change these settings, stop any "
        "job and see everyone's usage.",
    ),
}  # fmt: skip
LABELS = {KEY_NAME: "Motion API key", **{name: f.label for name, f in SETTING_FIELDS.items()}}


class KeyState(StrEnum):
    """What the key field can show."""

    OPERATOR = "operator"  # MOTION_API_KEY: every workspace's, read-only
    UNAVAILABLE = "unavailable"  # no SECRET_KEYS: a key cannot be stored (never in clear)
    STORED = "stored"  # the workspace's own
    NONE = "none"  # sandbox until one is set


@dataclass(frozen=True)
class ChangeShown:
    setting: str
    user_id: str
    changed_at: float
    old_value: str | None
    new_value: str | None


@dataclass(frozen=True)
class SettingsFormView:
    """What the form shows: each setting's value in force and whether the operator set it."""

    team_id: str
    key: KeyState
    key_last4: str | None = None
    values: dict[str, Shown] = field(default_factory=dict)  # by setting name
    locked: frozenset[str] = frozenset()
    changes: list[ChangeShown] = field(default_factory=list)
    sandbox: bool = False


def settings_form(view: SettingsFormView) -> dict[str, Any]:
    """The modal; private_metadata names the workspace it was opened for."""
    blocks: Blocks = [*_key_blocks(view)]
    for name, setting in SETTING_FIELDS.items():
        value = view.values.get(name)
        if name in view.locked:
            blocks.append(_locked(setting.label, name, shown_value(setting.kind, value)))
        else:
            blocks.append(_field(setting, value))
    blocks += _change_blocks(view.changes[:CHANGES_SHOWN])
    if view.sandbox:
        blocks.append(context(SANDBOX_NOTE))
    return {
        "type": "modal",
        "callback_id": str(CallbackId.SETTINGS_FORM),
        "title": plain_text("Motion settings", MAX_VIEW_TITLE),
        "submit": plain_text("Save", 24),
        "close": plain_text("Cancel", 24),
        "private_metadata": json.dumps({"team": view.team_id}, separators=(",", ":")),
        "blocks": blocks[:MAX_VIEW_BLOCKS],
    }


def _checkbox(text: str) -> dict[str, Any]:
    return {"text": plain_text(text, 75), "value": FLAG_ON}


def _key_blocks(view: SettingsFormView) -> Blocks:
    label = LABELS[KEY_NAME]
    if view.key == KeyState.OPERATOR:
        return [_locked(label, KEY_NAME, "set for every workspace")]
    if view.key == KeyState.UNAVAILABLE:
        return [
            section(
                f"*{label}*: can't be set here. This deployment has no `SECRET_KEYS` to encrypt "
                "a stored key with, and a key is never stored in clear. Ask whoever runs the app "
                "to set `SECRET_KEYS` (`python -m bot keygen` prints one), or `MOTION_API_KEY` "
                "for every workspace. Until then, videos run in sandbox mode."
            )
        ]
    element: dict[str, Any] = {"type": "plain_text_input", "max_length": 200}
    if view.key == KeyState.STORED and view.key_last4:
        element["placeholder"] = plain_text(f"A key ending in {view.key_last4} is set")
        hint = (
            f"A key ending in {view.key_last4} is set. Leave this empty to keep it; a new key is "
            "tried with Motion before it is saved."
        )
        remove = input_block(
            BlockId.SETTING_REMOVE_KEY, "Remove the key",
            {"type": "checkboxes", "options": [_checkbox("Remove it (back to sandbox mode)")]},
            optional=True,
        )  # fmt: skip
        return [input_block(BlockId.SETTING_KEY, label, element, optional=True, hint=hint), remove]
    element["placeholder"] = plain_text("motion_…")
    hint = (
        "No key yet: videos run in sandbox mode (no credits spent). A key is tried with Motion "
        "before it is saved; only its last 4 characters are ever shown."
    )
    return [input_block(BlockId.SETTING_KEY, label, element, optional=True, hint=hint)]


def _field(setting: SettingField, value: Shown) -> dict[str, Any]:
    kind = setting.kind
    element: dict[str, Any]
    if kind == "channels":
        element = {
            "type": "multi_conversations_select",
            "filter": {"include": ["public", "private"], "exclude_bot_users": True},
        }
        if isinstance(value, tuple) and value:
            element["initial_conversations"] = list(value)
    elif kind == "users":
        element = {"type": "multi_users_select"}
        if isinstance(value, tuple) and value:
            element["initial_users"] = list(value)
    elif kind == "channel":
        element = {
            "type": "conversations_select",
            "filter": {"include": ["public", "private"], "exclude_bot_users": True},
        }
        if isinstance(value, str) and value:
            element["initial_conversation"] = value
    elif kind == "count":
        element = {"type": "number_input", "is_decimal_allowed": False, "min_value": "1"}
        if isinstance(value, int) and not isinstance(value, bool):
            element["initial_value"] = str(value)
    else:
        option = _checkbox(setting.option or setting.label)
        element = {"type": "checkboxes", "options": [option]}
        if value is True:
            element["initial_options"] = [option]
    return input_block(setting.block_id, setting.label, element, optional=True, hint=setting.hint)


def _locked(label: str, name: str, shown: str) -> dict[str, Any]:
    return section(f"*{escape(label)}*: {shown}\n_Set by the operator (`{name}`): read-only._")


def shown_value(kind: SettingKind, value: Shown) -> str:
    """A setting's value in words (mrkdwn)."""
    if kind == "flag":
        return "on" if value else "off"
    if kind == "count":
        return str(value) if isinstance(value, int) else "no limit"
    if kind == "channels":
        return ", ".join(f"<#{c}>" for c in value) if isinstance(value, tuple) and value else "all"
    if kind == "users":
        names = ", ".join(mention(u) for u in value) if isinstance(value, tuple) else ""
        return names or "none"
    return f"<#{value}>" if isinstance(value, str) and value else "none"


def _change_blocks(changes: list[ChangeShown]) -> Blocks:
    if not changes:
        return []
    blocks: Blocks = [{"type": "divider"}, section("*Recent changes*")]
    for change in changes:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(change.changed_at))
        label = LABELS.get(change.setting, change.setting)
        what = shorten(f"{label}: {change_words(change)}", 2500)
        blocks.append(context(f"{when} · {mention(change.user_id)} · {escape(what)}"))
    return blocks


def change_words(change: ChangeShown) -> str:
    """Old → new in words; a key change says set / replaced / removed and last 4 at most."""
    old, new = change.old_value, change.new_value
    if change.setting == KEY_NAME:
        if old is None:
            return f"set (ends in {new})"
        if new is None:
            return f"removed (ended in {old})"
        return f"replaced (ended in {old}, now ends in {new})"
    return f"{old if old is not None else 'default'} → {new if new is not None else 'default'}"
