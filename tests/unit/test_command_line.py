"""`/motion` text → a request or a usage error that says how to fix it (pure, no servers)."""

from __future__ import annotations

import pytest

from bot.command_line import (
    Help,
    ListJobs,
    MotionRequest,
    ShowUsage,
    Start,
    UsageError,
    parse_command,
    parse_request,
    strip_mention,
)
from bot.motion import MAX_PROMPT, js_length


def start(text: str) -> MotionRequest:
    command = parse_command(text)
    assert isinstance(command, Start), command
    return command.request


def usage_error(text: str) -> str:
    with pytest.raises(UsageError) as caught:
        parse_command(text)
    return str(caught.value)


# ---------------------------------------------------------------- help and list


@pytest.mark.parametrize("text", ["", "   ", "help", "HELP", " Help ", "--help", "-h"])
def test_empty_text_or_help_asks_for_usage(text: str) -> None:
    assert parse_command(text) == Help()


@pytest.mark.parametrize("text", ["list", "List", "  LIST  "])
def test_list_asks_for_the_callers_jobs(text: str) -> None:
    assert parse_command(text) == ListJobs()


@pytest.mark.parametrize("text", ["usage", "Usage", "  USAGE "])
def test_usage_asks_for_the_callers_runs_against_the_limits(text: str) -> None:
    assert parse_command(text) == ShowUsage()


def test_a_prompt_that_starts_with_usage_is_a_prompt() -> None:
    assert start("usage stats as an animated chart").prompt == "usage stats as an animated chart"


def test_a_prompt_that_starts_with_help_is_a_prompt() -> None:
    assert start("help me make a launch video").prompt == "help me make a launch video"


def test_a_prompt_that_mentions_list_is_a_prompt() -> None:
    assert start("list of our top features").prompt == "list of our top features"


# ---------------------------------------------------------------- a good request


def test_prompt_with_every_option_is_parsed() -> None:
    request = start(
        "a teaser for the spring sale --style https://youtu.be/abc123 "
        "--attach https://example.com/logo.png --attach https://example.com/clip.mp4 "
        "--aspect 9:16 --duration 10-30s"
    )
    assert request == MotionRequest(
        prompt="a teaser for the spring sale",
        style_url="https://youtu.be/abc123",
        attachments=("https://example.com/logo.png", "https://example.com/clip.mp4"),
        aspect="9:16",
        duration="10-30s",
    )


@pytest.mark.parametrize("aspect", ["16:9", "9:16", "1:1", "4:5", "21:9"])
def test_every_documented_aspect_is_accepted(aspect: str) -> None:
    assert start(f"a cat --aspect {aspect}").aspect == aspect


@pytest.mark.parametrize("duration", ["10-30s", "30s-1min", "1-5min"])
def test_every_documented_duration_is_accepted(duration: str) -> None:
    assert start(f"a cat --duration {duration}").duration == duration


def test_entity_encoded_under_ten_seconds_duration_is_decoded() -> None:
    assert start("a cat --duration &lt;10s").duration == "<10s"


def test_entity_encoded_ampersand_in_prompt_reaches_motion_decoded() -> None:
    assert start("cats &amp; dogs &lt;3 &gt; birds").prompt == "cats & dogs <3 > birds"


def test_a_typed_entity_is_not_decoded_twice() -> None:
    # The person typed "&lt;" literally; Slack sends it as "&amp;lt;".
    assert start("write &amp;lt; in the title").prompt == "write &lt; in the title"


def test_slack_link_in_style_value_is_unwrapped() -> None:
    request = start("a cat --style <https://www.youtube.com/watch?v=abc|youtube.com/watch?v=abc>")
    assert request.style_url == "https://www.youtube.com/watch?v=abc"


def test_slack_link_in_attach_value_is_unwrapped() -> None:
    request = start("a cat --attach <https://example.com/a.png|example.com/a.png>")
    assert request.attachments == ("https://example.com/a.png",)


def test_slack_link_without_label_in_attach_value_is_unwrapped() -> None:
    assert start("a cat --attach <https://example.com/a.png>").attachments == (
        "https://example.com/a.png",
    )


def test_slack_link_in_prompt_becomes_the_plain_url() -> None:
    assert start("like <https://example.com/page|example.com/page> but blue").prompt == (
        "like https://example.com/page but blue"
    )


def test_user_mentions_in_prompt_become_plain_at_names() -> None:
    assert start("thank <@U1> and <@U2|bob> for it").prompt == "thank @U1 and @bob for it"


