"""The service, one object per stage of a job's life, each in its own module and given the
collaborators and the other stages it calls:

admission (the one door to a new run: channels, limits, previews), intake (commands, replies,
buttons → recorded work), surfaces (forms and the Home tab), mentions (replies, @mentions and
forms carrying Slack files), step (one look at one job), card (the job's card), outbox (sending
what was recorded for Slack), motion_calls (the calls to Motion and what each answer means),
outcomes (how a run ends), stopping (stuck runs, "Stop tracking"), uploads (the video in the
thread), fresh_link, recovery (at start), background (reactions and late answers), workflow
(a Workflow Builder step's start) and workflow_ends (how it ends), settings
(what each workspace chose, and which Motion key its jobs use), settings_form (Settings in
Slack: who may change them, the form, its submission), context (what the stages share), service (the facade the app
wires).

`DatabaseUnavailable` (the store's) is what an entry point raises when the database could not
record its request within the request's budget: nothing of it was recorded.
"""

from bot.jobs.admission import (
    Admission,
    AskKind,
    FollowupAsk,
    NewJobAsk,
    RestartAsk,
    RetryAsk,
    RunAsk,
)
from bot.jobs.intake import ReplyKind, ReplyOutcome
from bot.jobs.requesting import begin_request_workspace
from bot.jobs.service import JobService
from bot.jobs.settings import SameForEveryTeam, SettingsSource, WorkspaceSettings
from bot.jobs.spend import SpendPolicy
from bot.jobs.surfaces import FormAnswers, SubmitOutcome
from bot.jobs.workflow import CALLBACK_ID, StepOutcome
from bot.store import DatabaseUnavailable, begin_request_budget

__all__ = [
    "CALLBACK_ID",
    "Admission",
    "AskKind",
    "DatabaseUnavailable",
    "FollowupAsk",
    "FormAnswers",
    "JobService",
    "NewJobAsk",
    "ReplyKind",
    "ReplyOutcome",
    "RestartAsk",
    "RetryAsk",
    "RunAsk",
    "SameForEveryTeam",
    "SettingsSource",
    "SpendPolicy",
    "StepOutcome",
    "SubmitOutcome",
    "WorkspaceSettings",
    "begin_request_budget",
    "begin_request_workspace",
]
