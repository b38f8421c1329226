"""Workflow Builder's custom steps in the local stand-in: an execution is started by a workflow
(`start`, which builds the `function_executed` event Slack sends), and ended once by
`functions.completeSuccess` or `functions.completeError`; a second end answers
`execution_not_in_running_state`, as Slack does.

Each execution comes with its short-lived token (`xwfp-…`, the event's `bot_access_token`),
which the Web API accepts while the execution runs; the app's own bot token works too.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.local import payloads
from bot.local.model import SlackError, WorkspaceModel

ExecutionState = Literal["running", "completed", "failed"]


@dataclass
class Execution:
    """One run of a step, as Slack keeps it."""

    id: str
    callback_id: str
    inputs: dict[str, Any]
    token: str = field(repr=False)
    state: ExecutionState = "running"
    outputs: dict[str, Any] | None = None
    error: str | None = None
    ends: int = 0  # completeSuccess / completeError calls that ended it (Slack allows one)
    refused: int = 0  # calls after it ended (answered execution_not_in_running_state)


class FunctionMethods:
    """The functions.* Web API methods and the executions they end."""

    def __init__(self, model: WorkspaceModel, outputs: dict[str, list[str]]) -> None:
        """`outputs`: each step's required output names (by callback id), as the manifest
        declares them: a completion without one is `parameter_validation_failed`."""
        self.model = model
        self.required_outputs = outputs
        self.executions: dict[str, Execution] = {}

    def methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "functions.completeSuccess": self.complete_success,
            "functions.completeError": self.complete_error,
        }

    # -- scripting and inspection (any thread) -------------------------------------------------

    def start(self, callback_id: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """A workflow reaches the app's step: a new running execution, and the
        `function_executed` event Slack sends the app for it."""
        with self.model.lock:
            execution = Execution(
                id=f"Fx{secrets.token_hex(5).upper()}",
                callback_id=callback_id,
                inputs=copy.deepcopy(inputs),
                token=f"xwfp-{secrets.token_hex(12)}",
            )
            self.executions[execution.id] = execution
            return payloads.function_executed(
                callback_id=callback_id,
                inputs=inputs,
                function_execution_id=execution.id,
                workflow_execution_id=f"Wx{secrets.token_hex(5).upper()}",
                app_id=self.model.app_id,
                bot_access_token=execution.token,
            )

    def execution(self, execution_id: str) -> Execution | None:
        with self.model.lock:
            found = self.executions.get(execution_id)
            return copy.deepcopy(found) if found is not None else None

    def accepts(self, token: str) -> bool:
        """A running execution's token is good for the Web API until the execution ends."""
        with self.model.lock:
            return any(e.token == token and e.state == "running" for e in self.executions.values())

    # -- Web API methods (lock held) -----------------------------------------------------------

    def complete_success(self, params: dict[str, Any]) -> dict[str, Any]:
        execution = self._running(params)
        outputs = params.get("outputs")
        if not isinstance(outputs, dict):
            raise SlackError("invalid_arguments")
        missing = [
            name
            for name in self.required_outputs.get(execution.callback_id, [])
            if not isinstance(outputs.get(name), str) or not outputs.get(name)
        ]
        if missing:
            raise SlackError("parameter_validation_failed", errors=missing)
        return self._end(execution, "completed", outputs=copy.deepcopy(outputs))

    def complete_error(self, params: dict[str, Any]) -> dict[str, Any]:
        execution = self._running(params)
        error = params.get("error")
        if not isinstance(error, str) or not error:
            raise SlackError("invalid_arguments")
        return self._end(execution, "failed", error=error)

    def _running(self, params: dict[str, Any]) -> Execution:
        execution = self.executions.get(str(params.get("function_execution_id") or ""))
        if execution is None:
            raise SlackError("function_execution_not_found")
        if execution.state != "running":
            execution.refused += 1
            raise SlackError("execution_not_in_running_state")
        return execution

    def _end(
        self, execution: Execution, state: ExecutionState, *,
        outputs: dict[str, Any] | None = None, error: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        execution.state, execution.outputs, execution.error = state, outputs, error
        execution.ends += 1
        ended = {"execution_id": execution.id, "state": state, "outputs": outputs, "error": error}
        self.model.tell("step_ended", None, ended)
        return {}
