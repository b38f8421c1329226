"""Every action, callback and block id the app builds or listens for, written once.

The builders (`bot.slack.messages`) put these on buttons, views and blocks; the listeners
(`bot.listeners`) wait for the same values. An id written twice can drift apart without any
error (Bolt acknowledges an unmatched action through the fallback listener), so both sides take
it from here; tests/test_slack_ids.py checks that what is built and what is listened for match.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ActionId(StrEnum):
    """The buttons the app puts on its messages and views; each has its listener."""

    DOWNLOAD = "download"  # a link button: Slack still sends an interaction, only acked
    REFINE = "refine"  # value: the run's id
    NEW_VARIATION = "new_variation"  # value: the run's id
    FRESH_LINK = "fresh_link"  # value: the run's id
    RETRY_RUN = "retry_run"  # "Send it again" / "Try again"; value: the run's id
    RESTART_JOB = "restart_job"  # "Start a new job" after a followup on a failed job
    CONFIRM_START = "confirm_start"  # a MOTION_CONFIRM preview's Start; value: its token
    CONFIRM_CANCEL = "confirm_cancel"  # the preview's Cancel; value: its token
    STOP_TRACKING = "stop_tracking"  # value: the job's id (card), "<job id>:<run id>" (notice)
    KEEP_WAITING = "stuck_keep_waiting"  # value: "<run id>:<notice number>"
    HOME_NEW_VIDEO = "home_new_video"  # the Home tab's "New video"
    HOME_SETTINGS = "home_settings"  # the Home tab's "Settings", for the workspace's admins


class CallbackId(StrEnum):
    """The modals the app opens; each has its view_submission listener."""

    NEW_FORM = "new_motion_form"  # `/motion new`, the shortcut, the Home tab's button
    REFINE_FORM = "refine_form"  # "Refine" on a result
    SETTINGS_FORM = "settings_form"  # the workspace's settings (App Home → Settings)


class BlockId(StrEnum):
    """The blocks whose id the app reads back: the form's fields (its submission's
    `view.state.values` and its `errors` are keyed by them) and the Home tab's buttons.
    The request fields are named as `bot.command_line.Field` names them, so a problem that
    `request_problems` finds lands on its field's block."""

    PROMPT = "prompt"
    STYLE = "style"
    ASPECT = "aspect"
    DURATION = "duration"
    FILES = "files"  # a file_input: its state lists file ids
    CHANNEL = "channel"  # a conversations_select: where the job's card and thread go
    HOME_ACTIONS = "home_actions"
    # The settings form's fields, one per setting (named as the setting is, lowercased).
    SETTING_KEY = "motion_api_key"
    SETTING_REMOVE_KEY = "motion_api_key_remove"
    SETTING_CHANNELS = "motion_allowed_channels"
    SETTING_DMS = "motion_allow_dms"
    SETTING_NOTIFY = "motion_notify_channel"
    SETTING_PER_DAY = "motion_runs_per_user_per_day"
    SETTING_PER_MONTH = "motion_runs_per_month"
    SETTING_CONFIRM = "motion_confirm"
    SETTING_MENTION = "followup_requires_mention"
    SETTING_ADMINS = "motion_admins"


# Every input's element has this action_id; its block_id names the field. Inputs in a modal
# send nothing until the form is submitted, so no listener waits for it.
INPUT_ACTION: Final = "value"

# The global shortcut is declared in manifest.yml (Slack builds it from there, not the app);
# the listener and the manifest must agree.
NEW_VIDEO_SHORTCUT: Final = "new_motion_video"
