"""Signed, expiring tokens for the app's own public links (`PUBLIC_URL/files/<token>`,
`PUBLIC_URL/v/<token>`).

Motion fetches attachments without headers or cookies, and a download link must keep working in
an old thread, so the proof travels inside the URL: a compact JSON payload, its expiry and an
HMAC over both. The key is derived from the app's own secret (never the secret itself), and each
kind of link signs with its own key, so a file token can never be replayed as a video token.
Verification is constant-time and needs no database: a tampered or expired token is refused
before anything else is touched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

FILE_TOKEN_SECONDS = 24 * 3600  # SPEC: a file link expires after 24 hours


class BadToken(Exception):
    """The token was not made by this app, was altered, or has expired; `reason` says which
    (for the log line, never for the caller, who only ever sees 403)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class LinkSigner:
    """Makes and checks tokens of one app; `secret` is the signing secret or the bot token."""

    secret: str = field(repr=False)
    clock: Callable[[], float] = time.time

    def _key(self, kind: str) -> bytes:
        return hmac.new(self.secret.encode(), f"motion-bot link:{kind}".encode(), "sha256").digest()

    def sign(self, kind: str, payload: Mapping[str, Any], ttl_seconds: float | None) -> str:
        """A token for `payload`; `ttl_seconds=None` never expires (download links in old
        threads must keep working; they reveal nothing Motion's own answer would not)."""
        body = dict(payload)
        if ttl_seconds is not None:
            body["exp"] = int(self.clock() + ttl_seconds)
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        mac = hmac.new(self._key(kind), raw, hashlib.sha256).digest()[:20]
        return f"{_b64(raw)}.{_b64(mac)}"

    def verify(self, kind: str, token: str, *, allow_expired: bool = False) -> dict[str, Any]:
        """The payload of a good token, or BadToken. `allow_expired`: the app reading back a
        token it made (to sign it again), never an answer to a caller."""
        text, dot, mac_text = token.partition(".")
        if not dot or not text or not mac_text or len(token) > 2000:
            raise BadToken("not a token")
        try:
            raw, mac = _unb64(text), _unb64(mac_text)
        except (ValueError, TypeError):
            raise BadToken("not base64") from None
        if _b64(raw) != text or _b64(mac) != mac_text:
            # The last character of unpadded base64 has spare bits: any other spelling of the
            # same bytes is a changed token, refused like one.
            raise BadToken("not canonical base64")
        expected = hmac.new(self._key(kind), raw, hashlib.sha256).digest()[:20]
        if not hmac.compare_digest(mac, expected):
            raise BadToken("signature does not match")
        try:
            payload = json.loads(raw)
        except ValueError:
            raise BadToken("payload is not JSON") from None
        if not isinstance(payload, dict):
            raise BadToken("payload is not an object")
        expires = payload.pop("exp", None)
        if expires is not None and not isinstance(expires, int):
            raise BadToken("expired")
        if expires is not None and not allow_expired and self.clock() >= expires:
            raise BadToken("expired")
        return payload


def signer_for(signing_secret: str | None, bot_token: str) -> LinkSigner:
    """HTTP mode signs with the signing secret; Socket Mode (which may have none) with the bot
    token. Either way the key is an HMAC of it, so a token reveals nothing about the secret."""
    return LinkSigner(signing_secret or bot_token)
