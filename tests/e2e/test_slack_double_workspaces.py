"""The Slack stand-in with several workspaces and Slack's OAuth, through slack_sdk's real
clients over real sockets: tokens routed to their own workspace, the code exchange, token
rotation, org-wide installs and uninstalls, as Slack answers them."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store import Bot
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from bot.local.oauth import CLIENT_ID, CLIENT_SECRET
from bot.local.workspaces import HostedWorkspace
from tests.support.harness import BOT_TOKEN, Harness
from tests.support.slack import SlackDouble
from tests.support.workspaces import FromWorkspace

TOKEN = BOT_TOKEN
REDIRECT = "https://app.example/slack/oauth_redirect"


@pytest.fixture
def beta(slack: SlackDouble) -> HostedWorkspace:
    return slack.add_workspace("T0002", name="Beta")


def client(slack: SlackDouble, token: str | None) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=slack.base_url)


async def slack_error(call: Awaitable[Any]) -> str:
    """Await a client call that must fail; Slack's error code."""
    with pytest.raises(SlackApiError) as raised:
        await call
    return str(raised.value.response["error"])


async def approve(slack: SlackDouble, **query: str) -> dict[str, list[str]]:
    """A browser at the approve page (the test says who approves): the redirect's query."""
    params = {"client_id": CLIENT_ID, "scope": "commands,chat:write", "state": "s-1",
              "redirect_uri": REDIRECT, **query}  # fmt: skip
    async with httpx.AsyncClient() as browser:
        page = await browser.get(slack.authorize_url, params=params)
    assert page.status_code == 302
    location = page.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return parse_qs(urlsplit(location).query)


async def install(slack: SlackDouble, **query: str) -> dict[str, Any]:
    """Approve and exchange the code as Bolt does (client id and secret as Basic auth)."""
    code = (await approve(slack, **query))["code"][0]
    answer = await client(slack, None).oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code, redirect_uri=REDIRECT
    )
    assert isinstance(answer.data, dict)
    return answer.data


# -- tokens routed to their workspace -------------------------------------------------------------


async def test_each_token_reaches_only_its_own_workspace(
    slack: SlackDouble, beta: HostedWorkspace
) -> None:
    await client(slack, beta.bot_token).chat_postMessage(channel="C0PUBLIC", text="for beta")
    await client(slack, TOKEN).chat_postMessage(channel="C0PUBLIC", text="for the default")
    assert [m["text"] for m in beta.messages("C0PUBLIC")] == ["for beta"]
    assert [m["text"] for m in slack.messages("C0PUBLIC")] == ["for the default"]
    assert beta.messages("C0PUBLIC")[0]["team"] == "T0002"
    posts = slack.calls("chat.postMessage")
    assert [(c.team_id, c.token) for c in posts] == [("T0002", beta.bot_token), ("T0001", TOKEN)]
    assert [c.params["text"] for c in slack.calls(team_id="T0002")] == ["for beta"]


async def test_auth_test_answers_for_the_tokens_workspace(
    slack: SlackDouble, beta: HostedWorkspace
) -> None:
    mine = await client(slack, beta.bot_token).auth_test()
    assert (mine["team_id"], mine["team"], mine["user_id"]) == ("T0002", "Beta", beta.bot_user_id)
    assert mine["is_enterprise_install"] is False and "enterprise_id" not in mine.data
    default = await client(slack, TOKEN).auth_test()
    assert (default["team_id"], default["user_id"]) == ("T0001", "U0BOT")


async def test_an_unknown_token_is_invalid_auth_and_serves_no_workspace(
    slack: SlackDouble, beta: HostedWorkspace
) -> None:
    error = await slack_error(client(slack, "xoxb-made-up").chat_postMessage(
        channel="C0PUBLIC", text="hi"))  # fmt: skip
    assert error == "invalid_auth"
    assert slack.calls()[-1].team_id is None
    assert beta.messages() == [] and slack.messages() == []


