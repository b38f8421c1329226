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
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from bot.local.model import SlackError

UPLOAD_PATH = "/upload/"


@dataclass
class StoredFile:
    id: str
    filename: str
    length: int
    title: str = ""
    received: int | None = None  # bytes that arrived at the upload URL (None: none yet)
    digest: str = ""
    completed: bool = False
    shares: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # channel → shares


class ExternalUploads:
    """Mixed into the stand-in (which owns `_lock`, `_messages`, `root_url` and the model's
    helpers); `register_upload_methods` adds the three Web API methods."""

    _lock: Any
    _methods: dict[str, Any]
    _messages: dict[str, dict[str, dict[str, Any]]]

    def register_upload_methods(self) -> None:
        self.files: dict[str, StoredFile] = {}
        self._upload_faults: list[int] = []
        self._methods.update(
            {
                "files.getUploadURLExternal": self._files_get_upload_url,
                "files.completeUploadExternal": self._files_complete_upload,
                "files.info": self._files_info,
            }
        )

    # -- scripting and inspection (any thread) -------------------------------------------------

    def fail_next_upload(self, status: int = 500, *, times: int = 1) -> None:
        """The next `times` POSTs to an upload URL answer `status` (0: drop the connection)
        and keep none of the bytes."""
        with self._lock:
            self._upload_faults.extend([status] * times)

    def shared_files(self, channel: str, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """The file_share messages in a channel (or one thread of it), oldest first."""
        with self._lock:
            found = [
                copy.deepcopy(m)
                for m in self._messages.get(channel, {}).values()
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
        with self._lock:
            if self._upload_faults:
                status = self._upload_faults.pop(0)
                return None if status == 0 else (status, b"upload_failed")
            stored = self.files.get(file_id)
            if stored is None or stored.completed:
                return 404, b"file_not_found"
            if len(body) != stored.length:
                return 400, f"invalid_length: expected {stored.length}, got {len(body)}".encode()
            stored.received = len(body)
            stored.digest = hashlib.sha256(body).hexdigest()
        return 200, f"OK - {len(body)}".encode()

    # -- Web API methods (lock held) ---------------------------------------------------------

    def _files_get_upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
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
        self.files[file_id] = StoredFile(file_id, filename, size)
        root = self.root_url  # type: ignore[attr-defined]
        upload_url = f"{root}{UPLOAD_PATH}{file_id}/{secrets.token_urlsafe(12)}"
        return {"upload_url": upload_url, "file_id": file_id}

    def _files_complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
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
        channel = self._writable_channel(channel_id) if channel_id else None  # type: ignore[attr-defined]
        parent_ts = None
        if channel is not None and thread_ts is not None:
            parent = self._messages[channel.id].get(str(thread_ts))
            if parent is None:
                raise SlackError("thread_not_found")
            parent_ts = parent.get("thread_ts", parent["ts"])
        chosen: list[StoredFile] = []
        for entry in files:
            stored = self.files.get(str((entry or {}).get("id")))
            if stored is None or stored.received is None:
                raise SlackError("file_not_found")
            if stored.completed:
                raise SlackError("file_already_completed")  # an id completes once
            chosen.append(stored)
        for stored, entry in zip(chosen, files, strict=True):
            stored.completed = True
            stored.title = str(entry.get("title") or stored.filename)
        if channel is not None:
            ts = self._next_ts()  # type: ignore[attr-defined]
            message = self._bot_message("", None, ts)  # type: ignore[attr-defined]
            message.update(
                subtype="file_share", upload=True, display_as_bot=False,
                files=[self._file_object(s) for s in chosen], blocks=[],
            )  # fmt: skip
            self._store(channel.id, message, parent_ts)  # type: ignore[attr-defined]
            for stored in chosen:
                share = {"ts": ts, "channel_name": channel.name}
                if parent_ts is not None:
                    share["thread_ts"] = parent_ts
                stored.shares.setdefault(channel.id, []).append(share)
            self._tell("posted", channel.id, message)  # type: ignore[attr-defined]
        return {"files": [{"id": s.id, "title": s.title} for s in chosen]}

    def _files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        """An uploaded video as Slack shows it; any other file is the workspace's own (the
        files people share, in files.py)."""
        stored = self.files.get(str(params.get("file")))
        if stored is None:
            answer: dict[str, Any] = super()._files_info(params)  # type: ignore[misc]
            return answer
        if not stored.completed:
            raise SlackError("file_not_found")
        return {"file": self._file_object(stored)}

    def _file_object(self, stored: StoredFile) -> dict[str, Any]:
        shares = copy.deepcopy(stored.shares)
        return {
            "id": stored.id,
            "name": stored.filename,
            "title": stored.title,
            "mimetype": "video/mp4" if stored.filename.endswith(".mp4") else "",
            "filetype": "mp4" if stored.filename.endswith(".mp4") else "",
            "size": stored.length,
            "user": self.bot_user_id,  # type: ignore[attr-defined]
            "channels": [c for c in shares if c.startswith("C")],
            "groups": [c for c in shares if c.startswith("G")],
            "shares": {"public": shares} if shares else {},
        }
