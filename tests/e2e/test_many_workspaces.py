"""Many workspaces ("Add to Slack"): the install flow through the stand-in's approve page and
oauth.v2.access, each request and every background call with its own workspace's token, org-wide
installs, token rotation before expiry, and two instances refreshing one installation at once.
Everything over real sockets: a browser (httpx) at the app's pages, the app's own Web API calls
recorded by the stand-in."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from bot.app import MotionBot
from bot.local.oauth import CLIENT_ID, CLIENT_SECRET
from bot.local.payloads import FORM
from bot.local.workspaces import HostedWorkspace
from bot.sandbox import JobPlan
from bot.store import InstalledBot, KeyChange
from bot.workspaces.secrets import Secrets, new_key
from tests.support.e2e import READY
from tests.support.harness import MOTION_KEY, ROOT_DIR, Harness, until
from tests.support.motion import ScriptedSandbox
from tests.support.slack import SlackDouble
from tests.support.workspaces import FromWorkspace

KEY = new_key()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def many(
    env: dict[str, str], slack: SlackDouble, sandbox: ScriptedSandbox
) -> AsyncIterator[Harness]:
    """A deployment serving many workspaces, not started: `many.start()`."""
    port = free_port()
    env = {k: v for k, v in env.items() if k != "SLACK_BOT_TOKEN"}
    env |= {
        "SLACK_CLIENT_ID": CLIENT_ID,
        "SLACK_CLIENT_SECRET": CLIENT_SECRET,
        "SECRET_KEYS": KEY,
        "PORT": str(port),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    harness = Harness(env, slack, sandbox)
    try:
        yield harness
    finally:
        await harness.aclose()


async def browse_install(
    bot: MotionBot, slack: SlackDouble, team_id: str | None, *, user: str = "U0ALICE",
    enterprise_id: str | None = None, cancel: bool = False,
) -> httpx.Response:  # fmt: skip
    """A person installs from the app's page: the page, Slack's approve page (the stand-in's,
    which says who approves), and the redirect back. The last answer is returned."""
    slack.oauth.next_approval(team_id, user, enterprise_id=enterprise_id, cancel=cancel)
    async with httpx.AsyncClient() as browser:
        page = await browser.get(f"http://127.0.0.1:{bot.port}/slack/install")
        assert page.status_code == 200, page.text
        link = re.search(r'href="([^"]+/oauth/v2/authorize[^"]*)"', page.text)
        assert link is not None, page.text
        approve = await browser.get(link.group(1).replace("&amp;", "&"))
        assert approve.status_code == 302, approve.text
        return await browser.get(approve.headers["location"])


async def command_in(
    harness: Harness, workspace: HostedWorkspace, text: str, *, to: MotionBot | None = None
) -> dict[str, object]:
    """`/motion text` from alice in #general of `workspace`; the card it posts there."""
    before = {m["ts"] for m in workspace.messages("C0PUBLIC")}
    fields = workspace.slash_command("/motion", text, channel="C0PUBLIC", user="U0ALICE")
    answer = await harness.post(urlencode(fields), FORM, to=to)
    assert answer.status_code == 200, answer.text
    cards = await until(
        lambda: [m for m in workspace.messages("C0PUBLIC") if m["ts"] not in before],
        what=f"the card in {workspace.team_id}",
    )
    return cards[0]


def stored_bytes(harness: Harness) -> bytes:
    store = harness.bot.store
    rows = store.database.rows("SELECT * FROM installations")
    return repr(rows).encode()


async def test_install_stores_the_installation_sealed_and_installing_again_updates_it(
    many: Harness, slack: SlackDouble
) -> None:
    bot = await many.start()
    done = await browse_install(bot, slack, "T0001")
    assert done.status_code == 200, done.text
    assert "Motion is installed" in done.text and "/motion" in done.text
    [token] = slack.oauth.access_tokens("T0001")
    row = bot.store.installed_bot(None, "T0001")
    assert row is not None and row.sealed_bot_token is not None
    assert token.encode() not in stored_bytes(many)
    exchanges = slack.calls("oauth.v2.access")
    assert len(exchanges) == 1 and exchanges[0].params.get("code")
    again = await browse_install(bot, slack, "T0001", user="U0BOB")
    assert again.status_code == 200
    newest = slack.oauth.access_tokens("T0001")[-1]
    assert newest != token
    updated = bot.store.installed_bot(None, "T0001")
    assert updated is not None and updated.installer == "U0BOB"
    assert len(bot.store.installed_workspaces()) == 1
    card = await command_in(many, slack.workspace("T0001"), "a fox")
    assert card["text"]
    assert {c.token for c in slack.calls("chat.postMessage")} == {newest}


