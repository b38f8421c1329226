"""Slack's files in the local stand-in: `files.info`, and the private download links that need
the bot token.

As Slack does: `files.info` answers `file_not_found` for a file the bot cannot see (shared only
where it is not a member), `missing_scope` without `files:read`, and the file object with
`url_private_download`; a download without the bot token gets Slack's sign-in page (200,
text/html), and a download may redirect to another host (`redirect_to`), so a client that
follows redirects blindly can be caught handing the token to a stranger.

`FileMethods` owns the files people shared; channels and membership come from the model it is
given, and the address downloads are served at from whoever serves them over HTTP.
"""

from __future__ import annotations

import copy
import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from bot.local.model import SlackError, WorkspaceModel

DOWNLOAD_PREFIX = "/files-pri/"
LOGIN_PAGE = (
    b"<!DOCTYPE html><html><head><title>Slack</title></head><body>"
    b"<h1>Sign in to your workspace</h1></body></html>"
)


@dataclass
class WorkspaceFile:
    """A file a person uploaded to the workspace (the app's own uploads are in uploads.py)."""

    id: str
    title: str
    name: str
    mimetype: str
    content: bytes
    size: int  # what files.info says (a test may claim more than `content` holds)
    user: str
    channels: set[str] = field(default_factory=set)  # where it was shared
    for_app: bool = False  # uploaded through the app's own form (file_input): the app may read it
    redirect_to: str | None = None  # the download answers 302 to this URL
    deleted: bool = False
    cut_after: int | None = None  # the download announces every byte, sends these, hangs up


@dataclass(frozen=True)
class FileAnswer:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]


