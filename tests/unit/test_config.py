"""Settings from the environment: SPEC's defaults, and one error that lists every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, Settings

BOT_TOKEN = "xoxb-1111-2222-secretbottoken"
SIGNING_SECRET = "signing-secret-abcdef123456"
APP_TOKEN = "xapp-1-A111-secretapptoken"
MOTION_KEY = "motion_secretkey_abcdef"

MINIMAL = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET}


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    return caught.value.problems


def one_problem(env: dict[str, str], about: str) -> str:
    found = [p for p in problems(env) if about in p]
    assert len(found) == 1, found
    return found[0]


# ---------------------------------------------------------------- defaults


def test_defaults_are_the_ones_in_the_spec() -> None:
    settings = Settings.from_env(MINIMAL)
    assert settings.slack_bot_token == BOT_TOKEN
    assert settings.slack_signing_secret == SIGNING_SECRET
    assert settings.slack_app_token is None
    assert settings.socket_mode is False
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.port == 3000
    assert settings.motion_api_key is None
    assert settings.sandbox is True
    assert settings.motion_api_url == "https://api.motion.so/api/motion"
    assert settings.database_path == "motion-bot.db"
    assert settings.notify_channel is None
    assert settings.followup_requires_mention is False
    assert settings.poll_initial_seconds == 3.0
    assert settings.poll_max_seconds == 30.0
    assert settings.log_level == "INFO"


def test_from_env_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in MINIMAL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    assert Settings.from_env().port == 8123


def test_every_variable_is_read(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_APP_TOKEN": APP_TOKEN,
            "SLACK_API_URL": "http://127.0.0.1:9999/api/",
            "PORT": "8080",
            "MOTION_API_KEY": MOTION_KEY,
            "MOTION_API_URL": "http://127.0.0.1:8787/api/motion/",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
            "MOTION_NOTIFY_CHANNEL": "C0123ABCD",
            "FOLLOWUP_REQUIRES_MENTION": "true",
            "POLL_INITIAL_SECONDS": "0.5",
            "POLL_MAX_SECONDS": "12.5",
            "POLL_TARGET_P95_SECONDS": "7.5",
            "LOG_LEVEL": "debug",
        }
    )
    assert settings.socket_mode is True
    assert settings.slack_app_token == APP_TOKEN
    assert settings.slack_signing_secret is None
    assert settings.slack_api_url == "http://127.0.0.1:9999/api/"
    assert settings.port == 8080
    assert settings.sandbox is False
    assert settings.motion_key == MOTION_KEY
    assert settings.motion_api_url == "http://127.0.0.1:8787/api/motion"
    assert settings.database_path == str(tmp_path / "state.db")
    assert settings.notify_channel == "C0123ABCD"
    assert settings.followup_requires_mention is True
    assert settings.poll_initial_seconds == 0.5
    assert settings.poll_max_seconds == 12.5
    assert settings.poll_target_p95_seconds == 7.5
    assert settings.log_level == "DEBUG"


def test_empty_values_count_as_unset() -> None:
    settings = Settings.from_env({**MINIMAL, "MOTION_API_KEY": "  ", "PORT": "", "LOG_LEVEL": ""})
    assert settings.sandbox is True
    assert settings.port == 3000
    assert settings.log_level == "INFO"


def test_slack_api_url_without_trailing_slash_gets_one() -> None:
    settings = Settings.from_env({**MINIMAL, "SLACK_API_URL": "http://127.0.0.1:9999/api"})
    assert settings.slack_api_url == "http://127.0.0.1:9999/api/"


@pytest.mark.parametrize("value", ["1", "yes", "on", "TRUE"])
def test_followup_requires_mention_accepts_common_true_spellings(value: str) -> None:
    env = {**MINIMAL, "FOLLOWUP_REQUIRES_MENTION": value}
    assert Settings.from_env(env).followup_requires_mention is True


@pytest.mark.parametrize("value", ["0", "no", "off", "False"])
def test_followup_requires_mention_accepts_common_false_spellings(value: str) -> None:
    env = {**MINIMAL, "FOLLOWUP_REQUIRES_MENTION": value}
    assert Settings.from_env(env).followup_requires_mention is False


def test_absolute_sqlite_path_is_kept_absolute(tmp_path: Path) -> None:
    settings = Settings.from_env({**MINIMAL, "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    assert settings.database_path == f"{tmp_path}/x.db"
    assert Path(settings.database_path).is_absolute()


def test_signing_secret_is_not_required_in_socket_mode() -> None:
    settings = Settings.from_env({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN})
    assert settings.socket_mode is True


# ---------------------------------------------------------------- every problem at once


def test_one_error_names_every_problem_at_once() -> None:
    found = problems(
        {
            "SLACK_API_URL": "not a url",
            "PORT": "eighty",
            "MOTION_API_KEY": "sk-wrongprefix",
            "DATABASE_URL": "mysql://user:pw@db/motion",
            "MOTION_NOTIFY_CHANNEL": "#general",
            "FOLLOWUP_REQUIRES_MENTION": "sometimes",
            "POLL_INITIAL_SECONDS": "soon",
            "POLL_MAX_SECONDS": "-1",
            "LOG_LEVEL": "chatty",
        }
    )
    for name in (
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "SLACK_API_URL",
        "PORT",
        "MOTION_API_KEY",
        "DATABASE_URL",
        "MOTION_NOTIFY_CHANNEL",
        "FOLLOWUP_REQUIRES_MENTION",
        "POLL_INITIAL_SECONDS",
        "POLL_MAX_SECONDS",
        "LOG_LEVEL",
    ):
        assert any(p.startswith(name) for p in found), name
    assert len(found) == 11


def test_the_error_message_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"PORT": "x"})
    text = str(caught.value)
    assert "SLACK_BOT_TOKEN" in text
    assert "SLACK_SIGNING_SECRET" in text
    assert "PORT" in text


def test_missing_bot_token_says_where_to_get_it() -> None:
    message = one_problem({"SLACK_SIGNING_SECRET": SIGNING_SECRET}, "SLACK_BOT_TOKEN")
    assert "missing" in message
    assert "OAuth & Permissions" in message
    assert "manifest.yml" in message


@pytest.mark.parametrize("token", ["xoxp-user-token", "xapp-1-app-token", "secret"])
def test_bot_token_must_start_with_xoxb(token: str) -> None:
    message = one_problem({**MINIMAL, "SLACK_BOT_TOKEN": token}, "SLACK_BOT_TOKEN")
    assert "xoxb-" in message
    assert "OAuth & Permissions" in message


def test_app_token_must_start_with_xapp() -> None:
    message = one_problem({**MINIMAL, "SLACK_APP_TOKEN": "xoxb-wrong"}, "SLACK_APP_TOKEN")
    assert "xapp-" in message
    assert "App-Level Tokens" in message


def test_missing_signing_secret_in_http_mode_says_where_to_get_it() -> None:
    message = one_problem({"SLACK_BOT_TOKEN": BOT_TOKEN}, "SLACK_SIGNING_SECRET")
    assert "HTTP mode" in message
    assert "Signing Secret" in message
    assert "Basic Information" in message


def test_motion_key_must_start_with_motion_and_says_where_to_create_one() -> None:
    message = one_problem({**MINIMAL, "MOTION_API_KEY": "sk-123"}, "MOTION_API_KEY")
    assert "motion_" in message
    assert "motion.so" in message


@pytest.mark.parametrize("url", ["mysql://user:pw@db/motion", "redis://db/x", "motion.db"])
def test_database_url_with_a_scheme_the_app_cannot_serve_is_refused(url: str) -> None:
    message = one_problem({**MINIMAL, "DATABASE_URL": url}, "DATABASE_URL")
    assert "SQLite" in message
    assert "sqlite:///" in message
    assert "pw" not in message  # a password in the URL is not echoed


@pytest.mark.parametrize(
    "url", ["postgres://user:pw@db.example:5432/motion", "postgresql://user:pw@db.example/motion"]
)
def test_a_postgresql_url_is_kept_whole_and_its_password_never_shown(url: str) -> None:
    settings = Settings.from_env({**MINIMAL, "DATABASE_URL": url})
    assert settings.database_path.endswith("user:pw@db.example" + url.split("db.example")[1])
    assert settings.database_path.split("://")[0] in ("postgres", "postgresql")
    assert "pw" not in repr(settings)
    assert "PostgreSQL db.example/motion" in repr(settings)


def test_a_postgresql_url_without_a_database_name_is_refused() -> None:
    message = one_problem({**MINIMAL, "DATABASE_URL": "postgresql://u:pw@db"}, "DATABASE_URL")
    assert "names no PostgreSQL database" in message
    assert "pw" not in message


def test_database_url_in_a_missing_folder_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/no/such/dir/x.db"
    assert "does not exist" in one_problem({**MINIMAL, "DATABASE_URL": url}, "DATABASE_URL")


def test_database_url_without_a_file_is_refused() -> None:
    assert "no file" in one_problem({**MINIMAL, "DATABASE_URL": "sqlite:///"}, "DATABASE_URL")


@pytest.mark.parametrize("port", ["eighty", "3000.5", "70000", "-1"])
def test_bad_port_is_refused(port: str) -> None:
    message = one_problem({**MINIMAL, "PORT": port}, "PORT")
    assert port in message


@pytest.mark.parametrize("value", ["soon", "0", "-2", "nan", "inf", "3601"])
def test_bad_poll_initial_is_refused(value: str) -> None:
    one_problem({**MINIMAL, "POLL_INITIAL_SECONDS": value}, "POLL_INITIAL_SECONDS must")


@pytest.mark.parametrize("value", ["later", "0", "-30", "nan"])
def test_bad_poll_max_is_refused(value: str) -> None:
    one_problem({**MINIMAL, "POLL_MAX_SECONDS": value}, "POLL_MAX_SECONDS must")


def test_poll_target_p95_defaults_to_five_seconds() -> None:
    assert Settings.from_env(MINIMAL).poll_target_p95_seconds == 5.0


@pytest.mark.parametrize("value", ["whenever", "0", "-5", "nan", "inf", "3601"])
def test_bad_poll_target_p95_is_refused(value: str) -> None:
    message = one_problem({**MINIMAL, "POLL_TARGET_P95_SECONDS": value}, "POLL_TARGET_P95_SECONDS")
    assert message.startswith("POLL_TARGET_P95_SECONDS must") and value in message


def test_poll_initial_above_poll_max_is_refused() -> None:
    env = {**MINIMAL, "POLL_INITIAL_SECONDS": "10", "POLL_MAX_SECONDS": "5"}
    message = one_problem(env, "POLL_MAX_SECONDS")
    assert "POLL_INITIAL_SECONDS" in message


def test_poll_initial_equal_to_poll_max_is_accepted() -> None:
    env = {**MINIMAL, "POLL_INITIAL_SECONDS": "5", "POLL_MAX_SECONDS": "5"}
    assert Settings.from_env(env).poll_max_seconds == 5.0


def test_bad_log_level_is_refused_with_the_choices() -> None:
    message = one_problem({**MINIMAL, "LOG_LEVEL": "chatty"}, "LOG_LEVEL")
    assert "DEBUG" in message
    assert "WARNING" in message


@pytest.mark.parametrize("channel", ["#general", "general", "U0123ABCD", "c0123abcd"])
def test_notify_channel_must_be_a_channel_id(channel: str) -> None:
    message = one_problem({**MINIMAL, "MOTION_NOTIFY_CHANNEL": channel}, "MOTION_NOTIFY_CHANNEL")
    assert "channel ID" in message
    assert "About" in message  # where to find it


@pytest.mark.parametrize("value", ["sometimes", "2", "yess"])
def test_followup_requires_mention_must_be_a_boolean(value: str) -> None:
    message = one_problem(
        {**MINIMAL, "FOLLOWUP_REQUIRES_MENTION": value}, "FOLLOWUP_REQUIRES_MENTION"
    )
    assert "true or false" in message


@pytest.mark.parametrize("name", ["SLACK_API_URL", "MOTION_API_URL"])
def test_api_urls_must_be_http_urls(name: str) -> None:
    assert "http" in one_problem({**MINIMAL, name: "ftp://example.com/api"}, name)


# ---------------------------------------------------------------- secrets stay secret


def test_repr_contains_no_secret() -> None:
    settings = Settings.from_env(
        {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_APP_TOKEN": APP_TOKEN,
            "MOTION_API_KEY": MOTION_KEY,
        }
    )
    for shown in (repr(settings), str(settings), f"{settings}", f"{settings!r}"):
        for secret in (BOT_TOKEN, SIGNING_SECRET, APP_TOKEN, MOTION_KEY):
            assert secret not in shown
    assert "Settings" in repr(settings)


def test_config_errors_do_not_echo_secret_values() -> None:
    env = {
        "SLACK_BOT_TOKEN": "xoxp-user-secret-999",
        "SLACK_APP_TOKEN": "app-secret-888",
        "MOTION_API_KEY": "sk-secret-777",
    }
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    for secret in env.values():
        assert secret not in str(caught.value)


# ---------------------------------------------------------------- spend controls


def test_spend_controls_are_off_by_default() -> None:
    settings = Settings.from_env(MINIMAL)
    assert settings.allowed_channels == ()
    assert settings.admins == ()
    assert settings.runs_per_user_per_day is None
    assert settings.runs_per_month is None
    assert settings.confirm is False


def test_spend_controls_are_read_with_blanks_and_repeats_ignored() -> None:
    settings = Settings.from_env(
        {
            **MINIMAL,
            "MOTION_ALLOWED_CHANNELS": " C0VIDEOS1, G0PRIVATE2,,C0VIDEOS1 ",
            "MOTION_ADMINS": "U0ADMIN01,W0GRID0001",
            "MOTION_RUNS_PER_USER_PER_DAY": "5",
            "MOTION_RUNS_PER_MONTH": " 200 ",
            "MOTION_CONFIRM": "TRUE",
        }
    )
    assert settings.allowed_channels == ("C0VIDEOS1", "G0PRIVATE2")
    assert settings.admins == ("U0ADMIN01", "W0GRID0001")
    assert (settings.runs_per_user_per_day, settings.runs_per_month) == (5, 200)
    assert settings.confirm is True


def test_channel_names_instead_of_ids_are_refused_with_where_to_find_the_id() -> None:
    problem = one_problem(
        {**MINIMAL, "MOTION_ALLOWED_CHANNELS": "#general,C0VIDEOS1"}, "MOTION_ALLOWED_CHANNELS"
    )
    assert "'#general'" in problem and "C0123ABCD" in problem and "About tab" in problem


def test_admin_names_instead_of_ids_are_refused_with_where_to_find_the_id() -> None:
    problem = one_problem({**MINIMAL, "MOTION_ADMINS": "@alice"}, "MOTION_ADMINS")
    assert "'@alice'" in problem and "Copy member ID" in problem


def test_a_list_of_only_commas_is_refused() -> None:
    problem = one_problem({**MINIMAL, "MOTION_ADMINS": " , "}, "MOTION_ADMINS")
    assert "names nothing" in problem


@pytest.mark.parametrize("value", ["0", "-3", "ten", "2.5", "unlimited"])
def test_a_run_limit_must_be_a_whole_number_of_at_least_one(value: str) -> None:
    for name in ("MOTION_RUNS_PER_USER_PER_DAY", "MOTION_RUNS_PER_MONTH"):
        problem = one_problem({**MINIMAL, name: value}, name)
        assert "unset it for no limit" in problem


def test_motion_confirm_must_be_true_or_false() -> None:
    problem = one_problem({**MINIMAL, "MOTION_CONFIRM": "maybe"}, "MOTION_CONFIRM")
    assert problem == "MOTION_CONFIRM must be true or false, got 'maybe'."


def test_every_spend_problem_is_listed_at_once() -> None:
    found = problems(
        {
            **MINIMAL,
            "MOTION_ALLOWED_CHANNELS": "general",
            "MOTION_ADMINS": "alice",
            "MOTION_RUNS_PER_USER_PER_DAY": "0",
            "MOTION_RUNS_PER_MONTH": "lots",
            "MOTION_CONFIRM": "2",
        }
    )
    assert len(found) == 5


# ---------------------------------------------------------------- public links, uploads, stuck jobs


def test_public_url_uploads_and_stuck_defaults_are_the_specs() -> None:
    settings = Settings.from_env(MINIMAL)
    assert settings.public_url is None
    assert settings.upload_max_mb == 100.0
    assert settings.stuck_after_minutes == 60.0


def test_public_url_loses_its_trailing_slash_and_keeps_its_path() -> None:
    settings = Settings.from_env(
        {
            **MINIMAL,
            "PUBLIC_URL": "https://motion.example.com/bot/",
            "UPLOAD_MAX_MB": "0",
            "STUCK_AFTER_MINUTES": "0.5",
        }
    )
    assert settings.public_url == "https://motion.example.com/bot"
    assert settings.upload_max_mb == 0.0
    assert settings.stuck_after_minutes == 0.5


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:3000/"])
def test_plain_http_public_url_is_accepted_on_loopback(url: str) -> None:
    assert Settings.from_env({**MINIMAL, "PUBLIC_URL": url}).public_url == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://motion.example.com", "must use https"),
        ("motion.example.com", "public https address"),
        ("ftp://motion.example.com", "public https address"),
        ("https://motion.example.com/?x=1", "without ? or #"),
    ],
)
def test_a_public_url_motion_could_not_safely_reach_is_refused(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**MINIMAL, "PUBLIC_URL": url})
    assert any("PUBLIC_URL" in p and says in p for p in caught.value.problems)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("UPLOAD_MAX_MB", "-1"),
        ("UPLOAD_MAX_MB", "lots"),
        ("UPLOAD_MAX_MB", "5000"),
        ("STUCK_AFTER_MINUTES", "0"),
        ("STUCK_AFTER_MINUTES", "never"),
        ("STUCK_AFTER_MINUTES", "20000"),
    ],
)
def test_bad_upload_cap_or_stuck_time_is_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**MINIMAL, name: value})
    assert [p for p in caught.value.problems if p.startswith(name)]


@pytest.mark.parametrize(
    "url",
    [
        "user:s3cr3t-pw@db.example:5432/motion",  # no scheme at all
        "postgresql:/user:s3cr3t-pw@db.example/motion",  # one slash short
        "postgre sql://user:s3cr3t-pw@db.example/motion",  # a scheme no URL has
        "mysql+pymysql://user:s3cr3t-pw@db.example/motion",
    ],
)
def test_a_malformed_database_url_is_named_by_its_scheme_only(url: str) -> None:
    message = one_problem({**MINIMAL, "DATABASE_URL": url}, "DATABASE_URL")
    assert "s3cr3t" not in message and "db.example" not in message
    assert "sqlite:///" in message  # still says what to write instead


def test_objects_holding_a_secret_never_show_it_in_their_repr() -> None:
    from bot.links import signer_for

    env = {**MINIMAL, "MOTION_API_KEY": "motion_s3cr3t_key", "SLACK_SIGNING_SECRET": "s3cr3t-sign"}
    settings = Settings.from_env(env)
    signer = signer_for(settings.slack_signing_secret, settings.slack_bot_token)
    for thing in (settings, signer):
        shown = repr(thing)
        for secret in ("s3cr3t", BOT_TOKEN, settings.slack_bot_token):
            assert secret not in shown, (type(thing).__name__, shown)


# ---------------------------------------------------------------- many workspaces

CLIENT = {"SLACK_CLIENT_ID": "1111.2222", "SLACK_CLIENT_SECRET": "client-secret-abcdef"}
FERNET_KEY = "8dOOvnRfJ3xT9bqKwJ0cKXhZ8sUe4Q2Qm6Q1sQ0yF1Y="
MANY = {
    **CLIENT,
    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    "PUBLIC_URL": "https://motion.example.com",
    "SECRET_KEYS": FERNET_KEY,
}


def test_client_id_and_secret_without_a_bot_token_is_many_workspaces_mode() -> None:
    settings = Settings.from_env(MANY)
    assert settings.many_workspaces
    assert settings.slack_client_id == "1111.2222"
    assert settings.slack_bot_token == ""
    assert "client-secret-abcdef" not in repr(settings)


def test_a_bot_token_alone_is_one_workspace_mode() -> None:
    settings = Settings.from_env(MINIMAL)
    assert not settings.many_workspaces
    assert settings.slack_client_id is None and settings.slack_client_secret is None


def test_both_modes_at_once_is_one_clear_problem() -> None:
    found = problems({**MANY, "SLACK_BOT_TOKEN": BOT_TOKEN})
    assert len(found) == 1, found
    assert "SLACK_BOT_TOKEN" in found[0] and "SLACK_CLIENT_ID" in found[0]
    assert "one workspace and for many at once" in found[0]


@pytest.mark.parametrize(
    ("given", "missing"),
    [("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"), ("SLACK_CLIENT_SECRET", "SLACK_CLIENT_ID")],
)
def test_half_a_client_is_one_clear_problem(given: str, missing: str) -> None:
    env = {k: v for k, v in MANY.items() if k != missing}
    found = problems(env)
    assert len(found) == 1, found
    assert found[0].startswith(f"{given} is set without {missing}")
    assert "Basic Information → App Credentials" in found[0]


def test_a_client_id_with_a_bot_token_is_refused_too() -> None:
    found = problems({**MINIMAL, "SLACK_CLIENT_ID": "1111.2222"})
    assert len(found) == 1 and "both set" in found[0], found


def test_neither_mode_names_both_ways_to_pick() -> None:
    problem = one_problem({"SLACK_SIGNING_SECRET": SIGNING_SECRET}, "SLACK_BOT_TOKEN is missing")
    assert "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET" in problem


@pytest.mark.parametrize("variable", ["PUBLIC_URL", "SECRET_KEYS"])
def test_many_workspaces_require_public_url_and_secret_keys(variable: str) -> None:
    env = {k: v for k, v in MANY.items() if k != variable}
    problem = one_problem(env, f"{variable} is missing")
    assert "many workspaces" in problem


def test_many_workspaces_need_the_signing_secret_in_http_mode() -> None:
    env = {k: v for k, v in MANY.items() if k != "SLACK_SIGNING_SECRET"}
    one_problem(env, "SLACK_SIGNING_SECRET is missing")
    socket = {**env, "SLACK_APP_TOKEN": APP_TOKEN}
    assert Settings.from_env(socket).many_workspaces


def test_a_secret_key_that_is_not_a_fernet_key_is_named_by_position_never_by_value() -> None:
    problem = one_problem({**MANY, "SECRET_KEYS": f"{FERNET_KEY},not-a-key"}, "SECRET_KEYS")
    assert "entry 2 is not a Fernet key" in problem
    assert "not-a-key" not in problem