async def test_users_info_tells_admins_and_owners_per_workspace(
    slack: SlackDouble, beta: HostedWorkspace
) -> None:
    beta.add_user("U0ADMIN", name="ada", admin=True)
    beta.add_user("U0OWNER", name="otto", owner=True)
    beta_client = client(slack, beta.bot_token)
    admin = (await beta_client.users_info(user="U0ADMIN"))["user"]
    owner = (await beta_client.users_info(user="U0OWNER"))["user"]
    member = (await beta_client.users_info(user="U0ALICE"))["user"]
    assert (admin["is_admin"], admin["is_owner"], admin["team_id"]) == (True, False, "T0002")
    assert (owner["is_admin"], owner["is_owner"]) == (True, True)
    assert (member["is_admin"], member["is_owner"]) == (False, False)
    assert await slack_error(client(slack, TOKEN).users_info(user="U0ADMIN")) == "user_not_found"


async def test_a_download_link_needs_a_token_of_the_files_workspace(
    slack: SlackDouble, beta: HostedWorkspace
) -> None:
    file_id = beta.add_file(title="clip", mimetype="video/mp4", content=b"beta-bytes")
    url = beta.download_url(file_id)
    async with httpx.AsyncClient() as http:
        theirs = await http.get(url, headers={"Authorization": f"Bearer {beta.bot_token}"})
        other = await http.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert theirs.content == b"beta-bytes"
    assert other.headers["content-type"].startswith("text/html")  # Slack's sign-in page


async def test_response_urls_and_payloads_name_their_workspace(
    slack: SlackDouble, beta: HostedWorkspace
) -> None:
    fields = beta.slash_command("/motion", "a fox", channel="C0PUBLIC", user="U0ALICE")
    assert (fields["team_id"], fields["api_app_id"]) == ("T0002", "A0APP")
    async with httpx.AsyncClient() as http:
        sent = await http.post(fields["response_url"], json={"text": "to beta"})
    assert sent.status_code == 200
    assert [r["text"] for r in beta.responses] == ["to beta"] and slack.responses == []
    envelope = beta.event_callback({"type": "app_mention"})
    assert envelope["team_id"] == "T0002"
    assert envelope["authorizations"][0]["user_id"] == beta.bot_user_id
    assert beta.button("some_action", "v1")["team"]["id"] == "T0002"


# -- OAuth: the code exchange -------------------------------------------------------------------


async def test_an_approved_install_answers_a_code_exchanged_once(
    slack: SlackDouble, beta: HostedWorkspace
) -> None:
    slack.oauth.next_approval("T0002", "U0BOB")
    redirect = await approve(slack)
    assert redirect["state"] == ["s-1"]
    code = redirect["code"][0]
    anonymous = client(slack, None)
    answer = await anonymous.oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code, redirect_uri=REDIRECT
    )
    assert answer["team"] == {"id": "T0002", "name": "Beta"}
    assert answer["authed_user"] == {"id": "U0BOB"}
    assert (answer["token_type"], answer["bot_user_id"], answer["app_id"]) == (
        "bot", beta.bot_user_id, "A0APP")  # fmt: skip
    assert answer["scope"] == "commands,chat:write"
    assert answer["enterprise"] is None and answer["is_enterprise_install"] is False
    assert answer["access_token"].startswith("xoxb-")
    assert isinstance(answer.data, dict)
    assert not {"refresh_token", "expires_in", "incoming_webhook"} & answer.data.keys()
    again = anonymous.oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code, redirect_uri=REDIRECT
    )
    assert await slack_error(again) == "invalid_code"
    installed = client(slack, answer["access_token"])
    await installed.chat_postMessage(channel="C0PUBLIC", text="installed")
    assert [m["text"] for m in beta.messages()] == ["installed"]


async def test_the_exchange_refuses_a_wrong_secret_an_unknown_code_and_a_form_secret_works(
    slack: SlackDouble, beta: HostedWorkspace
) -> None:
    code = (await approve(slack, team="T0002"))["code"][0]
    anonymous = client(slack, None)
    wrong = anonymous.oauth_v2_access(client_id=CLIENT_ID, client_secret="nope", code=code)
    assert await slack_error(wrong) == "bad_client_secret"
    made_up = anonymous.oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code="123.456.abc"
    )
    assert await slack_error(made_up) == "invalid_code"  # fmt: skip
    as_form = await anonymous.api_call("oauth.v2.access", data={
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "code": code,
        "redirect_uri": REDIRECT})  # fmt: skip
    assert as_form["team"]["id"] == "T0002"


