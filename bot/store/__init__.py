"""Everything that must survive a restart, with methods named by intent.

`Store` is a facade over one `Database` (bot/store/base.py: the backend, this instance's name and
lease owner, the worker threads, the write path and the lease fence) and the repositories that
share it, one per kind of row: `job_rows` (jobs, leases, cards), `run_rows` (runs and their
polls), `outbox_rows` (posts for Slack), `usage_rows` (spend and previews), `stop_rows` (stuck
notices, "Stop tracking"), `event_rows` (Slack deliveries taken), `step_rows` (Workflow Builder steps),
`installation_rows` (each workspace's installation, tokens sealed), `oauth_state_rows`
(installs in progress), `setting_rows` (each workspace's own settings and their change log; its
Motion key sealed), `workspace_rows` (a workspace's rows in every table, forgotten at uninstall)
and `sealed_rows` (every stored ciphertext, for key rotation). A repository is given the
database and uses only its public methods; a change that spans tables inside one transaction
uses the other modules' transaction helpers (`insert_posts`, `insert_run`, `take`, `charge`,
`give_back`, `claim_events`), never another repository's state.

Why the old names stay on the facade as the repositories' own bound methods, each named once,
grouped by repository (`self.claim_due = self.job_rows.claim_due`), rather than as delegating
methods or a `__getattr__`: a method's signature and docstring are written once, in its repository, so the
two cannot drift; mypy checks every call through the facade against that exact signature; a
reader finds where each name goes in one line; and the poller's hot path pays no extra call.
Callers may use either spelling (`store.claim_due` or `store.job_rows.claim_due`).
"""

from __future__ import annotations

import sqlite_utils

from bot.store.availability import (
    Availability,
    DatabaseUnavailable,
    Outage,
    Reason,
    begin_request_budget,
    leave_request_budget,
    request_budget,
    request_deadline,
    within_request,
)
from bot.store.base import Database, LeaseLost, holding_polls, lease_fence
from bot.store.dialect import Backend
from bot.store.events import EventRows
from bot.store.installations import (
    InstallationRows,
    InstalledBot,
    InstallerGrant,
    OAuthStateRows,
    workspace_key,
)
from bot.store.jobs import LEASE_SECONDS, Claim, JobRows
from bot.store.models import (
    ACTIVE_RUN_STATES,
    HIDDEN_RUN_STATES,
    Job,
    JobState,
    NewPost,
    Post,
    PostState,
    QuietPoll,
    Run,
    RunKind,
    RunState,
)
from bot.store.offloop import OffLoop
from bot.store.outbox import UPLOAD_KIND, OutboxRows
from bot.store.runs import RunRows
from bot.store.sealed import SEALED, SealedRows, SealedValue
from bot.store.steps import STEP_KIND, StepExecution, StepPlace, StepRows, StepState
from bot.store.stopping import Stop, StopKind, StopRows
from bot.store.usage import (
    LimitReached,
    LimitScope,
    Preview,
    PreviewGone,
    PreviewKind,
    PreviewState,
    Spend,
    SpendRefused,
    UsageCount,
    UsageRows,
)
from bot.store.workspace_settings import (
    MOTION_API_KEY,
    KeyChange,
    SettingChange,
    SettingValue,
    StoredSettings,
    WorkspaceSettingRows,
)
from bot.store.workspaces import (
    FORGOTTEN_FOR_SECONDS,
    NOT_PER_WORKSPACE,
    PER_WORKSPACE,
    Forgotten,
    WorkspaceRows,
    WorkspaceRowsRepo,
    workspace_digest,
)


