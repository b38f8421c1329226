"""GET /v/{token}: the app's lasting download link, served behind PUBLIC_URL.

A tampered token is refused (403) before anything is looked up, and so is a signed one naming a
job of another workspace than its own (403, SPEC "Isolation"); a good one names a run, and
the answer is a redirect to where that run's MP4 is now (`bot.jobs.videos.VideoUrls`). When
Motion cannot be asked, the person who clicked gets a short page in plain words with the status
that fits, never a stack trace (503 while the app's database is away for a moment). Without
PUBLIC_URL the route answers 404: nothing links here.
"""

from __future__ import annotations

import html
import logging
from urllib.parse import urlsplit

from aiohttp import web

from bot.jobs import DatabaseUnavailable
from bot.jobs.bounds import OtherWorkspace
from bot.jobs.videos import VideoLinks, VideoUrls
from bot.links import BadToken
from bot.motion import MotionError, NotFound, RateLimited

log = logging.getLogger(__name__)


class VideoLinkRoute:
    def __init__(self, links: VideoLinks, urls: VideoUrls) -> None:
        self.links = links
        self.urls = urls

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v/{token}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.links.public_url is None:
            return page(404, "Not found", "There is nothing here.")
        try:
            ref = self.links.read(request.match_info["token"])
        except BadToken as exc:
            log.info("refused a video link: %s", exc.reason)
            return page(
                403,
                "This link is not valid",
                "The link was changed or cut short. Open the video from its Slack thread again.",
            )
        try:
            return await self._redirect(ref.job_id, ref.run_number, ref.team_id)
        except OtherWorkspace as refused:  # signed, yet naming a job under another workspace
            log.warning("refused a video link: %s", refused)
            return page(403, "This link is not valid", "Open the video from its Slack thread.")
        except DatabaseUnavailable as away:
            log.info("video link: %s", away)
            return page(
                503,
                "One moment",
                "The app cannot reach its database just now. Try the link again in a minute.",
                retry_after=30,
            )

    async def _redirect(
        self, job_id: int, run_number: int, team_id: str | None
    ) -> web.StreamResponse:
        found = self.urls.finished_run(job_id, run_number, team_id)
        if found is None:
            return page(
                404,
                "Video not found",
                "This app has no finished video for this link any more. Ask in its Slack thread.",
            )
        try:
            url = await self.urls.current(*found)
        except NotFound:
            return page(
                410,
                "Motion no longer has this video",
                "Mosaic Motion does not know this job any more, so there is nothing to download.",
            )
        except RateLimited:
            return page(
                503,
                "Motion is busy",
                "Mosaic Motion asked us to slow down. Try the link again in a minute.",
                retry_after=60,
            )
        except MotionError as exc:
            log.warning("video link: Motion failed (%s)", type(exc).__name__)
            return page(
                502,
                "Motion did not answer",
                "Mosaic Motion could not be reached just now. Try the link again in a minute.",
            )
        if not _web_address(url):
            # Only ever a web address: a redirect is the one thing a signed link can be made to
            # do, so whatever Motion answered is never passed on as another scheme or header.
            log.warning("video link: Motion's download URL is not a web address")
            return page(
                502,
                "Motion's link cannot be used",
                "Mosaic Motion answered a download link that is not a web address. Open the "
                "video in Motion's web app, or try the link again later.",
            )
        raise web.HTTPFound(url, headers={"Cache-Control": "no-store"})


def _web_address(url: str) -> bool:
    """http(s) with a host, and nothing that could break out of a Location header."""
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def page(status: int, title: str, words: str, *, retry_after: int | None = None) -> web.Response:
    """A small HTML page in plain words (the words are the app's own; escaped all the same)."""
    body = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(words)}</p></body></html>"
    )
    headers = {"Cache-Control": "no-store"}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return web.Response(status=status, text=body, content_type="text/html", headers=headers)
