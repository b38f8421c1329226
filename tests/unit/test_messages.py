"""Block Kit payloads and sentences: escaping, Slack's limits, credits split without loss."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from bot.motion import Source
from bot.sandbox import generated_sources
from bot.slack import messages as m
from bot.slack.messages import (
    SANDBOX_NOTE,
    JobListing,
    Message,
    RunLine,
    credit_line,
    escape,
    link,
    reason_for,
    result_messages,
    usage_text,
)
from tests.support.blockkit import block_errors

DOWNLOAD = "https://cdn.example.com/jobs/abc/run-1.mp4?sig=abc&expires=123"
HOSTILE = "<!channel> <!here> <@U123> <http://evil.example|good> & <#C1>"
SMUGGLED = ("<!channel>", "<!here>", "<@U123>", "<http://evil", "<#C1>")


def texts(value: Any) -> list[str]:
    """Every mrkdwn/plain string in a payload: what Slack would render."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    return []


def section_texts(message: Message) -> list[str]:
    return [b["text"]["text"] for b in message.blocks if b["type"] == "section"]


def assert_valid(message: Message) -> None:
    assert block_errors(message.blocks) == [], message.blocks
    assert len(message.blocks) <= 50
    for text in section_texts(message):
        assert len(text) <= 3_000


def assert_nothing_smuggled(message: Message) -> None:
    rendered = "\n".join(texts(message.payload()))
    for control in SMUGGLED:
        assert control not in rendered, control


def results(sources: list[dict[str, Any]], *, sandbox: bool = False) -> list[Message]:
    return result_messages(
        requester="U0ALICE",
        run_number=2,
        download_url=DOWNLOAD,
        sources=[Source.parse(s) for s in sources],
        expires_at=None,
        sandbox=sandbox,
    )


def numbered_lines(messages: list[Message]) -> Counter[int]:
    found: Counter[int] = Counter()
    for message in messages:
        for text in section_texts(message):
            found.update(int(n) for n in re.findall(r"^(\d+)\. ", text, flags=re.M))
    return found


# ---------------------------------------------------------------- escaping


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("<!channel>", "&lt;!channel&gt;"),
        ("<!here>", "&lt;!here&gt;"),
        ("<@U123>", "&lt;@U123&gt;"),
        ("<http://evil|good>", "&lt;http://evil|good&gt;"),
        ("fish & chips", "fish &amp; chips"),
        ("&lt;", "&amp;lt;"),
    ],
)
def test_escape_neutralises_slack_control_sequences(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped


def test_escape_leaves_no_angle_bracket() -> None:
    assert not set("<>") & set(escape(HOSTILE))


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "ftp://example.com/x", "slack://open", "mailto:a@b.c"]
)
def test_link_refuses_non_http_schemes(url: str) -> None:
    shown = link(url, "click")
    assert "<" not in shown
    assert shown == "click"


def test_link_without_label_for_a_bad_scheme_is_inert_text() -> None:
    assert link("javascript:<!channel>") == "javascript:&lt;!channel&gt;"


def test_link_sanitises_pipe_and_angle_bracket_in_label() -> None:
    shown = link("https://example.com/a", "a|b>c<!here>")
    assert shown.startswith("<https://example.com/a|")
    label = shown[len("<https://example.com/a|") : -1]
    assert "|" not in label
    assert "<" not in label
    assert ">" not in label
    assert shown.endswith(">")
    assert shown.count("|") == 1


def test_link_sanitises_pipe_and_angle_bracket_in_url() -> None:
    shown = link("https://example.com/a|<!here>", "x")
    assert shown.count("|") == 1
    assert "<!here>" not in shown


def test_link_to_http_url_without_label() -> None:
    assert link("https://example.com/a") == "<https://example.com/a>"


def test_link_with_no_url_is_the_label() -> None:
    assert link(None, "nothing") == "nothing"


# ---------------------------------------------------------------- results and credits


@pytest.mark.parametrize("count", [0, 5, 120, 400])
def test_every_credit_appears_exactly_once_across_the_messages(count: int) -> None:
    messages = results(generated_sources("0f3c1d2e-aaaa", 1, count))
    assert numbered_lines(messages) == Counter(range(1, count + 1))


