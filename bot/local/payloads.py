"""What Slack sends an app, built in one place: the signature on every request, slash command
forms, Events API envelopes and the message events in them, interactivity payloads
(block_actions, shortcut, view_submission, with the view's state) and Socket Mode envelopes.

Pure functions of what they are given (ids, names, texts, a response_url, a trigger_id): the
stand-in fills them from its workspace (`bot.local.server`) for `python -m bot try`, and the
tests from theirs (`tests/support/harness.py`). Fields come in the order Slack sends them.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode


@dataclass(frozen=True)
class Enterprise:
    """The Enterprise Grid org a workspace belongs to, as payloads name it; `org_install`: the
    app is installed org-wide (payloads then say `is_enterprise_install`)."""

    id: str
    name: str
    org_install: bool = False


VERIFICATION_TOKEN = "standin-verification-token"
"""The deprecated verification token Slack still puts in payloads; apps ignore it."""
TEAM_DOMAIN = "sandbox-team"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


# -- signing --------------------------------------------------------------------------------


def signature(body: str, timestamp: int | str, secret: str) -> str:
    """Slack's `X-Slack-Signature`: `v0=` and the HMAC-SHA256 of `v0:timestamp:body`."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(
    body: str, secret: str, content_type: str, timestamp: int | None = None
) -> dict[str, str]:
    """The headers Slack sends with every request to an app (the timestamp: now, by default)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature(body, ts, secret),
    }


def form_body(payload: dict[str, Any]) -> str:
    """An interactivity payload as Slack POSTs it: a form with one field, `payload`, of JSON."""
    return urlencode({"payload": json.dumps(payload)})


# -- slash commands and events ----------------------------------------------------------------


def slash_command(
    *,
    command: str,
    text: str,
    team_id: str,
    channel_id: str,
    channel_name: str,
    user_id: str,
    user_name: str,
    app_id: str,
    response_url: str,
    trigger_id: str,
    token: str = VERIFICATION_TOKEN,
    enterprise: Enterprise | None = None,
) -> dict[str, str]:
    """Every field of a slash command (form-encoded over HTTP, JSON in Socket Mode); in an
    Enterprise Grid workspace also the enterprise's id and name, and whether the app is
    installed org-wide."""
    fields = {"token": token, "team_id": team_id, "team_domain": TEAM_DOMAIN}
    if enterprise is not None:
        fields.update(enterprise_id=enterprise.id, enterprise_name=enterprise.name)
    return {
        **fields,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": app_id,
        "is_enterprise_install": "true" if enterprise and enterprise.org_install else "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def message_event(
    message: dict[str, Any], *, channel: str, team_id: str, thread_ts: str | None,
    channel_type: str = "channel",
) -> dict[str, Any]:  # fmt: skip
    """The `message` event Slack delivers for a person's stored message (a reply when
    `thread_ts` is given); `channel_type` "im" for a DM to the app (`message.im`)."""
    ts = message["ts"]
    event: dict[str, Any] = {
        "type": "message", "channel": channel, "user": message["user"], "text": message["text"],
        "ts": ts, "event_ts": ts,
    }  # fmt: skip
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
        event["parent_user_id"] = message.get("parent_user_id")
    event.update(
        channel_type=channel_type, team=team_id, client_msg_id=message["client_msg_id"],
        blocks=copy.deepcopy(message["blocks"]),
    )  # fmt: skip
    return event


def event_callback(
    event: dict[str, Any],
    *,
    team_id: str,
    app_id: str,
    bot_user_id: str,
    event_id: str,
    token: str = VERIFICATION_TOKEN,
    event_context: str | None = None,
    enterprise: Enterprise | None = None,
) -> dict[str, Any]:
    """The Events API envelope around `event`, as Slack POSTs it to the app. In an Enterprise
    Grid workspace it names the enterprise; for an org-wide install the authorization names
    no team (Bolt then authorizes by the enterprise)."""
    org_install = enterprise is not None and enterprise.org_install
    envelope: dict[str, Any] = {"token": token, "team_id": team_id}
    if enterprise is not None:
        envelope["enterprise_id"] = enterprise.id
    envelope.update({
        "api_app_id": app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": enterprise.id if enterprise is not None else None,
                "team_id": None if org_install else team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": org_install,
            }
        ],
        "is_ext_shared_channel": False,
    })  # fmt: skip
    if event_context is not None:
        envelope["event_context"] = event_context
    return envelope


def function_executed(
    *,
    callback_id: str,
    inputs: dict[str, Any],
    function_execution_id: str,
    workflow_execution_id: str,
    app_id: str,
    bot_access_token: str,
    function_id: str = "Fn0MOTION",
    title: str = "Make a Motion video",
    input_parameters: list[dict[str, Any]] | None = None,
    output_parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The `function_executed` event a workflow step of the app's sends when it runs: the
    function as the manifest declares it, the step's inputs, the execution's ids and the
    short-lived token for it (Slack's own example has the same fields in the same order)."""
    now = int(time.time())
    return {
        "type": "function_executed",
        "function": {
            "id": function_id,
            "callback_id": callback_id,
            "title": title,
            "description": "",
            "type": "app",
            "input_parameters": input_parameters or [],
            "output_parameters": output_parameters or [],
            "app_id": app_id,
            "date_created": now - 86400,
            "date_updated": now - 86400,
            "date_deleted": 0,
        },
        "inputs": copy.deepcopy(inputs),
        "function_execution_id": function_execution_id,
        "workflow_execution_id": workflow_execution_id,
        "event_ts": f"{time.time():.6f}",
        "bot_access_token": bot_access_token,
    }


