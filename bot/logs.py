"""Logging set-up for the process, with every secret redacted before a line is written."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

_TOKEN = re.compile(r"\b(xox[abprse]-[\w-]+|xapp-[\w-]+|motion_[\w-]+)")


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
        record.msg, record.args = redacted, None
        return True


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


def configure(level: str, secrets: Iterable[str | None]) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