class FileMethods:
    """`files.info` and private downloads over one workspace model, and the files they serve."""

    def __init__(self, model: WorkspaceModel, host_url: Callable[[], str]) -> None:
        """`host_url`: where downloads are served, asked each time a link is made (the HTTP
        side knows its port only once it listens)."""
        self.model = model
        self.host_url = host_url
        self.stored: dict[str, WorkspaceFile] = {}
        self.files_read_scope = True  # False: files.info answers missing_scope
        self.downloads: list[tuple[str, bool]] = []  # (file id, had the bot token) per download
        # True: a download is gzip-encoded when the client accepts it, as a CDN may do (its
        # Content-Length is then the compressed length).
        self.compress_downloads = False

    # -- scripting -----------------------------------------------------------------------------

    def add_file(
        self,
        *,
        title: str,
        mimetype: str,
        content: bytes = b"",
        size: int | None = None,
        name: str | None = None,
        user: str = "U0ALICE",
        channel: str | None = "C0PUBLIC",
        for_app: bool = False,
        redirect_to: str | None = None,
        file_id: str | None = None,
    ) -> str:
        """A file a person uploaded (shared in `channel`, or only through the app's form when
        `for_app`); returns its id."""
        with self.model.lock:
            file_id = file_id or f"F{len(self.stored) + 1:08d}"
            self.stored[file_id] = WorkspaceFile(
                id=file_id, title=title, name=name or title, mimetype=mimetype, content=content,
                size=len(content) if size is None else size, user=user,
                channels={channel} if channel else set(), for_app=for_app,
                redirect_to=redirect_to,
            )  # fmt: skip
            return file_id

    def delete_file(self, file_id: str) -> None:
        """The person deleted the file (the message that shared it may still be delivered)."""
        with self.model.lock:
            self.stored[file_id].deleted = True

    def cut_download(self, file_id: str, *, after: int) -> None:
        """Downloads of the file announce its whole length, send `after` bytes and hang up
        (a connection Slack's CDN drops part-way)."""
        with self.model.lock:
            self.stored[file_id].cut_after = after

    def share_in(self, file_id: str, channel: str) -> None:
        """The file was shared in `channel` (a person's message carried it): the bot may read
        it there."""
        with self.model.lock:
            self.stored[file_id].channels.add(channel)

    def download_url(self, file_id: str) -> str:
        file = self.stored[file_id]
        return f"{self.host_url()}{DOWNLOAD_PREFIX}{self.model.team_id}-{file.id}/download/{quote(file.name)}"

    def file_object(self, file_id: str) -> dict[str, Any]:
        """The file as Slack shows it in `files.info` and in a message's `files`."""
        with self.model.lock:
            file = self.stored[file_id]
            extension = file.name.rsplit(".", 1)[-1].lower() if "." in file.name else "binary"
            return {
                "id": file.id,
                "created": 1_700_000_000,
                "timestamp": 1_700_000_000,
                "name": file.name,
                "title": file.title,
                "mimetype": file.mimetype,
                "filetype": extension,
                "pretty_type": extension.upper(),
                "user": file.user,
                "user_team": self.model.team_id,
                "editable": False,
                "size": file.size,
                "mode": "hosted",
                "is_external": False,
                "external_type": "",
                "is_public": bool(file.channels),
                "public_url_shared": False,
                "display_as_bot": False,
                "url_private": self.download_url(file.id).replace("/download/", "/", 1),
                "url_private_download": self.download_url(file.id),
                "permalink": f"https://sandbox-team.slack.com/files/{file.user}/{file.id}",
                "channels": sorted(c for c in file.channels if c.startswith("C")),
                "groups": sorted(c for c in file.channels if c.startswith("G")),
                "ims": sorted(c for c in file.channels if c.startswith("D")),
                "comments_count": 0,
            }

    # -- the Web API (lock held) ---------------------------------------------------------------

    def methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        """The Web API methods this object answers, by name."""
        return {"files.info": self.files_info}

    def files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        if not self.files_read_scope:
            raise SlackError("missing_scope", needed="files:read", provided="chat:write,commands")
        file = self.stored.get(str(params.get("file") or ""))
        if file is not None and file.deleted:
            raise SlackError("file_deleted")
        if file is None or not self._bot_may_read(file):
            raise SlackError("file_not_found")
        return {
            "file": self.file_object(file.id),
            "comments": [],
            "response_metadata": {"next_cursor": ""},
        }

    def _bot_may_read(self, file: WorkspaceFile) -> bool:
        return file.for_app or any(
            channel in self.model.channels and self.model.channels[channel].bot_member
            for channel in file.channels
        )

    # -- downloads (the HTTP side calls this) ----------------------------------------------------

    def serve_download(
        self,
        path: str,
        authorization: str | None,
        token_works: Callable[[str], bool],
        accept_encoding: str = "",
    ) -> FileAnswer:
        """GET of a private download link: the bytes with a bot token that works here
        (`token_works`), the sign-in page (200, HTML) without one, as Slack answers."""
        rest = path[len(DOWNLOAD_PREFIX) :]
        ident = rest.split("/", 1)[0]
        file_id = ident.split("-", 1)[1] if "-" in ident else ident
        with self.model.lock:
            file = self.stored.get(file_id)
            scheme, _, token = (authorization or "").partition(" ")
            authorized = scheme.lower() == "bearer" and token_works(token.strip())
            self.downloads.append((file_id, authorized))
            if not authorized:
                return FileAnswer(200, LOGIN_PAGE, "text/html; charset=utf-8", {})
            if file is None or file.deleted:
                return FileAnswer(404, b"file not found", "text/plain", {})
            if file.redirect_to:
                return FileAnswer(302, b"", "text/plain", {"Location": file.redirect_to})
            if file.cut_after is not None:
                length = {"Content-Length": str(len(file.content))}
                return FileAnswer(200, file.content[: file.cut_after], file.mimetype, length)
            if self.compress_downloads and "gzip" in accept_encoding.lower():
                packed = gzip.compress(file.content)
                return FileAnswer(200, packed, file.mimetype, {"Content-Encoding": "gzip"})
            return FileAnswer(200, copy.copy(file.content), file.mimetype, {})