async def test_a_cancelled_approval_redirects_with_access_denied(slack: SlackDouble) -> None:
    slack.oauth.next_approval("T0001", cancel=True)
    redirect = await approve(slack)
    assert redirect == {"error": ["access_denied"], "state": ["s-1"]}


# -- OAuth: token rotation ------------------------------------------------------------------------


async def test_rotation_refresh_tokens_work_once_and_old_access_tokens_until_expiry(
    slack: SlackDouble, beta: HostedWorkspace
) -> None:
    slack.oauth.token_rotation = True
    slack.oauth.expires_in = 600
    first = await install(slack, team="T0002")
    assert first["access_token"].startswith("xoxe.xoxb-")
    assert first["refresh_token"].startswith("xoxe-1-") and first["expires_in"] == 600
    anonymous = client(slack, None)
    refreshed = await anonymous.oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, grant_type="refresh_token",
        refresh_token=first["refresh_token"],
    )  # fmt: skip
    assert refreshed["access_token"] != first["access_token"]
    assert refreshed["refresh_token"] != first["refresh_token"]
    assert refreshed["team"]["id"] == "T0002" and refreshed["token_type"] == "bot"
    reused = anonymous.oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, grant_type="refresh_token",
        refresh_token=first["refresh_token"],
    )  # fmt: skip
    assert await slack_error(reused) == "invalid_refresh_token"
    assert slack.oauth.refreshes("T0002") == 1 and slack.oauth.refreshes("T0001") == 0
    old = client(slack, first["access_token"])
    assert (await old.auth_test())["team_id"] == "T0002"  # still good until its expiry
    slack.oauth.expire(first["access_token"])
    assert await slack_error(old.auth_test()) == "token_expired"
    assert (await client(slack, refreshed["access_token"]).auth_test())["team_id"] == "T0002"


async def test_slack_sdks_token_rotator_refreshes_against_the_standin(
    slack: SlackDouble, beta: HostedWorkspace
) -> None:
    slack.oauth.token_rotation = True
    first = await install(slack, team="T0002")
    rotator = AsyncTokenRotator(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, client=client(slack, None)
    )
    bot = Bot(
        app_id="A0APP", team_id="T0002", bot_token=first["access_token"], bot_id="B0002BOT",
        bot_user_id=beta.bot_user_id, bot_refresh_token=first["refresh_token"],
        bot_token_expires_in=60, installed_at=time.time(),
    )  # fmt: skip
    rotated = await rotator.perform_bot_token_rotation(bot=bot, minutes_before_expiration=5)
    assert rotated is not None and rotated.bot_token != first["access_token"]
    assert slack.oauth.refreshes("T0002") == 1
    assert (await client(slack, rotated.bot_token).auth_test())["team_id"] == "T0002"


# -- Enterprise Grid ------------------------------------------------------------------------------