@pytest.mark.parametrize("count", [0, 5, 120, 400])
@pytest.mark.parametrize("sandbox", [False, True])
def test_every_result_message_is_within_slacks_limits(count: int, sandbox: bool) -> None:
    messages = results(generated_sources("0f3c1d2e-aaaa", 1, count), sandbox=sandbox)
    for message in messages:
        assert_valid(message)
        assert sum(len(t) for t in texts(message.blocks)) < 11_000
        assert len(message.text) <= 4_000


def test_long_credit_lists_are_split_over_several_messages() -> None:
    messages = results(generated_sources("0f3c1d2e-aaaa", 1, 400))
    assert len(messages) > 1


def test_hostile_credits_at_size_stay_within_limits_and_lose_nothing() -> None:
    source = {
        "source_kind": "stock_video" + "<" * 80,
        "provider": "<!channel>" * 20,
        "title": "<@U123>&" * 60,
        "display_url": "https://example.com/" + "x" * 500,
        "rights_status": "<!here>" * 20,
        "usages": [
            {
                "start_seconds": i * 3725.5,
                "end_seconds": i * 3726,
                "scene": "<" * 50,
                "placement": "&" * 80,
            }
            for i in range(30)
        ],
    }
    messages = results([dict(source) for _ in range(150)])
    assert numbered_lines(messages) == Counter(range(1, 151))
    for message in messages:
        assert_valid(message)
        assert_nothing_smuggled(message)
        assert sum(len(t) for t in texts(message.blocks)) < 12_000


def test_first_result_message_has_the_button_the_plain_url_and_the_requester() -> None:
    first = results(generated_sources("0f3c1d2e-aaaa", 1, 3))[0]
    buttons = [
        e
        for b in first.blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if e["type"] == "button"
    ]
    assert [b["url"] for b in buttons] == [DOWNLOAD]
    assert any(escape(DOWNLOAD) in t for t in section_texts(first))
    assert escape(DOWNLOAD) in first.text
    assert "<@U0ALICE>" in first.text
    assert any("<@U0ALICE>" in t for t in section_texts(first))
    assert "run 2" in first.text


def test_download_url_that_is_not_https_gets_no_button_but_is_still_shown() -> None:
    url = "http://cdn.example.com/x.mp4"
    first = result_messages(
        requester="U0ALICE",
        run_number=1,
        download_url=url,
        sources=[],
        expires_at=None,
        sandbox=False,
    )[0]
    assert not [b for b in first.blocks if b["type"] == "actions"]
    assert url in first.text


def test_expiry_of_the_download_link_is_mentioned() -> None:
    first = result_messages(
        requester="U0ALICE",
        run_number=1,
        download_url=DOWNLOAD,
        sources=[],
        expires_at="2026-04-29T00:00:00Z",
        sandbox=False,
    )[0]
    assert "2026-04-29T00:00:00Z" in "\n".join(section_texts(first))


def test_continuation_messages_say_they_continue() -> None:
    messages = results(generated_sources("0f3c1d2e-aaaa", 1, 400))
    for message in messages[1:]:
        assert "continued" in message.text
        assert message.blocks[0]["type"] == "context"
        assert "continued" in message.blocks[0]["elements"][0]["text"]
    assert "continued" not in messages[0].text


def test_result_with_no_sources_says_motion_listed_none() -> None:
    [only] = results([])
    assert "no sources" in "\n".join(section_texts(only))


def test_flagged_credits_are_counted_in_the_summary() -> None:
    [only] = results([{"rights_status": "cleared"}, {"rights_status": "restricted"}, {}])
    assert "3 sources" in "\n".join(section_texts(only))
    assert "2 not clearly cleared" in "\n".join(section_texts(only))


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0:00"),
        (9.9, "0:09"),
        (72.4, "1:12"),
        (600, "10:00"),
        (3725, "1:02:05"),
        ("72.4", "1:12"),
    ],
)
def test_usage_timestamps_are_minutes_and_seconds(seconds: Any, shown: str) -> None:
    credit = Source.parse({"usages": [{"start_seconds": seconds}]})
    assert [usage_text(u) for u in credit.usages] == [f"at {shown}"]


def test_usage_shows_the_range_the_scene_and_the_placement() -> None:
    credit = Source.parse(
        {
            "usages": [
                {"start_seconds": 72.4, "end_seconds": 3725, "scene": 3, "placement": "overlay"}
            ]
        }
    )
    line = credit_line(1, credit)
    assert "1:12–1:02:05" in line
    assert "scene 3" in line
    assert "overlay" in line