def test_channel_and_special_mentions_in_prompt_become_plain_text() -> None:
    assert start("post in <#C1|general> for <!here> and <!channel>").prompt == (
        "post in #general for @here and @channel"
    )


def test_user_group_mention_in_prompt_keeps_a_single_at_sign() -> None:
    # Slack sends a user group as <!subteam^ID|@handle>: the label already has its "@".
    assert start("ask <!subteam^S0TR1SJKX|@imps> to review").prompt == "ask @imps to review"


def test_em_dash_before_an_option_is_read_as_two_hyphens() -> None:
    assert start("a cat —aspect 9:16").aspect == "9:16"


def test_en_dash_before_an_option_is_read_as_two_hyphens() -> None:
    assert start("a cat –duration 1-5min").duration == "1-5min"


def test_em_dash_inside_the_prompt_stays_prose() -> None:
    assert start("fast — really fast—cars").prompt == "fast — really fast—cars"


def test_option_with_equals_sign_is_accepted() -> None:
    request = start("a cat --aspect=1:1 --style=https://youtu.be/x")
    assert request.aspect == "1:1"
    assert request.style_url == "https://youtu.be/x"


def test_youtube_link_in_prompt_without_style_stays_prompt_text() -> None:
    request = start("make it like https://www.youtube.com/watch?v=abc please")
    assert request.prompt == "make it like https://www.youtube.com/watch?v=abc please"
    assert request.style_url is None


def test_prompt_of_exactly_the_maximum_length_is_accepted() -> None:
    assert len(start("x" * 12_000).prompt) == 12_000


def test_ten_attachments_are_accepted() -> None:
    text = "a cat " + " ".join(f"--attach https://example.com/{i}.png" for i in range(10))
    assert len(start(text).attachments) == 10


def test_parse_request_decodes_slack_text_for_thread_replies() -> None:
    request = parse_request("make it &lt;blue&gt; --duration &lt;10s")
    assert request.prompt == "make it <blue>"
    assert request.duration == "<10s"


# ---------------------------------------------------------------- bad input, with the fix


def test_empty_prompt_before_options_is_refused_with_an_example() -> None:
    message = usage_error("--aspect 9:16")
    assert "prompt is empty" in message
    assert "/motion" in message  # shows what to type instead


def test_prompt_over_twelve_thousand_characters_is_refused_with_how_much_to_cut() -> None:
    message = usage_error("x" * 12_005)
    assert "12,005" in message
    assert "12,000" in message
    assert "Shorten it by 5" in message


def test_prompt_over_the_limit_as_motion_counts_it_is_refused() -> None:
    # Motion validates with JavaScript (zod), which counts UTF-16 code units: each of these
    # emoji is two, so 6,001 of them are 12,002 characters to Motion and would get a 400.
    with pytest.raises(UsageError, match="12,000"):
        parse_command("🎬" * 6_001)


def test_style_must_be_a_youtube_link() -> None:
    message = usage_error("a cat --style https://vimeo.com/123")
    assert "YouTube" in message
    assert "https://vimeo.com/123" in message


def test_style_on_a_lookalike_youtube_host_is_refused() -> None:
    assert "YouTube" in usage_error("a cat --style https://youtube.com.evil.example/watch")


def test_style_that_is_not_a_url_is_refused() -> None:
    assert "YouTube" in usage_error("a cat --style youtube")


def test_attachment_must_be_https() -> None:
    message = usage_error("a cat --attach http://example.com/a.png")
    assert "https" in message
    assert "http://example.com/a.png" in message


def test_attachment_that_is_not_a_url_is_refused() -> None:
    assert "https" in usage_error("a cat --attach logo.png")


def test_slack_file_link_attachment_is_refused_with_the_reason() -> None:
    message = usage_error("a cat --attach https://files.slack.com/files-pri/T1-F1/logo.png")
    assert "Slack file" in message
    assert "public" in message


def test_more_than_ten_attachments_are_refused_with_how_many_to_remove() -> None:
    text = "a cat " + " ".join(f"--attach https://example.com/{i}.png" for i in range(12))
    message = usage_error(text)
    assert "12 attachments" in message
    assert "at most 10" in message
    assert "Remove 2" in message


def test_attachment_link_over_the_api_limit_is_refused() -> None:
    long_url = "https://example.com/" + "a" * 4_100
    assert "4,096" in usage_error(f"a cat --attach {long_url}")


