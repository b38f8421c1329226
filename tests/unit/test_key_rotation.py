"""Key rotation: every stored secret re-sealed under the first key of SECRET_KEYS, so the old key
can be dropped; a secret no key opens reported by workspace, left as it is, never a crash."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk.oauth.installation_store.models.installation import Installation

from bot.store import Store
from bot.workspaces.installations import StoreInstallations
from bot.workspaces.rotation import Unreadable, rotate_keys, unreadable_secrets
from bot.workspaces.secrets import Secrets, new_key

OLD, NEW, GONE = new_key(), new_key(), new_key()
T0 = 1_700_000_000.0


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = Store(database_url)
    yield opened
    opened.close()


def installed(
    team_id: str | None, *, enterprise_id: str | None = None, **more: Any
) -> Installation:
    values: dict[str, Any] = {
        "enterprise_id": enterprise_id,
        "team_id": team_id,
        "bot_token": f"xoxb-{team_id or enterprise_id}-token",
        "bot_id": "B1",
        "bot_user_id": "U0BOT",
        "bot_refresh_token": f"xoxe-1-{team_id or enterprise_id}-refresh",
        "bot_token_expires_at": int(T0) + 43_200,
        "user_id": "U1",
        "installed_at": T0,
    }
    values.update(more)
    return Installation(**values)


async def install_three(store: Store) -> None:
    """T1 and an org-wide install of E1 sealed under OLD (with T1's installer's user token);
    T2 under a key that is no longer listed."""
    under_old = StoreInstallations(store, Secrets([OLD]))
    await under_old.async_save(installed("T1", user_token="xoxp-U1-token"))
    await under_old.async_save(installed(None, enterprise_id="E1", is_enterprise_install=True))
    await StoreInstallations(store, Secrets([GONE])).async_save(installed("T2"))


async def test_rotation_reseals_everything_so_the_old_key_can_be_dropped(store: Store) -> None:
    under_old = StoreInstallations(store, Secrets([OLD]))
    await under_old.async_save(installed("T1", user_token="xoxp-U1-token"))
    await under_old.async_save(installed(None, enterprise_id="E1", is_enterprise_install=True))
    before = {(v.table, v.key, v.column): v.value for v in store.sealed_values()}

    report = rotate_keys(store, Secrets([NEW, OLD]))

    assert (report.resealed, report.replaced_meanwhile, report.unreadable) == (5, 0, ())
    assert report.lines() == ["Re-encrypted 5 stored secret(s) under the first key."]
    after = {(v.table, v.key, v.column): v.value for v in store.sealed_values()}
    assert after.keys() == before.keys()
    assert all(after[where] != before[where] for where in before)
    # the old key dropped: the new one alone opens everything
    only_new = StoreInstallations(store, Secrets([NEW]))
    bot = await only_new.async_find_bot(enterprise_id=None, team_id="T1")
    assert bot is not None
    assert (bot.bot_token, bot.bot_refresh_token) == ("xoxb-T1-token", "xoxe-1-T1-refresh")
    found = await only_new.async_find_installation(enterprise_id=None, team_id="T1")
    assert found is not None and found.user_token == "xoxp-U1-token"
    org = await only_new.async_find_bot(
        enterprise_id="E1", team_id="T5", is_enterprise_install=True
    )
    assert org is not None and org.bot_token == "xoxb-E1-token"
    assert unreadable_secrets(store, Secrets([NEW])) == []
    assert len(unreadable_secrets(store, Secrets([OLD]))) == 5


async def test_a_secret_no_key_opens_is_reported_by_workspace_and_left_untouched(
    store: Store,
) -> None:
    await install_three(store)
    t2_before = {v.column: v.value for v in store.sealed_values() if v.team_id == "T2"}

    report = rotate_keys(store, Secrets([NEW, OLD]))

    assert report.resealed == 5
    assert report.unreadable == (
        Unreadable(None, "T2", "bot token"),
        Unreadable(None, "T2", "bot refresh token"),
    )
    lines = report.lines()
    assert lines[0] == "Re-encrypted 5 stored secret(s) under the first key."
    assert lines[1].startswith("✗ workspace T2: its bot token opens with no key in SECRET_KEYS")
    assert lines[2].startswith("✗ workspace T2: its bot refresh token opens with no key")
    assert "2 stored secret(s) could not be opened" in lines[3]
    shown = "\n".join(lines)
    for secret in ("xoxb-T2-token", "xoxe-1-T2-refresh", *t2_before.values(), NEW, OLD, GONE):
        assert secret not in shown
    assert {v.column: v.value for v in store.sealed_values() if v.team_id == "T2"} == t2_before
    # the lost key put back still opens it
    bot = await StoreInstallations(store, Secrets([NEW, GONE])).async_find_bot(
        enterprise_id=None, team_id="T2"
    )
    assert bot is not None and bot.bot_token == "xoxb-T2-token"


async def test_the_audit_names_each_unreadable_secret_with_whose_it_is(store: Store) -> None:
    await install_three(store)
    found = unreadable_secrets(store, Secrets([OLD]))
    assert [item.line().split(":")[0] for item in found] == ["workspace T2", "workspace T2"]
    org_only = unreadable_secrets(store, Secrets([GONE]))
    assert {item.line().split(":")[0] for item in org_only} == {
        "workspace T1",
        "enterprise E1 (org-wide install)",
    }
    assert Unreadable(None, "T1", "user token of U1") in org_only


async def test_a_secret_replaced_while_rotating_is_left_as_the_newer_one(store: Store) -> None:
    """A token refresh between the read and the write wins: the rewrite checks the value."""
    installations = StoreInstallations(store, Secrets([NEW, OLD]))
    await installations.async_save(installed("T1"))
    stale = next(v for v in store.sealed_values() if v.column == "sealed_bot_token")
    await installations.async_save(installed("T1", bot_token="xoxb-T1-refreshed"))
    assert store.replace_sealed([(stale, Secrets([NEW]).seal("xoxb-T1-token"))]) == 0
    bot = await installations.async_find_bot(enterprise_id=None, team_id="T1")
    assert bot is not None and bot.bot_token == "xoxb-T1-refreshed"


def test_rotating_an_empty_database_says_there_is_nothing_to_do(store: Store) -> None:
    report = rotate_keys(store, Secrets([NEW]))
    assert (report.resealed, report.unreadable) == (0, ())
    assert report.lines() == ["No stored secrets: nothing to re-encrypt."]


def test_a_column_that_is_not_sealed_cannot_be_rewritten(store: Store) -> None:
    from bot.store import SealedValue

    forged = SealedValue("installations", ("", "T1"), "team_name", "x")
    with pytest.raises(ValueError, match="not a sealed column"):
        store.replace_sealed([(forged, "y")])
