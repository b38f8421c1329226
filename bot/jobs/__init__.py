"""The service, one module per stage of a job's life:

intake (commands, replies, buttons → recorded work), admission (the one door to a new run:
channels, limits, previews), surfaces (forms and the Home tab), step (one look at one job), card (the
job's card), outbox (sending what was recorded for Slack), motion_calls (the calls to Motion and
what each answer means), outcomes (how a run ends), background (reactions and late answers),
context (what the stages share), service (the one object the app wires).
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
from bot.jobs.service import JobService
from bot.jobs.spend import SpendPolicy
from bot.jobs.surfaces import FormAnswers, SubmitOutcome

__all__ = [
    "Admission",
    "AskKind",
    "FollowupAsk",
    "FormAnswers",
    "JobService",
    "NewJobAsk",
    "ReplyKind",
    "ReplyOutcome",
    "RestartAsk",
    "RetryAsk",
    "RunAsk",
    "SpendPolicy",
    "SubmitOutcome",
]
