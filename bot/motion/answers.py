"""What a status call answers, typed and read leniently (absent keys mean null / empty)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bot.motion.errors import AnswerLost, Retry
from bot.motion.limits import CLEARED_RIGHTS, MotionStatus

# A video credits a few dozen sources. Far more is not a list anyone reads: the first ones are
# kept (stored with the run, credited in the thread), the rest dropped, so one answer cannot
# grow the database row, the result message or the work of reading it without bound.
MAX_SOURCES = 500


@dataclass(frozen=True)
class Output:
    status: str | None
    download_url: str | None
    expires_at: str | None = None

    @property
    def ready(self) -> bool:
        return self.status == MotionStatus.COMPLETED and bool(self.download_url)


@dataclass(frozen=True)
class Usage:
    """Where a source is used in the video; every field may be missing."""

    start: float | str | None = None
    end: float | str | None = None
    scene: str | None = None
    placement: str | None = None

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Usage:
        first = _first_of(data)
        scene = first("scene", "scene_index", "scene_number", "scene_id")
        placement = first("placement", "composition", "position", "layer", "role")
        return cls(
            start=_time_or_none(first("start_seconds", "start", "start_time", "timestamp", "at", "time")),
            end=_time_or_none(first("end_seconds", "end", "end_time")),
            scene=str(scene) if scene is not None else None,
            placement=str(placement) if placement is not None else None,
        )  # fmt: skip


@dataclass(frozen=True)
class Source:
    """One `sources` entry, read leniently: beyond `source_kind` and `provider` the field names
    are not published, so likely spellings are tried and a missing field is never an error."""

    kind: str
    provider: str
    title: str | None = None
    url: str | None = None
    rights: str | None = None
    usages: tuple[Usage, ...] = ()

    @property
    def cleared(self) -> bool:
        return self.rights is not None and self.rights.strip().lower() in CLEARED_RIGHTS

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Source:
        first = _first_of(data)
        kind = str(first("source_kind", "kind", "type", "category") or "media").replace("_", " ")
        provider = str(first("provider", "provider_name", "source", "origin") or "unknown provider")
        title = first("title", "name", "display_name", "caption", "description")
        url = first("display_url", "source_url", "url", "page_url", "link")
        rights = first("rights_status", "rights", "license_status", "clearance", "license")
        if isinstance(rights, dict):
            rights = rights.get("status") or rights.get("name")
        raw_usages = first("usages", "usage", "placements")
        usages = [
            Usage.parse(u) for u in (raw_usages if isinstance(raw_usages, list) else [])
            if isinstance(u, dict)
        ]  # fmt: skip
        return cls(
            kind=kind,
            provider=provider,
            title=str(title) if title is not None else None,
            url=url if isinstance(url, str) else None,
            rights=str(rights) if rights is not None else None,
            usages=tuple(u for u in usages if u != Usage()),
        )


@dataclass(frozen=True)
class JobStatus:
    """A status answer, parsed leniently: absent keys mean null / empty. `sources` keeps the
    raw entries (with fields this app does not know yet), at most MAX_SOURCES of them;
    `credits` is their typed reading."""

    job_id: str
    status: str
    completed_at: str | None = None
    updated_at: str | None = None
    error: str | None = None
    pending_user_input: bool = False
    output: Output | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    sources_dropped: int = 0  # entries past MAX_SOURCES, left out of `sources`

    @property
    def download_url(self) -> str | None:
        return self.output.download_url if self.output and self.output.ready else None

    @property
    def render_failed(self) -> bool:
        return (
            self.status == MotionStatus.COMPLETED
            and self.output is not None
            and self.output.status == MotionStatus.FAILED
        )

    @property
    def credits(self) -> list[Source]:
        return [Source.parse(s) for s in self.sources]

    @classmethod
    def parse(cls, data: Any, job_id: str) -> JobStatus:
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            raise AnswerLost(
                "Motion answered a status call without a status", retry=Retry.LATER, body=data
            )
        output_data = data.get("output")
        output = None
        if isinstance(output_data, dict):
            output = Output(
                status=_str_or_none(output_data.get("status")),
                download_url=_str_or_none(output_data.get("download_url")),
                expires_at=_str_or_none(output_data.get("expires_at")),
            )
        listed = data.get("sources")
        sources = [s for s in listed if isinstance(s, dict)] if isinstance(listed, list) else []
        return cls(
            job_id=str(data.get("job_id") or job_id),
            status=data["status"],
            completed_at=_str_or_none(data.get("completed_at")),
            updated_at=_str_or_none(data.get("updated_at")),
            error=error_text(data.get("error")),
            pending_user_input=bool(data.get("pending_user_input")),
            output=output,
            sources=sources[:MAX_SOURCES],
            sources_dropped=max(0, len(sources) - MAX_SOURCES),
        )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _first_of(data: dict[str, Any]) -> Any:
    """A getter for the first of several spellings that holds a value."""

    def first(*keys: str) -> Any:
        for key in keys:
            value = data.get(key)
            if value not in (None, "", [], {}):
                return value
        return None

    return first


def _time_or_none(value: Any) -> float | str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    return str(value)


def error_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return _str_or_none(value.get("message")) or json.dumps(value)[:500]
    return str(value)
