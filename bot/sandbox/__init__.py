"""A local emulator of the Mosaic Motion API, for sandbox mode and ``python -m bot.sandbox``.

It follows the public documentation (see ``motion-api.md``): strict where the documentation is
precise (body rules, error bodies, status codes, ownership), configurable where it is vague
(timings, ``sources``, the lag after a followup). That lets the bot run the whole flow without
spending credits or waiting for real renders.

Its parts, each importing only those before it:

- ``validation``: the body rules of a create or followup, as zod issues;
- ``outputs``: what a run hands out (signed download URLs, MP4 bytes, sources);
- ``lifecycle``: plans, jobs and their runs, the status progression and the output's lag;
- ``fetching``: fetching attachment URLs the way Motion does;
- ``server``: ``MotionSandbox``, the API over HTTP (routes, auth, error bodies, the CDN);
- ``runner``: ``SandboxThread`` and the ``python -m bot.sandbox`` command line.

Of the product it imports only ``bot.motion``'s wire-format limits, one way.
"""

from bot.sandbox.fetching import FETCH_TIMEOUT_S, Fetch
from bot.sandbox.lifecycle import JobPlan, run_state
from bot.sandbox.outputs import (
    DOWNLOAD_BASE,
    DOWNLOAD_URL_LIFETIME_S,
    VIDEO_BYTES,
    download_url,
    generated_sources,
    video_bytes,
)
from bot.sandbox.runner import SandboxThread, main
from bot.sandbox.server import (
    API_KEY_PREFIX,
    BASE_PATH,
    CDN_CHUNK,
    CDN_PATH,
    SHUTDOWN_TIMEOUT_S,
    Answer,
    Exchange,
    MotionSandbox,
)
from bot.sandbox.validation import DESIGN_SYSTEMS, MAX_DESIGN_MD_CHARS, validate_request

__all__ = [
    "API_KEY_PREFIX",
    "BASE_PATH",
    "CDN_CHUNK",
    "CDN_PATH",
    "DESIGN_SYSTEMS",
    "DOWNLOAD_BASE",
    "DOWNLOAD_URL_LIFETIME_S",
    "FETCH_TIMEOUT_S",
    "MAX_DESIGN_MD_CHARS",
    "SHUTDOWN_TIMEOUT_S",
    "VIDEO_BYTES",
    "Answer",
    "Exchange",
    "Fetch",
    "JobPlan",
    "MotionSandbox",
    "SandboxThread",
    "download_url",
    "generated_sources",
    "main",
    "run_state",
    "validate_request",
    "video_bytes",
]
