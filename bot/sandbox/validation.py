"""The body rules of a create or followup call, answered as the real API answers them.

This module owns what ``motion-api.md`` says a request body must be: the prompt, the style
reference, attachments, the enums and ``design_md``. A bad body is reported as zod issues (the
real API's validator), so a client can be tested against exactly what it will be told. The
limits themselves come from ``bot.motion`` (the product's one statement of the wire format);
that import goes one way, the product never imports the sandbox.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from bot.motion import (
    ASPECTS,
    ATTACHMENT_TYPES,
    DURATIONS,
    MAX_ATTACHMENT_NAME,
    MAX_ATTACHMENT_URL,
    MAX_ATTACHMENTS,
    MAX_PROMPT,
    is_youtube,
    js_length,
)

MAX_DESIGN_MD_CHARS = 200_000
DESIGN_SYSTEMS = (
    "mosaic",
    "apple",
    "claude",
    "cursor",
    "linear",
    "vercel",
    "stripe",
    "figma",
    "notion",
    "spotify",
    "supabase",
    "raycast",
    "framer",
    "resend",
    "mintlify",
    "sentry",
    "tesla",
    "nike",
    "shopify",
    "airbnb",
    "posthog",
)

# A field that is absent, as opposed to present and null (zod tells the two apart).
_MISSING = object()
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def validate_request(body: object) -> list[dict[str, Any]]:
    """All the problems with a create/followup body, as zod issues; empty means valid.

    Unknown fields are ignored, like the real API. Optional fields must be absent, not null.
    """
    if not isinstance(body, dict):
        return [_invalid_type([], "object", body)]
    _, issues = _check_string(body, "prompt", [], required=True, minimum=1, maximum=MAX_PROMPT)
    style, style_issues = _check_string(body, "style_reference_url", [])
    issues += style_issues
    if style is not None and not is_youtube(style):
        issues.append(
            custom_issue(["style_reference_url"], "style_reference_url must be a YouTube URL")
        )
    issues += _attachments_issues(body)
    issues += _check_enum(body, "aspect_ratio", [], ASPECTS)
    issues += _check_enum(body, "duration", [], DURATIONS)
    issues += _check_enum(body, "design_system_id", [], DESIGN_SYSTEMS)
    issues += _design_md_issues(body)
    return issues


def parse_body(raw: bytes) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The body as a JSON object (None when it is not one) and its issues; an empty body is
    a missing one ("Required"), bytes that are not JSON are one custom issue."""
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else _MISSING
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, [custom_issue([], "Request body must be valid JSON")]
    issues = validate_request(body)
    return (body if isinstance(body, dict) else None), issues


def custom_issue(path: list[str | int], message: str) -> dict[str, Any]:
    """A zod `custom` issue: a rule beyond types and lengths (https only, JSON, fetchable)."""
    return {"code": "custom", "message": message, "path": path}


def _received_type(value: object) -> str:
    if value is _MISSING:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _invalid_type(path: list[str | int], expected: str, value: object) -> dict[str, Any]:
    received = _received_type(value)
    message = "Required" if value is _MISSING else f"Expected {expected}, received {received}"
    return {
        "code": "invalid_type",
        "expected": expected,
        "received": received,
        "path": path,
        "message": message,
    }


def _string_issues(
    path: list[str | int], value: str, minimum: int | None, maximum: int | None
) -> list[dict[str, Any]]:
    length = js_length(value)
    common = {"type": "string", "inclusive": True, "exact": False, "path": path}
    if minimum is not None and length < minimum:
        message = f"String must contain at least {minimum} character(s)"
        return [{"code": "too_small", "minimum": minimum, **common, "message": message}]
    if maximum is not None and length > maximum:
        message = f"String must contain at most {maximum} character(s)"
        return [{"code": "too_big", "maximum": maximum, **common, "message": message}]
    return []


def _check_string(
    body: dict[str, Any],
    key: str,
    path: list[str | int],
    *,
    required: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
) -> tuple[str | None, list[dict[str, Any]]]:
    """Check one string field; optional means absent, not null (zod `.optional()`)."""
    value = body.get(key, _MISSING)
    if value is _MISSING and not required:
        return None, []
    if not isinstance(value, str):
        return None, [_invalid_type([*path, key], "string", value)]
    return value, _string_issues([*path, key], value, minimum, maximum)


def _check_enum(
    body: dict[str, Any], key: str, path: list[str | int], options: tuple[str, ...]
) -> list[dict[str, Any]]:
    value = body.get(key, _MISSING)
    if value is _MISSING or value in options:
        return []
    expected = " | ".join(f"'{option}'" for option in options)
    if not isinstance(value, str):
        return [_invalid_type([*path, key], expected, value)]
    return [
        {
            "received": value,
            "code": "invalid_enum_value",
            "options": list(options),
            "path": [*path, key],
            "message": f"Invalid enum value. Expected {expected}, received '{value}'",
        }
    ]


def _attachments_issues(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The `attachments` array: its type, its length, then each attachment in order."""
    attachments = body.get("attachments", _MISSING)
    if attachments is _MISSING:
        return []
    if not isinstance(attachments, list):
        return [_invalid_type(["attachments"], "array", attachments)]
    issues: list[dict[str, Any]] = []
    if len(attachments) > MAX_ATTACHMENTS:
        issues.append(
            {
                "code": "too_big",
                "maximum": MAX_ATTACHMENTS,
                "type": "array",
                "inclusive": True,
                "exact": False,
                "message": f"Array must contain at most {MAX_ATTACHMENTS} element(s)",
                "path": ["attachments"],
            }
        )
    for index, attachment in enumerate(attachments):
        issues += _attachment_issues(index, attachment)
    return issues


def _attachment_issues(index: int, attachment: object) -> list[dict[str, Any]]:
    path: list[str | int] = ["attachments", index]
    if not isinstance(attachment, dict):
        return [_invalid_type(path, "object", attachment)]
    url, issues = _check_string(attachment, "url", path, required=True, maximum=MAX_ATTACHMENT_URL)
    if url is not None and not issues:
        issues += _attachment_url_issues([*path, "url"], url)
    issues += _check_string(attachment, "name", path, maximum=MAX_ATTACHMENT_NAME)[1]
    issues += _check_enum(attachment, "type", path, ATTACHMENT_TYPES)
    issues += _check_string(attachment, "content_type", path)[1]
    return issues


def _attachment_url_issues(path: list[str | int], url: str) -> list[dict[str, Any]]:
    """A URL Motion can fetch: absolute, and https (plain http only to a local test's app)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return [
            {
                "validation": "url",
                "code": "invalid_string",
                "message": "Invalid url",
                "path": path,
            }
        ]
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        return [custom_issue(path, "Attachment URL must use https")]
    return []


def _design_md_issues(body: dict[str, Any]) -> list[dict[str, Any]]:
    value = body.get("design_md", _MISSING)
    if value is _MISSING:
        return []
    if isinstance(value, str):
        return _string_issues(["design_md"], value, 1, MAX_DESIGN_MD_CHARS)
    if not isinstance(value, dict):
        return [_invalid_type(["design_md"], "string | object", value)]
    issues = _check_string(
        value, "content", ["design_md"], required=True, minimum=1, maximum=MAX_DESIGN_MD_CHARS
    )[1]
    return issues + _check_string(value, "filename", ["design_md"])[1]