async def test_an_install_with_a_used_or_missing_state_is_refused_in_plain_words(
    many: Harness, slack: SlackDouble
) -> None:
    bot = await many.start()
    base = f"http://127.0.0.1:{bot.port}"
    async with httpx.AsyncClient() as browser:
        page = await browser.get(f"{base}/slack/install")
        state = re.search(r"state=([^&\"]+)", page.text)
        assert state is not None
        forged = await browser.get(
            f"{base}/slack/oauth_redirect", params={"code": "x", "state": "made-up"}
        )
    assert forged.status_code == 400  # the state is not the one this browser was given
    assert "not the one that started the install" in forged.text
    async with httpx.AsyncClient() as stranger:  # another browser, the real state
        other = await stranger.get(
            f"{base}/slack/oauth_redirect", params={"code": "x", "state": state.group(1)}
        )
    assert other.status_code == 400 and "not the one that started the install" in other.text
    cancelled = await browse_install(bot, slack, "T0001", cancel=True)
    assert "cancelled" in cancelled.text and "install page" in cancelled.text
    assert slack.calls("oauth.v2.access") == [] and bot.store.installed_workspaces() == []


async def test_an_expired_state_is_refused(many: Harness, slack: SlackDouble) -> None:
    bot = await many.start()
    bot.store.database.change("UPDATE oauth_states SET expires_at = 0")  # none issued yet
    slack.oauth.next_approval("T0001")
    async with httpx.AsyncClient() as browser:
        page = await browser.get(f"http://127.0.0.1:{bot.port}/slack/install")
        bot.store.database.change("UPDATE oauth_states SET expires_at = 1")  # 10 minutes later
        link = re.search(r'href="([^"]+/oauth/v2/authorize[^"]*)"', page.text)
        assert link is not None
        approve = await browser.get(link.group(1).replace("&amp;", "&"))
        done = await browser.get(approve.headers["location"])
    assert done.status_code == 401 and "expired" in done.text
    assert bot.store.installed_workspaces() == []


async def test_two_workspaces_each_run_a_job_with_only_their_own_token(
    many: Harness, slack: SlackDouble
) -> None:
    beta = slack.add_workspace("T0002", name="Beta")
    bot = await many.start()
    for team in ("T0001", "T0002"):
        assert (await browse_install(bot, slack, team)).status_code == 200
    alpha = slack.workspace("T0001")
    cards = [await command_in(many, alpha, "alpha's fox"), await command_in(many, beta, "beta")]
    for workspace, card in zip((alpha, beta), cards, strict=True):
        await until(
            lambda w=workspace, c=card: [
                m for m in w.messages("C0PUBLIC", thread_ts=str(c["ts"])) if READY in m["text"]
            ],
            what=f"the result in {workspace.team_id}",
            timeout=20,
        )
    for team in ("T0001", "T0002"):
        mine = set(slack.oauth.access_tokens(team))
        used = {c.token for c in slack.calls(team_id=team) if c.method != "oauth.v2.access"}
        assert used and used <= mine, (team, used, mine)
    methods = {c.method for c in slack.calls(team_id="T0002")}
    assert {"chat.postMessage", "chat.update"} <= methods
    assert all("alpha" not in m["text"] for m in beta.messages("C0PUBLIC"))


