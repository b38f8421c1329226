"""Slack's files, read with the bot token: `files.info`, and the download of a file's bytes.

A Slack file's links need the bot token, and the token must never reach anyone but Slack: so
the download goes only to Slack's own file hosts (`files.slack.com`, `slack-files.com`,
`*.slack-edge.com`, `*.slack.com`, and the host of SLACK_API_URL, where a local stand-in lives),
redirects are followed by hand and only to those hosts, and an HTML answer (Slack's sign-in page,
which is what a refused token gets, with a 200) is an error, not a file. The bytes are streamed
chunk by chunk and counted against the size cap: nothing is stored or held whole.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 100 * 1024 * 1024  # SPEC: a file over 100 MB is refused
MAX_REDIRECTS = 5
CHUNK_BYTES = 64 * 1024
SLACK_FILE_HOSTS = frozenset({"files.slack.com", "slack-files.com"})
SLACK_FILE_DOMAINS = (".slack-edge.com", ".slack.com")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HTML = frozenset({"text/html", "application/xhtml+xml"})
# files.info errors that mean the app may not read the file (as opposed to Slack being busy).
UNREADABLE_ERRORS = frozenset(
    {
        "file_not_found", "file_deleted", "missing_scope", "not_authed", "invalid_auth",
        "account_inactive", "token_revoked", "no_permission", "access_denied", "not_allowed",
        "team_access_not_granted", "not_in_channel",
    }
)  # fmt: skip


# Many workspaces: the bot token of workspace (team_id, enterprise_id), None when it has no
# installation.
TokenLookup = Callable[[str, str | None], Awaitable[str | None]]


@dataclass(frozen=True)
class SlackFile:
    """What `files.info` says of a file, as far as the app needs it, and whose it is (its
    bytes are fetched with the same workspace's token)."""

    id: str
    title: str
    name: str
    mimetype: str
    size: int
    download_url: str
    team_id: str = ""
    enterprise_id: str | None = None


class FileUnreadable(Exception):
    """`files.info` refused: `code` is Slack's error (file_not_found, missing_scope, …);
    `permanent` is False when asking again later may work (rate limits, Slack down)."""

    def __init__(self, code: str, *, permanent: bool = True) -> None:
        super().__init__(code)
        self.code = code
        self.permanent = permanent


class DownloadRefused(Exception):
    """The bytes could not be fetched safely; `reason` is for the log (never holds the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_slack_file_host(host: str, api_host: str | None) -> bool:
    """Slack's own file hosts (and the host of SLACK_API_URL): the only ones given the token."""
    host = host.lower().rstrip(".")
    if not host:
        return False
    if host in SLACK_FILE_HOSTS or (api_host and host == api_host.lower()):
        return True
    return any(host.endswith(domain) for domain in SLACK_FILE_DOMAINS)


@dataclass(frozen=True)
class Download:
    """An open download: its content type, its length when Slack said it, and its chunks."""

    content_type: str
    length: int | None
    _response: httpx.Response
    _max_bytes: int

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk; DownloadRefused once it grows past the cap."""
        seen = 0
        try:
            async for chunk in self._response.aiter_bytes(CHUNK_BYTES):
                seen += len(chunk)
                if seen > self._max_bytes:
                    raise DownloadRefused(f"more than {self._max_bytes} bytes")
                yield chunk
        except httpx.HTTPError as exc:  # Slack hung up part-way, or stalled past the timeout
            raise DownloadRefused(f"broke off: {type(exc).__name__}") from None


class SlackFiles:
    """files.info and downloads with a workspace's bot token (`token`: the one workspace's, or
    a lookup by workspace with many), over one pooled client that never follows a redirect by
    itself."""

    def __init__(
        self,
        token: str | TokenLookup,
        api_url: str,
        *,
        max_bytes: int = MAX_FILE_BYTES,
        timeout: float = 20.0,
    ) -> None:
        self._token = token
        self._api_url = api_url if api_url.endswith("/") else f"{api_url}/"
        parts = urlsplit(self._api_url)
        self._api_host = (parts.hostname or "").lower()
        self._api_plain_http = parts.scheme == "http"
        self._api_port = _port(parts.scheme, parts.port)
        self.max_bytes = max_bytes
        # Two pools: the intake's files.info never waits behind downloads that slow readers of
        # PUBLIC_URL/files/<token> hold open.
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
        )
        self._downloads = httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._downloads.aclose()

    async def _token_of(self, team_id: str, enterprise_id: str | None) -> str | None:
        if isinstance(self._token, str):
            return self._token
        return await self._token(team_id, enterprise_id)

    async def info(
        self, file_id: str, team_id: str = "", enterprise_id: str | None = None
    ) -> SlackFile:
        """files.info for one file of workspace `team_id` (with many workspaces: with its
        token, never another's); FileUnreadable with Slack's error when it is refused."""
        token = await self._token_of(team_id, enterprise_id)
        if token is None:
            raise FileUnreadable("not_installed")
        try:
            response = await self._client.post(
                f"{self._api_url}files.info",
                data={"file": file_id},
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise FileUnreadable(f"connection: {type(exc).__name__}", permanent=False) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise FileUnreadable(f"http_{response.status_code}", permanent=False)
        try:
            answer: dict[str, Any] = response.json()
        except ValueError:
            raise FileUnreadable("not_json", permanent=False) from None
        if not answer.get("ok"):
            code = str(answer.get("error") or "unknown_error")
            raise FileUnreadable(code, permanent=code in UNREADABLE_ERRORS)
        file = answer.get("file") or {}
        url = file.get("url_private_download") or file.get("url_private")
        if not isinstance(url, str) or not url:
            raise FileUnreadable("no_download_url")  # e.g. an external (Google Drive) file
        return SlackFile(
            id=str(file.get("id") or file_id),
            title=str(file.get("title") or file.get("name") or file_id),
            name=str(file.get("name") or ""),
            mimetype=str(file.get("mimetype") or "application/octet-stream"),
            size=int(file.get("size") or 0),
            download_url=url,
            team_id=team_id,
            enterprise_id=enterprise_id,
        )

    def may_receive_token(self, url: str) -> bool:
        """https on port 443 to a Slack file host; SLACK_API_URL's own host only on its own
        port (any other port there may be anyone's server), and over plain http only when
        SLACK_API_URL is itself plain http (a local stand-in). The URL is read as httpx will
        send it, so no parser difference can name one host here and reach another."""
        try:
            parsed = httpx.URL(url)
            port = _port(parsed.scheme, parsed.port)
        except (httpx.InvalidURL, ValueError):
            return False
        host = parsed.host.lower().rstrip(".")
        if parsed.userinfo or not is_slack_file_host(host, self._api_host):
            return False
        if host == self._api_host:
            if port != self._api_port:
                return False
            return parsed.scheme == "https" or (parsed.scheme == "http" and self._api_plain_http)
        return parsed.scheme == "https" and port == 443

    @asynccontextmanager
    async def download(self, file: SlackFile) -> AsyncIterator[Download]:
        """GET the file's private download URL with the bot token, following redirects by hand,
        only to Slack's hosts. DownloadRefused for a foreign host, an error status, an HTML
        answer or a declared size over the cap."""
        url = file.download_url
        token = await self._token_of(file.team_id, file.enterprise_id)
        if token is None:
            raise DownloadRefused("the file's workspace has no installation")
        for _ in range(MAX_REDIRECTS + 1):
            if not self.may_receive_token(url):
                raise DownloadRefused(f"not a Slack file host: {urlsplit(url).hostname!r}")
            try:
                # identity: the bytes pass through as Slack stores them, so the length Slack
                # announces is the length Motion gets (a gzipped answer, decoded here, would
                # outgrow its own Content-Length).
                headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}
                request = self._downloads.build_request("GET", url, headers=headers)
                response = await self._downloads.send(request, stream=True)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise DownloadRefused(f"connection: {type(exc).__name__}") from None
            try:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise DownloadRefused("a redirect without a Location")
                    url = urljoin(url, location)
                    continue
                if response.status_code != 200:
                    raise DownloadRefused(f"HTTP {response.status_code}")
                content_type = response.headers.get("content-type") or file.mimetype
                if content_type.split(";", 1)[0].strip().lower() in _HTML:
                    # Slack's sign-in page, with a 200: the token was refused (or lacks
                    # files:read). A shared .html file cannot be told apart: it is refused too.
                    raise DownloadRefused("an HTML page instead of the file")
                length = _length(response.headers.get("content-length"))
                encoding = response.headers.get("content-encoding", "").strip().lower()
                if encoding not in ("", "identity"):
                    length = None  # encoded anyway: the length is not the decoded body's
                if length is not None and length > self.max_bytes:
                    raise DownloadRefused(f"{length} bytes, over the cap")
                yield Download(content_type, length, response, self.max_bytes)
                return
            finally:
                await response.aclose()
        raise DownloadRefused(f"more than {MAX_REDIRECTS} redirects")


def _port(scheme: str, port: int | None) -> int | None:
    """The port a URL reaches, its scheme's default when none is written."""
    if port is not None:
        return port
    return {"https": 443, "http": 80}.get(scheme)


def _length(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
