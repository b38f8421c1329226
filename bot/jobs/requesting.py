"""The workspace a request comes from: set once per request by the listeners' middleware
(Bolt's team and enterprise), as the request's budget for the database is, and read by what the
request does before or without a job of its own: its Slack calls (`JobContext.slack_here`), the
job it creates (which records the enterprise), the files it brings."""

from __future__ import annotations

import contextvars

# (team_id, enterprise_id) of the request being handled, in its task and what it starts.
_requesting: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar(
    "requesting_workspace", default=None
)


def begin_request_workspace(team_id: str, enterprise_id: str | None) -> None:
    """For this request (its task, and what it starts): the workspace it comes from."""
    _requesting.set((team_id, enterprise_id or None))


def requesting_enterprise() -> str | None:
    """The Enterprise Grid org of the requesting workspace (None: not in one, or no request)."""
    where = _requesting.get()
    return where[1] if where is not None else None


def requesting_workspace() -> tuple[str, str | None] | None:
    """(team_id, enterprise_id) of the request being handled; None outside a request."""
    return _requesting.get()