def test_unknown_option_is_refused_with_the_list_of_options() -> None:
    message = usage_error("a cat --colour red")
    assert "`--colour` is not an option" in message
    for option in ("--style", "--attach", "--aspect", "--duration"):
        assert option in message


def test_unknown_aspect_is_refused_with_the_allowed_values() -> None:
    message = usage_error("a cat --aspect 2:1")
    assert "`--aspect 2:1` is not supported" in message
    for aspect in ("16:9", "9:16", "1:1", "4:5", "21:9"):
        assert aspect in message


def test_unknown_duration_is_refused_with_the_allowed_values() -> None:
    message = usage_error("a cat --duration 2h")
    assert "`--duration 2h` is not supported" in message
    for duration in ("<10s", "10-30s", "30s-1min", "1-5min"):
        assert duration in message


def test_option_without_value_at_the_end_is_refused_with_an_example() -> None:
    message = usage_error("a cat --style")
    assert "`--style` needs a value" in message
    assert "youtu.be" in message


def test_option_followed_by_another_option_has_no_value() -> None:
    assert "`--aspect` needs a value" in usage_error("a cat --aspect --duration 1-5min")


def test_option_with_empty_equals_value_is_refused() -> None:
    assert "`--duration` needs a value" in usage_error("a cat --duration=")


def test_duplicated_style_is_refused() -> None:
    message = usage_error("a cat --style https://youtu.be/a --style https://youtu.be/b")
    assert "--style" in message
    assert "twice" in message


def test_duplicated_aspect_is_refused() -> None:
    assert "twice" in usage_error("a cat --aspect 1:1 --aspect 9:16")


def test_words_after_the_options_are_refused_with_where_the_prompt_goes() -> None:
    message = usage_error("a cat --aspect 1:1 in the snow")
    assert "`in`" in message
    assert "prompt first" in message


def test_a_dashed_word_in_the_prompt_is_reported_as_an_unknown_option() -> None:
    assert "`--verbose` is not an option" in usage_error("explain the --verbose flag")


# ---------------------------------------------------------------- the body sent to Motion


def test_body_has_only_the_prompt_when_nothing_else_was_asked() -> None:
    assert start("a cat").to_body() == {"prompt": "a cat"}


def test_body_has_every_requested_field_with_api_names() -> None:
    body = start(
        "a cat --style https://youtu.be/x --attach https://example.com/logo.png "
        "--aspect 4:5 --duration 30s-1min"
    ).to_body()
    assert body == {
        "prompt": "a cat",
        "style_reference_url": "https://youtu.be/x",
        "attachments": [
            {"url": "https://example.com/logo.png", "name": "logo.png", "type": "image"}
        ],
        "aspect_ratio": "4:5",
        "duration": "30s-1min",
    }


def test_attachment_name_and_type_come_from_the_link() -> None:
    body = start(
        "a cat --attach https://example.com/v/Clip.MOV --attach https://example.com/song.mp3 "
        "--attach https://example.com/brief.pdf --attach https://example.com/ "
        "--attach https://example.com/my%20logo.png"
    ).to_body()
    assert body["attachments"] == [
        {"url": "https://example.com/v/Clip.MOV", "name": "Clip.MOV", "type": "video"},
        {"url": "https://example.com/song.mp3", "name": "song.mp3", "type": "audio"},
        {"url": "https://example.com/brief.pdf", "name": "brief.pdf"},
        {"url": "https://example.com/"},
        {"url": "https://example.com/my%20logo.png", "name": "my logo.png", "type": "image"},
    ]


def test_attachment_name_is_cut_to_the_api_limit() -> None:
    body = start(f"a cat --attach https://example.com/{'n' * 300}.png").to_body()
    assert len(body["attachments"][0]["name"]) <= 240


def test_attachment_name_is_cut_to_the_api_limit_as_motion_counts_it() -> None:
    # 200 emoji are 400 UTF-16 code units: Motion (JavaScript) would refuse the name with a 400.
    body = start(f"a cat --attach https://example.com/{'%F0%9F%8E%AC' * 200}.png").to_body()
    name = body["attachments"][0].get("name", "")
    assert len(name.encode("utf-16-le")) // 2 <= 240


def test_request_survives_a_json_round_trip() -> None:
    request = start("a cat --attach https://example.com/a.png --aspect 1:1")
    assert MotionRequest.from_json(request.to_json()) == request


# ---------------------------------------------------------------- mentions of the app


def test_strip_mention_removes_the_apps_mention_and_says_so() -> None:
    assert strip_mention("<@UBOT> make it blue", "UBOT") == ("make it blue", True)


