""" "Add to Slack" (many workspaces): Bolt's own OAuth flow, with the project's stores.

`PUBLIC_URL/slack/install` is the install page (a state issued for 10 minutes, in the database
so any instance may receive the redirect); Slack sends the browser back to
`PUBLIC_URL/slack/oauth_redirect`, where Bolt exchanges the code with `oauth.v2.access` and the
installation is stored sealed. Every call of the flow, the exchange included, goes through the
app's Web API client (SLACK_API_URL), and so does every token refresh: Bolt's authorize is
given `SerializedRotator` (bot/workspaces/tokens.py) in place of its stock rotator, which would
build a client of its own for slack.com.

The pages a person sees at the end say what happened in plain words, and what to do next.
"""

from __future__ import annotations

import html
import logging
from urllib.parse import urlsplit

from slack_bolt.authorization.async_authorize import AsyncInstallationStoreAuthorize
from slack_bolt.oauth.async_callback_options import (
    AsyncCallbackOptions,
    AsyncFailureArgs,
    AsyncSuccessArgs,
)
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse

from bot.workspaces.installations import (
    OAUTH_STATE_SECONDS,
    StoreInstallations,
    StoreOAuthStates,
    workspace_label,
)
from bot.workspaces.tokens import REFRESH_MINUTES, SerializedRotator

log = logging.getLogger(__name__)

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
SLACK_AUTHORIZE_URL = "https://slack.com/oauth/v2/authorize"
# manifest.yml's bot scopes (tests/unit/test_oauth_pages.py holds the two equal).
BOT_SCOPES = (
    "commands",
    "chat:write",
    "channels:join",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "app_mentions:read",
    "files:read",
    "reactions:write",
    "files:write",
    "users:read",
)

# Bolt's failure reasons, in words for the person who was installing.
FAILURES = {
    "access_denied": "The app was not installed: the install was cancelled on Slack's page.",
    "invalid_browser": (
        "The app was not installed: this browser is not the one that started the install "
        "(or it refused the page's cookie)."
    ),
    "invalid_state": (
        "The app was not installed: this install link has expired or was already used."
    ),
    "missing_code": "The app was not installed: Slack sent no authorization code back.",
    "invalid_code": (
        "The app was not installed: Slack did not accept the authorization code (it may have "
        "expired, or the app's credentials are wrong)."
    ),
    "storage_error": "The app was not installed: the installation could not be saved.",
}
START_AGAIN = "Start again from the install page"


def authorize_url_for(slack_api_url: str) -> str:
    """Slack's approve page: slack.com's own for the real Web API; for another SLACK_API_URL (a
    local stand-in), the same host's `/oauth/v2/authorize`, so an install goes where the calls
    go."""
    parts = urlsplit(slack_api_url)
    if (parts.hostname or "").lower() in ("slack.com", "www.slack.com"):
        return SLACK_AUTHORIZE_URL
    return f"{parts.scheme}://{parts.netloc}/oauth/v2/authorize"


def _page(title: str, words: str, link: tuple[str, str] | None = None) -> str:
    more = f'<p><a href="{html.escape(link[0])}">{html.escape(link[1])}</a></p>' if link else ""
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>"
        f"{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(words)}</p>{more}</body></html>"
    )


def _html(status: int, body: str) -> BoltResponse:
    return BoltResponse(
        status=status,
        body=body,
        headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"},
    )


async def installed_page(args: AsyncSuccessArgs) -> BoltResponse:
    """Where the person lands once the installation is stored."""
    installation = args.installation
    team = installation.team_name or installation.enterprise_name
    where = f"to {team}" if team else ""
    log.info(
        "installed in %s",
        workspace_label(
            installation.enterprise_id,
            None if installation.is_enterprise_install else installation.team_id,
        ),
    )
    words = (
        f"Motion was added {where}. Open Slack and type /motion followed by what the video "
        "should show, in any channel the app is in. Workspace admins choose its settings "
        "(and the Motion API key) on the app's Home tab."
    )
    return _html(200, _page("Motion is installed", " ".join(words.split())))


async def failed_page(args: AsyncFailureArgs) -> BoltResponse:
    """Where the person lands when the install did not happen, with why and what next."""
    words = FAILURES.get(args.reason, f"The app was not installed ({args.reason}).")
    if args.error is not None:
        log.error("an install failed: %s", args.reason, exc_info=args.error)
    else:
        log.info("an install failed: %s", args.reason)
    install = f"{args.settings.redirect_uri or ''}".removesuffix(REDIRECT_PATH) + INSTALL_PATH
    status = args.suggested_status_code
    return _html(status, _page("Motion was not installed", words, (install, START_AGAIN)))


def oauth_settings(
    *,
    client_id: str,
    client_secret: str,
    public_url: str,
    slack_api_url: str,
    installations: StoreInstallations,
    states: StoreOAuthStates,
    rotator: SerializedRotator,
) -> AsyncOAuthSettings:
    """Bolt's OAuth flow and per-request authorize over the project's stores and client."""
    settings = AsyncOAuthSettings(
        client_id=client_id,
        client_secret=client_secret,
        scopes=list(BOT_SCOPES),
        user_scopes=[],
        redirect_uri=public_url + REDIRECT_PATH,
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        callback_options=AsyncCallbackOptions(success=installed_page, failure=failed_page),
        authorization_url=authorize_url_for(slack_api_url),
        installation_store=installations,
        token_rotation_expiration_minutes=REFRESH_MINUTES,
        state_store=states,
        state_expiration_seconds=int(OAUTH_STATE_SECONDS),
        logger=log,
    )
    authorize = AsyncInstallationStoreAuthorize(
        logger=log,
        installation_store=installations,
        client_id=client_id,
        client_secret=client_secret,
        token_rotation_expiration_minutes=REFRESH_MINUTES,
        cache_enabled=True,  # auth.test once per token, not once per request
        client=rotator.client,
    )
    authorize.token_rotator = rotator  # one refresh per installation at a time, our client
    settings.authorize = authorize
    return settings