async def test_an_org_wide_install_serves_every_workspace_of_the_enterprise(
    many: Harness, slack: SlackDouble
) -> None:
    gamma = slack.add_workspace("T0003", name="Gamma", enterprise_id="E0001")
    bot = await many.start()
    done = await browse_install(bot, slack, None, enterprise_id="E0001")
    assert done.status_code == 200, done.text
    row = bot.store.installed_bot("E0001", None)
    assert row is not None and row.is_enterprise_install
    card = await command_in(many, gamma, "an org-wide fox")
    await until(
        lambda: [
            m for m in gamma.messages("C0PUBLIC", thread_ts=str(card["ts"])) if READY in m["text"]
        ],
        what="the result in the enterprise's workspace",
        timeout=20,
    )
    job = bot.store.database.rows("SELECT team_id, enterprise_id FROM jobs")
    assert job == [{"team_id": "T0003", "enterprise_id": "E0001"}]
    # The org removes the app: its installation and each of its workspaces' rows go.
    forgotten = await bot.service.forget_workspace("", "E0001", "app_uninstalled")
    assert forgotten.rows.get("jobs") == 1
    assert bot.store.installed_bot("E0001", None) is None
    assert bot.store.database.rows("SELECT id FROM jobs WHERE enterprise_id = 'E0001'") == []


async def test_an_uninstalled_workspace_gets_no_call_with_another_workspaces_token(
    many: Harness, slack: SlackDouble
) -> None:
    slack.add_workspace("T0002", name="Beta")
    bot = await many.start()
    for team in ("T0001", "T0002"):
        await browse_install(bot, slack, team)
    service = bot.service
    other = service.ctx.slack_for("T0009")  # never installed
    with pytest.raises(Exception, match="not_installed"):
        await other.post("C0PUBLIC", {"text": "hello"})
    assert slack.calls(team_id="T0009") == []
    assert [c for c in slack.calls("chat.postMessage") if c.params.get("text") == "hello"] == []


async def test_rotating_tokens_are_refreshed_before_expiry_and_jobs_keep_posting(
    many: Harness, slack: SlackDouble
) -> None:
    slack.oauth.token_rotation = True
    slack.oauth.expires_in = 120 + 1  # a refresh is due two minutes ahead: 1 s after each one
    bot = await many.start()
    await browse_install(bot, slack, "T0001")
    first = slack.oauth.access_tokens("T0001")[0]
    assert first.startswith("xoxe")
    await asyncio.sleep(1.1)
    many.sandbox.plan_next(JobPlan(queued_s=0.3, created_s=0.3, running_s=2.5, render_s=0.3))
    card = await command_in(many, slack.workspace("T0001"), "a slow fox")
    assert slack.oauth.refreshes("T0001") >= 1  # the request's authorize refreshed it
    await until(
        lambda: [
            m
            for m in slack.workspace("T0001").messages("C0PUBLIC", thread_ts=str(card["ts"]))
            if READY in m["text"]
        ],
        what="the result",
        timeout=20,
    )
    assert slack.oauth.refreshes("T0001") >= 2  # and the poller's lookups again, while it ran
    calls = [c for c in slack.calls(team_id="T0001") if c.method != "oauth.v2.access"]
    assert calls[-1].token != first  # later calls use the refreshed token
    assert all(c.ok for c in calls), [(c.method, c.ok) for c in calls if not c.ok]
    refresh = [c for c in slack.calls("oauth.v2.access") if c.params.get("grant_type")]
    assert refresh and all(c.params["grant_type"] == "refresh_token" for c in refresh)


async def test_two_instances_refreshing_one_installation_at_once_refresh_it_once(
    many: Harness, slack: SlackDouble
) -> None:
    slack.oauth.token_rotation = True
    slack.oauth.expires_in = 3600
    first = await many.start()
    await browse_install(first, slack, "T0001")
    second = await many.start(PORT="0")
    # Due now: two minutes before expiry has passed (as if the token had aged).
    soon = int(slack.oauth.clock()) + 60
    first.store.database.change("UPDATE installations SET bot_token_expires_at = ?", (soon,))
    tokens = [bot.service.ctx.workspace_slack for bot in (first, second)]
    assert all(t is not None for t in tokens)
    keepers = [side.tokens for side in (first.slack_side, second.slack_side) if side]
    got = await asyncio.gather(*(k.bot_token("T0001") for k in keepers if k is not None))
    assert slack.oauth.refreshes("T0001") == 1
    assert got[0] == got[1] and got[0] == slack.oauth.access_tokens("T0001")[-1]
    for bot in (first, second):
        out = bot.service.ctx.slack_for("T0001")
        await out.post("C0PUBLIC", {"text": f"from {bot.store.owner}"})
    posted = [c for c in slack.calls("chat.postMessage") if c.params["text"].startswith("from")]
    assert len(posted) == 2 and all(c.ok for c in posted)


