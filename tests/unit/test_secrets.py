"""Secrets at rest: Fernet under SECRET_KEYS (the first seals, any opens), and SECRET_KEYS as
the configuration reads it — never a key or a secret in a repr, a message or an error."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bot.config import ConfigError, KeySettings, Settings
from bot.workspaces.secrets import Secrets, SecretUnreadable, new_key

OLD, NEW, OTHER = new_key(), new_key(), new_key()
TOKEN = "xoxb-1111-2222-s3cr3t-bot-token"
MINIMAL = {"SLACK_BOT_TOKEN": "xoxb-readme-token", "SLACK_SIGNING_SECRET": "signing-secret-1"}


def test_a_new_key_is_one_fernet_accepts_and_each_is_different() -> None:
    keys = {new_key() for _ in range(5)}
    assert len(keys) == 5
    for key in keys:
        Fernet(key)  # raises on anything else
        assert len(key) == 44 and key.isascii()


def test_a_sealed_secret_opens_to_itself_and_never_holds_it_in_clear() -> None:
    secrets = Secrets([NEW])
    sealed = secrets.seal(TOKEN)
    assert TOKEN not in sealed and "s3cr3t" not in sealed
    assert sealed != secrets.seal(TOKEN)  # a fresh IV each time
    assert secrets.open(sealed) == TOKEN


def test_the_first_key_seals_and_any_listed_key_opens() -> None:
    sealed_by_old = Secrets([OLD]).seal(TOKEN)
    both = Secrets([NEW, OLD])
    assert both.open(sealed_by_old) == TOKEN
    sealed_by_both = both.seal(TOKEN)
    assert Secrets([NEW]).open(sealed_by_both) == TOKEN
    with pytest.raises(SecretUnreadable):
        Secrets([OLD]).open(sealed_by_both)


def test_reseal_moves_a_secret_under_the_first_key() -> None:
    sealed_by_old = Secrets([OLD]).seal(TOKEN)
    resealed = Secrets([NEW, OLD]).reseal(sealed_by_old)
    assert Secrets([NEW]).open(resealed) == TOKEN
    with pytest.raises(SecretUnreadable):
        Secrets([OLD]).open(resealed)


@pytest.mark.parametrize("damaged", ["", "not-a-token", "gAAAAA" + "x" * 80, "é"])
def test_a_value_no_key_opens_raises_a_clear_error_without_the_value(damaged: str) -> None:
    secrets = Secrets([NEW])
    for attempt in (secrets.open, secrets.reseal):
        with pytest.raises(SecretUnreadable) as caught:
            attempt(damaged, "the bot token of workspace T1")
        message = str(caught.value)
        assert "the bot token of workspace T1" in message and "SECRET_KEYS" in message
        assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_the_error_for_a_secret_under_a_dropped_key_never_shows_it() -> None:
    sealed = Secrets([OLD]).seal(TOKEN)
    with pytest.raises(SecretUnreadable) as caught:
        Secrets([NEW]).open(sealed)
    shown = str(caught.value) + repr(caught.value)
    for secret in (TOKEN, sealed, OLD, NEW):
        assert secret not in shown


def test_secrets_never_show_a_key_and_cannot_be_pickled() -> None:
    secrets = Secrets([NEW, OLD])
    assert repr(secrets) == "Secrets(2 keys)" and str(secrets) == "Secrets(2 keys)"
    with pytest.raises(TypeError):
        pickle.dumps(secrets)


def test_secrets_refuse_no_key_or_a_bad_one_naming_its_position_only() -> None:
    with pytest.raises(ValueError, match="holds no key"):
        Secrets([])
    with pytest.raises(ValueError) as caught:
        Secrets([NEW, "not-a-fernet-key-but-secret"])
    assert "entry 2" in str(caught.value) and "not-a-fernet-key" not in str(caught.value)


# ---------------------------------------------------------------- SECRET_KEYS in the config


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    return caught.value.problems


def test_secret_keys_are_optional_with_one_workspace() -> None:
    assert Settings.from_env(MINIMAL).secret_keys == ()


def test_secret_keys_are_read_in_order_with_blanks_around_commas_ignored() -> None:
    settings = Settings.from_env({**MINIMAL, "SECRET_KEYS": f" {NEW} ,{OLD} "})
    assert settings.secret_keys == (NEW, OLD)
    assert NEW not in repr(settings) and OLD not in repr(settings)


def test_an_empty_entry_is_refused_naming_where_it_is() -> None:
    found = problems({**MINIMAL, "SECRET_KEYS": f"{NEW},,{OLD},"})
    assert len(found) == 1
    assert "SECRET_KEYS has an empty entry (entry 2, 4 of 4)" in found[0]
    assert "remove the extra comma" in found[0] and "python -m bot keygen" in found[0]


def test_a_value_that_is_not_a_fernet_key_is_refused_without_echoing_it() -> None:
    wrong = "correct-horse-battery-staple-s3cr3t"
    found = problems({**MINIMAL, "SECRET_KEYS": f"{NEW},{wrong},{NEW[:-2]}"})
    assert [p.split(" is not")[0] for p in found] == ["SECRET_KEYS entry 2", "SECRET_KEYS entry 3"]
    for problem in found:
        assert "Fernet key" in problem and "python -m bot keygen" in problem
        assert wrong not in problem and NEW[:-2] not in problem


def test_a_repeated_key_is_refused() -> None:
    found = problems({**MINIMAL, "SECRET_KEYS": f"{NEW},{OLD},{NEW}"})
    assert found == ["SECRET_KEYS entry 3 repeats entry 1: list each key once."]


def test_secret_keys_problems_come_with_every_other_problem_at_once() -> None:
    found = problems({"SECRET_KEYS": "nope", "LOG_LEVEL": "loud"})
    assert any("SLACK_BOT_TOKEN is missing" in p for p in found)
    assert any("SECRET_KEYS entry 1 is not a Fernet key" in p for p in found)
    assert any("LOG_LEVEL" in p for p in found)


def test_many_workspaces_are_still_refused_with_one_workspace_only() -> None:
    env = {**MINIMAL, "SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "x", "SECRET_KEYS": NEW}
    assert any("SLACK_CLIENT_ID and SLACK_CLIENT_SECRET" in p for p in problems(env))


def test_key_settings_need_only_the_database_and_secret_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    settings = KeySettings.from_env({"DATABASE_URL": url, "SECRET_KEYS": f"{NEW},{OLD}"})
    assert settings.database_path == str(tmp_path / "keys.db")
    assert settings.secret_keys == (NEW, OLD)
    assert NEW not in repr(settings)


def test_key_settings_without_secret_keys_say_how_to_get_one() -> None:
    with pytest.raises(ConfigError) as caught:
        KeySettings.from_env({})
    assert str(caught.value).startswith("motion-bot cannot rotate keys")
    assert caught.value.problems == [
        "SECRET_KEYS is missing: list the new key first, then the old ones "
        "(`python -m bot keygen`, which prints a new Fernet key)."
    ]
