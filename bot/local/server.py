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
import copy
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bot.local import payloads
from bot.local.files import DOWNLOAD_PREFIX, LOGIN_PAGE
from bot.local.functions import FunctionMethods
from bot.local.uploads import UPLOAD_PATH, ExternalUploads, UploadedFile
from bot.local.workspace import SlackError, Workspace

RESPONSE_URL_USES = 5
STEP_CALLBACK_ID = "make_motion_video"  # manifest.yml's custom step
STEP_OUTPUTS = {STEP_CALLBACK_ID: ["video_url", "thread_permalink", "job_id"]}

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


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


@dataclass
class _ResponseUrl:
    tag: str
    uses: int = 0


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


class SlackStandIn(Workspace):
    """A workspace behind a Web API server on 127.0.0.1 (a free port).

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
        """The workspace's identity and contents are `Workspace`'s; `bot_token` is the one
        token its Web API accepts."""
        super().__init__(
            team_id=team_id, bot_user_id=bot_user_id, bot_id=bot_id, app_id=app_id,
            populate=populate,
        )  # fmt: skip
        self.bot_token = bot_token
        self.uploads = ExternalUploads(self.model, self.file_methods, lambda: self.root_url)
        self.add_methods(self.uploads.methods())
        self.functions = FunctionMethods(self.model, STEP_OUTPUTS)
        self.add_methods(self.functions.methods())
        self._server: _StandInServer | None = None
        self._thread: threading.Thread | None = None
        self._responses: list[dict[str, Any]] = []
        self._response_urls: dict[str, _ResponseUrl] = {}

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
    def file_host_url(self) -> str:
        """Private download links are served here too, as files.slack.com would serve them."""
        return self.root_url

    @property
    def base_url(self) -> str:
        """The Web API base; the trailing slash matters because slack_sdk urljoins onto it."""
        return f"{self.root_url}/api/"

    # -- the app's uploads ---------------------------------------------------------------------

    @property
    def files(self) -> dict[str, UploadedFile]:
        """The app's external uploads by file id, as the stand-in keeps them."""
        return self.uploads.uploaded

    def fail_next_upload(self, status: int = 500, *, times: int = 1) -> None:
        """The next `times` POSTs to an upload URL answer `status` (0: drop the connection)."""
        self.uploads.fail_next_upload(status, times=times)

    def shared_files(self, channel: str, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """The file_share messages in a channel (or one thread of it), oldest first."""
        return self.uploads.shared_files(channel, thread_ts)

    # -- response_url --------------------------------------------------------------------------

    def response_url(self, tag: str = "") -> str:
        """A fresh ``response_url`` on this server, as Slack puts in a command payload."""
        with self.lock:
            number = len(self._response_urls) + 1
            url = f"{self.root_url}/commands/{self.team_id}/{number}/{secrets.token_urlsafe(12)}"
            self._response_urls[url] = _ResponseUrl(tag=tag)
            return url

    @property
    def responses(self) -> list[dict[str, Any]]:
        """Each accepted JSON body sent to a ``response_url``, plus its ``"url"`` and ``"tag"``."""
        with self.lock:
            return copy.deepcopy(self._responses)

    def response_problem(self, payload: dict[str, Any]) -> str | None:
        """Why Slack would refuse a response_url body (``no_text``, ``invalid_blocks``), if so."""
        if not (
            payload.get("text")
            or payload.get("blocks")
            or payload.get("attachments")
            or payload.get("delete_original")
        ):
            return "no_text"
        if "blocks" in payload and self.block_problems(payload["blocks"]):
            return "invalid_blocks"
        return None

    # -- what Slack sends to the app ----------------------------------------------------------

    def slash_command(self, command: str, text: str, *, channel: str, user: str) -> dict[str, str]:
        """Every field of a slash command's form, ``response_url`` (on this server) included."""
        with self.lock:
            channel_name = self.model.channels[channel].name
            user_name = self.model.users[user]["name"]
        return payloads.slash_command(
            command=command, text=text, team_id=self.team_id, channel_id=channel,
            channel_name=channel_name, user_id=user, user_name=user_name, app_id=self.app_id,
            response_url=self.response_url(f"{command}-{user}"),
            trigger_id=self.issue_trigger(user),
        )  # fmt: skip

    def thread_reply(self, channel: str, text: str, *, user: str, thread_ts: str) -> dict[str, Any]:
        """Post a person's reply in a thread; returns the ``message`` event Slack delivers."""
        return self._human_message(channel, text, user=user, thread_ts=thread_ts)

    def file_reply(
        self, channel: str, text: str, *, user: str, thread_ts: str, file_ids: list[str]
    ) -> dict[str, Any]:
        """A person's thread reply with files; returns the `message` event (subtype
        `file_share`, the files in Slack's shape) Slack delivers."""
        event = self.thread_reply(channel, text, user=user, thread_ts=thread_ts)
        return self._with_files(channel, event, file_ids)

    def mention(
        self, channel: str, text: str, *, user: str, thread_ts: str | None = None,
        file_ids: list[str] | tuple[str, ...] = (),
    ) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
        """A person's message that @mentions the app (`text` holds `<@BOT>`): the
        `app_mention` event and its `message` twin, both of which Slack delivers."""
        message = self._human_message(channel, text, user=user, thread_ts=thread_ts)
        if file_ids:
            message = self._with_files(channel, message, list(file_ids))
        mention = {k: v for k, v in message.items() if k not in ("channel_type", "subtype")}
        mention["type"] = "app_mention"
        return mention, message

    def direct_message(
        self, text: str, *, user: str, file_ids: list[str] | tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """A person's message to the app in its Messages tab: the `message` event (channel_type
        "im"; subtype `file_share` with files) Slack delivers for it."""
        channel = self.model.app_dm(user)
        ts = self.add_human_message(channel, text, user=user)
        with self.lock:
            stored = self.model.channel_messages[channel][ts]
            event = payloads.message_event(
                stored, channel=channel, team_id=self.team_id, thread_ts=None, channel_type="im"
            )
        return self._with_files(channel, event, list(file_ids)) if file_ids else event

    def dm_reply(self, text: str, *, user: str, thread_ts: str) -> dict[str, Any]:
        """A person's reply in a thread of their DM with the app (`message.im`)."""
        channel = self.model.app_dm(user)
        return {**self.thread_reply(channel, text, user=user, thread_ts=thread_ts),
                "channel_type": "im"}  # fmt: skip

    def workflow_step(
        self, inputs: dict[str, Any], *, callback_id: str = STEP_CALLBACK_ID
    ) -> dict[str, Any]:
        """A workflow reaches the app's step with `inputs`: the `function_executed` event
        Slack sends (see `bot.local.functions`)."""
        return self.functions.start(callback_id, inputs)

    def event_callback(self, event: dict[str, Any]) -> dict[str, Any]:
        """The Events API envelope around ``event``, as Slack POSTs it to the app."""
        return payloads.event_callback(
            event, team_id=self.team_id, app_id=self.app_id, bot_user_id=self.bot_user_id,
            event_id=f"Ev{secrets.token_hex(5).upper()}",
        )  # fmt: skip

    def _human_message(
        self, channel: str, text: str, *, user: str, thread_ts: str | None
    ) -> dict[str, Any]:
        """Store a person's message and return the `message` event Slack delivers for it."""
        ts = self.add_human_message(channel, text, user=user, thread_ts=thread_ts)
        with self.lock:
            stored = self.model.channel_messages[channel][ts]
            return payloads.message_event(
                stored, channel=channel, team_id=self.team_id, thread_ts=thread_ts
            )

    def _with_files(
        self, channel: str, event: dict[str, Any], file_ids: list[str]
    ) -> dict[str, Any]:
        with self.lock:
            for file_id in file_ids:  # shared here now, so the app may read it
                self.file_methods.share_in(file_id, channel)
            files = [self.file_object(file_id) for file_id in file_ids]
            stored = self.model.channel_messages[channel][event["ts"]]
            stored.update(subtype="file_share", upload=True, files=copy.deepcopy(files))
        return {**event, "subtype": "file_share", "upload": True, "files": files}

    # -- HTTP entry points (server threads) -----------------------------------------------------

    def serve(self, verb: str, path: str, query: str, headers: Any, body: bytes) -> Reply:
        """Answer one HTTP request as Slack's hosts would (the handler calls this)."""
        if path.startswith("/api/"):
            return self._serve_api(path[len("/api/") :], query, headers, body)
        if path.startswith("/commands/"):
            return self._serve_response_url(verb, f"{self.root_url}{path}", body)
        if path == "/signin":  # where Slack sends a browser (or a refused token) to sign in
            return Reply(200, LOGIN_PAGE, "text/html; charset=utf-8")
        if path.startswith(DOWNLOAD_PREFIX) and verb == "GET":
            answer = self.file_methods.serve_download(
                path,
                headers.get("Authorization"),
                self.bot_token,
                headers.get("Accept-Encoding") or "",
            )
            return Reply(answer.status, answer.body, answer.content_type, answer.headers)
        if path.startswith(UPLOAD_PATH):
            uploaded = self.uploads.serve_upload(verb, path, body)
            if uploaded is None:
                return Reply(0, b"", drop=True)
            return Reply(uploaded[0], uploaded[1], "text/plain; charset=utf-8")
        return Reply(404, b"not found", "text/plain")

    def _serve_api(self, method: str, query: str, headers: Any, body: bytes) -> Reply:
        arrived = time.monotonic()
        parse_error: str | None = None
        try:
            params = parse_params(query, body, headers.get("Content-Type", ""))
        except SlackError as failure:
            params, parse_error = {}, failure.error
        token = self._token(headers.get("Authorization"), params)
        return self.respond(ApiRequest(method, params, token, parse_error, arrived))

    def respond(self, request: ApiRequest) -> Reply:
        """Answer a parsed Web API request as Slack would; `answered` hears of every answer
        (a subclass may answer otherwise: faults, other methods)."""
        status = 200
        if not self.knows(request.method):
            answer = {"ok": False, "error": "unknown_method", "req_method": request.method}
        elif request.token is None:
            answer = {"ok": False, "error": "not_authed"}
        elif request.token != self.bot_token and not self.functions.accepts(request.token):
            answer = {"ok": False, "error": "invalid_auth"}
        elif request.parse_error is not None:
            answer = {"ok": False, "error": request.parse_error}
        else:
            try:
                answer = {"ok": True, **self.call(request.method, request.params)}
            except SlackError as failure:
                answer = {"ok": False, "error": failure.error, **failure.extra}
            except Exception as exc:  # a bug in the stand-in: make it loud, not a hang
                answer = {"ok": False, "error": "fatal_error", "standin_bug": repr(exc)}
                status = 500
        self.answered(request, answer)
        return Reply(status, json.dumps(answer).encode())

    def answered(self, request: ApiRequest, answer: dict[str, Any]) -> None:
        """Called with every Web API answer; a subclass may record them."""

    def _token(self, authorization: str | None, params: dict[str, Any]) -> str | None:
        body_token = params.pop("token", None)
        body_token = body_token if isinstance(body_token, str) else None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            return value.strip() if scheme.lower() == "bearer" else ""
        return body_token

    def _serve_response_url(self, verb: str, url: str, body: bytes) -> Reply:
        def plain(status: int, text: str) -> Reply:
            return Reply(status, text.encode(), "text/plain; charset=utf-8")

        if verb != "POST":
            return plain(405, "invalid_method")
        with self.lock:
            entry = self._response_urls.get(url)
            if entry is None:
                return plain(404, "no_service")
            if entry.uses >= RESPONSE_URL_USES:
                return plain(404, "used_url")
            try:
                payload = json.loads(body or b"null")
            except ValueError:
                return plain(400, "invalid_payload")
            if not isinstance(payload, dict):
                return plain(400, "invalid_payload")
            problem = self.response_problem(payload)
            if problem is not None:
                return plain(400, problem)
            entry.uses += 1
            self._responses.append({**payload, "url": url, "tag": entry.tag})
            self.model.tell("response", None, payload)
            return plain(200, "ok")


class _StandInServer(ThreadingHTTPServer):
    """The HTTP server on a free loopback port, holding the stand-in its handlers answer for."""

    daemon_threads = True

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
