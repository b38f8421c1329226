"""METRICS_PORT, METRICS_TOKEN and LOG_FORMAT: off or plain text unless set, and refused at start
when a value is not clearly meant (metrics must never be open by accident)."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, Settings

MINIMAL = {"SLACK_BOT_TOKEN": "xoxb-1111-2222-secretbottoken", "SLACK_SIGNING_SECRET": "s" * 20}
TOKEN = "m3tr1cs-t0ken-0123456789"


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**MINIMAL, **env})
    return caught.value.problems


def test_metrics_are_off_and_logs_are_text_by_default() -> None:
    settings = Settings.from_env(MINIMAL)
    assert settings.metrics_port is None and settings.metrics_token is None
    assert settings.metrics_enabled is False
    assert settings.log_format == "text"


def test_a_metrics_port_or_a_token_turns_metrics_on() -> None:
    by_port = Settings.from_env({**MINIMAL, "METRICS_PORT": "9464"})
    assert by_port.metrics_port == 9464 and by_port.metrics_enabled
    by_token = Settings.from_env({**MINIMAL, "METRICS_TOKEN": TOKEN})
    assert by_token.metrics_token == TOKEN and by_token.metrics_enabled
    assert by_token.metrics_port is None


def test_the_metrics_token_never_shows_in_the_settings_repr() -> None:
    assert TOKEN not in repr(Settings.from_env({**MINIMAL, "METRICS_TOKEN": TOKEN}))


@pytest.mark.parametrize("value", ["-1", "65536", "70000"])
def test_a_metrics_port_out_of_range_is_refused(value: str) -> None:
    [problem] = problems({"METRICS_PORT": value})
    assert problem.startswith("METRICS_PORT must be between 1 and 65535") and value in problem


def test_a_metrics_port_that_is_not_a_number_is_refused() -> None:
    [problem] = problems({"METRICS_PORT": "nine"})
    assert problem == "METRICS_PORT must be a whole number, got 'nine'."


def test_a_metrics_port_equal_to_port_is_refused_with_the_way_to_use_port() -> None:
    [problem] = problems({"PORT": "8080", "METRICS_PORT": "8080"})
    assert "must differ from PORT" in problem and "METRICS_TOKEN" in problem


def test_any_free_port_for_both_is_allowed() -> None:
    settings = Settings.from_env({**MINIMAL, "PORT": "0", "METRICS_PORT": "0"})
    assert settings.metrics_port == 0


def test_a_short_metrics_token_is_refused_without_showing_it() -> None:
    [problem] = problems({"METRICS_TOKEN": "short-secret"})
    assert "at least 16 characters" in problem and "got 12" in problem
    assert "short-secret" not in problem


def test_a_metrics_token_with_spaces_is_refused_without_showing_it() -> None:
    token = "sixteen chars and more"
    [problem] = problems({"METRICS_TOKEN": token})
    assert "printable ASCII without spaces" in problem and token not in problem


@pytest.mark.parametrize("value", ["json", "JSON", " text "])
def test_log_format_is_text_or_json_in_any_case(value: str) -> None:
    assert Settings.from_env({**MINIMAL, "LOG_FORMAT": value}).log_format == value.strip().lower()


def test_an_unknown_log_format_is_refused_with_the_choices() -> None:
    [problem] = problems({"LOG_FORMAT": "logfmt"})
    assert problem.startswith("LOG_FORMAT must be text") and "json" in problem
    assert "'logfmt'" in problem


def test_every_problem_is_listed_at_once() -> None:
    found = problems({"METRICS_PORT": "99999", "METRICS_TOKEN": "x", "LOG_FORMAT": "xml"})
    assert [p.split(" ", 1)[0] for p in found] == ["LOG_FORMAT", "METRICS_PORT", "METRICS_TOKEN"]