def test_scene_zero_is_shown() -> None:
    assert "scene 0" in credit_line(1, Source.parse({"usages": [{"scene": 0}]}))


def test_many_usages_are_summarised() -> None:
    credit = Source.parse({"usages": [{"start_seconds": i} for i in range(25)]})
    assert "and 5 more" in credit_line(1, credit)


@pytest.mark.parametrize("rights", [None, "unknown", "restricted", "pending", "", "Pexels License"])
def test_rights_not_clearly_cleared_are_flagged(rights: str | None) -> None:
    source: dict[str, Any] = {"source_kind": "music", "provider": "epidemic_sound"}
    if rights is not None:
        source["rights_status"] = rights
    line = credit_line(1, Source.parse(source))
    assert "⚠️" in line
    assert "check before publishing" in line


@pytest.mark.parametrize(
    "source",
    [
        {"rights_status": "cleared"},
        {"rights_status": "Licensed"},
        {"rights": {"status": "cleared"}},
        {"license_status": "royalty_free"},
    ],
)
def test_cleared_or_licensed_rights_are_not_flagged(source: dict[str, Any]) -> None:
    line = credit_line(1, Source.parse({"source_kind": "music", "provider": "x", **source}))
    assert "⚠️" not in line
    assert "rights:" in line


def test_credit_line_shows_kind_provider_and_linked_title() -> None:
    line = credit_line(
        4,
        Source.parse(
            {
                "source_kind": "stock_video",
                "provider": "pexels",
                "title": "Aerial skyline",
                "display_url": "https://pexels.example/m/1",
            }
        ),
    )
    assert line.startswith("4. *Stock video* · pexels · ")
    assert "<https://pexels.example/m/1|Aerial skyline>" in line


@pytest.mark.parametrize(
    "source",
    [
        {},
        {"source_kind": "music"},
        {"provider": "pexels", "usages": None},
        {"title": None, "url": None, "usages": "not a list"},
        {"usages": [None, 3, "x", {}]},
        {"display_url": 42, "title": 7},
    ],
)
def test_credit_with_missing_or_odd_fields_does_not_crash(source: dict[str, Any]) -> None:
    line = credit_line(1, Source.parse(source))
    assert line.startswith("1. ")
    [message] = results([source])
    assert_valid(message)


def test_credit_without_title_shows_the_links_host() -> None:
    line = credit_line(1, Source.parse({"source_url": "https://media.example/x/y"}))
    assert "media.example" in line


def test_hostile_titles_and_providers_are_escaped() -> None:
    source = {
        "source_kind": HOSTILE,
        "provider": HOSTILE,
        "title": HOSTILE,
        "display_url": "https://example.com/x",
        "rights_status": HOSTILE,
        "usages": [{"scene": HOSTILE, "placement": HOSTILE, "start_seconds": HOSTILE}],
    }
    messages = results(
        [source, {**source, "display_url": None}, {**source, "display_url": "javascript:x"}]
    )
    for message in messages:
        assert_valid(message)
        assert_nothing_smuggled(message)


def test_hostile_text_in_a_usage_timestamp_is_escaped() -> None:
    # Timestamps that are not numbers are shown as given: they must still be escaped.
    credit = Source.parse({"usages": [{"start": "<!channel>", "end": "<@U123>"}]})
    line = credit_line(1, credit)
    assert "<!channel>" not in line
    assert "<@U123>" not in line
    assert "&lt;!channel&gt;" in line


# ---------------------------------------------------------------- the job card


def card(prompt: str, **kwargs: Any) -> Message:
    defaults: dict[str, Any] = {
        "requester": "U0ALICE",
        "prompt": prompt,
        "status": "🎬 Generating · 1m 05s",
        "runs": [],
        "sandbox": False,
    }
    return m.job_card(**{**defaults, **kwargs})


@pytest.mark.parametrize("prompt", ["x" * 12_000, "<" * 12_000, "&\n" * 6_000, HOSTILE * 200])
def test_job_card_text_fits_chat_update_even_for_the_longest_prompt(prompt: str) -> None:
    message = card(prompt, sandbox=True)
    assert len(message.text) < 4_000
    assert_valid(message)