class Store:
    """The app's state in SQLite (WAL mode) or PostgreSQL, migrated at open.

    `Store(target)`: a `postgresql://` (or `postgres://`) URL, a `sqlite:///` URL, or a SQLite
    file path."""

    def __init__(self, target: str, *, instance: str | None = None) -> None:
        self.database = Database(target, instance=instance)
        self.job_rows = JobRows(self.database)
        self.run_rows = RunRows(self.database)
        self.outbox_rows = OutboxRows(self.database)
        self.usage_rows = UsageRows(self.database)
        self.stop_rows = StopRows(self.database)
        self.event_rows = EventRows(self.database)
        self.installation_rows = InstallationRows(self.database)
        self.oauth_state_rows = OAuthStateRows(self.database)
        self.sealed_rows = SealedRows(self.database)
        self.step_rows = StepRows(self.database)
        self.setting_rows = WorkspaceSettingRows(self.database)
        self.workspace_rows = WorkspaceRowsRepo(self.database)
        self._name_database_calls()
        self._name_job_calls()
        self._name_run_calls()
        self._name_outbox_calls()
        self._name_usage_calls()
        self._name_stop_and_event_calls()
        self._name_installation_calls()
        self._name_step_calls()
        self._name_setting_calls()
        self._name_workspace_calls()

    # ------------------------------------------------------------ the database itself

    @property
    def backend(self) -> Backend:
        return self.database.backend

    @property
    def path(self) -> str:
        return self.database.path

    @property
    def instance(self) -> str:
        return self.database.instance

    @property
    def owner(self) -> str:
        """This boot's lease owner (`<instance>:<random>`)."""
        return self.database.owner

    @property
    def migrated(self) -> list[str]:
        return self.database.migrated

    @property
    def dialect(self) -> str:
        return self.database.dialect

    @property
    def description(self) -> str:
        return self.database.description

    @property
    def db(self) -> sqlite_utils.Database:
        """The sqlite-utils database (SQLite only: for tests and SQLite-specific checks)."""
        return self.database.db

    @property
    def availability(self) -> Availability:
        """The database's outages, and how long each call may wait for it."""
        return self.database.availability

    @property
    def _off_loop(self) -> OffLoop:
        """The worker threads (tests and benchmarks read their counters)."""
        return self.database.workers

    def _name_database_calls(self) -> None:
        self.off_loop = self.database.off_loop
        self.read_off_loop = self.database.read_off_loop
        self.close = self.database.close
        self.ping = self.database.ping
        self.probe = self.database.probe
        self.schema_is_current = self.database.schema_is_current
        self.schema_version = self.database.schema_version
        # The old private names, which tests and benchmarks use to look at or break into the
        # database.
        self._write = self.database.write
        self._change = self.database.change
        self._change_returning = self.database.change_returning
        self._rows = self.database.rows
        self._value = self.database.value

    def _name_job_calls(self) -> None:
        self.create_job = self.job_rows.create_job
        self.restart_from = self.job_rows.restart_from
        self.first_request = self.job_rows.first_request
        self.job = self.job_rows.job
        self.job_for_thread = self.job_rows.job_for_thread
        self.card_in_flight = self.job_rows.card_in_flight
        self.recent_jobs = self.job_rows.recent_jobs
        self.job_and_runs = self.job_rows.job_and_runs
        self.jobs_and_runs = self.job_rows.jobs_and_runs
        self.claim_due = self.job_rows.claim_due
        self.claim = self.job_rows.claim
        self.claim_job = self.job_rows.claim_job
        self.release = self.job_rows.release
        self.release_many = self.job_rows.release_many
        self.renew_leases = self.job_rows.renew_leases
        self.release_all = self.job_rows.release_all
        self.release_predecessors = self.job_rows.release_predecessors
        self.held_jobs = self.job_rows.held_jobs
        self.next_due_at = self.job_rows.next_due_at
        self.count_followed = self.job_rows.count_followed
        self.jobs_by_state = self.job_rows.count_by_state
        self.set_due = self.job_rows.set_due
        self.wake = self.job_rows.wake
        self.add_error = self.job_rows.add_error
        self.clear_errors = self.job_rows.clear_errors
        self.resume_all = self.job_rows.resume_all
        self.record_card_sending = self.job_rows.record_card_sending
        self.record_card = self.job_rows.record_card
        self.record_card_update = self.job_rows.record_card_update
        self.abandon_job = self.job_rows.abandon_job
        self.stop_job = self.job_rows.stop_job

    def _name_run_calls(self) -> None:
        self.run = self.run_rows.run
        self.runs = self.run_rows.runs
        self.has_active_run = self.run_rows.has_active_run
        self.add_followup = self.run_rows.add_followup
        self.record_reply_error = self.run_rows.record_reply_error
        self.copy_run = self.run_rows.copy_run
        self.mark_sending = self.run_rows.mark_sending
        self.mark_running = self.run_rows.mark_running
        self.mark_waiting = self.run_rows.mark_waiting
        self.mark_verifying = self.run_rows.mark_verifying
        self.add_send_attempt = self.run_rows.add_send_attempt
        self.record_poll = self.run_rows.record_poll
        self.record_quiet_poll = self.run_rows.record_quiet_poll
        self.hold_quiet_poll = self.run_rows.hold_quiet_poll
        self.record_quiet_polls = self.run_rows.record_quiet_polls
        self.write_held_polls = self.run_rows.write_held_polls
        self.record_generation_time = self.run_rows.record_generation_time
        self.generation_times = self.run_rows.generation_times
        self.finish_run = self.run_rows.finish_run
        self.generating_runs = self.run_rows.generating_runs
        self.interrupted_runs = self.run_rows.interrupted_runs

    def _name_outbox_calls(self) -> None:
        self.open_posts = self.outbox_rows.open_posts
        self.outbox_waiting = self.outbox_rows.waiting
        self.clear_pending_posts = self.outbox_rows.clear_pending_posts
        self.open_uploads = self.outbox_rows.open_uploads
        self.first_open_post_id = self.outbox_rows.first_open_post_id
        self.start_upload = self.outbox_rows.start_upload
        self.touch_upload = self.outbox_rows.touch_upload
        self.upload_file_id = self.outbox_rows.upload_file_id
        self.record_upload_file = self.outbox_rows.record_upload_file
        self.mark_post_sending = self.outbox_rows.mark_post_sending
        self.mark_post_done = self.outbox_rows.mark_post_done
        self.mark_post_failed = self.outbox_rows.mark_post_failed

    def _name_usage_calls(self) -> None:
        self.usage_of = self.usage_rows.usage_of
        self.workspace_runs = self.usage_rows.workspace_runs
        self.everyone_usage = self.usage_rows.everyone_usage
        self.save_preview = self.usage_rows.save_preview
        self.preview = self.usage_rows.preview
        self.cancel_preview = self.usage_rows.cancel_preview
        self.forget_previews_before = self.usage_rows.forget_previews_before

    def _name_stop_and_event_calls(self) -> None:
        self.record_stuck_notice = self.stop_rows.record_stuck_notice
        self.keep_waiting = self.stop_rows.keep_waiting
        self.stop_tracking = self.stop_rows.stop_tracking
        self.claim_event = self.event_rows.claim_event
        self.claim_events = self.event_rows.claim_all
        self.event_claimed = self.event_rows.event_claimed
        self.forget_event = self.event_rows.forget_event
        self.forget_events_before = self.event_rows.forget_events_before

    def _name_installation_calls(self) -> None:
        self.save_installation = self.installation_rows.save_installation
        self.save_installed_bot = self.installation_rows.save_installed_bot
        self.installed_bot = self.installation_rows.installed_bot
        self.installer_grant = self.installation_rows.installer_grant
        self.installed_workspaces = self.installation_rows.installed_workspaces
        self.delete_installed_bot = self.installation_rows.delete_installed_bot
        self.delete_installer_grants = self.installation_rows.delete_installer_grants
        self.forget_installation = self.installation_rows.forget_installation
        self.take_refresh_lease = self.installation_rows.take_refresh_lease
        self.save_refreshed_bot = self.installation_rows.save_refreshed_bot
        self.release_refresh_lease = self.installation_rows.release_refresh_lease
        self.issue_oauth_state = self.oauth_state_rows.issue_oauth_state
        self.consume_oauth_state = self.oauth_state_rows.consume_oauth_state
        self.sealed_values = self.sealed_rows.sealed_values
        self.replace_sealed = self.sealed_rows.replace_sealed

    def _name_workspace_calls(self) -> None:
        self.forget_workspace = self.workspace_rows.forget_workspace
        self.forgotten_digests = self.workspace_rows.forgotten_digests
        self.drop_forgotten_before = self.workspace_rows.drop_forgotten_before
        self.teams_with_rows = self.workspace_rows.teams_with_rows
        self.teams_of_enterprise = self.workspace_rows.teams_of_enterprise
        self.lift_forgotten = self.workspace_rows.lift_forgotten

    def _name_step_calls(self) -> None:
        self.step = self.step_rows.step
        self.running_step = self.step_rows.running_step
        self.step_of_preview = self.step_rows.step_of_preview
        self.refuse_step = self.step_rows.refuse_step
        self.end_previewed_step = self.step_rows.end_previewed_step
        self.mark_step_sent = self.step_rows.mark_step_sent
        self.unsent_step_errors = self.step_rows.unsent_step_errors

    def _name_setting_calls(self) -> None:
        self.workspace_settings = self.setting_rows.workspace_settings
        self.change_settings = self.setting_rows.change_settings
        self.settings_changes = self.setting_rows.settings_changes


