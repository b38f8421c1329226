"""Reading a finished MP4 from Motion's download URL, a chunk at a time.

The video goes from Motion's CDN to Slack without ever being held whole in memory: `open`
answers the length first (Slack's upload needs it up front) and then hands out the body as it
arrives. The download URL is signed and carries its own authority, so no API key is sent to
the CDN. Every hop (the URL, each redirect) goes only over https to public addresses
(`bot.motion.download_guard`). This module knows Motion's CDN and nothing of Slack.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from bot.motion.download_guard import (
    DownloadRefused,
    guarded_transport,
    loopback_origin,
    url_problem,
)

CHUNK_BYTES = 256 * 1024
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
MAX_REDIRECTS = 5  # a CDN hands off once or twice; each hop is checked like the first


class DownloadFailed(Exception):
    """The MP4 could not be read: `reason` in a few words, for the log line (never the URL,
    whose query is a credential)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Download:
    """An open download: its length as the CDN announced it, and its body as it arrives."""

    length: int | None
    content_type: str
    _response: httpx.Response

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk; DownloadFailed if it breaks off or its length is wrong."""
        seen = 0
        try:
            async for chunk in self._response.aiter_bytes(CHUNK_BYTES):
                seen += len(chunk)
                if self.length is not None and seen > self.length:
                    raise DownloadFailed("more bytes than announced")
                yield chunk
        except httpx.HTTPError as exc:
            raise DownloadFailed(f"broke off ({type(exc).__name__})") from exc
        if self.length is not None and seen != self.length:
            raise DownloadFailed(f"ended after {seen} of {self.length} bytes")


class Downloader:
    """One pooled client for every download (separate from the API's, whose slots are kept
    for status calls). `motion_url`: the Motion API's base URL; when it is on loopback (the
    sandbox), its host and port may serve downloads over plain http."""

    def __init__(self, motion_url: str | None = None) -> None:
        self._exempt = loopback_origin(motion_url)
        self._client = httpx.AsyncClient(
            timeout=DOWNLOAD_TIMEOUT,
            follow_redirects=False,  # followed in `_follow`, each hop checked
            headers={"User-Agent": "motion-bot/0.1"},
            transport=guarded_transport(self._exempt),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    @contextlib.asynccontextmanager
    async def open(self, url: str) -> AsyncIterator[Download]:
        """GET the MP4 and stop at its headers; the body is read through `Download.chunks`.
        A missing or unreadable Content-Length gives `length=None`: the caller decides.
        DownloadRefused (before any byte is read) when a hop goes where it must not."""
        try:
            response = await self._follow(httpx.URL(url))
        except httpx.HTTPError as exc:
            raise DownloadFailed(f"unreachable ({type(exc).__name__})") from exc
        except httpx.InvalidURL as exc:  # not an HTTPError
            raise DownloadRefused("not a valid address") from exc
        try:
            if response.status_code != 200:
                raise DownloadFailed(f"the CDN answered {response.status_code}")
            header = response.headers.get("Content-Length")
            length = int(header) if header and header.isdigit() else None
            kind = response.headers.get("Content-Type", "")
            yield Download(length, kind, response)
        except httpx.HTTPError as exc:
            raise DownloadFailed(f"unreachable ({type(exc).__name__})") from exc
        finally:
            await response.aclose()

    async def _follow(self, url: httpx.URL) -> httpx.Response:
        """The first answer that is not a redirect, every hop's URL checked before it is
        requested (its addresses are checked as it connects: `PublicOnlyNetwork`)."""
        for _ in range(MAX_REDIRECTS + 1):
            if problem := url_problem(url, self._exempt):
                raise DownloadRefused(problem)
            response = await self._client.send(self._client.build_request("GET", url), stream=True)
            if response.next_request is None:
                return response
            await response.aclose()
            url = response.next_request.url
        raise DownloadFailed(f"more than {MAX_REDIRECTS} redirects")
