"""The body of a create or a followup, and how a refused followup becomes a new request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

from bot.motion.limits import (
    _EXTENSION_TYPES,
    MAX_ATTACHMENT_NAME,
    MAX_ATTACHMENTS,
    MAX_PROMPT,
)


@dataclass(frozen=True)
class MotionRequest:
    """What a person asked for, already checked against Motion's documented rules."""

    prompt: str
    style_url: str | None = None
    attachments: tuple[str, ...] = ()
    aspect: str | None = None
    duration: str | None = None

    def to_body(self) -> dict[str, Any]:
        """The JSON body for create and followups; optional fields only when asked for."""
        body: dict[str, Any] = {"prompt": self.prompt}
        if self.style_url:
            body["style_reference_url"] = self.style_url
        if self.attachments:
            body["attachments"] = [_attachment(url) for url in self.attachments]
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
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MotionRequest:
        return cls(
            prompt=data["prompt"],
            style_url=data.get("style_url"),
            attachments=tuple(data.get("attachments") or ()),
            aspect=data.get("aspect"),
            duration=data.get("duration"),
        )

    def merged_with(self, followup: MotionRequest) -> MotionRequest:
        """A new job from this request plus a followup that Motion refused on a failed job:
        both prompts, the followup's options where it set them, all attachments, within
        Motion's limits."""
        prompt = within_limit(f"{self.prompt}\n\n{followup.prompt}", MAX_PROMPT)
        return MotionRequest(
            prompt=prompt,
            style_url=followup.style_url or self.style_url,
            attachments=(*self.attachments, *followup.attachments)[:MAX_ATTACHMENTS],
            aspect=followup.aspect or self.aspect,
            duration=followup.duration or self.duration,
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
        for kind, extensions in _EXTENSION_TYPES.items():
            if extension in extensions:
                item["type"] = kind
    return item
