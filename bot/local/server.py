"""A local stand-in for one Slack workspace: its Web API over real HTTP, and its response_urls.

The real ``slack_sdk`` clients reach it through ``SLACK_API_URL`` (`base_url`), in the way
bolt-python's own tests use a mock Web API server. The workspace behind it is
`bot.local.workspace.Workspace`; this module owns the HTTP side (routing, request parsing,
tokens), the response_urls, the app's external uploads' URL, and what Slack sends the app about
this workspace (built by `bot.local.payloads`). `python -m bot try` runs the app against it and
watches it through `observe`; the tests add fault injection, call recording and Block Kit
checks (`tests/support/slack.py`).

The server runs in its own daemon thread, so the app under test keeps its event loop; every
method takes the workspace lock, so callers may use it from any thread.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bot.local.files import DOWNLOAD_PREFIX, LOGIN_PAGE
from bot.local.model import WORKSPACE_URL
from bot.local.oauth import AUTHORIZE_PATH, SlackOAuth
from bot.local.uploads import UPLOAD_PATH
from bot.local.workspace import SlackError
from bot.local.workspaces import (
    RESPONSE_URL_USES,
    STEP_CALLBACK_ID,
    STEP_OUTPUTS,
    HostedWorkspace,
    SiblingWorkspace,
    Workspaces,
)

__all__ = [
    "RESPONSE_URL_USES", "STEP_CALLBACK_ID", "STEP_OUTPUTS", "ApiRequest", "HostedWorkspace",
    "Reply", "Route", "SlackStandIn", "parse_params",
]  # fmt: skip

_BOOLEAN_PARAMS = frozenset(
    {
        "reply_broadcast",
        "unfurl_links",
        "unfurl_media",
        "mrkdwn",
        "as_user",
        "link_names",
        "include_all_metadata",
        "inclusive",
        "replace_original",
        "delete_original",
    }
)
_JSON_STRING_PARAMS = ("blocks", "attachments", "metadata", "outputs")


@dataclass(frozen=True)
class ApiRequest:
    """One Web API request, parsed: ``params`` merges query and body, JSON strings decoded."""

    method: str
    params: dict[str, Any]
    token: str | None
    parse_error: str | None
    arrived: float
    authorization: str | None = None
    """The Authorization header as sent (Basic for oauth.v2.access)."""


@dataclass(frozen=True)
class Route:
    """The workspace a Web API call is about, and whether its token is an org-wide one."""

    workspace: HostedWorkspace
    org_wide: bool


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


def _as_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0", ""):
        return value.lower() in ("true", "1")
    return value


def parse_params(query: str, body: bytes, content_type: str) -> dict[str, Any]:
    """What the client sent, the same whether it was a form or JSON (`SlackError` if neither)."""
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    mime = content_type.split(";", 1)[0].strip().lower()
    if body:
        if mime == "application/json":
            try:
                decoded = json.loads(body)
            except ValueError:
                raise SlackError("invalid_json") from None
            if not isinstance(decoded, dict):
                raise SlackError("invalid_json")
            params.update(decoded)
        elif mime in ("application/x-www-form-urlencoded", ""):
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        else:
            raise SlackError("invalid_form_data")
    for name in _JSON_STRING_PARAMS:
        if isinstance(params.get(name), str) and params[name]:
            # An undecodable value stays a string: the method answers invalid_*_format.
            with contextlib.suppress(ValueError):
                params[name] = json.loads(params[name])
    for name in _BOOLEAN_PARAMS & params.keys():
        params[name] = _as_bool(params[name])
    return params


class SlackStandIn(HostedWorkspace):
    """Slack's Web API on 127.0.0.1 (a free port), for the default workspace (this object)
    and any added with `add_workspace`, each answering to its own tokens; and Slack's OAuth
    (`oauth`, see `bot.local.oauth`).

    Use it as a context manager; point the client at ``base_url`` and ``response_url()``::

        with SlackStandIn() as slack:
            client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url)
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        team_id: str = "T0001",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        app_id: str = "A0APP",
        populate: bool = True,
    ) -> None:
        """The default workspace's identity and contents are `Workspace`'s; `bot_token` is the
        app's token there."""
        super().__init__(
            root_url=lambda: self.root_url, bot_token=bot_token, team_id=team_id,
            bot_user_id=bot_user_id, bot_id=bot_id, app_id=app_id, populate=populate,
            url=WORKSPACE_URL,
        )  # fmt: skip
        self.workspaces = Workspaces(self)
        self.oauth = SlackOAuth(self.workspaces, self.lock, app_id)
        self._server: _StandInServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> SlackStandIn:
        server = _StandInServer(self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.name = f"SlackStandIn:{self.port}"
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the Slack stand-in is not running; use it as a context manager")
        return self._server.server_address[1]

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The Web API base; the trailing slash matters because slack_sdk urljoins onto it."""
        return f"{self.root_url}/api/"

    @property
    def authorize_url(self) -> str:
        """Slack's approve page (`oauth/v2/authorize`) on this server, for the app's install
        link (Bolt's `authorization_url`)."""
        return f"{self.root_url}{AUTHORIZE_PATH}"

    # -- several workspaces ----------------------------------------------------------------------

    def add_workspace(
        self, team_id: str, *, name: str | None = None, enterprise_id: str | None = None,
        enterprise_name: str | None = None, bot_token: str | None = None,
        bot_user_id: str | None = None, populate: bool = True,
    ) -> HostedWorkspace:  # fmt: skip
        """Another workspace on this server, with the default users and channels unless
        `populate` is False (same ids: ids are per workspace), its own bot user and its own
        bot token (`bot_token`, made up when not given), as if the app were installed there."""
        suffix = team_id.removeprefix("T")
        workspace = SiblingWorkspace(
            self, root_url=lambda: self.root_url, team_id=team_id,
            name=name or f"Workspace {team_id}",
            bot_token=bot_token or f"xoxb-{suffix}-{secrets.token_hex(8)}",
            enterprise_id=enterprise_id, enterprise_name=enterprise_name,
            bot_user_id=bot_user_id or f"U{suffix}BOT", bot_id=f"B{suffix}BOT",
            app_id=self.app_id, populate=populate, lock=self.lock,
        )  # fmt: skip
        with self.lock:
            self.workspaces.add(workspace)
        return workspace

    def workspace(self, team_id: str) -> HostedWorkspace:
        """The workspace with this team id (the default one included)."""
        return self.workspaces[team_id]

    def uninstall(self, team_id: str | None = None, *, enterprise_id: str | None = None) -> None:
        """Remove the app from a workspace (default: the default one), or from an enterprise
        org-wide (`enterprise_id` alone): every token of it stops working at once. What Slack
        then sends the app is the workspace's `app_uninstalled()` and `tokens_revoked()`."""
        with self.lock:
            if team_id is None and enterprise_id is None:
                team_id = self.team_id
            if team_id is not None:
                self.workspaces[team_id].installed = False
            self.oauth.revoke(team_id, enterprise_id=enterprise_id)

    # -- HTTP entry points (server threads) -----------------------------------------------------

    def serve(self, verb: str, path: str, query: str, headers: Any, body: bytes) -> Reply:
        """Answer one HTTP request as Slack's hosts would (the handler calls this)."""
        if path.startswith("/api/"):
            return self._serve_api(path[len("/api/") :], query, headers, body)
        if path.startswith("/commands/"):
            workspace = self.workspaces.get(path.split("/")[2]) or self
            status, text = workspace.serve_response_url(verb, f"{self.root_url}{path}", body)
            return Reply(status, text.encode(), "text/plain; charset=utf-8")
        if path == AUTHORIZE_PATH and verb == "GET":
            status, extra, text = self.oauth.authorize(dict(parse_qsl(query)))
            return Reply(status, text.encode(), "text/plain; charset=utf-8", extra)
        if path == "/signin":  # where Slack sends a browser (or a refused token) to sign in
            return Reply(200, LOGIN_PAGE, "text/html; charset=utf-8")
        if path.startswith(DOWNLOAD_PREFIX) and verb == "GET":
            return self._serve_download(path, headers)
        if path.startswith(UPLOAD_PATH):
            file_id = path[len(UPLOAD_PATH) :].split("/", 1)[0]
            owner = next((w for w in self.workspaces if file_id in w.files), self)
            uploaded = owner.uploads.serve_upload(verb, path, body)
            if uploaded is None:
                return Reply(0, b"", drop=True)
            return Reply(uploaded[0], uploaded[1], "text/plain; charset=utf-8")
        return Reply(404, b"not found", "text/plain")

    def _serve_download(self, path: str, headers: Any) -> Reply:
        """A private download link: the file's workspace is named in it, and only a token of
        the app's that works there gets the bytes."""
        team_id = path[len(DOWNLOAD_PREFIX) :].split("-", 1)[0]
        workspace = self.workspaces.get(team_id) or self

        def works_here(token: str) -> bool:
            try:
                route = self.route(token, {})
            except SlackError:
                return False
            return route is not None and route.workspace is workspace

        answer = workspace.file_methods.serve_download(
            path, headers.get("Authorization"), works_here, headers.get("Accept-Encoding") or ""
        )
        return Reply(answer.status, answer.body, answer.content_type, answer.headers)

    def _serve_api(self, method: str, query: str, headers: Any, body: bytes) -> Reply:
        arrived = time.monotonic()
        parse_error: str | None = None
        try:
            params = parse_params(query, body, headers.get("Content-Type", ""))
        except SlackError as failure:
            params, parse_error = {}, failure.error
        authorization = headers.get("Authorization")
        token = self._token(authorization, params)
        return self.respond(ApiRequest(method, params, token, parse_error, arrived, authorization))

    def route(self, token: str, params: dict[str, Any]) -> Route | None:
        """Which workspace a call with this token is about: None for a token never issued,
        `SlackError` for one that no longer works (expired, revoked)."""
        with self.lock:
            workspace = self.workspaces.with_bot_token(token)
            if workspace is not None:
                return Route(workspace, org_wide=False)
            issued = self.oauth.check(token)
            if issued is None:
                if any(w.bot_token == token for w in self.workspaces):  # uninstalled since
                    raise SlackError(self.oauth.revoked_error)
                return None
            workspace = self.oauth.workspace_for(issued, params)
            return Route(workspace, org_wide=issued.installation.org_wide)

    def respond(self, request: ApiRequest) -> Reply:
        """Answer a parsed Web API request as Slack would; `answered` hears of every answer
        (a subclass may answer otherwise: faults, other methods)."""
        status = 200
        route: Route | None = None
        try:
            if request.method == "oauth.v2.access":
                answer = {"ok": True, **self.oauth.access(request.params, request.authorization)}
            elif not self.knows(request.method):
                answer = {"ok": False, "error": "unknown_method", "req_method": request.method}
            elif request.token is None:
                answer = {"ok": False, "error": "not_authed"}
            elif (route := self.route(request.token, request.params)) is None:
                answer = {"ok": False, "error": "invalid_auth"}
            elif request.parse_error is not None:
                answer = {"ok": False, "error": request.parse_error}
            elif request.method == "auth.test":
                answer = {"ok": True, **route.workspace.auth_test(org_wide=route.org_wide)}
            else:
                answer = {"ok": True, **route.workspace.call(request.method, request.params)}
        except SlackError as failure:
            answer = {"ok": False, "error": failure.error, **failure.extra}
        except Exception as exc:  # a bug in the stand-in: make it loud, not a hang
            answer = {"ok": False, "error": "fatal_error", "standin_bug": repr(exc)}
            status = 500
        self.answered(request, answer, route)
        return Reply(status, json.dumps(answer).encode())

    def answered(self, request: ApiRequest, answer: dict[str, Any], route: Route | None) -> None:
        """Called with every Web API answer and the workspace it was about, if any; a subclass
        may record them."""

    def _token(self, authorization: str | None, params: dict[str, Any]) -> str | None:
        body_token = params.pop("token", None)
        body_token = body_token if isinstance(body_token, str) else None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            return value.strip() if scheme.lower() == "bearer" else ""
        return body_token


class _StandInServer(ThreadingHTTPServer):
    """The HTTP server on a free loopback port, holding the stand-in its handlers answer for."""

    daemon_threads = True
    # socketserver's default listen backlog is 5: an app posting many cards at once overran it,
    # and each dropped connection was retried by the kernel a second later, as Slack never is.
    request_queue_size = 1024

    def __init__(self, standin: SlackStandIn) -> None:
        self.standin = standin
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server_version = "SlackStandIn/1.0"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        server = self.server
        if not isinstance(server, _StandInServer):
            raise TypeError("the stand-in's handler serves only the stand-in's server")
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = server.standin.serve(self.command, split.path, split.query, self.headers, body)
        if reply.drop:
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        if "Content-Length" not in reply.headers:
            self.send_header("Content-Length", str(len(reply.body)))
        else:  # a reply that announces more than it sends hangs up after it (a cut download)
            self.close_connection = True
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr line."""
