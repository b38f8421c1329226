"""Slack's modals and Home tab in the local stand-in: `views.open`, `views.push`, `views.update`
and `views.publish`, with trigger ids that last 3 s and work once, and Slack's checks on a view.

`ViewMethods` owns the views and the trigger ids; the workspace's users come from the model it
is given.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from bot.local.model import TRIGGER_SECONDS, SlackError, WorkspaceModel

VIEW_BLOCK_LIMIT = 100  # blocks in a modal or the Home tab
_MODAL_TEXT_LIMITS = (("title", 24), ("submit", 24), ("close", 24))

BlockCheck = Callable[[list[Any]], list[str]]
"""Why Slack would refuse these blocks (each reason a sentence; none: accepted)."""


class ViewMethods:
    """The views.* Web API methods over one workspace model, and the views they keep."""

    def __init__(self, model: WorkspaceModel, block_problems: BlockCheck) -> None:
        """`block_problems`: why Slack would refuse a view's blocks, called on every view."""
        self.model = model
        self.block_problems = block_problems
        self.triggers: dict[str, tuple[float, str, bool]] = {}
        """trigger id → (issued, monotonic; whose interaction; used)."""
        self.kept: dict[str, dict[str, Any]] = {}  # view id → the view as Slack keeps it
        self.homes: dict[str, str] = {}  # user → the id of their published Home view

    def methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        """The Web API methods this object answers, by name."""
        return {
            "views.open": self.views_open,
            "views.push": self.views_push,
            "views.update": self.views_update,
            "views.publish": self.views_publish,
        }

    # -- scripting and inspection (any thread) -------------------------------------------------

    def issue_trigger(self, user: str = "") -> str:
        """A fresh trigger_id, as Slack puts in `user`'s command, shortcut or button payload."""
        with self.model.lock:
            trigger = (
                f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**9)}.{secrets.token_hex(16)}"
            )
            self.triggers[trigger] = (time.monotonic(), user, False)
            return trigger

    def view(self, view_id: str) -> dict[str, Any] | None:
        """A view opened, pushed, updated or published, as it is now."""
        with self.model.lock:
            found = self.kept.get(view_id)
            return copy.deepcopy(found) if found is not None else None

    def views(self, user: str | None = None) -> list[dict[str, Any]]:
        """Every modal opened or pushed (oldest first), for one user when given."""
        with self.model.lock:
            return [
                copy.deepcopy(v)
                for v in self.kept.values()
                if v["type"] == "modal" and (user is None or v["user"] == user)
            ]

    def home(self, user: str) -> dict[str, Any] | None:
        """The Home tab `user` sees, as last published."""
        with self.model.lock:
            view_id = self.homes.get(user)
            return copy.deepcopy(self.kept[view_id]) if view_id else None

    # -- Slack's checks ------------------------------------------------------------------------

    def check_view(self, view: Any) -> dict[str, Any]:
        """Slack's checks on a view: its shape, a modal's title (24), submit when it has inputs,
        100 blocks, private_metadata (3,000); `invalid_arguments` with the reasons."""
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except ValueError:
                raise SlackError("invalid_arguments") from None
        if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
            raise SlackError(
                "invalid_arguments", response_metadata={"messages": ["[ERROR] view type"]}
            )
        problems: list[str] = []
        blocks = view.get("blocks")
        if not isinstance(blocks, list):
            problems.append("missing required field: blocks [json-pointer:/view/blocks]")
            blocks = []
        if len(blocks) > VIEW_BLOCK_LIMIT:
            problems.append(
                f"no more than {VIEW_BLOCK_LIMIT} items allowed [json-pointer:/view/blocks]"
            )
        if view["type"] == "modal":
            problems += _modal_problems(view, blocks)
        metadata = view.get("private_metadata")
        if metadata is not None and (not isinstance(metadata, str) or len(metadata) > 3000):
            problems.append(
                "must be less than 3001 characters [json-pointer:/view/private_metadata]"
            )
        problems += self.block_problems(blocks)
        if problems:
            raise SlackError(
                "invalid_arguments",
                response_metadata={"messages": [f"[ERROR] {p}" for p in problems]},
            )
        return view

    # -- Web API methods (lock held) -----------------------------------------------------------

    def views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self.check_view(params.get("view"))
        if view["type"] != "modal":
            raise SlackError("invalid_arguments")
        user = self._take_trigger(params.get("trigger_id"))
        return {"view": self._keep(view, user)}

    def views_push(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.views_open(params)

    def views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self.check_view(params.get("view"))
        view_id = params.get("view_id")
        if not view_id and params.get("external_id"):
            view_id = next(
                (k for k, v in self.kept.items() if v.get("external_id") == params["external_id"]),
                None,
            )
        old = self.kept.get(view_id) if isinstance(view_id, str) else None
        if old is None:
            raise SlackError("not_found")
        if params.get("hash") and params["hash"] != old["hash"]:
            raise SlackError("hash_conflict")
        return {"view": self._keep(view, old["user"], old["id"])}

    def views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        user = params.get("user_id")
        if not isinstance(user, str) or user not in self.model.users:
            raise SlackError("user_not_found")
        view = self.check_view(params.get("view"))
        if view["type"] != "home":
            raise SlackError("invalid_arguments")
        old = self.homes.get(user)
        if params.get("hash") and old and params["hash"] != self.kept[old]["hash"]:
            raise SlackError("hash_conflict")
        kept = self._keep(view, user, old)
        self.homes[user] = kept["id"]
        return {"view": kept}

    def _take_trigger(self, trigger_id: Any) -> str:
        """The trigger's user; Slack's errors for an unknown, used or late trigger."""
        found = self.triggers.get(trigger_id) if isinstance(trigger_id, str) else None
        if found is None:
            raise SlackError("invalid_trigger_id")
        issued, user, used = found
        if used:
            raise SlackError("exchanged_trigger_id")  # a trigger opens one view
        if time.monotonic() - issued > TRIGGER_SECONDS:
            raise SlackError("expired_trigger_id")
        self.triggers[trigger_id] = (issued, user, True)
        return user

    def _keep(self, view: dict[str, Any], user: str, view_id: str | None = None) -> dict[str, Any]:
        view_id = view_id or f"V{secrets.token_hex(5).upper()}"
        kept = {
            **copy.deepcopy(view),
            "id": view_id,
            "team_id": self.model.team_id,
            "app_id": self.model.app_id,
            "bot_id": self.model.bot_id,
            "user": user,
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "state": {"values": {}},
            "private_metadata": view.get("private_metadata") or "",
            "callback_id": view.get("callback_id") or "",
        }
        self.kept[view_id] = kept
        return copy.deepcopy(kept)


def _modal_problems(view: dict[str, Any], blocks: list[Any]) -> list[str]:
    """A modal's own rules: plain_text title (required), submit and close of at most 24
    characters, and a submit button whenever it has inputs."""
    problems: list[str] = []
    for name, limit in _MODAL_TEXT_LIMITS:
        text = view.get(name)
        if text is None:
            if name == "title":
                problems.append("missing required field: title [json-pointer:/view/title]")
            continue
        if not (
            isinstance(text, dict)
            and text.get("type") == "plain_text"
            and isinstance(text.get("text"), str)
            and 0 < len(text["text"]) <= limit
        ):
            problems.append(
                f"must be plain_text of at most {limit} characters [json-pointer:/view/{name}]"
            )
    has_inputs = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
    if has_inputs and view.get("submit") is None:
        problems.append(
            "submit is required when there are input blocks [json-pointer:/view/submit]"
        )
    return problems