def app_home_opened(user: str, *, tab: str, view: dict[str, Any] | None) -> dict[str, Any]:
    """The event Slack sends each time someone opens the app's tab (with the Home view, once
    one was published)."""
    event: dict[str, Any] = {
        "type": "app_home_opened",
        "user": user,
        "channel": "D0HOME",
        "tab": tab,
        "event_ts": str(time.time()),
    }
    if view is not None:
        event["view"] = view
    return event


def app_uninstalled() -> dict[str, Any]:
    """The event Slack sends when a workspace removes the app (its tokens are already dead)."""
    return {"type": "app_uninstalled", "event_ts": f"{time.time():.6f}"}


def tokens_revoked(*, bot: Sequence[str] = (), oauth: Sequence[str] = ()) -> dict[str, Any]:
    """The event Slack sends when tokens are revoked: the bot's (`bot`: its user ids) and/or
    people's own (`oauth`: their user ids)."""
    return {
        "type": "tokens_revoked",
        "tokens": {"oauth": list(oauth), "bot": list(bot)},
        "event_ts": f"{time.time():.6f}",
    }


# -- interactivity ----------------------------------------------------------------------------


def team(team_id: str, enterprise: Enterprise | None = None) -> dict[str, str]:
    """The `team` of an interactivity payload (with the enterprise's id in Enterprise Grid)."""
    shape = {"id": team_id, "domain": TEAM_DOMAIN}
    if enterprise is not None:
        shape.update(enterprise_id=enterprise.id, enterprise_name=enterprise.name)
    return shape


def grid_fields(enterprise: Enterprise | None) -> dict[str, Any]:
    """What an interactivity payload adds in Enterprise Grid: the enterprise and whether the
    app is installed org-wide (nothing outside Grid, as the payloads always were here)."""
    if enterprise is None:
        return {}
    return {
        "enterprise": {"id": enterprise.id, "name": enterprise.name},
        "is_enterprise_install": enterprise.org_install,
    }


def user(user_id: str, user_name: str, team_id: str) -> dict[str, str]:
    return {"id": user_id, "username": user_name, "team_id": team_id}


def button(action_id: str, *, block_id: str, value: str | None = None) -> dict[str, Any]:
    """One pressed button, as `actions` lists it."""
    pressed: dict[str, Any] = {"action_id": action_id, "block_id": block_id}
    if value is not None:
        pressed["value"] = value
    pressed.update(type="button", action_ts=str(time.time()))
    return pressed


def block_actions(
    *,
    team_id: str,
    user_id: str,
    user_name: str,
    app_id: str,
    container: dict[str, Any],
    trigger_id: str,
    actions: list[dict[str, Any]],
    source: dict[str, Any],
    token: str = VERIFICATION_TOKEN,
    enterprise: Enterprise | None = None,
) -> dict[str, Any]:
    """A `block_actions` payload. `source` is where the press happened: `channel`, `message`
    and `response_url` for a message, `view` for a modal or the Home tab."""
    return {
        "type": "block_actions",
        "team": team(team_id, enterprise),
        "user": user(user_id, user_name, team_id),
        "api_app_id": app_id,
        "token": token,
        "container": container,
        "trigger_id": trigger_id,
        **source,
        "actions": actions,
        **grid_fields(enterprise),
    }


