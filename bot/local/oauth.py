"""Slack's OAuth v2 in the local stand-in: the approve page, `oauth.v2.access`, token rotation,
and what an uninstall does to tokens.

As Slack does (docs.slack.dev/authentication/installing-with-oauth, .../using-token-rotation,
reference/methods/oauth.v2.access):

- `GET /oauth/v2/authorize` would show a person Slack's approve page; here the test says who
  approves, in which workspace (`next_approval`, or `team`/`user`/`enterprise` query
  parameters), and the answer is a 302 to the redirect URL with `code` and `state`, or
  `error=access_denied` when that person cancels.
- `oauth.v2.access` takes the client id and secret as HTTP Basic auth or form fields, and
  exchanges a code once (within 10 minutes): a used or unknown code is `invalid_code`, a wrong
  secret `bad_client_secret`, a redirect_uri other than the authorize step's `bad_redirect_uri`.
- With token rotation on (`token_rotation`), the access token (`xoxe.xoxb-…`) expires after
  `expires_in` seconds (12 h by default) and comes with a refresh token (`xoxe-1-…`);
  `grant_type=refresh_token` answers a new pair, and the refresh token used is spent (a second
  use is `invalid_refresh_token`); the access token it replaced works until its own expiry.
  An expired token answers `token_expired`.
- An org-wide install (Enterprise Grid) answers `is_enterprise_install: true`, `team: null`,
  and its token works in every workspace of the enterprise.
- Uninstalling revokes every token of the installation at once (`revoked_error`, by default
  `invalid_auth`), refresh tokens included.

`SlackOAuth` holds the installations, codes and tokens; the stand-in's server routes the HTTP
requests here and asks `check` which installation a token belongs to.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from bot.local.model import SlackError
from bot.local.workspaces import HostedWorkspace, Workspaces

ACCESS_TOKEN_SECONDS = 12 * 60 * 60
"""How long a rotating access token lives, as Slack's do."""
CODE_SECONDS = 600
"""How long an authorization code can be exchanged."""
CLIENT_ID = "1111111111.2222222222"
CLIENT_SECRET = "standin-client-secret"
AUTHORIZE_PATH = "/oauth/v2/authorize"


@dataclass(frozen=True)
class Approval:
    """Who approves the next install, where: a workspace (`team_id`), or an enterprise
    org-wide (`enterprise_id` without `team_id`); `cancel`: they press Cancel."""

    user_id: str
    team_id: str | None = None
    enterprise_id: str | None = None
    cancel: bool = False


@dataclass
class Installation:
    """One install of the app: into a workspace, or org-wide into an enterprise (`team_id`
    None). Its tokens stop working together when it is revoked."""

    team_id: str | None
    enterprise_id: str | None
    installer: str
    bot_user_id: str
    scope: str
    refresh_token: str | None = None
    revoked: bool = False

    @property
    def org_wide(self) -> bool:
        return self.team_id is None


@dataclass(frozen=True)
class AccessToken:
    """An access token issued by `oauth.v2.access`; `expires_at` (the clock's time) or None."""

    token: str
    installation: Installation
    expires_at: float | None


@dataclass
class _Code:
    approval: Approval
    scope: str
    redirect_uri: str | None
    issued: float
    used: bool = False