def test_strip_mention_removes_a_labelled_mention_in_the_middle() -> None:
    assert strip_mention("make <@UBOT|motion> it blue", "UBOT") == ("make it blue", True)


def test_strip_mention_keeps_other_peoples_mentions() -> None:
    assert strip_mention("ask <@U2> about it", "UBOT") == ("ask <@U2> about it", False)


def test_strip_mention_does_not_match_a_longer_user_id() -> None:
    assert strip_mention("<@UBOT2> hi", "UBOT") == ("<@UBOT2> hi", False)


@pytest.mark.parametrize(
    ("text", "fix"),
    [
        ("  --aspect 9:16", "The prompt is empty"),
        (
            "x" * 12_001,
            "The prompt is 12,001 characters; Motion accepts at most 12,000. Shorten it by 1",
        ),
        ("a teaser --style <https://vimeo.com/123456>", "`--style` must be a YouTube link"),
        ("a teaser --attach <http://example.com/logo.png>", "is not an https link"),
        (
            "a teaser " + " ".join(f"--attach <https://example.com/{i}.png>" for i in range(11)),
            "11 attachments given; Motion accepts at most 10. Remove 1.",
        ),
        ("a teaser --speed 2", "`--speed` is not an option"),
        ("a teaser --aspect 4:3", "`--aspect 4:3` is not supported; use one of"),
        ("a teaser --duration 2min", "`--duration 2min` is not supported; use one of"),
    ],
)
def test_each_bad_command_says_what_to_change(text: str, fix: str) -> None:
    """The cases the end-to-end suite used to send one by one, at the parser where they live."""
    with pytest.raises(UsageError) as caught:
        parse_command(text)
    assert fix in str(caught.value)


@pytest.mark.parametrize(
    ("first", "reply"),
    [
        ("😀" * 6_000, "🎬" * 6_000),  # both at the limit in UTF-16 units
        ("a" * 10_000, "🎬" * 1_500),
        ("a" * 11_990, "b" * 100),
    ],
)
def test_a_merged_request_fills_motions_limit_without_splitting_a_character(
    first: str, reply: str
) -> None:
    merged = MotionRequest(first).merged_with(MotionRequest(reply))
    assert js_length(merged.prompt) in (MAX_PROMPT, MAX_PROMPT - 1)  # -1: an emoji did not fit
    assert merged.prompt.startswith(first[:100])
    assert "\ud83c" not in merged.prompt and "\ud83d" not in merged.prompt  # no lone surrogate
    assert merged.prompt == f"{first}\n\n{reply}"[: len(merged.prompt)]


def test_a_merged_request_keeps_the_replys_options_and_all_attachments() -> None:
    first = MotionRequest("a", aspect="16:9", attachments=tuple(f"https://x/{i}" for i in range(6)))
    reply = MotionRequest(
        "b", duration="<10s", attachments=tuple(f"https://y/{i}" for i in range(6))
    )
    merged = first.merged_with(reply)
    assert (merged.prompt, merged.aspect, merged.duration) == ("a\n\nb", "16:9", "<10s")
    assert merged.attachments == (*first.attachments, *reply.attachments[:4])


# ---------------------------------------------------------------- one set of rules, two surfaces


def test_the_form_and_the_command_share_one_set_of_rules() -> None:
    from bot.command_line import Field, request_problems

    problems = request_problems("", "https://vimeo.com/1", (), "2:1", "forever", form=True)
    assert set(problems) == {Field.PROMPT, Field.STYLE, Field.ASPECT, Field.DURATION}
    assert problems[Field.STYLE].startswith("The style link must be a YouTube link")
    assert request_problems("ok", "https://youtu.be/x", (), "9:16", "<10s") == {}
    too_long = request_problems("x" * 3001, None, (), None, None, max_prompt=3000, form=True)
    assert "3,000" in too_long[Field.PROMPT]
    # The command reports the same rule's words for the same mistake.
    with pytest.raises(UsageError) as raised:
        parse_request("a teaser --style https://vimeo.com/1")
    assert (
        raised.value.args[0]
        == request_problems("a", "https://vimeo.com/1", (), None, None)[Field.STYLE]
    )


def test_motion_new_opens_the_form() -> None:
    from bot.command_line import NewForm

    assert parse_command("new") == NewForm()
    assert parse_command("  NEW ") == NewForm()
    assert not isinstance(parse_command("new year teaser"), NewForm)
