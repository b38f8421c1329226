"""Fetching an attachment URL the way Motion does, for a sandbox made with
``fetch_attachments=True``.

Motion downloads each attachment itself, with a plain GET (no headers, no cookies), and refuses
the call when one cannot be fetched. This module owns that one GET and its record (`Fetch`), so a
test can check that the app's signed file links really serve the file to a stranger.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import aiohttp

FETCH_TIMEOUT_S = 20.0
_FETCH_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Fetch:
    """One attachment fetched as Motion would: what came back, and a digest of the bytes."""

    url: str
    status: int
    content_type: str | None
    size: int
    sha256: str
    error: str | None = None


def attachment_urls(raw: bytes) -> list[tuple[int, str]]:
    """Each attachment's index and URL in a raw request body; nothing when the body or its
    attachments are malformed (validation reports those)."""
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        return []
    attachments = body.get("attachments") if isinstance(body, dict) else None
    if not isinstance(attachments, list):
        return []
    urls = []
    for index, attachment in enumerate(attachments):
        url = attachment.get("url") if isinstance(attachment, dict) else None
        if isinstance(url, str):
            urls.append((index, url))
    return urls


def fetch_session() -> aiohttp.ClientSession:
    """A session like Motion's fetcher: a total timeout, and no cookies kept between URLs."""
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    return aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar())


async def fetch_attachment(session: aiohttp.ClientSession, url: str) -> Fetch:
    """GET one URL, following redirects, and digest what arrives; a failure is a `Fetch` with
    its `error`, never an exception."""
    digest = hashlib.sha256()
    size = 0
    try:
        async with session.get(url, allow_redirects=True) as response:
            async for chunk in response.content.iter_chunked(_FETCH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
            return Fetch(url, response.status, response.content_type, size, digest.hexdigest())
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Fetch(url, 0, None, size, digest.hexdigest(), error=type(exc).__name__)