def test_job_card_shows_requester_prompt_and_status() -> None:
    message = card("a fox in the snow")
    rendered = "\n".join(texts(message.blocks))
    assert "<@U0ALICE>" in rendered
    assert "a fox in the snow" in rendered
    assert "Generating" in rendered


def test_job_card_escapes_a_hostile_prompt() -> None:
    message = card(HOSTILE)
    assert_nothing_smuggled(message)


def test_job_card_with_many_runs_stays_valid() -> None:
    runs = [RunLine(i, "done", "✅ Done", f"https://cdn.example.com/{i}.mp4") for i in range(1, 40)]
    message = card("a fox", runs=runs)
    assert_valid(message)
    assert "19 earlier runs not shown" in "\n".join(section_texts(message))


def test_a_requester_that_is_not_a_user_id_is_escaped() -> None:
    message = card("a fox", requester="<!channel>")
    assert_nothing_smuggled(message)


# ---------------------------------------------------------------- every builder


BUILDERS: dict[str, Callable[[bool], Message | list[Message]]] = {
    "job_card": lambda s: m.job_card(
        requester="U1",
        prompt=HOSTILE,
        status="queued",
        runs=[RunLine(1, "done", "ok", DOWNLOAD)],
        sandbox=s,
    ),
    "result_messages": lambda s: results(generated_sources("0f3c1d2e-aaaa", 1, 200), sandbox=s),
    "notify_message": lambda s: m.notify_message(
        requester="U1",
        prompt=HOSTILE,
        permalink="https://x.slack.com/archives/C1/p1",
        run_number=1,
        sandbox=s,
    ),
    "notify_message_public": lambda s: m.notify_message(
        requester="U1",
        prompt=HOSTILE,
        permalink="https://x.slack.com/archives/C1/p1",
        run_number=1,
        sandbox=s,
        private=False,
    ),
    "job_failed": lambda s: m.job_failed(run_number=1, error=HOSTILE, sandbox=s),
    "render_failed": lambda s: m.render_failed(run_number=1, sandbox=s),
    "insufficient_credits": lambda s: m.insufficient_credits(
        balance=0, minimum=300, message=HOSTILE, followup=False, sandbox=s
    ),
    "awaiting_input": lambda s: m.awaiting_input(run_number=1, sandbox=s),
    "outcome_unknown": lambda s: m.outcome_unknown(
        run_number=1, followup=True, run_id=7, sandbox=s
    ),
    "lost_answer_found": lambda s: m.lost_answer_found(run_number=1, sandbox=s),
    "bad_request": lambda s: m.bad_request(
        run_number=1, details=[HOSTILE] * 12, message=HOSTILE, sandbox=s
    ),
    "auth_failed": lambda s: m.auth_failed(sandbox=s),
    "job_not_found": lambda s: m.job_not_found(sandbox=s),
    "motion_unreachable": lambda s: m.motion_unreachable(
        run_number=1, error=HOSTILE, run_id=7, sandbox=s
    ),
    "followup_on_failed": lambda s: m.followup_on_failed(sandbox=s, value="7"),
    "nothing_to_refine": lambda s: m.nothing_to_refine(sandbox=s),
    "motion_server_error": lambda s: m.motion_server_error(
        run_number=1, error=HOSTILE, run_id=7, sandbox=s
    ),
    "new_job_link": lambda s: m.new_job_link(
        permalink="https://x.slack.com/archives/C1/p1", sandbox=s
    ),
    "usage_error": lambda s: m.usage_error(HOSTILE, s),
    "help_message": lambda s: m.help_message(s),
    "invite_hint": lambda s: m.invite_hint(channel_is_dm=False, sandbox=s),
    "invite_hint_dm": lambda s: m.invite_hint(channel_is_dm=True, sandbox=s),
    "accepted": lambda s: m.accepted(s),
    "job_list": lambda s: m.job_list(
        [JobListing(HOSTILE, "done", 2, "https://x.slack.com/archives/C1/p1", "2026-04-28")], s
    ),
    "job_list_empty": lambda s: m.job_list([], s),
}


