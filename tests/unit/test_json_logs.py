"""LOG_FORMAT=json: one JSON object per line, with what the line is about, and every secret
redacted exactly as in text lines (the message, the traceback, the fields)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from bot import logs
from bot.logs import log_context

BOT_TOKEN = "xoxb-1111-2222-secretbottoken"
SIGNING_SECRET = "signing-secret-abcdef123456"
MOTION_KEY = "motion_secretkey_abcdef"
SECRETS = [BOT_TOKEN, SIGNING_SECRET, MOTION_KEY]


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """The root logger configured as `python -m bot` does, into a buffer; put back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    logs.configure("DEBUG", SECRETS, log_format="json", instance="web.1", stream=out)
    try:
        yield out
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    text = out.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_line_is_one_json_object_with_time_level_logger_message_and_instance(
    stream: io.StringIO,
) -> None:
    logging.getLogger("bot.test").warning("hello %s", "world")
    [line] = lines(stream)
    assert line["level"] == "WARNING" and line["logger"] == "bot.test"
    assert line["message"] == "hello world" and line["instance"] == "web.1"
    assert line["time"].endswith("Z") and line["time"][10] == "T"
    assert "job" not in line and "run" not in line and "team" not in line


def test_the_context_gives_job_run_and_team_and_nests(stream: io.StringIO) -> None:
    log = logging.getLogger("bot.test")
    with log_context(job=12, team="T0001"):
        log.info("looking")
        with log_context(run=3):
            log.info("polling")
        log.info("done")
    log.info("outside")
    looking, polling, done, outside = lines(stream)
    assert (looking["job"], looking["team"], looking.get("run")) == (12, "T0001", None)
    assert (polling["job"], polling["team"], polling["run"]) == (12, "T0001", 3)
    assert "run" not in done and done["job"] == 12
    assert not {"job", "run", "team"} & outside.keys()


def test_the_context_follows_tasks_the_work_starts(stream: io.StringIO) -> None:
    async def in_task() -> None:
        logging.getLogger("bot.test").info("in a task")

    async def work() -> None:
        with log_context(job=7):
            task = asyncio.create_task(in_task())
        await task  # it runs after the context ended here: it took a copy when it started

    asyncio.run(work())
    [line] = [line for line in lines(stream) if line["message"] == "in a task"]
    assert line["job"] == 7


def test_an_extra_field_names_the_job_of_one_line(stream: io.StringIO) -> None:
    logging.getLogger("bot.poller").warning("job 5: taken over", extra={"job": 5})
    assert lines(stream)[0]["job"] == 5


def test_secrets_are_redacted_in_the_message_as_in_text(stream: io.StringIO) -> None:
    log = logging.getLogger("bot.test")
    log.error("token %s secret %s key %s", BOT_TOKEN, SIGNING_SECRET, MOTION_KEY)
    log.error("a token-shaped string xoxp-9999-other-user-token and motion_otherkey_123")
    text = stream.getvalue()
    for secret in [*SECRETS, "xoxp-9999-other-user-token", "motion_otherkey_123"]:
        assert secret not in text
    first, second = lines(stream)
    assert first["message"].count("[redacted]") == 3
    assert "xoxp…[redacted]" in second["message"] and "motion…[redacted]" in second["message"]


def test_an_exception_is_a_field_on_the_same_line_and_redacted(stream: io.StringIO) -> None:
    try:
        raise RuntimeError(f"Slack refused {BOT_TOKEN}\nsecond line")
    except RuntimeError:
        logging.getLogger("bot.test").exception("the call failed")
    text = stream.getvalue()
    assert text.count("\n") == 1 and BOT_TOKEN not in text
    [line] = lines(stream)
    assert line["message"] == "the call failed" and line["level"] == "ERROR"
    assert "Traceback" in line["exception"] and "RuntimeError" in line["exception"]
    assert "second line" in line["exception"] and "[redacted]" in line["exception"]


def test_a_stack_is_a_field_and_redacted(stream: io.StringIO) -> None:
    record = logging.getLogger("bot.test").makeRecord(
        "bot.test", logging.INFO, __file__, 1, "here", (), None,
        sinfo=f"Stack (most recent call last):\n  call({BOT_TOKEN!r})",
    )  # fmt: skip
    logging.getLogger("bot.test").handle(record)
    assert BOT_TOKEN not in stream.getvalue()
    [line] = lines(stream)
    assert line["stack"].startswith("Stack (most recent call last)")
    assert "[redacted]" in line["stack"]


def test_newlines_in_a_message_stay_inside_one_line(stream: io.StringIO) -> None:
    logging.getLogger("bot.test").warning("line one\nforged: ERROR line two")
    text = stream.getvalue()
    assert text.count("\n") == 1
    assert lines(stream)[0]["message"] == "line one\nforged: ERROR line two"


def test_text_stays_the_default_format() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    try:
        logs.configure("INFO", SECRETS, stream=out)
        with log_context(job=1):
            logging.getLogger("bot.test").info("plain %s", BOT_TOKEN)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    text = out.getvalue()
    assert " INFO bot.test: plain [redacted]" in text and not text.startswith("{")
