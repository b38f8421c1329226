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
    js_length,
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
        prompt = f"{self.prompt}\n\n{followup.prompt}"
        while js_length(prompt) > MAX_PROMPT:
            prompt = prompt[: MAX_PROMPT - (js_length(prompt) - len(prompt)) - 1]
        return MotionRequest(
            prompt=prompt,
            style_url=followup.style_url or self.style_url,
            attachments=(*self.attachments, *followup.attachments)[:MAX_ATTACHMENTS],
            aspect=followup.aspect or self.aspect,
            duration=followup.duration or self.duration,
        )


def _attachment(url: str) -> dict[str, str]:
    item = {"url": url}
    name = unquote(urlparse(url).path.rsplit("/", 1)[-1])
    while js_length(name) > MAX_ATTACHMENT_NAME:
        name = name[:-1]
    if name:
        item["name"] = name
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        for kind, extensions in _EXTENSION_TYPES.items():
            if extension in extensions:
                item["type"] = kind
    return item
