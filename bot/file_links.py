"""`PUBLIC_URL/files/<token>`: the public link Motion fetches a Slack file through.

Motion fetches attachments with a plain GET (no headers, no cookies), and a Slack file needs the
bot token, so the app hands Motion a link of its own. The token is signed, names the workspace
and the file, and expires after 24 hours; checking it needs no database and no call to Slack, so
a tampered or expired link costs nothing but a 403. A good one is answered by streaming the file
from Slack (`bot.slack.files`), with Slack's content type; nothing is stored.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

from aiohttp import web

from bot.links import FILE_TOKEN_SECONDS, BadToken, LinkSigner
from bot.slack.files import Download, DownloadRefused, FileUnreadable, SlackFiles

log = logging.getLogger(__name__)
FILE_LINK_KIND = "file"
ROUTE = "/files/{token}"
# A private Slack file passing through: no cache (shared or the fetcher's) may keep it, and a
# browser that opens the link must take the content type as given, never sniff it into HTML.
# `sandbox`: whatever the file is, a browser runs none of it with PUBLIC_URL's origin.
PRIVATE_HEADERS = {
    "Cache-Control": "private, no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox",
}
# Motion fetches an attachment once (maybe again on a retry): more at once is not Motion, and
# each stream holds a download from Slack.
MAX_STREAMS_PER_LINK = 3
MAX_STREAMS = 16  # all links together (the download pool has 20 connections)
WRITE_TIMEOUT_SECONDS = 30.0


class FileLinks:
    """Makes the links (`url_for`) and answers them (`serve`)."""

    def __init__(self, signer: LinkSigner, files: SlackFiles, public_url: str | None) -> None:
        self.signer = signer
        self.files = files
        self.public_url = public_url
        # Whether the link's workspace uninstalled the app (set by `app`): its links then get
        # a 403 and no call to Slack, like a tampered one.
        self.forgotten: Callable[[str], bool] = lambda team_id: False
        self._open: dict[str, int] = {}  # streams in progress, per file
        self._total = 0

    def url_for(self, team_id: str, file_id: str, enterprise_id: str | None = None) -> str:
        """A link Motion can fetch for 24 hours; only meaningful while PUBLIC_URL is set. It
        names the file's workspace (and enterprise), whose token alone fetches it."""
        assert self.public_url, "no public links without PUBLIC_URL"
        named: dict[str, str] = {"t": team_id, "f": file_id}
        if enterprise_id:
            named["e"] = enterprise_id
        token = self.signer.sign(FILE_LINK_KIND, named, ttl_seconds=FILE_TOKEN_SECONDS)
        return f"{self.public_url}/files/{token}"

    def signed_again(self, url: str) -> str:
        """One of this app's file links with a fresh 24 hours (a run sent long after its files
        were taken: a variation, a resend, a followup that waited); any other URL as it is."""
        prefix = f"{self.public_url}/files/" if self.public_url else None
        if prefix is None or not url.startswith(prefix):
            return url
        try:
            payload = self.signer.verify(FILE_LINK_KIND, url[len(prefix) :], allow_expired=True)
        except BadToken:
            return url  # not ours after all: Motion's fetch will be refused, as it should
        team_id, file_id, enterprise_id = payload.get("t"), payload.get("f"), payload.get("e")
        if not isinstance(team_id, str) or not isinstance(file_id, str):
            return url
        return self.url_for(
            team_id, file_id, enterprise_id if isinstance(enterprise_id, str) else None
        )

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(ROUTE, self.serve)  # HEAD too (aiohttp's allow_head)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        if not self.public_url:
            raise web.HTTPNotFound()
        try:
            payload = self.signer.verify(FILE_LINK_KIND, request.match_info["token"])
        except BadToken as exc:
            log.info("file link refused: %s", exc.reason)
            return web.Response(status=403, text="This link is not valid or has expired.\n")
        file_id, team_id, enterprise_id = payload.get("f"), payload.get("t"), payload.get("e")
        if not isinstance(file_id, str) or not file_id:
            return web.Response(status=403, text="This link is not valid or has expired.\n")
        if not isinstance(team_id, str) or self.forgotten(team_id):
            log.info("file link refused: its workspace is not served here")
            return web.Response(status=403, text="This link is not valid or has expired.\n")
        workspace = (team_id, enterprise_id if isinstance(enterprise_id, str) else None)
        if self._open.get(file_id, 0) >= MAX_STREAMS_PER_LINK or self._total >= MAX_STREAMS:
            log.info("file link for %s: busy (%d open for it)", file_id, self._open.get(file_id, 0))
            return web.Response(
                status=429, headers={"Retry-After": "5"}, text="Too many downloads at once.\n"
            )
        self._open[file_id] = self._open.get(file_id, 0) + 1
        self._total += 1
        try:
            return await self._serve_file(request, file_id, workspace)
        finally:
            self._total -= 1
            self._open[file_id] -= 1
            if not self._open[file_id]:
                del self._open[file_id]

    async def _serve_file(
        self, request: web.Request, file_id: str, workspace: tuple[str, str | None]
    ) -> web.StreamResponse:
        """The file, read with the token of the workspace the link names (and only that)."""
        try:
            file = await self.files.info(file_id, *workspace)
        except FileUnreadable as exc:
            log.warning("file link for %s: files.info refused (%s)", file_id, exc.code)
            status = 404 if exc.permanent else 503
            return web.Response(status=status, text="The file cannot be read from Slack.\n")
        if file.size > self.files.max_bytes:
            return web.Response(status=413, text="The file is over the size limit.\n")
        headers = {**PRIVATE_HEADERS, "Content-Disposition": attachment(file.name or file.title)}
        if request.method == "HEAD":
            headers |= {"Content-Type": file.mimetype, "Content-Length": str(file.size)}
            return web.Response(status=200, headers=headers)
        try:
            async with self.files.download(file) as download:
                response = web.StreamResponse(status=200, headers=headers)
                response.content_type = download.content_type.split(";", 1)[0].strip()
                if download.length is not None:
                    response.content_length = download.length
                return await self._stream(request, response, download, file_id)
        except DownloadRefused as exc:
            log.warning("file link for %s: download refused (%s)", file_id, exc.reason)
            return web.Response(status=502, text="The file could not be fetched from Slack.\n")

    async def _stream(
        self, request: web.Request, response: web.StreamResponse, download: Download, file_id: str
    ) -> web.StreamResponse:
        """Slack's bytes to the fetcher as they come. A fetcher that stops reading for
        WRITE_TIMEOUT_SECONDS is cut off, so it holds neither a download nor a slot."""
        prepared = False
        try:
            async for chunk in download.chunks():
                if not prepared:
                    await response.prepare(request)
                    prepared = True
                async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
                    await response.write(chunk)
        except DownloadRefused as exc:
            if not prepared:
                raise
            # Too late for a status: cutting the connection short tells the fetcher.
            log.warning("file link for %s: cut short (%s)", file_id, exc.reason)
            _cut(request)
            return response
        except TimeoutError:
            log.warning("file link for %s: the fetcher stopped reading; cut off", file_id)
            _cut(request)
            return response
        if not prepared:
            await response.prepare(request)
        await response.write_eof()
        return response


def attachment(name: str) -> str:
    """`Content-Disposition: attachment`: a browser that opens the link saves the file instead
    of rendering it on PUBLIC_URL's origin (an SVG or HTML file could run script there)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:100]
    return f'attachment; filename="{safe or "file"}"'


def _cut(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()