__all__ = [
    "ACTIVE_RUN_STATES",
    "FORGOTTEN_FOR_SECONDS",
    "HIDDEN_RUN_STATES",
    "LEASE_SECONDS",
    "MOTION_API_KEY",
    "NOT_PER_WORKSPACE",
    "PER_WORKSPACE",
    "SEALED",
    "STEP_KIND",
    "UPLOAD_KIND",
    "Availability",
    "Claim",
    "DatabaseUnavailable",
    "Forgotten",
    "InstalledBot",
    "InstallerGrant",
    "Job",
    "JobState",
    "KeyChange",
    "LeaseLost",
    "LimitReached",
    "LimitScope",
    "NewPost",
    "Outage",
    "Post",
    "PostState",
    "Preview",
    "PreviewGone",
    "PreviewKind",
    "PreviewState",
    "QuietPoll",
    "Reason",
    "Run",
    "RunKind",
    "RunState",
    "SealedValue",
    "SettingChange",
    "SettingValue",
    "Spend",
    "SpendRefused",
    "StepExecution",
    "StepPlace",
    "StepState",
    "Stop",
    "StopKind",
    "Store",
    "StoredSettings",
    "UsageCount",
    "WorkspaceRows",
    "begin_request_budget",
    "holding_polls",
    "lease_fence",
    "leave_request_budget",
    "request_budget",
    "request_deadline",
    "within_request",
    "workspace_digest",
    "workspace_key",
]
