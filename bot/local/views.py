"""Slack's modals and Home tab in the local stand-in: `views.open`, `views.push`, `views.update`
and `views.publish`, with trigger ids that last 3 s and work once, and Slack's checks on a view."""

from __future__ import annotations

import copy
import json
import secrets
import time
from typing import Any

from bot.local.model import TRIGGER_SECONDS, SlackError, WorkspaceModel

VIEW_BLOCK_LIMIT = 100  # blocks in a modal or the Home tab


class ViewMethods(WorkspaceModel):
    def view_block_problems(self, blocks: list[Any]) -> list[str]:
        """Why Slack would refuse a view's blocks (none here: a subclass may validate them)."""
        return []

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
            for name, limit in (("title", 24), ("submit", 24), ("close", 24)):
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
        metadata = view.get("private_metadata")
        if metadata is not None and (not isinstance(metadata, str) or len(metadata) > 3000):
            problems.append(
                "must be less than 3001 characters [json-pointer:/view/private_metadata]"
            )
        problems += self.view_block_problems(blocks)
        if problems:
            raise SlackError(
                "invalid_arguments",
                response_metadata={"messages": [f"[ERROR] {p}" for p in problems]},
            )
        return view

    def _take_trigger(self, trigger_id: Any) -> str:
        """The trigger's user; Slack's errors for an unknown, used or late trigger."""
        found = self._triggers.get(trigger_id) if isinstance(trigger_id, str) else None
        if found is None:
            raise SlackError("invalid_trigger_id")
        issued, user, used = found
        if used:
            raise SlackError("exchanged_trigger_id")  # a trigger opens one view
        if time.monotonic() - issued > TRIGGER_SECONDS:
            raise SlackError("expired_trigger_id")
        self._triggers[trigger_id] = (issued, user, True)
        return user

    def _keep_view(
        self, view: dict[str, Any], user: str, view_id: str | None = None
    ) -> dict[str, Any]:
        view_id = view_id or f"V{secrets.token_hex(5).upper()}"
        kept = {
            **copy.deepcopy(view),
            "id": view_id,
            "team_id": self.team_id,
            "app_id": self.app_id,
            "bot_id": self.bot_id,
            "user": user,
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "state": {"values": {}},
            "private_metadata": view.get("private_metadata") or "",
            "callback_id": view.get("callback_id") or "",
        }
        self._views[view_id] = kept
        return copy.deepcopy(kept)

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self.check_view(params.get("view"))
        if view["type"] != "modal":
            raise SlackError("invalid_arguments")
        user = self._take_trigger(params.get("trigger_id"))
        return {"view": self._keep_view(view, user)}

    def _views_push(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._views_open(params)

    def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self.check_view(params.get("view"))
        view_id = params.get("view_id")
        if not view_id and params.get("external_id"):
            view_id = next(
                (
                    k
                    for k, v in self._views.items()
                    if v.get("external_id") == params["external_id"]
                ),
                None,
            )
        old = self._views.get(view_id) if isinstance(view_id, str) else None
        if old is None:
            raise SlackError("not_found")
        if params.get("hash") and params["hash"] != old["hash"]:
            raise SlackError("hash_conflict")
        return {"view": self._keep_view(view, old["user"], old["id"])}

    def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        user = params.get("user_id")
        if not isinstance(user, str) or user not in self._users:
            raise SlackError("user_not_found")
        view = self.check_view(params.get("view"))
        if view["type"] != "home":
            raise SlackError("invalid_arguments")
        old = self._homes.get(user)
        if params.get("hash") and old and params["hash"] != self._views[old]["hash"]:
            raise SlackError("hash_conflict")
        kept = self._keep_view(view, user, old)
        self._homes[user] = kept["id"]
        return {"view": kept}
