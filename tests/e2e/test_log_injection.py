"""Motion's own words (a failed run's `error`, an error body's `message`) are logged as `repr`:
a newline in them cannot start a forged log line. End to end, with the sandbox saying it."""

from __future__ import annotations

import json
import logging

import pytest

from bot.sandbox import JobPlan
from tests.support.e2e import results, run_command, wait_reply
from tests.support.harness import FAST_PLAN, Harness, until

FORGED = "render crashed\n2030-01-01 00:00:00,000 ERROR bot.app: forged line"


def forged_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "forged line" in r.getMessage()]


def assert_one_line(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    """Exactly one record carries Motion's words, on one line, the newline escaped."""
    [record] = forged_records(caplog)
    message = record.getMessage()
    assert "\n" not in message and "\r" not in message
    assert "render crashed\\n2030" in message
    line = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(record)
    assert "\n" not in line
    return record


async def test_a_failed_runs_error_is_logged_on_one_line(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.sandbox.plan_next(JobPlan(**{**FAST_PLAN.__dict__, "fail_error": FORGED}))
    await harness.start()
    with caplog.at_level(logging.INFO, logger="bot"):
        card = await run_command(harness, "a teaser")
        await wait_reply(harness, card["ts"], "render crashed")
        await until(lambda: forged_records(caplog), what="the log line")
    assert_one_line(caplog)


async def test_an_error_bodys_message_on_a_status_call_is_logged_on_one_line(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps({"error": "unavailable", "message": FORGED})
    harness.sandbox.fault("status", status=503, body=body)
    await harness.start()
    with caplog.at_level(logging.INFO, logger="bot"):
        card = await run_command(harness, "a teaser")
        await until(lambda: results(harness, card["ts"]), what="the result, after the 503")
    record = assert_one_line(caplog)
    assert "status call" in record.getMessage()


async def test_an_error_bodys_message_on_a_lost_create_is_logged_on_one_line(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # A JSON 502 from a proxy after the create went through: outcome unknown, never re-sent.
    body = json.dumps({"error": "bad_gateway", "message": FORGED})
    harness.sandbox.fault("create", status=502, body=body, after_processing=True)
    await harness.start()
    with caplog.at_level(logging.INFO, logger="bot"):
        card = await run_command(harness, "a teaser")
        await until(lambda: forged_records(caplog), what="the log line")
        await harness.bot.service.drain_background()
    record = assert_one_line(caplog)
    assert "answer was lost" in record.getMessage() and record.levelno == logging.WARNING
    assert harness.sandbox.count("create") == 1
    assert card["ts"]