def built(name: str, sandbox: bool) -> list[Message]:
    value = BUILDERS[name](sandbox)
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_message_says_sandbox_in_sandbox_mode(name: str) -> None:
    for message in built(name, True):
        assert SANDBOX_NOTE in message.text
        if message.blocks:
            assert SANDBOX_NOTE in "\n".join(texts(message.blocks))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_no_message_says_sandbox_outside_sandbox_mode(name: str) -> None:
    for message in built(name, False):
        assert "Sandbox" not in "\n".join(texts(message.payload()))


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("sandbox", [False, True])
def test_every_payload_is_valid_block_kit_and_escapes_quoted_text(name: str, sandbox: bool) -> None:
    for message in built(name, sandbox):
        assert_valid(message)
        assert_nothing_smuggled(message)
        assert message.text


def test_insufficient_credits_gives_the_numbers_and_where_to_buy() -> None:
    message = m.insufficient_credits(
        balance=120, minimum=300, message=None, followup=False, sandbox=False
    )
    assert "120" in message.text
    assert "300" in message.text
    assert "motion.so" in message.text


def test_insufficient_credits_without_numbers_quotes_motions_message() -> None:
    message = m.insufficient_credits(
        balance=None, minimum=None, message="Need more credits", followup=True, sandbox=False
    )
    assert "Need more credits" in message.text
    assert "followup" in message.text


def test_outcome_unknown_offers_a_retry_button_for_that_run() -> None:
    message = m.outcome_unknown(run_number=2, followup=False, run_id=42, sandbox=False)
    [button] = [e for b in message.blocks if b["type"] == "actions" for e in b["elements"]]
    assert button["action_id"] == "retry_run"
    assert button["value"] == "42"


def test_the_cards_reason_for_a_409_says_which_kind_it_was() -> None:
    from bot.motion import Conflict, Retry

    failed = Conflict("x", retry=Retry.NO, status=409, body={"status": "failed"})
    busy = Conflict("x", retry=Retry.NO, status=409, body={"status": "running"})
    assert reason_for(failed) == "Motion takes no followups on a failed job"
    assert reason_for(busy) == "Motion was still busy with the previous run"


# ---------------------------------------------------------------- the form, Refine, App Home


def test_result_carries_refine_and_new_variation_for_its_run() -> None:
    [first, *_] = result_messages(
        requester="U0ALICE", run_number=2, download_url=DOWNLOAD, sources=[], expires_at=None,
        sandbox=False, run_id=41,
    )  # fmt: skip
    actions = [b for b in first.blocks if b["type"] == "actions"]
    assert [(e["action_id"], e.get("value")) for e in actions[0]["elements"]] == [
        ("download", None), ("refine", "41"), ("new_variation", "41"),
    ]  # fmt: skip
    assert block_errors(first.blocks) == []


def test_forms_pass_slacks_view_checks() -> None:
    form = m.new_video_form(channel_id=None, aspects=("16:9",), durations=("<10s",), sandbox=True)
    refine = m.refine_form(
        job_id=3, run_number=2, aspects=("16:9",), durations=("<10s",), sandbox=False
    )
    for view in (form, refine):
        assert len(view["title"]["text"]) <= 24
        assert block_errors(view["blocks"], max_blocks=100) == []
        assert len(view["private_metadata"]) <= 3000
    assert form["private_metadata"] == '{"origin":""}'
    assert refine["private_metadata"] == '{"job":3}'


def test_home_view_keeps_20_jobs_escaped_within_100_blocks() -> None:
    usage = m.UsageView(0, 1, 2, 3, None, None, 86400, 86400 * 31)
    jobs = [
        m.HomeJob(f"job {i} <!channel> <https://evil|x>", "Done", 2, "https://t/p", DOWNLOAD, "d")
        for i in range(30)
    ]
    view = m.home_view(jobs, usage, sandbox=True, more=True)
    assert view["type"] == "home"
    assert len(view["blocks"]) <= 100
    assert block_errors(view["blocks"], max_blocks=100) == []
    text = str(view["blocks"])
    assert "job 19" in text and "job 20" not in text
    assert "<!channel>" not in text and "<https://evil|x>" not in text


def test_field_errors_are_plain_and_short() -> None:
    refusal = m.channel_not_allowed(allowed=["G0MEMBER"], sandbox=True)
    shown = m.field_error(refusal.text)
    assert "#G0MEMBER" in shown and "<#" not in shown and "Sandbox" not in shown
    assert len(m.field_error("x" * 1000)) <= m.MAX_FIELD_ERROR
