"""Signing a request the way Slack signs what it sends to an app."""

from __future__ import annotations

import hashlib
import hmac
import time


def signed_headers(
    body: str, secret: str, content_type: str, timestamp: int | None = None
) -> dict[str, str]:
    """The headers Slack sends with a request to an app: `v0=` HMAC-SHA256 of `v0:ts:body`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }
