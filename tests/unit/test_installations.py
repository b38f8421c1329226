"""Slack's installation and OAuth state stores on the project's store (a SQLite file, or
PostgreSQL with TEST_DATABASE_URL): slack_sdk's semantics — found by enterprise and team, an
org-wide install by its enterprise, the latest install wins, a person's own install — with every
token sealed, and the states of installs in progress used once and only in time."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation

from bot.store import Store
from bot.workspaces.installations import StoreInstallations, StoreOAuthStates
from bot.workspaces.secrets import Secrets, new_key

KEY = new_key()
T0 = 1_700_000_000.0


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = Store(database_url)
    yield opened
    opened.close()


@pytest.fixture
def installations(store: Store) -> StoreInstallations:
    return StoreInstallations(store, Secrets([KEY]))


def installation(
    team_id: str | None = "T1",
    *,
    enterprise_id: str | None = None,
    user_id: str = "U1",
    bot_token: str | None = "xoxb-T1-first",
    installed_at: float = T0,
    **more: Any,
) -> Installation:
    values: dict[str, Any] = {
        "app_id": "A1",
        "enterprise_id": enterprise_id,
        "team_id": team_id,
        "team_name": f"team {team_id}",
        "bot_token": bot_token,
        "bot_id": "B1" if bot_token else None,
        "bot_user_id": "U0BOT" if bot_token else None,
        "bot_scopes": ["commands", "chat:write"] if bot_token else "",
        "user_id": user_id,
        "installed_at": installed_at,
        "token_type": "bot",
    }
    return Installation(**{**values, **more})


# ---------------------------------------------------------------- save and find


async def test_an_installation_is_found_again_with_every_field(
    installations: StoreInstallations,
) -> None:
    await installations.async_save(
        installation(
            enterprise_id="E1",
            bot_refresh_token="xoxe-1-refresh-T1",
            bot_token_expires_at=int(T0) + 43_200,
            enterprise_name="Acme Corp",
            enterprise_url="https://acme.enterprise.slack.com/",
        )
    )
    bot = await installations.async_find_bot(enterprise_id="E1", team_id="T1")
    assert bot is not None
    assert (bot.bot_token, bot.bot_refresh_token) == ("xoxb-T1-first", "xoxe-1-refresh-T1")
    assert (bot.bot_id, bot.bot_user_id, bot.app_id) == ("B1", "U0BOT", "A1")
    assert list(bot.bot_scopes) == ["commands", "chat:write"]
    assert bot.bot_token_expires_at == int(T0) + 43_200
    assert (bot.enterprise_id, bot.team_id, bot.is_enterprise_install) == ("E1", "T1", False)
    assert bot.installed_at == T0

    found = await installations.async_find_installation(enterprise_id="E1", team_id="T1")
    assert found is not None
    assert (found.user_id, found.bot_token, found.team_name) == ("U1", "xoxb-T1-first", "team T1")
    assert found.enterprise_name == "Acme Corp"
    assert found.enterprise_url == "https://acme.enterprise.slack.com/"
    assert found.token_type == "bot" and found.user_token is None


async def test_workspaces_are_kept_apart_and_an_unknown_one_is_not_installed(
    installations: StoreInstallations,
) -> None:
    await installations.async_save(installation("T1", bot_token="xoxb-T1"))
    await installations.async_save(installation("T2", bot_token="xoxb-T2", user_id="U9"))
    one = await installations.async_find_bot(enterprise_id=None, team_id="T1")
    two = await installations.async_find_bot(enterprise_id=None, team_id="T2")
    assert one is not None and two is not None
    assert (one.bot_token, two.bot_token) == ("xoxb-T1", "xoxb-T2")
    assert await installations.async_find_bot(enterprise_id=None, team_id="T3") is None
    assert await installations.async_find_bot(enterprise_id="E1", team_id="T1") is None
    assert await installations.async_find_installation(enterprise_id=None, team_id="T3") is None


async def test_installing_again_replaces_the_installation_and_keeps_each_persons_own(
    installations: StoreInstallations, store: Store
) -> None:
    await installations.async_save(
        installation(user_id="U1", user_token="xoxp-U1", user_scopes=["search:read"])
    )
    await installations.async_save(
        installation(
            user_id="U2",
            bot_token="xoxb-T1-second",
            bot_scopes=["commands"],
            installed_at=T0 + 60,
        )
    )
    bot = await installations.async_find_bot(enterprise_id=None, team_id="T1")
    assert bot is not None and bot.bot_token == "xoxb-T1-second"
    assert list(bot.bot_scopes) == ["commands"]
    latest = await installations.async_find_installation(enterprise_id=None, team_id="T1")
    assert latest is not None
    assert (latest.user_id, latest.user_token, latest.installed_at) == ("U2", None, T0 + 60)
    # the first installer's own install: their user token, with the workspace's latest bot
    first = await installations.async_find_installation(
        enterprise_id=None, team_id="T1", user_id="U1"
    )
    assert first is not None
    assert (first.user_token, list(first.user_scopes or [])) == ("xoxp-U1", ["search:read"])
    assert first.bot_token == "xoxb-T1-second"
    assert await installations.async_find_installation(
        enterprise_id=None, team_id="T1", user_id="U3"
    ) is None  # fmt: skip
    assert len(store.installed_workspaces()) == 1
    assert store.installed_workspaces()[0].installer == "U2"


async def test_an_install_granting_no_bot_keeps_the_bot_installed_before(
    installations: StoreInstallations,
) -> None:
    await installations.async_save(installation(user_id="U1"))
    await installations.async_save(
        installation(user_id="U2", bot_token=None, user_token="xoxp-U2", installed_at=T0 + 5)
    )
    bot = await installations.async_find_bot(enterprise_id=None, team_id="T1")
    assert bot is not None and bot.bot_token == "xoxb-T1-first"
    latest = await installations.async_find_installation(enterprise_id=None, team_id="T1")
    assert latest is not None
    assert (latest.user_id, latest.user_token, latest.bot_token) == (
        "U2",
        "xoxp-U2",
        "xoxb-T1-first",
    )


async def test_an_org_wide_install_is_found_by_its_enterprise_from_any_of_its_workspaces(
    installations: StoreInstallations, store: Store
) -> None:
    await installations.async_save(
        installation(None, enterprise_id="E1", bot_token="xoxb-E1-org", is_enterprise_install=True)
    )
    for team in ("T1", "T7", None):
        bot = await installations.async_find_bot(
            enterprise_id="E1", team_id=team, is_enterprise_install=True
        )
        assert bot is not None and bot.bot_token == "xoxb-E1-org"
        assert bot.is_enterprise_install is True and bot.team_id is None
        found = await installations.async_find_installation(
            enterprise_id="E1", team_id=team, is_enterprise_install=True
        )
        assert found is not None and found.bot_token == "xoxb-E1-org"
    # not a workspace install of T1, and not another enterprise's
    assert await installations.async_find_bot(enterprise_id="E1", team_id="T1") is None
    assert (
        await installations.async_find_bot(
            enterprise_id="E2", team_id=None, is_enterprise_install=True
        )
        is None
    )
    [row] = store.installed_workspaces()
    assert (row.enterprise_id, row.team_id, row.is_enterprise_install) == ("E1", None, True)


async def test_an_org_wide_install_with_a_team_in_its_answer_is_still_keyed_by_enterprise(
    installations: StoreInstallations,
) -> None:
    await installations.async_save(
        installation("T5", enterprise_id="E1", bot_token="xoxb-E1", is_enterprise_install=True)
    )
    bot = await installations.async_find_bot(
        enterprise_id="E1", team_id="T9", is_enterprise_install=True
    )
    assert bot is not None and bot.bot_token == "xoxb-E1"


async def test_a_refreshed_bot_replaces_the_token_and_keeps_who_installed(
    installations: StoreInstallations, store: Store
) -> None:
    await installations.async_save(
        installation(bot_refresh_token="xoxe-1-old", bot_token_expires_at=int(T0) + 60)
    )
    bot = await installations.async_find_bot(enterprise_id=None, team_id="T1")
    assert bot is not None
    refreshed = Bot(
        **{
            **bot.to_dict_for_copying(),
            "bot_token": "xoxb-T1-refreshed",
            "bot_refresh_token": "xoxe-1-new",
            "bot_token_expires_at": int(T0) + 43_200,
        }
    )
    await installations.async_save_bot(refreshed)
    again = await installations.async_find_bot(enterprise_id=None, team_id="T1")
    assert again is not None
    assert (again.bot_token, again.bot_refresh_token) == ("xoxb-T1-refreshed", "xoxe-1-new")
    assert again.bot_token_expires_at == int(T0) + 43_200
    row = store.installed_bot(None, "T1")
    assert row is not None and (row.installer, row.token_type) == ("U1", "bot")


# ---------------------------------------------------------------- delete


async def test_deleting_the_bot_removes_its_tokens_and_keeps_the_persons_install(
    installations: StoreInstallations, store: Store
) -> None:
    await installations.async_save(installation(bot_refresh_token="xoxe-1-r", user_token="xoxp-U1"))
    await installations.async_delete_bot(enterprise_id=None, team_id="T1")
    assert await installations.async_find_bot(enterprise_id=None, team_id="T1") is None
    found = await installations.async_find_installation(enterprise_id=None, team_id="T1")
    assert found is not None
    assert (found.bot_token, found.bot_refresh_token, found.user_token) == (None, None, "xoxp-U1")
    assert {value.column for value in store.sealed_values()} == {"sealed_user_token"}


async def test_deleting_one_persons_install_keeps_the_others_and_the_bot(
    installations: StoreInstallations,
) -> None:
    await installations.async_save(installation(user_id="U1"))
    await installations.async_save(installation(user_id="U2", installed_at=T0 + 1))
    await installations.async_delete_installation(enterprise_id=None, team_id="T1", user_id="U2")
    latest = await installations.async_find_installation(enterprise_id=None, team_id="T1")
    assert latest is not None and latest.user_id == "U1"
    await installations.async_delete_installation(enterprise_id=None, team_id="T1")
    assert await installations.async_find_installation(enterprise_id=None, team_id="T1") is None
    bot = await installations.async_find_bot(enterprise_id=None, team_id="T1")
    assert bot is not None and bot.bot_token == "xoxb-T1-first"


async def test_deleting_bot_and_installs_leaves_nothing_of_the_workspace(
    installations: StoreInstallations, store: Store
) -> None:
    await installations.async_save(installation("T1", user_token="xoxp-1"))
    await installations.async_save(installation("T2", bot_token="xoxb-T2"))
    await installations.async_delete_bot(enterprise_id=None, team_id="T1")
    await installations.async_delete_installation(enterprise_id=None, team_id="T1")
    assert [row.team_id for row in store.installed_workspaces()] == ["T2"]
    assert store.installer_grant(None, "T1") is None


async def test_uninstalling_deletes_everything_of_that_workspace_only(
    installations: StoreInstallations, store: Store
) -> None:
    await installations.async_save(installation("T1", user_token="xoxp-1"))
    await installations.async_save(installation("T1", user_id="U2", installed_at=T0 + 1))
    await installations.async_save(installation("T2", bot_token="xoxb-T2"))
    await installations.async_delete_all(enterprise_id=None, team_id="T1")
    assert await installations.async_find_bot(enterprise_id=None, team_id="T1") is None
    assert await installations.async_find_installation(enterprise_id=None, team_id="T1") is None
    assert store.installer_grant(None, "T1", "U2") is None
    assert [row.team_id for row in store.installed_workspaces()] == ["T2"]
    assert {value.team_id for value in store.sealed_values()} == {"T2"}


async def test_uninstalling_an_org_wide_install_named_by_one_of_its_teams_removes_it(
    installations: StoreInstallations, store: Store
) -> None:
    """Bolt's revocation listeners pass the event's team, even for an org-wide install."""
    await installations.async_save(
        installation(None, enterprise_id="E1", bot_token="xoxb-E1", is_enterprise_install=True)
    )
    await installations.async_save(installation("T1", enterprise_id="E2", bot_token="xoxb-E2"))
    await installations.async_delete_all(enterprise_id="E1", team_id="T4")
    assert [row.enterprise_id for row in store.installed_workspaces()] == ["E2"]
    # a workspace install of the team named is what a revocation from it is about
    await installations.async_delete_bot(enterprise_id="E2", team_id="T1")
    assert await installations.async_find_bot(enterprise_id="E2", team_id="T1") is None


# ---------------------------------------------------------------- secrets no key opens


async def test_a_token_no_key_opens_reads_as_not_installed_and_is_logged_by_workspace(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await StoreInstallations(store, Secrets([KEY])).async_save(
        installation("T1", bot_token="xoxb-under-a-dropped-key", user_token="xoxp-dropped")
    )
    other = StoreInstallations(store, Secrets([new_key()]))
    with caplog.at_level(logging.ERROR, "bot.workspaces.installations"):
        assert await other.async_find_bot(enterprise_id=None, team_id="T1") is None
        found = await other.async_find_installation(enterprise_id=None, team_id="T1")
    assert found is not None and found.bot_token is None and found.user_token is None
    assert "the bot token of workspace T1 cannot be opened" in caplog.text
    assert "the user token of U1 of workspace T1 cannot be opened" in caplog.text
    assert "xoxb-under" not in caplog.text and "xoxp-dropped" not in caplog.text
    assert KEY not in caplog.text


# ---------------------------------------------------------------- OAuth states


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


async def test_a_state_is_consumed_once(store: Store) -> None:
    states = StoreOAuthStates(store, clock=Clock())
    state = await states.async_issue()
    assert len(state) >= 32 and state != await states.async_issue()
    assert await states.async_consume(state) is True
    assert await states.async_consume(state) is False
    assert await states.async_consume("never-issued") is False


async def test_a_state_expires_after_ten_minutes(store: Store) -> None:
    clock = Clock()
    states = StoreOAuthStates(store, clock=clock)
    in_time, too_late = await states.async_issue(), await states.async_issue()
    clock.now += 599
    assert await states.async_consume(in_time) is True
    clock.now += 1
    assert await states.async_consume(too_late) is False


async def test_issuing_sweeps_out_expired_states(store: Store) -> None:
    clock = Clock()
    states = StoreOAuthStates(store, clock=clock, expiration_seconds=60)
    await states.async_issue()
    await states.async_issue()
    clock.now += 61
    fresh = await states.async_issue()
    assert store.database.value("SELECT count(*) FROM oauth_states") == 1
    assert await states.async_consume(fresh) is True


async def test_states_and_installations_are_shared_by_every_instance(database_url: str) -> None:
    """Two stores on one database: a state issued by one is consumed by the other, once."""
    first, second = Store(database_url), Store(database_url)
    try:
        state = await StoreOAuthStates(first).async_issue()
        await StoreInstallations(first, Secrets([KEY])).async_save(installation())
        bot = await StoreInstallations(second, Secrets([KEY])).async_find_bot(
            enterprise_id=None, team_id="T1"
        )
        assert bot is not None and bot.bot_token == "xoxb-T1-first"
        assert await StoreOAuthStates(second).async_consume(state) is True
        assert await StoreOAuthStates(first).async_consume(state) is False
    finally:
        first.close()
        second.close()
