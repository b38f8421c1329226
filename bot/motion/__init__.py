"""Motion's API, and the only package that knows its wire format: the request body
(`request`), Motion's limits (`limits`), the typed answers (`answers`), the error tree
(`errors`) and the client (`client`). Everything is importable from `bot.motion`."""

from bot.motion.answers import JobStatus, Output, Source, Usage
from bot.motion.client import PROBE_JOB_ID, MotionClient, MotionRoute, parse_retry_after
from bot.motion.errors import (
    AnswerLost,
    AuthenticationError,
    BadRequest,
    Conflict,
    InsufficientCredits,
    MotionError,
    NotFound,
    RateLimited,
    Retry,
    ServerError,
    Unreachable,
)
from bot.motion.limits import (
    ASPECTS,
    ATTACHMENT_TYPES,
    CLEARED_RIGHTS,
    DURATIONS,
    MAX_ATTACHMENT_NAME,
    MAX_ATTACHMENT_URL,
    MAX_ATTACHMENTS,
    MAX_PROMPT,
    YOUTUBE_HOSTS,
    MotionStatus,
    is_youtube,
    js_length,
)
from bot.motion.request import FileAttachment, MotionRequest

__all__ = [
    "ASPECTS", "ATTACHMENT_TYPES", "CLEARED_RIGHTS", "DURATIONS", "MAX_ATTACHMENTS",
    "MAX_ATTACHMENT_NAME", "MAX_ATTACHMENT_URL", "MAX_PROMPT", "PROBE_JOB_ID", "YOUTUBE_HOSTS", "AnswerLost",
    "AuthenticationError", "BadRequest", "Conflict", "FileAttachment", "InsufficientCredits",
    "JobStatus", "MotionClient", "MotionError", "MotionRequest", "MotionRoute", "MotionStatus",
    "NotFound", "Output", "RateLimited", "Retry", "ServerError", "Source", "Unreachable", "Usage", "is_youtube",
    "js_length", "parse_retry_after",
]  # fmt: skip
