"""Logging set-up for the process, with every secret redacted before a line is written.

Two formats (LOG_FORMAT): lines for people (`text`, the default), or one JSON object per line
(`json`) for log pipelines. Either way the same filter redacts the message and the traceback
first, so a JSON line can hold no secret a text line would not.

What a line is about (the job, its run, the workspace) is carried by `log_context`, set where
the app starts working on a job, so a JSON line says it in fields of its own without every
message repeating it; text lines keep saying it in their words, as before.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple, TextIO

_TOKEN = re.compile(r"\b(xox[abprse]-[\w-]+|xapp-[\w-]+|motion_[\w-]+)")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogContext(NamedTuple):
    """What the lines logged in this context are about; None: not known here. (A named
    tuple: made at every look at a job, where a frozen dataclass costs several times more.)"""

    job: int | None = None
    run: int | None = None
    team: str | None = None


_NOTHING_KNOWN = LogContext()  # immutable: one shared default is safe
_context: contextvars.ContextVar[LogContext] = contextvars.ContextVar(
    "log_context", default=_NOTHING_KNOWN
)


class _Bound:
    """`log_context`'s context manager: a class rather than a generator, since it wraps every
    look at a job and every Motion call (entering and leaving cost about a microsecond)."""

    __slots__ = ("_context", "_token")

    def __init__(self, context: LogContext) -> None:
        self._context = context
        self._token: contextvars.Token[LogContext] | None = None

    def __enter__(self) -> None:
        self._token = _context.set(self._context)

    def __exit__(self, *_exc: object) -> None:
        if self._token is not None:
            _context.reset(self._token)


def log_context(
    *, job: int | None = None, run: int | None = None, team: str | None = None
) -> _Bound:
    """Lines logged inside (by this task, the tasks it starts and the store calls it makes off
    the loop, which copy its context) carry these fields; the ones not given stay as they were."""
    current = _context.get()
    return _Bound(
        LogContext(
            current.job if job is None else job,
            current.run if run is None else run,
            current.team if team is None else team,
        )
    )


def current_context() -> LogContext:
    return _context.get()


class RedactSecrets(logging.Filter):
    """Removes token-shaped strings and the configured secret values from every record."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 6]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return _TOKEN.sub(lambda m: m.group(0).split("-")[0].split("_")[0] + "…[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        redacted = self.redact(message)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        record.msg, record.args = redacted, None
        return True


class JsonLines(logging.Formatter):
    """One JSON object per record, on one line: `time` (UTC, ISO 8601), `level`, `logger`,
    `message`, then `job`, `run`, `team` and `instance` when known, and `exception` (the
    traceback as text) when there is one. Placed after `RedactSecrets`, which has already
    redacted the message and the traceback by the time a record is formatted."""

    def __init__(self, instance: str | None = None) -> None:
        super().__init__()
        self.instance = instance

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = _context.get()
        for name, value in (("job", context.job), ("run", context.run), ("team", context.team)):
            value = getattr(record, name, value)  # `extra={"job": …}` says it for one line
            if value is not None:
                entry[name] = value
        if self.instance:
            entry["instance"] = self.instance
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        # default=str: a field no JSON type fits is written as text rather than losing the line
        return json.dumps(entry, ensure_ascii=False, default=str)


class PoolChurn(logging.Filter):
    """psycopg's pool warns for every connection an outage cuts and for every attempt to open
    a new one while the database is away (dozens of lines for seconds of outage); the store
    says it once when the database goes and once when it is back (bot/store/availability.py).
    The pool's other warnings (a connection returned mid-transaction, say) stay."""

    CHURN = (
        "error connecting in",
        "discarding closed connection",
        "discarding broken connection",
        "reconnection attempt in",  # given up after 5 s by design (bot/store/dialect.py)
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno <= logging.WARNING
            and isinstance(record.msg, str)
            and record.msg.startswith(self.CHURN)
        )


def configure(
    level: str,
    secrets: Iterable[str | None],
    *,
    log_format: str = "text",
    instance: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """The process's one handler (on stderr unless `stream` is given), redacting first."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonLines(instance))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Bolt warns that SLACK_BOT_TOKEN in the environment is unused when a client is given:
    # the client carries that very token, so the warning would only alarm an admin.
    logging.getLogger("slack_bolt.AsyncApp").addFilter(
        lambda record: "will be unused" not in record.getMessage()
    )
    logging.getLogger("psycopg.pool").addFilter(PoolChurn())
    # Per-request lines from the HTTP clients would drown the app's own; keep their warnings.
    for noisy in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
