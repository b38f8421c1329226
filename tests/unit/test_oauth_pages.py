"""'Add to Slack' without a server: the scopes asked for are the manifest's, the approve page is
found where the Web API is, and the failure pages say what happened in plain words."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.workspaces.oauth import BOT_SCOPES, FAILURES, SLACK_AUTHORIZE_URL, authorize_url_for

ROOT = Path(__file__).resolve().parents[2]


def test_the_install_asks_for_exactly_the_manifests_bot_scopes() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text(encoding="utf-8"))
    assert list(BOT_SCOPES) == manifest["oauth_config"]["scopes"]["bot"]


@pytest.mark.parametrize(
    ("api_url", "approve"),
    [
        ("https://slack.com/api/", SLACK_AUTHORIZE_URL),
        ("http://127.0.0.1:4567/api/", "http://127.0.0.1:4567/oauth/v2/authorize"),
        ("https://slack-double.internal/api/", "https://slack-double.internal/oauth/v2/authorize"),
    ],
)
def test_the_approve_page_is_on_the_web_apis_host(api_url: str, approve: str) -> None:
    assert authorize_url_for(api_url) == approve


@pytest.mark.parametrize("reason", sorted(FAILURES))
def test_every_failure_says_the_app_was_not_installed(reason: str) -> None:
    assert FAILURES[reason].startswith("The app was not installed")