def shortcut(
    callback_id: str,
    *,
    team_id: str,
    user_id: str,
    user_name: str,
    trigger_id: str,
    token: str = VERIFICATION_TOKEN,
    enterprise: Enterprise | None = None,
) -> dict[str, Any]:
    """A global shortcut (the lightning menu): no channel, a fresh trigger_id."""
    return {
        "type": "shortcut",
        "token": token,
        "action_ts": str(time.time()),
        "team": team(team_id, enterprise),
        "user": user(user_id, user_name, team_id),
        "is_enterprise_install": False,
        "enterprise": None,
        **grid_fields(enterprise),
        "callback_id": callback_id,
        "trigger_id": trigger_id,
    }


def view_submission(
    view: dict[str, Any],
    *,
    team_id: str,
    user_id: str,
    user_name: str,
    app_id: str,
    trigger_id: str,
    response_urls: list[dict[str, Any]],
    token: str = VERIFICATION_TOKEN,
    enterprise: Enterprise | None = None,
) -> dict[str, Any]:
    """A `view_submission` of `view` (its `state` already filled, see `view_state`)."""
    return {
        "type": "view_submission",
        "team": team(team_id, enterprise),
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": app_id,
        "token": token,
        "trigger_id": trigger_id,
        "view": view,
        "response_urls": response_urls,
        "is_enterprise_install": False,
        **grid_fields(enterprise),
    }


def view_state(
    view: dict[str, Any],
    answers: dict[str, str | None],
    file_object: Callable[[str], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`view.state.values` as Slack builds it from the inputs: every input block, each
    element's state by its type (an untouched field has no value). `answers` are by block_id;
    a file_input's answer is file ids, comma-separated, shown through `file_object`; a
    multi-select's, ids; checkboxes', the values of the ticked options."""
    values: dict[str, Any] = {}
    for block in view.get("blocks") or []:
        if block.get("type") != "input":
            continue
        element = block["element"]
        kind, answer = element["type"], answers.get(block["block_id"])
        state: dict[str, Any] = {"type": kind}
        if kind == "static_select":
            options = {o["value"]: o for o in element.get("options") or []}
            state["selected_option"] = options.get(answer or "") if answer else None
        elif kind == "conversations_select":
            state["selected_conversation"] = answer
        elif kind in ("multi_conversations_select", "multi_users_select"):
            picked = "selected_conversations" if "conversations" in kind else "selected_users"
            state[picked] = [i for i in (answer or "").split(",") if i]
        elif kind == "checkboxes":  # an answer names the ticked options' values
            ticked = set((answer or "").split(","))
            boxes = element.get("options") or []
            state["selected_options"] = [o for o in boxes if o["value"] in ticked]
        elif kind == "file_input":
            ids = [i for i in (answer or "").split(",") if i]
            state["files"] = [file_object(i) if file_object else {"id": i} for i in ids]
        else:
            state["value"] = answer
        values[block["block_id"]] = {element["action_id"]: state}
    return values


# -- Socket Mode ------------------------------------------------------------------------------


def socket_envelope(
    type: str,
    payload: dict[str, Any],
    *,
    envelope_id: str,
    accepts_response_payload: bool,
    retry_attempt: int = 0,
    retry_reason: str | None = None,
) -> dict[str, Any]:
    """One Socket Mode envelope around what Slack would have POSTed in HTTP mode. Events (and
    any retry) carry `retry_attempt` and `retry_reason` ("timeout" for a retry, by default)."""
    envelope: dict[str, Any] = {
        "envelope_id": envelope_id,
        "payload": copy.deepcopy(payload),
        "type": type,
        "accepts_response_payload": accepts_response_payload,
    }
    if type == "events_api" or retry_attempt:
        envelope["retry_attempt"] = retry_attempt
        envelope["retry_reason"] = (
            retry_reason if retry_reason is not None else ("timeout" if retry_attempt else "")
        )
    return envelope


def shown_answers(view: dict[str, Any]) -> dict[str, str | None]:
    """What each field of a form holds as it was opened: Slack submits a field's initial value
    when it is left untouched."""
    found: dict[str, str | None] = {}
    for block in view.get("blocks") or []:
        element = block.get("element") or {}
        for key in ("initial_conversations", "initial_users"):
            if key in element:
                found[block["block_id"]] = ",".join(element[key])
        if "initial_options" in element:
            found[block["block_id"]] = ",".join(o["value"] for o in element["initial_options"])
        for key in ("initial_conversation", "initial_value"):
            if key in element:
                found[block["block_id"]] = element[key]
    return found