async def test_check_in_many_workspaces_names_each_installation_and_unreadable_secret(
    many: Harness, slack: SlackDouble, tmp_path: Path
) -> None:
    slack.add_workspace("T0002", name="Beta")
    slack.add_workspace("T0003", name="Gamma")
    bot = await many.start()
    for team in ("T0001", "T0002", "T0003"):
        await browse_install(bot, slack, team)
    # T0001's admin set a Motion key (the sandbox fixture accepts only MOTION_KEY); T0003 none.
    sealed = Secrets([KEY]).seal(MOTION_KEY)
    bot.store.change_settings("T0001", None, "U0ALICE", 1.0, {}, KeyChange(sealed, None, "last"))
    lost = Secrets([new_key()]).seal("xoxb-sealed-under-a-dropped-key")
    bot.store.save_installed_bot(
        InstalledBot(enterprise_id=None, team_id="T0007", installed_at=1.0, sealed_bot_token=lost)
    )
    await many.stop(bot)
    slack.uninstall("T0002")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MOTION_"))}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot", "check"],
        env={**clean, **many.env, "MOTION_API_KEY": "", "PYTHONPATH": str(ROOT_DIR)},
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "✓ Slack app credentials: SLACK_CLIENT_ID and SLACK_CLIENT_SECRET present" in out
    assert "✗ SECRET_KEYS: workspace T0007: its bot token opens with no key" in out
    assert "✓ workspace T0001: its token works" in out
    t0001 = next(line for line in out.splitlines() if "workspace T0001: its token" in line)
    assert t0001.endswith("Motion: its key works."), out
    t0003 = next(line for line in out.splitlines() if "workspace T0003: its token" in line)
    assert "Motion: no key yet, so sandbox mode" in t0003, out
    assert MOTION_KEY not in out + result.stderr
    assert "✗ workspace T0002: Slack refused its token (invalid_auth)" in out
    assert "✗ workspace T0007: no usable bot token" in out
    for token in slack.oauth.access_tokens():
        assert token not in out + result.stderr


async def test_a_file_link_is_read_with_the_token_of_the_workspace_it_names_only(
    many: Harness, slack: SlackDouble
) -> None:
    beta = slack.add_workspace("T0002", name="Beta")
    bot = await many.start()
    for team in ("T0001", "T0002"):
        await browse_install(bot, slack, team)
    file_id = beta.add_file(title="logo", mimetype="image/png", content=b"\x89PNG beta's")
    links = bot.file_links
    assert links is not None
    async with httpx.AsyncClient() as motion:
        good = await motion.get(links.url_for("T0002", file_id))
        wrong = await motion.get(links.url_for("T0001", file_id))  # names another workspace
        nobody = await motion.get(links.url_for("T0009", file_id))  # never installed
    assert good.status_code == 200 and good.content == b"\x89PNG beta's"
    assert wrong.status_code == 404 and nobody.status_code == 404
    infos = slack.calls("files.info")
    beta_tokens = set(slack.oauth.access_tokens("T0002"))
    assert [c.team_id for c in infos] == ["T0002", "T0001"]
    assert infos[0].token in beta_tokens and infos[1].token not in beta_tokens


