"""What crosses from a private conversation into a public one: the notify channel hears that a
video is ready, never its prompt, its credits or who asked."""

from __future__ import annotations

from tests.support.e2e import results, run_command, settle
from tests.support.harness import Harness, until

SECRET_PROMPT = "launch teaser for Project Nightingale, embargoed until March"


async def test_a_private_channels_job_is_announced_without_its_prompt_or_credits(
    harness: Harness,
) -> None:
    harness.slack.add_channel("C0NOTIFY", name="video-news")
    await harness.start(MOTION_NOTIFY_CHANNEL="C0NOTIFY")
    card = await run_command(harness, SECRET_PROMPT, channel="G0MEMBER")
    [notice] = await until(lambda: harness.slack.messages("C0NOTIFY"), what="the notify notice")
    await until(lambda: results(harness, card["ts"], channel="G0MEMBER"), what="the result")
    await settle()

    seen = repr(harness.slack.messages("C0NOTIFY"))
    assert "Nightingale" not in seen and "embargoed" not in seen
    assert "U0ALICE" not in seen  # nor who asked
    assert "private conversation" in notice["text"]
    assert "/archives/G0MEMBER/" in notice["text"]  # the link opens only for its members
    # The thread itself, inside the private channel, has everything.
    [result] = results(harness, card["ts"], channel="G0MEMBER")
    assert "<@U0ALICE>" in result["text"]


async def test_a_public_channels_job_is_announced_with_its_prompt(harness: Harness) -> None:
    harness.slack.add_channel("C0NOTIFY", name="video-news")
    await harness.start(MOTION_NOTIFY_CHANNEL="C0NOTIFY")
    await run_command(harness, "a public fox")
    [notice] = await until(lambda: harness.slack.messages("C0NOTIFY"), what="the notify notice")
    assert "a public fox" in notice["text"] and "<@U0ALICE>" in notice["text"]


async def test_a_mention_in_a_private_channel_is_announced_without_its_prompt(
    harness: Harness,
) -> None:
    harness.slack.add_channel("C0NOTIFY", name="video-news")
    await harness.start(MOTION_NOTIFY_CHANNEL="C0NOTIFY")
    mention, _twin = harness.slack.mention("G0MEMBER", f"<@U0BOT> {SECRET_PROMPT}", user="U0BOB")
    response = await harness.event(mention)
    assert response.status_code == 200
    [notice] = await until(lambda: harness.slack.messages("C0NOTIFY"), what="the notify notice")
    assert "Nightingale" not in notice["text"] and "U0BOB" not in notice["text"]


async def test_a_video_link_serves_only_while_its_job_is_its_workspaces(harness: Harness) -> None:
    """The lasting /v/ link names its workspace: a link naming the job under another workspace
    is refused (403, as the spec's isolation asks of a link), and once the job is gone (an uninstalled workspace's data is deleted)
    neither does the real one; a link signed before links named a workspace still works."""
    from bot.links import signer_for
    from tests.e2e.test_e2e_video import download_button, finished, start_public
    from tests.support.harness import SIGNING_SECRET

    public = await start_public(harness)
    _, result = await finished(harness)
    link = download_button(result)
    [job] = harness.bot.store.recent_jobs("T0001", "U0ALICE")
    signer = signer_for(SIGNING_SECRET, "")

    def link_for(payload: dict[str, object]) -> str:
        return f"{public}/v/" + signer.sign("video", payload, None)

    other_team = link_for({"j": job.id, "r": 1, "t": "T0OTHER"})
    older = link_for({"j": job.id, "r": 1})
    assert (await harness.http.get(link)).status_code == 302
    assert (await harness.http.get(older)).status_code == 302
    assert (await harness.http.get(other_team)).status_code == 403

    store = harness.bot.store
    with store._write() as conn:  # what an uninstall does to the workspace's rows
        conn.execute("DELETE FROM posts WHERE job_id = ?", (job.id,))
        conn.execute(
            "DELETE FROM run_spend WHERE run_id IN (SELECT id FROM runs WHERE job_id = ?)",
            (job.id,),
        )
        conn.execute("DELETE FROM runs WHERE job_id = ?", (job.id,))
        conn.execute("DELETE FROM jobs WHERE id = ?", (job.id,))
    assert (await harness.http.get(link)).status_code == 404
