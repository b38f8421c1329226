"""The error tree. Each error says two things, kept apart: what HTTP said (its class:
`BadRequest`, `Conflict`, `ServerError`, ...) and whether the call may be repeated (`retry`):
`Retry.LATER` when nothing took effect, `Retry.UNSAFE` when a create or followup may have taken
effect (they carry no idempotency key and cost credits, so they are never re-sent blindly),
`Retry.NO` when the answer is final. Callers decide on `retry` first and on the class second,
so the order of `except` clauses never matters.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Retry(StrEnum):
    LATER = "later"  # nothing took effect: try again after a wait
    UNSAFE = "unsafe"  # a write may have taken effect: never resend on our own
    NO = "no"  # a final answer: the same call would get the same


class MotionError(Exception):
    """Any failure talking to Motion; `message` is Motion's own words where it gave some."""

    def __init__(
        self, message: str, *, retry: Retry, status: int | None = None, body: Any = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry = retry
        self.status = status
        self.body = body


class BadRequest(MotionError):
    """400: Motion rejected the input; `details` lists what, in its words."""

    @property
    def details(self) -> list[str]:
        details = self.body.get("details") if isinstance(self.body, dict) else None
        out: list[str] = []
        for item in details if isinstance(details, list) else []:
            if isinstance(item, dict):
                path = ".".join(str(p) for p in item.get("path") or [])
                text = str(item.get("message") or item.get("code") or "")
                out.append(f"{path}: {text}" if path else text)
        return out


class AuthenticationError(MotionError):
    """401: the key is missing, revoked or wrong."""


class InsufficientCredits(MotionError):
    """402: not enough credits; the numbers come from the body, never assumed."""

    @property
    def current_balance(self) -> int | None:
        return _int_or_none(self.body, "current_balance")

    @property
    def minimum_required(self) -> int | None:
        return _int_or_none(self.body, "minimum_required_credits")


class NotFound(MotionError):
    """404: the job does not exist or belongs to another key's owner."""


class Conflict(MotionError):
    """409: a followup on a job that is not completed; `job_status` is what Motion reported."""

    @property
    def job_status(self) -> str | None:
        value = self.body.get("status") if isinstance(self.body, dict) else None
        return value if isinstance(value, str) else None


class RateLimited(MotionError):
    """429: wait at least `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float | None, **kwargs: Any) -> None:
        super().__init__(message, retry=Retry.LATER, **kwargs)
        self.retry_after = retry_after


class ServerError(MotionError):
    """5xx, from Motion or a proxy in front of it."""


class Unreachable(MotionError):
    """No connection, or no free slot: nothing was sent."""


class AnswerLost(MotionError):
    """The request went out but no usable answer came back (a timeout, a dropped connection,
    a 2xx body that is not what the API returns)."""


def _int_or_none(body: Any, key: str) -> int | None:
    value = body.get(key) if isinstance(body, dict) else None
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
