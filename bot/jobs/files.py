"""Slack files turned into Motion attachments, checked at intake before anything is recorded.

Each file is looked up with `files.info` once, when the reply, mention or form arrives: a file
over 100 MB, a file the app may not read, or any file while PUBLIC_URL is unset refuses the whole
run with words that say what to do instead, so nothing is half-sent and nothing is counted.
A good file becomes `PUBLIC_URL/files/<token>` (signed, 24 hours) with its name and type.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from bot.file_links import FileLinks
from bot.jobs.requesting import requesting_enterprise
from bot.motion import MAX_ATTACHMENT_NAME, FileAttachment, MotionRequest
from bot.motion.request import within_limit
from bot.slack import messages
from bot.slack.files import FileUnreadable, SlackFile
from bot.store import within_request


class FileRefused(Exception):
    """The run cannot take these files; `message` says why and what to do instead."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# files.info at intake, within the request's budget (its writes keep a little of it); the rest
# of Slack's 3-s acknowledgement is ours.
INTAKE_SECONDS = 2.0


class FileIntake:
    def __init__(self, links: FileLinks) -> None:
        self.links = links

    async def attachments(
        self, team_id: str, file_ids: Sequence[str]
    ) -> tuple[FileAttachment, ...]:
        """The files as attachments, in the order given, or FileRefused for the first problem."""
        if not file_ids:
            return ()
        if not self.links.public_url:
            raise FileRefused(messages.no_public_url_for_files())
        enterprise_id = requesting_enterprise()  # files arrive with a request, from its workspace
        asking = asyncio.gather(
            *(self.links.files.info(file_id, team_id, enterprise_id) for file_id in file_ids),
            return_exceptions=True,
        )
        try:  # the answer to Slack waits on this: Slack retries a delivery unanswered in 3 s
            found = await asyncio.wait_for(asking, within_request(INTAKE_SECONDS))
        except TimeoutError:
            raise FileRefused(messages.files_busy()) from None
        files: list[SlackFile] = []
        for result in found:
            if isinstance(result, FileUnreadable):
                raise FileRefused(
                    messages.file_unreadable(result.code)
                    if result.permanent
                    else messages.files_busy()
                )
            if isinstance(result, BaseException):
                raise result
            if result.size > self.links.files.max_bytes:
                raise FileRefused(messages.file_too_large(result.title, result.size))
            files.append(result)
        return tuple(
            FileAttachment(
                url=self.links.url_for(team_id, file.id, enterprise_id),
                name=within_limit(file.title, MAX_ATTACHMENT_NAME),
                type=messages.file_kind(file.mimetype),
                content_type=file.mimetype,
            )
            for file in files
        )


def signed_again(request: MotionRequest, links: FileLinks) -> MotionRequest:
    """The request as it is sent now: each Slack file's link signed at this moment, so a
    run sent a day or more after its files were taken can still be fetched by Motion."""
    if not request.files:
        return request
    files = tuple(replace(f, url=links.signed_again(f.url)) for f in request.files)
    return replace(request, files=files)


def with_files(
    request: MotionRequest, files: tuple[FileAttachment, ...], limit: int
) -> MotionRequest:
    """The request with the files after its links; FileRefused above Motion's limit."""
    combined = request.with_files(files)
    if combined.attachment_count > limit:
        raise FileRefused(
            messages.too_many_attachments(len(request.attachments), len(combined.files), limit)
        )
    return combined


def file_ids_of(items: object) -> list[str]:
    """The ids in an event's (or a file_input's) `files` list, in order, each once."""
    ids: list[str] = []
    if isinstance(items, list):
        for item in items:
            file_id = item.get("id") if isinstance(item, dict) else None
            if isinstance(file_id, str) and file_id and file_id not in ids:
                ids.append(file_id)
    return ids
