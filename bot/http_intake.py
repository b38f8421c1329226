"""Slack's HTTP requests on their way into Bolt: the signature first, then the shape.

Anyone on the internet can post to `/slack/events`, so nothing of a request is parsed beyond what
the signature check needs until the signature holds: the two headers are checked as text first
(a timestamp that is not a number, a signature that is not `v0=` and 64 hex digits: 401 without
reading the body), then at most `MAX_BODY_BYTES` are read — on the wire and after
decompression — and the HMAC is computed over exactly those bytes. Only a signed request is
decoded, recognised as Slack's `ssl_check`, and checked for a shape Bolt can read (Bolt answers
a signed body it cannot read with a 500 and a traceback, and hands a slash command without a
user or a channel to the listener). Every refusal is one log line, never a traceback.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

log = logging.getLogger(__name__)

# Slack's largest payloads (a form's state, a 40,000-character message event with its blocks)
# are far below this; anything larger is not Slack.
MAX_BODY_BYTES = 1024 * 1024
# A signature older or newer than this is refused, as Slack's own verifier does.
MAX_CLOCK_SKEW_SECONDS = 300
# Above this many bytes the HMAC and the inflating run on a worker thread (both release the
# GIL), so a stranger's large body never holds the event loop.
OFF_LOOP_BYTES = 64 * 1024
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_ENCODINGS = {"": None, "identity": None, "gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class Refused(Exception):
    """The request is answered `status` with `answer`; `reason` is the log line's detail."""

    def __init__(self, status: int, reason: str, answer: str) -> None:
        super().__init__(reason)
        self.status, self.reason, self.answer = status, reason, answer

    def response(self) -> web.Response:
        response = web.Response(status=self.status, text=self.answer + "\n")
        if self.status == 413:
            response.force_close()  # the rest of an oversized body is not read
        return response


class Malformed(ValueError):
    """The request is signed but not one Slack would send; the message says what is wrong."""


def _unsigned(reason: str) -> Refused:
    return Refused(401, reason, "invalid signature")


def signature_headers(headers: Mapping[str, str], now: float) -> tuple[str, str]:
    """The timestamp and signature, when both could be Slack's; Refused(401) otherwise."""
    stamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not stamp:
        return _fail("no X-Slack-Request-Timestamp")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        return _fail("X-Slack-Request-Timestamp is not a number")
    if abs(now - int(stamp)) > MAX_CLOCK_SKEW_SECONDS:
        return _fail("X-Slack-Request-Timestamp is more than 5 minutes off")
    if not signature:
        return _fail("no X-Slack-Signature")
    if not (signature.isascii() and _SIGNATURE.fullmatch(signature)):
        return _fail("X-Slack-Signature is not v0= and 64 hex digits")
    return stamp, signature


def _fail(reason: str) -> tuple[str, str]:
    raise _unsigned(reason)


async def read_capped(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body as sent, at most `limit` bytes (413 beyond), inflated when it is gzip or
    deflate (413 when it would inflate beyond `limit`; 415 for another encoding)."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in _ENCODINGS:
        raise Refused(415, f"Content-Encoding {encoding[:20]!r}", "unsupported content encoding")
    if request.content_length is not None and request.content_length > limit:
        raise Refused(413, f"Content-Length {request.content_length}", "request body too large")
    raw = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        raw += chunk
        if len(raw) > limit:
            raise Refused(413, f"more than {limit} bytes", "request body too large")
    wbits = _ENCODINGS[encoding]
    if wbits is None:
        return bytes(raw)
    # Inflating is off the loop whatever the size on the wire: 2 KB can inflate to megabytes.
    return await asyncio.to_thread(_inflate, bytes(raw), wbits, limit)


def _inflate(raw: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise Refused(400, "body does not inflate", "malformed request body") from None
    if len(body) > limit or inflater.unconsumed_tail:
        raise Refused(413, f"inflates beyond {limit} bytes", "request body too large")
    return body


def signature_holds(secret: bytes, stamp: str, signature: str, body: bytes) -> bool:
    """Slack's HMAC-SHA256 of `v0:{timestamp}:{body}`, compared in constant time."""
    digest = hmac.new(secret, b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
    return hmac.compare_digest("v0=" + digest.hexdigest(), signature)


async def _maybe_off_loop(size: int, fn: Callable[..., Any], *args: Any) -> Any:
    if size > OFF_LOOP_BYTES:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


async def verified_body(
    request: web.Request, secret: bytes, *, now: Callable[[], float] = time.time
) -> str:
    """The body of a request Slack signed, as text; Refused for anything else. Slack sends
    UTF-8 whatever charset a Content-Type names, so a bogus charset costs nothing here."""
    stamp, signature = signature_headers(request.headers, now())
    body = await read_capped(request)
    if not await _maybe_off_loop(len(body), signature_holds, secret, stamp, signature, body):
        raise _unsigned("the signature does not match")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "body is not UTF-8", "malformed request body") from None


def is_ssl_check(body: str, content_type: str) -> bool:
    """Slack's check of a slash command's certificate: answered 200 with no work."""
    if "application/x-www-form-urlencoded" not in content_type:
        return False
    return dict(parse_qsl(body)).get("ssl_check") == "1"


def check_shape(body: str, content_type: str) -> None:
    """Raise Malformed when Bolt could not make sense of the body."""
    if "application/json" in content_type:
        payload = _json(body, "the JSON body")
    else:
        form = dict(parse_qsl(body, keep_blank_values=True))
        if "payload" in form:
            payload = _json(form["payload"], "the payload= field")
        elif "command" in form:
            missing = [k for k in ("user_id", "channel_id") if not form.get(k)]
            if missing:
                raise Malformed(f"slash command without {' and '.join(missing)}")
            return
        else:
            raise Malformed("form body with neither payload= nor command=")
    if not isinstance(payload, dict):
        raise Malformed("body is not a JSON object")
    if payload.get("type") == "event_callback" and not isinstance(payload.get("event"), dict):
        raise Malformed("event_callback without an event")


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Malformed(f"{what} is not valid JSON") from exc


@dataclass
class RefusalLog:
    """One log line per refusal, but a flood of them costs one line per `every` seconds: the
    first refusal of a period is logged, the rest are counted into the next period's line."""

    every: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _period_start: float = field(default=float("-inf"))
    _quiet: int = 0

    def refused(self, remote: str | None, status: int, reason: str) -> None:
        now = self.clock()
        if now - self._period_start < self.every:
            self._quiet += 1
            return
        more = f" ({self._quiet} more refused in the last period)" if self._quiet else ""
        log.warning(
            "refused a request to /slack/events from %s: %d %s%s", remote, status, reason, more
        )
        self._period_start, self._quiet = now, 0
