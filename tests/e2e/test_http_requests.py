"""Signed requests Slack would never send get a 400 and leave nothing behind; requests the app
does not handle still get their 2xx (Slack would retry them, or show the person an error)."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import pytest

from bot.store import Store
from tests.support.harness import Harness

FORM = "application/x-www-form-urlencoded"


def jobs_recorded(harness: Harness) -> int:
    store = Store(harness.env["DATABASE_URL"])
    try:
        return int(store._value("SELECT COUNT(*) FROM jobs"))
    finally:
        store.close()


@pytest.mark.parametrize(
    ("body", "content_type", "why"),
    [
        ("{not json", "application/json", "not valid JSON"),
        ("[1, 2]", "application/json", "not a JSON object"),
        ('{"type": "event_callback"}', "application/json", "without an event"),
        ("payload=%7Bnot+json", FORM, "payload= field is not valid JSON"),
        ("hello=world", FORM, "neither payload= nor command="),
    ],
)
async def test_a_signed_body_that_cannot_be_read_gets_a_400_and_one_log_line(
    harness: Harness, caplog: pytest.LogCaptureFixture, body: str, content_type: str, why: str
) -> None:
    await harness.start()
    with caplog.at_level(logging.WARNING):
        response = await harness.post(body, content_type)
    assert response.status_code == 400
    assert why in response.text
    refused = [r for r in caplog.records if "refused a signed request" in r.getMessage()]
    assert len(refused) == 1 and why in refused[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info]  # no traceback
    assert jobs_recorded(harness) == 0


@pytest.mark.parametrize("missing", ["user_id", "channel_id"])
async def test_a_command_without_its_person_or_channel_records_nothing(
    harness: Harness, missing: str
) -> None:
    await harness.start()
    fields = harness.command_fields("a fox in the snow")
    del fields[missing]
    response = await harness.post(urlencode(fields), FORM)
    assert response.status_code == 400
    assert missing in response.text
    assert jobs_recorded(harness) == 0
    assert harness.posts() == []


async def test_a_malformed_request_without_a_signature_is_refused_as_unsigned(
    harness: Harness,
) -> None:
    await harness.start()
    response = await harness.post("{not json", "application/json", secret="wrong-secret")
    assert response.status_code == 401
    assert "malformed" not in response.text


async def test_another_slash_command_gets_a_2xx(harness: Harness) -> None:
    await harness.start()
    fields = {**harness.command_fields("hello"), "command": "/other"}
    response = await harness.post(urlencode(fields), FORM)
    assert response.status_code == 200
    assert jobs_recorded(harness) == 0


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "block_actions", "actions": [{"action_id": "from_elsewhere", "value": "1"}]},
        {"type": "shortcut", "callback_id": "some_shortcut", "trigger_id": "1.2.abc"},
        {"type": "message_action", "callback_id": "some_message_shortcut", "trigger_id": "1.2"},
        {
            "type": "view_submission",
            "view": {"id": "V1", "type": "modal", "callback_id": "unknown_form"},
        },
        {
            "type": "view_closed",
            "view": {"id": "V1", "type": "modal", "callback_id": "unknown_form"},
        },
        {"type": "block_suggestion", "action_id": "menu", "block_id": "b", "value": "x"},
    ],
)
async def test_an_interaction_the_app_does_not_handle_gets_a_2xx(
    harness: Harness, payload: dict[str, object]
) -> None:
    await harness.start()
    full = {
        "team": {"id": "T0001"},
        "user": {"id": "U0ALICE", "team_id": "T0001"},
        "api_app_id": "A0APP",
        "token": "legacy-verification-token",
        **payload,
    }
    response = await harness.post(urlencode({"payload": json.dumps(full)}), FORM)
    assert response.status_code == 200
    assert jobs_recorded(harness) == 0