async def test_uninstalling_one_workspace_forgets_it_and_its_key_while_the_other_goes_on(
    many: Harness, slack: SlackDouble
) -> None:
    """Many workspaces, through Slack's own install: B removes the app while a job of its runs.
    Its installation (tokens sealed), its settings with its Motion key and its jobs are gone at
    once; a late command from it is answered and does nothing; A keeps working."""
    beta = slack.add_workspace("T0002", name="Beta")
    bot = await many.start()
    for team in ("T0001", "T0002"):
        assert (await browse_install(bot, slack, team)).status_code == 200
    sealed = Secrets([KEY]).seal("motion_beta_key_9876")
    bot.store.change_settings("T0002", None, "U0ALICE", 1.0, {}, KeyChange(sealed, None, "9876"))
    await command_in(many, beta, "beta's secret fox")
    slack.uninstall("T0002")
    answer = await FromWorkspace(many, beta).uninstalled()
    assert answer.status_code == 200

    def rows_of_beta() -> list[str]:
        found = []
        for table in ("jobs", "installations", "workspace_settings", "settings_changes"):
            rows = bot.store.database.rows(f"SELECT * FROM {table}")
            found += [table for row in rows if "T0002" in repr(row)]
        return found

    assert rows_of_beta() == []
    calls_before = len(slack.calls(team_id="T0002"))
    late = beta.slash_command("/motion", "one more", channel="C0PUBLIC", user="U0ALICE")
    assert (await many.post(urlencode(late), FORM)).status_code == 200
    await asyncio.sleep(0.5)
    assert bot.store.database.rows("SELECT id FROM jobs WHERE team_id = 'T0002'") == []
    assert len(slack.calls(team_id="T0002")) == calls_before
    alpha = slack.workspace("T0001")
    card = await command_in(many, alpha, "alpha's fox")
    await until(
        lambda: [
            m for m in alpha.messages("C0PUBLIC", thread_ts=str(card["ts"])) if READY in m["text"]
        ],
        what="A's result after B left",
        timeout=20,
    )


async def test_a_workspace_that_installs_again_after_an_uninstall_is_served_at_once(
    many: Harness, slack: SlackDouble
) -> None:
    """Removed, then added back through the install page: its new installation is served at
    once (not an hour later), and an old /v/ link that names no workspace serves nothing."""
    beta = slack.add_workspace("T0002", name="Beta")
    bot = await many.start()
    assert (await browse_install(bot, slack, "T0002")).status_code == 200
    slack.uninstall("T0002")
    assert (await FromWorkspace(many, beta).uninstalled()).status_code == 200
    late = beta.slash_command("/motion", "too late", channel="C0PUBLIC", user="U0ALICE")
    assert (await many.post(urlencode(late), FORM)).status_code == 200
    assert bot.store.database.rows("SELECT id FROM jobs WHERE team_id = 'T0002'") == []
    again = await browse_install(bot, slack, "T0002")
    assert again.status_code == 200, again.text
    card = await command_in(many, beta, "beta's fox, back again")
    assert "fox" in str(card.get("text", "")) or card.get("blocks")
    # A link signed before links named their workspace ({"j", "r"} only) is refused here.
    token = bot.links.sign("video", {"j": 1, "r": 1}, None)
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(f"http://127.0.0.1:{bot.port}/v/{token}")
    assert answer.status_code in (403, 404), answer.text


async def test_a_refresh_slack_refuses_leaves_the_workspace_unserved_and_nothing_half_done(
    many: Harness, slack: SlackDouble
) -> None:
    """The refresh token was spent elsewhere (Slack answers invalid_refresh_token): the app
    neither crashes nor falls back to a stale token; the command is answered, starts nothing,
    and no other Web API call is made for the workspace."""
    slack.oauth.token_rotation = True
    slack.oauth.expires_in = 120 + 1  # a refresh is due 1 s after the install
    bot = await many.start()
    await browse_install(bot, slack, "T0001")
    row = bot.store.installed_bot(None, "T0001")
    assert row is not None and row.sealed_bot_refresh_token
    spent = Secrets([KEY]).open(row.sealed_bot_refresh_token)
    async with httpx.AsyncClient() as other:  # someone else spends the single-use token
        used = await other.post(
            f"{slack.base_url}oauth.v2.access",
            data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                  "grant_type": "refresh_token", "refresh_token": spent},
        )  # fmt: skip
    assert used.json()["ok"] is True
    await asyncio.sleep(1.1)
    before = len(slack.calls(team_id="T0001"))
    refused = [c for c in slack.calls("oauth.v2.access") if c.error == "invalid_refresh_token"]
    assert refused == []
    fields = slack.workspace("T0001").slash_command("/motion", "a fox", channel="C0PUBLIC",
                                                    user="U0ALICE")  # fmt: skip
    answer = await many.post(urlencode(fields), FORM)
    assert answer.status_code == 200
    await asyncio.sleep(0.5)
    assert [c for c in slack.calls("oauth.v2.access") if c.error == "invalid_refresh_token"]
    assert bot.store.database.rows("SELECT id FROM jobs") == []
    assert len(slack.calls(team_id="T0001")) == before  # nothing sent with a stale token
