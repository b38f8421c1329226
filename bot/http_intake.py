"""Slack's HTTP requests on their way into Bolt: the signature first, then the shape.

Bolt answers a signed request whose body it cannot read with a 500 (and a traceback), and hands
a slash command without a user or a channel to the listener. Both are refused here with a 400
and one log line, and nothing is recorded. The signature is checked before the shape, so an
unsigned request learns nothing about what the app expects.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from slack_sdk.signature import SignatureVerifier

log = logging.getLogger(__name__)


class Malformed(ValueError):
    """The request is signed but not one Slack would send; the message says what is wrong."""


def is_ssl_check(body: str, content_type: str) -> bool:
    """Slack's check of a slash command's certificate: answered 200 before anything else, as
    Bolt does (it may come unsigned, and it carries no work)."""
    if "application/x-www-form-urlencoded" not in content_type:
        return False
    return dict(parse_qsl(body)).get("ssl_check") == "1"


def signed(verifier: SignatureVerifier | None, body: str, headers: dict[str, str]) -> bool:
    if verifier is None:  # Socket Mode: Slack's own connection is the proof
        return True
    return verifier.is_valid_request(body, headers)


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
