"""Motion's documented limits and values, in one place: the parser, the request body and the
sandbox all read them here."""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import urlparse

MAX_PROMPT = 12_000  # UTF-16 code units, as Motion's JavaScript validator counts
MAX_ATTACHMENTS = 10
MAX_ATTACHMENT_URL = 4_096
MAX_ATTACHMENT_NAME = 240
ASPECTS = ("16:9", "9:16", "1:1", "4:5", "21:9")
DURATIONS = ("<10s", "10-30s", "30s-1min", "1-5min")
ATTACHMENT_TYPES = ("image", "video", "audio", "file")
YOUTUBE_HOSTS = frozenset(
    {"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtu.be"}
)
EXTENSION_TYPES = {
    "image": ("png", "jpg", "jpeg", "gif", "webp", "svg", "heic"),
    "video": ("mp4", "mov", "webm", "mkv", "avi", "m4v"),
    "audio": ("mp3", "wav", "m4a", "aac", "ogg", "flac"),
}
# Rights statuses that clearly allow use; anything else is flagged to the people publishing.
CLEARED_RIGHTS = frozenset(
    {
        "cleared", "licensed", "owned", "public_domain", "public domain", "royalty_free",
        "royalty-free", "cc0", "approved", "granted", "ok", "generated", "original",
    }
)  # fmt: skip


def js_length(text: str) -> int:
    """Length as Motion's JavaScript validator counts it (UTF-16 units: an emoji counts 2)."""
    return len(text.encode("utf-16-le")) // 2


def is_youtube(url: str) -> bool:
    parts = urlparse(url)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in YOUTUBE_HOSTS


class MotionStatus(StrEnum):
    """The job statuses motion-api.md names; an unknown one is kept as plain text."""

    QUEUED = "queued"
    CREATED = "created"
    RUNNING = "running"
    AWAITING_USER_INPUT = "awaiting_user_input"
    COMPLETED = "completed"
    FAILED = "failed"
