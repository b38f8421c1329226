"""The body of a create or a followup, and how a refused followup becomes a new request."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

from bot.motion.limits import (
    EXTENSION_TYPES,
    MAX_ATTACHMENT_NAME,
    MAX_ATTACHMENTS,
    MAX_PROMPT,
)


@dataclass(frozen=True)
class FileAttachment:
    """A file the app re-hosts for Motion (a Slack file behind `PUBLIC_URL/files/<token>`):
    unlike an `--attach` link, its name and type come from the file itself, not the URL."""

    url: str
    name: str | None = None
    type: str | None = None  # image | video | audio | file
    content_type: str | None = None

    def to_body(self) -> dict[str, str]:
        item = {"url": self.url}
        if self.name:
            item["name"] = within_limit(self.name, MAX_ATTACHMENT_NAME)
        if self.type:
            item["type"] = self.type
        if self.content_type:
            item["content_type"] = self.content_type
        return item

    def to_json(self) -> dict[str, str | None]:
        return {
            "url": self.url, "name": self.name, "type": self.type,
            "content_type": self.content_type,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileAttachment:
        return cls(data["url"], data.get("name"), data.get("type"), data.get("content_type"))


@dataclass(frozen=True)
class MotionRequest:
    """What a person asked for, already checked against Motion's documented rules."""

    prompt: str
    style_url: str | None = None
    attachments: tuple[str, ...] = ()
    aspect: str | None = None
    duration: str | None = None
    files: tuple[FileAttachment, ...] = ()  # Slack files, after the `--attach` links

    @property
    def attachment_count(self) -> int:
        """What Motion's limit of 10 counts: `--attach` links and files together."""
        return len(self.attachments) + len(self.files)

    def with_files(self, files: tuple[FileAttachment, ...]) -> MotionRequest:
        return dataclasses.replace(self, files=(*self.files, *files))

    def to_body(self) -> dict[str, Any]:
        """The JSON body for create and followups; optional fields only when asked for."""
        body: dict[str, Any] = {"prompt": self.prompt}
        if self.style_url:
            body["style_reference_url"] = self.style_url
        if self.attachments:
            body["attachments"] = [_attachment(url) for url in self.attachments]
        if self.files:
            body.setdefault("attachments", []).extend(f.to_body() for f in self.files)
        if self.aspect:
            body["aspect_ratio"] = self.aspect
        if self.duration:
            body["duration"] = self.duration
        return body

    def to_json(self) -> dict[str, Any]:
        """How a request is kept in the database (not Motion's wire format)."""
        return {
            "prompt": self.prompt,
            "style_url": self.style_url,
            "attachments": list(self.attachments),
            "aspect": self.aspect,
            "duration": self.duration,
            **({"files": [f.to_json() for f in self.files]} if self.files else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MotionRequest:
        return cls(
            prompt=data["prompt"],
            style_url=data.get("style_url"),
            attachments=tuple(data.get("attachments") or ()),
            aspect=data.get("aspect"),
            duration=data.get("duration"),
            files=tuple(FileAttachment.from_json(f) for f in data.get("files") or ()),
        )

    def merged_with(self, followup: MotionRequest) -> MotionRequest:
        """A new job from this request plus a followup that Motion refused on a failed job:
        both prompts, the followup's options where it set them, all attachments, within
        Motion's limits."""
        prompt = within_limit(f"{self.prompt}\n\n{followup.prompt}", MAX_PROMPT)
        links = (*self.attachments, *followup.attachments)[:MAX_ATTACHMENTS]
        return MotionRequest(
            prompt=prompt,
            style_url=followup.style_url or self.style_url,
            attachments=links,
            aspect=followup.aspect or self.aspect,
            duration=followup.duration or self.duration,
            files=(*self.files, *followup.files)[: MAX_ATTACHMENTS - len(links)],
        )


def within_limit(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-16 units (Motion's count), never inside a character."""
    encoded = text.encode("utf-16-le")
    if len(encoded) <= 2 * limit:
        return text
    return encoded[: 2 * limit].decode("utf-16-le", "ignore")


def _attachment(url: str) -> dict[str, str]:
    item = {"url": url}
    name = within_limit(unquote(urlparse(url).path.rsplit("/", 1)[-1]), MAX_ATTACHMENT_NAME)
    if name:
        item["name"] = name
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        for kind, extensions in EXTENSION_TYPES.items():
            if extension in extensions:
                item["type"] = kind
    return item
