"""The words of the spend controls: refusals, usage, previews; escaped and within Block Kit's
limits however many people there are."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bot.motion import MotionRequest
from bot.slack import messages
from bot.slack.messages import PersonUsage, UsageView
from tests.support.blockkit import block_errors

NOW = datetime(2026, 6, 14, 18, 30, tzinfo=UTC).timestamp()
MIDNIGHT = datetime(2026, 6, 15, tzinfo=UTC).timestamp()
FIRST = datetime(2026, 7, 1, tzinfo=UTC).timestamp()


def view(**overrides: object) -> UsageView:
    fields: dict[str, object] = {
        "now": NOW, "today": 3, "month": 12, "workspace_month": 40, "per_user_per_day": 5,
        "per_month": 100, "day_resets_at": MIDNIGHT, "month_resets_at": FIRST,
    }  # fmt: skip
    fields.update(overrides)
    return UsageView(**fields)  # type: ignore[arg-type]


def everything(message: messages.Message) -> str:
    return message.text + json.dumps(message.blocks, ensure_ascii=False)


def test_the_channel_refusal_names_the_channels_where_it_works() -> None:
    refusal = messages.channel_not_allowed(allowed=["C0VIDEOS1", "G0PRIV"], sandbox=False)
    assert refusal.text == (
        "🚫 Motion videos can't be started in this channel. They can be started in <#C0VIDEOS1>, "
        "<#G0PRIV>. Nothing was sent to Motion and nothing was recorded."
    )
    assert block_errors(refusal.blocks) == []


def test_the_daily_limit_refusal_says_used_limit_and_when_it_resets() -> None:
    refusal = messages.limit_reached(
        scope="user_day", used=5, limit=5, view=view(today=5), sandbox=False
    )
    assert refusal.text == (
        "⛔ You have used 5 of your 5 Motion runs for today (UTC). Your count resets at "
        "00:00 UTC, in 5h 30m. Nothing was sent to Motion and no credits were used."
    )
    assert "5 of 5 today" in everything(refusal)


def test_the_monthly_limit_refusal_says_used_limit_and_the_first_of_the_month() -> None:
    refusal = messages.limit_reached(
        scope="workspace_month", used=100, limit=100, view=view(workspace_month=100),
        sandbox=True,
    )  # fmt: skip
    assert refusal.text.startswith(
        "⛔ This workspace has used 100 of its 100 Motion runs for June 2026. The count resets "
        "on 1 July 2026, 00:00 UTC. Nothing was sent to Motion and no credits were used."
    )
    assert messages.SANDBOX_NOTE in refusal.text


def test_the_usage_line_with_and_without_limits() -> None:
    assert messages.usage_line(view()) == (
        "Your Motion runs: 3 of 5 today (resets 00:00 UTC, in 5h 30m) · 12 this month · "
        "workspace 40 of 100 this month (resets 1 July 2026, 00:00 UTC)"
    )
    unlimited = view(per_user_per_day=None, per_month=None)
    assert messages.usage_line(unlimited) == (
        "Your Motion runs: 3 today · 12 this month · workspace 40 this month · no limits set"
    )


def test_usage_for_a_person_has_no_one_elses_numbers() -> None:
    report = messages.usage_report(view(), everyone=None, sandbox=False)
    text = everything(report)
    assert "Your runs today (UTC): 3 of 5" in text and "Everyone" not in text


def test_usage_for_an_admin_lists_everyone_with_mentions() -> None:
    people = [PersonUsage("U0BOB", 2, 9), PersonUsage("U0ALICE", 3, 12)]
    report = messages.usage_report(view(), everyone=people, sandbox=False)
    text = everything(report)
    assert "<@U0BOB> — 2 today · 9 this month" in text
    assert "Everyone's runs* (2 people this month)" in text
    assert block_errors(report.blocks) == []


def test_usage_for_thousands_of_people_stays_within_block_kit_limits() -> None:
    people = [PersonUsage(f"U{i:08d}", i % 7, 100 - i % 90) for i in range(5_000)]
    report = messages.usage_report(view(), everyone=people, sandbox=True)
    assert block_errors(report.blocks) == []
    assert len(report.blocks) <= messages.MAX_BLOCKS
    size = sum(len(json.dumps(b)) for b in report.blocks)
    assert size < 14_000
    assert "more people with" in everything(report)
    assert all(len(b["text"]["text"]) <= 3_000 for b in report.blocks if b["type"] == "section")


def test_a_preview_shows_what_would_be_sent_escaped_with_start_and_cancel() -> None:
    request = MotionRequest(
        "<!channel> a fox & a hound <https://evil.example|click>",
        style_url="https://youtu.be/dQw4w9WgXcQ",
        attachments=("https://example.com/logo.png",),
        aspect="9:16",
        duration="10-30s",
    )
    preview = messages.run_preview(
        kind="new_job", request=request, token="tok-123", view=view(), sandbox=False
    )
    text = everything(preview)
    assert "<!channel>" not in text and "&lt;!channel&gt; a fox &amp; a hound" in text
    assert "This uses Motion credits" in text
    for shown in ("youtu.be/dQw4w9WgXcQ", "example.com/logo.png", "9:16", "10-30s"):
        assert shown in text
    actions = next(b for b in preview.blocks if b["type"] == "actions")["elements"]
    assert [(a["action_id"], a["value"]) for a in actions] == [
        ("confirm_start", "tok-123"), ("confirm_cancel", "tok-123"),
    ]  # fmt: skip
    assert block_errors(preview.blocks) == []


def test_a_preview_of_a_very_long_prompt_stays_within_a_section() -> None:
    request = MotionRequest("x" * 12_000)
    preview = messages.run_preview(
        kind="followup", request=request, token="t", view=view(), sandbox=False
    )
    assert block_errors(preview.blocks) == []
    assert "12,000 characters in all" in everything(preview)
    assert preview.text.startswith("*Send this followup to Motion?*")