@dataclass
class SlackOAuth:
    """The app's OAuth side of Slack (see the module docstring). Settings a test may change:
    `token_rotation`, `expires_in`, `revoked_error`, `redirect_urls` (empty: any URL is
    accepted), `clock`."""

    workspaces: Workspaces
    lock: threading.RLock
    app_id: str
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    token_rotation: bool = False
    expires_in: int = ACCESS_TOKEN_SECONDS
    revoked_error: str = "invalid_auth"
    redirect_urls: list[str] = field(default_factory=list)
    clock: Callable[[], float] = time.time
    _approvals: list[Approval] = field(default_factory=list)
    _codes: dict[str, _Code] = field(default_factory=dict)
    _tokens: dict[str, AccessToken] = field(default_factory=dict)
    _refresh: dict[str, Installation] = field(default_factory=dict)
    _refreshes: dict[tuple[str | None, str | None], int] = field(default_factory=dict)
    _installations: list[Installation] = field(default_factory=list)

    # -- scripting (tests) -----------------------------------------------------------------------

    def next_approval(
        self, team_id: str | None = None, user_id: str = "U0ALICE", *,
        enterprise_id: str | None = None, cancel: bool = False,
    ) -> None:  # fmt: skip
        """The next visit to the approve page is `user_id` approving (or, with `cancel`,
        refusing) the install in `team_id`, or org-wide in `enterprise_id` when no team is
        given. Approvals queue in order."""
        if team_id is None and enterprise_id is None:
            raise ValueError("say which workspace (team_id) or enterprise approves")
        with self.lock:
            self._approvals.append(Approval(user_id, team_id, enterprise_id, cancel))

    def refreshes(self, team_id: str | None = None, *, enterprise_id: str | None = None) -> int:
        """How many times the app refreshed the token of this workspace's install (or of the
        enterprise's org-wide install, with `enterprise_id` alone)."""
        with self.lock:
            return self._refreshes.get((team_id, enterprise_id if team_id is None else None), 0)

    def access_tokens(self, team_id: str | None = None) -> list[str]:
        """Every access token issued (for one workspace's installs, when given), oldest first."""
        with self.lock:
            return [
                t.token
                for t in self._tokens.values()
                if team_id is None or t.installation.team_id == team_id
            ]

    def expire(self, token: str) -> None:
        """This access token's time is up now (a test need not wait 12 hours)."""
        with self.lock:
            issued = self._tokens[token]
            self._tokens[token] = AccessToken(token, issued.installation, self.clock() - 1)

    def revoke(self, team_id: str | None = None, *, enterprise_id: str | None = None) -> None:
        """Revoke every token of the installs in this workspace (or the enterprise's org-wide
        install, with `enterprise_id` alone), as an uninstall does."""
        with self.lock:
            for installation in self._installations:
                if installation.team_id == team_id and (
                    team_id is not None or installation.enterprise_id == enterprise_id
                ):
                    installation.revoked = True
                    if installation.refresh_token is not None:
                        self._refresh.pop(installation.refresh_token, None)
            if team_id is None and enterprise_id is not None:
                for workspace in self.workspaces.in_enterprise(enterprise_id):
                    workspace.org_install = False

    # -- checking a token (server threads) -------------------------------------------------------

    def check(self, token: str) -> AccessToken | None:
        """The issued token, if this is one that works now; `SlackError` (`token_expired`, the
        revoked error) for one that no longer does; None for one never issued here."""
        with self.lock:
            issued = self._tokens.get(token)
            if issued is None:
                return None
            if issued.installation.revoked:
                raise SlackError(self.revoked_error)
            if issued.expires_at is not None and self.clock() >= issued.expires_at:
                raise SlackError("token_expired")
            return issued

    # -- the approve page (server threads) -------------------------------------------------------

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], str]:
        """(status, headers, text) for a browser at the approve page: a 302 back to the app."""
        if query.get("client_id") != self.client_id:
            return 400, {}, "invalid_client_id"
        redirect_uri = query.get("redirect_uri") or None
        if redirect_uri is None and self.redirect_urls:
            redirect_uri = self.redirect_urls[0]
        if redirect_uri is None or (self.redirect_urls and redirect_uri not in self.redirect_urls):
            return 400, {}, "bad_redirect_uri"
        with self.lock:
            approval = self._approvals.pop(0) if self._approvals else _approval_in(query)
            answer: dict[str, str]
            if approval.cancel:
                answer = {"error": "access_denied"}
            else:
                code = f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**12)}.{secrets.token_hex(20)}"
                self._codes[code] = _Code(
                    approval, query.get("scope", ""), query.get("redirect_uri"), self.clock()
                )
                answer = {"code": code}
        if "state" in query:
            answer["state"] = query["state"]
        separator = "&" if "?" in redirect_uri else "?"
        return 302, {"Location": f"{redirect_uri}{separator}{urlencode(answer)}"}, ""

    # -- oauth.v2.access (server threads) --------------------------------------------------------

    def access(self, params: dict[str, Any], authorization: str | None) -> dict[str, Any]:
        """`oauth.v2.access`'s answer without `ok`, or `SlackError`."""
        client_id, client_secret = _client_credentials(params, authorization)
        if client_id != self.client_id:
            raise SlackError("invalid_client_id")
        if client_secret != self.client_secret:
            raise SlackError("bad_client_secret")
        with self.lock:
            if params.get("grant_type") == "refresh_token":
                return self._refresh_answer(params.get("refresh_token"))
            grant_type = params.get("grant_type")
            if grant_type not in (None, "", "authorization_code"):
                raise SlackError("invalid_grant_type")
            return self._exchange(params.get("code"), params.get("redirect_uri"))

    def _exchange(self, code: Any, redirect_uri: Any) -> dict[str, Any]:
        found = self._codes.get(code) if isinstance(code, str) else None
        if found is None or found.used or self.clock() - found.issued > CODE_SECONDS:
            raise SlackError("invalid_code")
        if found.redirect_uri is not None and redirect_uri != found.redirect_uri:
            raise SlackError("bad_redirect_uri")
        found.used = True
        approval = found.approval
        workspace = self._installing_into(approval)
        workspace.installed = True  # added (back) to the workspace
        installation = Installation(
            team_id=approval.team_id, enterprise_id=workspace.enterprise_id,
            installer=approval.user_id, bot_user_id=workspace.bot_user_id, scope=found.scope,
        )  # fmt: skip
        self._installations.append(installation)
        if installation.org_wide and workspace.enterprise_id is not None:
            for member in self.workspaces.in_enterprise(workspace.enterprise_id):
                member.org_install = True
        answer = self._token_answer(installation, workspace)
        answer["authed_user"] = {"id": approval.user_id}
        return answer

    def _refresh_answer(self, refresh_token: Any) -> dict[str, Any]:
        installation = self._refresh.pop(refresh_token, None) if refresh_token else None
        if installation is None or installation.revoked:
            raise SlackError("invalid_refresh_token")
        key = (installation.team_id, installation.enterprise_id if installation.org_wide else None)
        self._refreshes[key] = self._refreshes.get(key, 0) + 1
        workspace = self._installed_workspace(installation)
        return self._token_answer(installation, workspace)

    def _token_answer(
        self, installation: Installation, workspace: HostedWorkspace
    ) -> dict[str, Any]:
        """A fresh access token for the installation (and a refresh token, when rotating), in
        oauth.v2.access's shape."""
        rotating = self.token_rotation
        number = f"{secrets.randbelow(10**12)}-{secrets.randbelow(10**13)}"
        token = f"xoxe.xoxb-1-{secrets.token_hex(24)}" if rotating else (
            f"xoxb-{number}-{secrets.token_urlsafe(18)}"
        )  # fmt: skip
        expires_at = self.clock() + self.expires_in if rotating else None
        self._tokens[token] = AccessToken(token, installation, expires_at)
        enterprise = None
        if workspace.enterprise_id is not None:
            enterprise = {"id": workspace.enterprise_id, "name": workspace.enterprise_name}
        answer: dict[str, Any] = {
            "app_id": self.workspaces.default.app_id,
            "scope": installation.scope,
            "token_type": "bot",
            "access_token": token,
            "bot_user_id": installation.bot_user_id,
            "team": None if installation.org_wide else {"id": workspace.team_id,
                                                         "name": workspace.name},
            "enterprise": enterprise,
            "is_enterprise_install": installation.org_wide,
        }  # fmt: skip
        if rotating:
            refresh = f"xoxe-1-{secrets.token_hex(32)}"
            installation.refresh_token = refresh
            self._refresh[refresh] = installation
            answer.update(refresh_token=refresh, expires_in=self.expires_in)
        return answer

    def _installing_into(self, approval: Approval) -> HostedWorkspace:
        """The workspace an approval installs into (for an org-wide one, the enterprise's first:
        it names the enterprise and the bot user)."""
        if approval.team_id is not None:
            workspace = self.workspaces.get(approval.team_id)
            if workspace is None:
                raise SlackError("invalid_team", detail=f"no workspace {approval.team_id}")
            return workspace
        members = self.workspaces.in_enterprise(approval.enterprise_id or "")
        if not members:
            raise SlackError("invalid_team", detail=f"no enterprise {approval.enterprise_id}")
        return members[0]

    def _installed_workspace(self, installation: Installation) -> HostedWorkspace:
        return self._installing_into(
            Approval(installation.installer, installation.team_id, installation.enterprise_id)
        )

    def workspace_for(self, issued: AccessToken, params: dict[str, Any]) -> HostedWorkspace:
        """Which workspace a call with this token is about (an org-wide token's: the one its
        call names)."""
        installation = issued.installation
        with self.lock:
            if not installation.org_wide:
                return self._installed_workspace(installation)
            found = self.workspaces.for_org_call(installation.enterprise_id or "", params)
            if found is None:
                raise SlackError("team_not_found")
            return found


def _approval_in(query: dict[str, str]) -> Approval:
    """Who approves when the test queued nobody: the query's `team`, `enterprise` and `user`
    (the test adds them to the URL), else alice in the default workspace."""
    team = query.get("team") or None
    enterprise = query.get("enterprise") or None
    if team is None and enterprise is None:
        team = "T0001"
    return Approval(
        user_id=query.get("user") or "U0ALICE", team_id=team, enterprise_id=enterprise,
        cancel=query.get("cancel") in ("1", "true"),
    )  # fmt: skip


def _client_credentials(params: dict[str, Any], authorization: str | None) -> tuple[str, str]:
    """The client id and secret from HTTP Basic auth (as Slack prefers), else from the form."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip()).decode()
        except (ValueError, UnicodeDecodeError):
            raise SlackError("invalid_client_id") from None
        client_id, _, client_secret = decoded.partition(":")
        return client_id, client_secret
    sent_id, sent_secret = params.get("client_id"), params.get("client_secret")
    return (
        sent_id if isinstance(sent_id, str) else "",
        sent_secret if isinstance(sent_secret, str) else "",
    )