async def test_an_org_wide_install_has_a_token_for_every_workspace_of_the_enterprise(
    slack: SlackDouble,
) -> None:
    east = slack.add_workspace(
        "T0E1", enterprise_id="E0001", enterprise_name="Acme", populate=False
    )
    west = slack.add_workspace("T0W1", enterprise_id="E0001", populate=False)
    east.add_channel("C0EAST", name="east")
    west.add_channel("C0WEST", name="west")
    slack.oauth.next_approval(enterprise_id="E0001", user_id="W0ADMIN")
    answer = await install(slack)
    assert answer["is_enterprise_install"] is True and answer["team"] is None
    assert answer["enterprise"] == {"id": "E0001", "name": "Acme"}
    org = client(slack, answer["access_token"])
    await org.chat_postMessage(channel="C0EAST", text="east")
    await org.chat_postMessage(channel="C0WEST", text="west")
    assert [m["text"] for m in east.messages()] == ["east"]
    assert [m["text"] for m in west.messages()] == ["west"]
    auth = await org.auth_test()
    assert (auth["enterprise_id"], auth["team_id"], auth["is_enterprise_install"]) == (
        "E0001", None, True)  # fmt: skip
    envelope = west.event_callback({"type": "app_mention"})
    assert envelope["enterprise_id"] == "E0001" and envelope["team_id"] == "T0W1"
    assert envelope["authorizations"][0]["is_enterprise_install"] is True
    assert envelope["authorizations"][0]["team_id"] is None
    command = east.slash_command("/motion", "x", channel="C0EAST", user=east.bot_user_id)
    assert (command["enterprise_id"], command["is_enterprise_install"]) == ("E0001", "true")
    await client(slack, TOKEN).auth_test()  # the default workspace is not in the enterprise
    assert await slack_error(client(slack, TOKEN).chat_postMessage(
        channel="C0EAST", text="x")) == "channel_not_found"  # fmt: skip


# -- uninstall ------------------------------------------------------------------------------------


async def test_uninstall_stops_the_workspaces_tokens_at_once_and_no_other(
    slack: SlackDouble, beta: HostedWorkspace
) -> None:
    slack.oauth.token_rotation = True
    oauth_answer = await install(slack, team="T0002")
    slack.uninstall("T0002")
    for token in (beta.bot_token, oauth_answer["access_token"]):
        assert await slack_error(client(slack, token).auth_test()) == "invalid_auth"
    refresh = client(slack, None).oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, grant_type="refresh_token",
        refresh_token=oauth_answer["refresh_token"],
    )  # fmt: skip
    assert await slack_error(refresh) == "invalid_refresh_token"
    assert (await client(slack, TOKEN).auth_test())["team_id"] == "T0001"


async def test_uninstall_events_are_built_as_slack_sends_them(
    slack: SlackDouble, beta: HostedWorkspace
) -> None:
    uninstalled = beta.app_uninstalled()
    assert uninstalled["type"] == "event_callback" and uninstalled["team_id"] == "T0002"
    assert uninstalled["event"]["type"] == "app_uninstalled"
    revoked = beta.tokens_revoked(oauth=["U0ALICE"])
    assert revoked["event"]["type"] == "tokens_revoked"
    assert revoked["event"]["tokens"] == {"oauth": ["U0ALICE"], "bot": [beta.bot_user_id]}
    assert revoked["event_id"] != uninstalled["event_id"]


async def test_from_workspace_signs_and_delivers_a_workspaces_requests_to_the_app(
    harness: Harness, beta: HostedWorkspace
) -> None:
    await harness.start()
    from_beta = FromWorkspace(harness, beta)
    help_answer = await from_beta.command("help")  # signed right: the app would answer 401
    assert help_answer.status_code == 200 and "/motion" in help_answer.json()["text"]
    mention, _ = beta.mention("C0PUBLIC", f"<@{beta.bot_user_id}> hi", user="U0ALICE")
    assert (await from_beta.event(mention)).status_code == 200
    assert (await from_beta.uninstalled()).status_code == 200
    assert (await from_beta.tokens_revoked()).status_code == 200


async def test_a_redirect_uri_other_than_the_authorize_steps_is_refused(
    slack: SlackDouble, beta: HostedWorkspace
) -> None:
    code = (await approve(slack, team="T0002"))["code"][0]
    elsewhere = client(slack, None).oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code,
        redirect_uri="https://attacker.example/cb",
    )  # fmt: skip
    assert await slack_error(elsewhere) == "bad_redirect_uri"


async def test_the_error_for_a_revoked_token_can_be_slacks_other_answers(
    slack: SlackDouble, beta: HostedWorkspace
) -> None:
    answer = await install(slack, team="T0002")
    slack.oauth.revoked_error = "account_inactive"
    slack.uninstall("T0002")
    for token in (answer["access_token"], beta.bot_token):
        assert await slack_error(client(slack, token).auth_test()) == "account_inactive"
