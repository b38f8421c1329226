"""The stand-in's side of Slack's external file upload, as slack_sdk's files_upload_v2 drives it
(see slack-platform.md "File upload"):

1. `files.getUploadURLExternal` (filename, length) answers an `upload_url` on this server and
   a `file_id`;
2. the bytes are POSTed to the upload URL, which answers 200 only when exactly `length` bytes
   arrived;
3. `files.completeUploadExternal` (files=[{id, title}], channel_id, thread_ts) shares the file:
   it appears in the thread as a `file_share` message by the bot, so a test counts videos per
   thread. `files.info` tells whether (and where) a file was shared.

Errors are Slack's own words: `invalid_arguments`, `not_in_channel`, `channel_not_found`,
`thread_not_found`, `file_not_found`, `invalid_length`. A test can make the next upload POST
fail (`fail_next_upload`).

`ExternalUploads` owns the app's uploads; channels and threads come from the model it is given,
and `files.info` for any other file from the workspace's `FileMethods`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.local.files import FileMethods
from bot.local.model import Channel, SlackError, WorkspaceModel

UPLOAD_PATH = "/upload/"


@dataclass
class UploadedFile:
    """A file the app uploaded through the external upload (its video)."""

    id: str
    filename: str
    length: int
    title: str = ""
    received: int | None = None  # bytes that arrived at the upload URL (None: none yet)
    digest: str = ""
    completed: bool = False
    shares: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # channel → shares


class ExternalUploads:
    """The three Web API methods of an external upload and the upload URL, over one workspace
    model."""

    def __init__(
        self, model: WorkspaceModel, shared: FileMethods, root_url: Callable[[], str]
    ) -> None:
        """`shared`: the files people shared, which `files.info` answers for any other id;
        `root_url`: where the upload URLs are served, asked each time one is handed out."""
        self.model = model
        self.shared = shared
        self.root_url = root_url
        self.uploaded: dict[str, UploadedFile] = {}
        self._faults: list[int] = []

    def methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        """The Web API methods this object answers, by name (`files.info` for every file)."""
        return {
            "files.getUploadURLExternal": self.files_get_upload_url,
            "files.completeUploadExternal": self.files_complete_upload,
            "files.info": self.files_info,
        }

    # -- scripting and inspection (any thread) -------------------------------------------------

    def fail_next_upload(self, status: int = 500, *, times: int = 1) -> None:
        """The next `times` POSTs to an upload URL answer `status` (0: drop the connection)
        and keep none of the bytes."""
        with self.model.lock:
            self._faults.extend([status] * times)

    def shared_files(self, channel: str, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """The file_share messages in a channel (or one thread of it), oldest first."""
        with self.model.lock:
            found = [
                copy.deepcopy(m)
                for m in self.model.channel_messages.get(channel, {}).values()
                if m.get("subtype") == "file_share"
                and (thread_ts is None or m.get("thread_ts") == thread_ts)
            ]
        return sorted(found, key=lambda m: float(m["ts"]))

    # -- the upload URL (server thread) ----------------------------------------------------------

    def serve_upload(self, verb: str, path: str, body: bytes) -> tuple[int, bytes] | None:
        """(status, body) for a POST to an upload URL; None: drop the connection."""
        if verb != "POST":
            return 405, b"method_not_allowed"
        file_id = path[len(UPLOAD_PATH) :].split("/", 1)[0]
        with self.model.lock:
            if self._faults:
                status = self._faults.pop(0)
                return None if status == 0 else (status, b"upload_failed")
            stored = self.uploaded.get(file_id)
            if stored is None or stored.completed:
                return 404, b"file_not_found"
            if len(body) != stored.length:
                return 400, f"invalid_length: expected {stored.length}, got {len(body)}".encode()
            stored.received = len(body)
            stored.digest = hashlib.sha256(body).hexdigest()
        return 200, f"OK - {len(body)}".encode()

    # -- Web API methods (lock held) ---------------------------------------------------------

    def files_get_upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        filename = params.get("filename")
        length = params.get("length")
        if not isinstance(filename, str) or not filename.strip():
            raise SlackError("invalid_arguments", response_metadata={"messages": ["filename"]})
        try:
            size = int(length) if length is not None else -1
        except (TypeError, ValueError):
            size = -1
        if size < 1:
            raise SlackError("invalid_arguments", response_metadata={"messages": ["length"]})
        file_id = f"F{secrets.token_hex(5).upper()}"
        self.uploaded[file_id] = UploadedFile(file_id, filename, size)
        upload_url = f"{self.root_url()}{UPLOAD_PATH}{file_id}/{secrets.token_urlsafe(12)}"
        return {"upload_url": upload_url, "file_id": file_id}

    def files_complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        raw = params.get("files")
        try:
            files = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            raise SlackError("invalid_arguments") from None
        if not isinstance(files, list) or not files:
            raise SlackError("invalid_arguments")
        channel_id = params.get("channel_id") or None
        thread_ts = params.get("thread_ts") or None
        if thread_ts is not None and channel_id is None:
            raise SlackError("invalid_arguments")
        channel = self.model.writable_channel(channel_id) if channel_id else None
        parent_ts = None
        if channel is not None and thread_ts is not None:
            parent_ts = self.model.thread_root(channel, thread_ts)
        chosen = self._completable(files)
        for stored, entry in zip(chosen, files, strict=True):
            stored.completed = True
            stored.title = str(entry.get("title") or stored.filename)
        if channel is not None:
            self._share(chosen, channel, parent_ts)
        return {"files": [{"id": s.id, "title": s.title} for s in chosen]}

    def files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        """An uploaded video as Slack shows it; any other file is the workspace's own (the
        files people share, in files.py)."""
        stored = self.uploaded.get(str(params.get("file")))
        if stored is None:
            return self.shared.files_info(params)
        if not stored.completed:
            raise SlackError("file_not_found")
        return {"file": self._file_object(stored)}

    def _completable(self, files: list[Any]) -> list[UploadedFile]:
        """The uploads named in a completeUploadExternal, each received and not yet completed."""
        chosen: list[UploadedFile] = []
        for entry in files:
            stored = self.uploaded.get(str((entry or {}).get("id")))
            if stored is None or stored.received is None:
                raise SlackError("file_not_found")
            if stored.completed:
                raise SlackError("file_already_completed")  # an id completes once
            chosen.append(stored)
        return chosen

    def _share(self, chosen: list[UploadedFile], channel: Channel, parent_ts: str | None) -> None:
        """The bot's `file_share` message carrying the files, in the channel or the thread."""
        ts = self.model.next_ts()
        message = self.model.bot_message("", None, ts)
        message.update(
            subtype="file_share", upload=True, display_as_bot=False,
            files=[self._file_object(s) for s in chosen], blocks=[],
        )  # fmt: skip
        self.model.store(channel.id, message, parent_ts)
        for stored in chosen:
            share = {"ts": ts, "channel_name": channel.name}
            if parent_ts is not None:
                share["thread_ts"] = parent_ts
            stored.shares.setdefault(channel.id, []).append(share)
        self.model.tell("posted", channel.id, message)

    def _file_object(self, stored: UploadedFile) -> dict[str, Any]:
        shares = copy.deepcopy(stored.shares)
        return {
            "id": stored.id,
            "name": stored.filename,
            "title": stored.title,
            "mimetype": "video/mp4" if stored.filename.endswith(".mp4") else "",
            "filetype": "mp4" if stored.filename.endswith(".mp4") else "",
            "size": stored.length,
            "user": self.model.bot_user_id,
            "channels": [c for c in shares if c.startswith("C")],
            "groups": [c for c in shares if c.startswith("G")],
            "shares": {"public": shares} if shares else {},
        }
