"""The files an admin touches agree with SPEC.md and with each other."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SPEC_VARIABLES = [
    "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_API_URL", "PORT",
    "MOTION_API_KEY", "MOTION_API_URL", "DATABASE_URL", "MOTION_NOTIFY_CHANNEL",
    "FOLLOWUP_REQUIRES_MENTION", "POLL_INITIAL_SECONDS", "POLL_MAX_SECONDS", "LOG_LEVEL",
]  # fmt: skip


def test_manifest_creates_the_app_in_one_paste() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    assert len(manifest["display_information"]["name"]) <= 35
    assert re.fullmatch(r"[a-z0-9._-]+", manifest["features"]["bot_user"]["display_name"])
    commands = manifest["features"]["slash_commands"]
    assert [c["command"] for c in commands] == ["/motion"]
    assert commands[0]["should_escape"] is False
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert scopes == {
        "commands", "chat:write", "channels:join", "channels:history", "groups:history",
        "im:history", "mpim:history", "app_mentions:read", "reactions:write", "files:read",
        "files:write", "users:read",
    }  # fmt: skip
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is True
    assert settings["interactivity"]["is_enabled"] is True
    # function_executed (issue 20): the Workflow Builder step; it needs no scope. The DM
    # surface (message.im, im:history, the Messages tab) was already there.
    assert set(settings["event_subscriptions"]["bot_events"]) == {
        "app_mention", "message.channels", "message.groups", "message.im", "message.mpim",
        "app_home_opened", "function_executed",
    }  # fmt: skip


def test_manifest_offers_the_workflow_step_the_app_handles() -> None:
    from bot.jobs import CALLBACK_ID

    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    settings = manifest["settings"]
    # What Slack requires of an app with custom steps run by the app itself.
    assert settings["org_deploy_enabled"] is True
    assert settings["function_runtime"] == "remote"
    assert list(manifest["functions"]) == [CALLBACK_ID] == ["make_motion_video"]
    step = manifest["functions"][CALLBACK_ID]
    assert step["title"] and step["description"]
    inputs, outputs = step["input_parameters"], step["output_parameters"]
    assert {name: (p["type"], p["is_required"]) for name, p in inputs.items()} == {
        "prompt": ("string", True),
        "channel": ("slack#/types/channel_id", True),
        "requester": ("slack#/types/user_id", True),
        "style_link": ("string", False),
        "aspect": ("string", False),
        "duration": ("string", False),
    }
    assert set(outputs) == {"video_url", "thread_permalink", "job_id"}
    for parameter in [*inputs.values(), *outputs.values()]:
        assert parameter["title"] and parameter["description"], parameter


def test_manifest_has_the_shortcut_and_the_home_tab_the_app_handles() -> None:
    from bot.slack.ids import NEW_VIDEO_SHORTCUT

    text = (ROOT / "manifest.yml").read_text()
    manifest = yaml.safe_load(text)
    features = manifest["features"]
    assert features["shortcuts"] == [
        {
            "name": "New Motion video",
            "type": "global",
            "callback_id": NEW_VIDEO_SHORTCUT,
            "description": features["shortcuts"][0]["description"],
        }
    ]
    assert len(features["shortcuts"][0]["description"]) <= 150
    assert features["app_home"] == {
        "home_tab_enabled": True,
        "messages_tab_enabled": True,
        "messages_tab_read_only_enabled": False,
    }
    # each addition says what it is for
    for needle in ("home_tab_enabled: true", "name: New Motion video", "- app_home_opened"):
        line = next(line for line in text.splitlines() if needle in line)
        assert "#" in line, line


def test_env_example_and_readme_name_every_variable() -> None:
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in SPEC_VARIABLES:
        assert re.search(rf"^#? ?{name}=", example, re.M), name
        assert f"`{name}`" in readme, name


def test_procfile_runs_one_web_process() -> None:
    assert (ROOT / "Procfile").read_text().strip() == "web: python -m bot"


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/python -m pytest -q"
    assert command in readme
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]'" in ci
    assert ".venv/bin/python -m pytest -q" in ci
    assert ".venv/bin/ruff check ." in ci
