"""Signed public-link tokens: made by the app, refused when altered, expired or of another kind."""

from __future__ import annotations

import pytest

from bot.links import BadToken, LinkSigner, signer_for


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_carries_its_payload_back() -> None:
    signer = LinkSigner("secret", Clock())
    token = signer.sign("file", {"team": "T1", "file": "F123"}, ttl_seconds=60)
    assert signer.verify("file", token) == {"team": "T1", "file": "F123"}


def test_a_token_is_url_safe() -> None:
    token = LinkSigner("s").sign("video", {"job": 42, "run": 3, "text": "ä/+?&"}, None)
    assert all(c.isalnum() or c in "-_." for c in token)


def test_an_expired_token_is_refused() -> None:
    clock = Clock()
    signer = LinkSigner("secret", clock)
    token = signer.sign("file", {"file": "F1"}, ttl_seconds=24 * 3600)
    clock.now += 24 * 3600 - 1
    assert signer.verify("file", token) == {"file": "F1"}
    clock.now += 1
    with pytest.raises(BadToken) as caught:
        signer.verify("file", token)
    assert caught.value.reason == "expired"


@pytest.mark.parametrize("position", [0, 5, -1, -5])
def test_any_changed_character_is_refused(position: int) -> None:
    signer = LinkSigner("secret")
    token = signer.sign("file", {"file": "F1"}, ttl_seconds=60)
    flipped = "A" if token[position] != "A" else "B"
    tampered = (
        token[:position] + flipped + token[position + 1 :]
        if position >= 0
        else (token[:position] + flipped + (token[position + 1 :] if position < -1 else ""))
    )
    assert tampered != token
    with pytest.raises(BadToken):
        signer.verify("file", tampered)


def test_a_payload_swapped_under_a_good_signature_is_refused() -> None:
    signer = LinkSigner("secret")
    mine = signer.sign("file", {"file": "F1"}, 60)
    theirs = signer.sign("file", {"file": "F2"}, 60)
    forged = theirs.split(".")[0] + "." + mine.split(".")[1]
    with pytest.raises(BadToken):
        signer.verify("file", forged)


def test_a_file_token_is_not_a_video_token() -> None:
    signer = LinkSigner("secret")
    with pytest.raises(BadToken):
        signer.verify("video", signer.sign("file", {"file": "F1"}, 60))


def test_another_apps_secret_is_refused() -> None:
    token = LinkSigner("one").sign("file", {"file": "F1"}, 60)
    with pytest.raises(BadToken):
        LinkSigner("two").verify("file", token)


@pytest.mark.parametrize("junk", ["", ".", "abc", "abc.", ".abc", "!!!.???", "a" * 3000 + ".b"])
def test_junk_is_refused_without_an_exception_of_another_kind(junk: str) -> None:
    with pytest.raises(BadToken):
        LinkSigner("secret").verify("file", junk)


def test_the_token_does_not_contain_the_secret() -> None:
    secret = "very-secret-signing-value"
    token = signer_for(secret, "xoxb-1").sign("file", {"file": "F1"}, 60)
    assert secret not in token
    assert signer_for(None, "xoxb-1").secret == "xoxb-1"


def test_many_workspaces_refuse_a_video_link_that_names_no_workspace() -> None:
    """A /v/ link signed before links named their workspace: served with one workspace (its
    ids are that workspace's), refused with many (a forgotten workspace's job ids may be
    another's later)."""
    from bot.jobs.videos import VIDEO_LINK_KIND, VideoLinks

    signer = LinkSigner("a-signing-secret-of-the-app")
    old = signer.sign(VIDEO_LINK_KIND, {"j": 7, "r": 1}, None)
    assert VideoLinks(signer, "https://m.example").read(old).job_id == 7
    with pytest.raises(BadToken):
        VideoLinks(signer, "https://m.example", require_team=True).read(old)
    named = signer.sign(VIDEO_LINK_KIND, {"j": 7, "r": 1, "t": "T1"}, None)
    assert VideoLinks(signer, "https://m.example", require_team=True).read(named).team_id == "T1"
