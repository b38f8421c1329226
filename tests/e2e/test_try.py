"""`python -m bot try` as a newcomer runs it: a real process, no configuration at all, and the
terminal rendering of what the stand-in's channel shows."""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from bot.local.tryout import Terminal, Tryout, card_line, message_lines, plain
from bot.local.workspace import Change
from bot.motion import Source
from bot.slack import messages

ROOT = Path(__file__).resolve().parents[2]
NAMES = {"U0ALICE": "alice", "U0BOT": "motion", "C0PUBLIC": "general"}


def run_try(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "MOTION_", "DATABASE_", "POLL_", "PORT", "LOG_LEVEL"))
    }
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bot", "try", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_try_shows_a_job_and_its_followup_with_no_configuration(tmp_path: Path) -> None:
    done = run_try(tmp_path, "--fast", "--followup", "make it warmer")

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout
    assert "alice: /motion a 20-second teaser for our spring sale" in out
    assert "card posted: 🎬 Motion video for @alice" in out
    assert "card edited:" in out and "Status: ✅ Done" in out
    assert "motion (also sent to #general):" in out
    assert "run 1 of your Motion video is ready." in out
    # the sandbox serves its MP4s itself, on loopback, and each is uploaded into the thread
    assert "Download: http://127.0.0.1:" in out and "run-1.mp4" in out
    assert "📎 motion-run-1.mp4 (0.2 MB), plays in the thread" in out
    assert "Credits — " in out and "rights:" in out
    assert "alice:\n        make it warmer" in out
    assert "motion reacted ⏳ to alice's message" in out
    assert "run 2 of your Motion video is ready." in out and "run-2.mp4" in out
    assert out.index("run 1 of your") < out.index("make it warmer") < out.index("run 2 of your")
    assert list(tmp_path.iterdir()) == []  # nothing left behind in the working directory


def test_try_with_file_mentions_the_app_with_an_image_that_motion_fetches_through_the_app(
    tmp_path: Path,
) -> None:
    """With a file, the prompt is an @mention (a slash command cannot carry files), the card is
    the first reply in its thread, and Motion fetches the file through PUBLIC_URL/files/."""
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    done = run_try(tmp_path, "a logo sting", "--fast", "--file", str(logo), "--followup", "bigger")

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout
    assert "alice:\n        @motion a logo sting\n        📎 logo.png (2 kB, image/png)" in out
    assert "  ↳ card posted: 🎬 Motion video for @alice · > a logo sting" in out
    assert "Motion fetched logo.png from http://127.0.0.1:" in out and "/files/" in out
    assert "200, image/png, 2056 bytes" in out
    assert "Download: http://127.0.0.1:" in out and "/v/" in out  # PUBLIC_URL's lasting link
    assert "📎 motion-run-1.mp4 (0.2 MB), plays in the thread" in out
    assert "alice:\n        bigger" in out and "run 2 of your Motion video is ready." in out
    assert out.index("card posted") < out.index("run 1 of your") < out.index("Motion fetched")


def test_try_with_file_uses_a_built_in_sample_image(tmp_path: Path) -> None:
    done = run_try(tmp_path, "--fast", "--with-file")

    assert done.returncode == 0, done.stderr
    assert "📎 sample-logo.png (" in done.stdout and "image/png)" in done.stdout
    assert "Motion fetched sample-logo.png from http://127.0.0.1:" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_try_workflow_shows_a_workflow_step_from_start_to_completion(tmp_path: Path) -> None:
    done = run_try(tmp_path, "--fast", "--workflow", "a launch recap")

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Workflow Builder: a workflow runs the step “Make a Motion video”" in out
    assert "prompt = a launch recap" in out and "requester = U0ALICE" in out
    assert "card posted: 🎬 Motion video for @alice" in out
    assert "workflow step “Make a Motion video” completed; its outputs:" in out
    assert "video_url = http://127.0.0.1:" in out and "/v/" in out
    assert "thread_permalink = https://sandbox-team.slack.com/archives/C0PUBLIC/p" in out
    assert "job_id = 1" in out
    assert out.index("run 1 of your Motion video is ready.") < out.index("completed; its outputs")
    assert out.count("workflow step “Make a Motion video” completed") == 1


def test_try_with_a_file_that_is_not_there_says_so(tmp_path: Path) -> None:
    done = run_try(tmp_path, "--file", str(tmp_path / "missing.png"))

    assert done.returncode == 2
    assert "missing.png" in done.stderr and "no such file" in done.stderr


def test_try_gives_up_with_a_reason_after_its_timeout(tmp_path: Path) -> None:
    done = run_try(tmp_path, "a slow one", "--timeout", "0.5")

    assert done.returncode == 1
    assert done.stderr == "motion-bot try: no result within 0.5 s\n"


def test_mrkdwn_is_shown_as_plain_text() -> None:
    text = "*Credits* for <@U0ALICE> in <#C0PUBLIC>: <https://x.example/a?b=1&amp;c=2|the file>"
    assert plain(text, NAMES) == (
        "Credits for @alice in #general: the file (https://x.example/a?b=1&c=2)"
    )
    assert plain("_note_ &lt;b&gt; <https://x.example>", NAMES) == "note <b> https://x.example"
    assert plain("see <https://x.example|here>", NAMES, urls=False) == "see here"
    assert plain("snake_case_name and 2*3*4", NAMES) == "snake_case_name and 2*3*4"


def test_result_lines_show_the_link_the_button_and_every_credit() -> None:
    (result,) = messages.result_messages(
        requester="U0ALICE",
        run_number=1,
        download_url="https://cdn.example/run-1.mp4",
        sources=[
            Source.parse(
                {"kind": "music", "provider": "artlist", "title": "Uplift", "rights": "cleared"}
            )
        ],
        expires_at=None,
        sandbox=True,
    )
    lines = message_lines(result.payload(), NAMES)

    assert lines[0] == "✅ @alice run 1 of your Motion video is ready."
    assert "[ ⬇️ Download MP4 ]" in lines
    assert "Download: https://cdn.example/run-1.mp4" in lines
    assert any(line.startswith("Credits — 1 source") for line in lines)
    assert any("Uplift" in line and "artlist" in line for line in lines)
    assert lines[-1] == messages.SANDBOX_NOTE


def test_the_card_is_one_line_without_its_footers() -> None:
    card = messages.job_card(
        requester="U0ALICE",
        prompt="a teaser <for> us",
        status=messages.status_label("running", 3),
        runs=[messages.RunLine(1, "done", "✅ Done", "https://cdn.example/run-1.mp4")],
        sandbox=True,
    )
    line = card_line(card.payload(), NAMES)

    assert line.startswith(
        "🎬 Motion video for @alice · > a teaser <for> us · Status: 🎬 Generating"
    )
    assert line.endswith("Run 1 · ✅ Done · download")
    assert "\n" not in line and "Sandbox" not in line and "Reply in this thread" not in line


def test_terminal_prints_changes_with_their_time() -> None:
    out = io.StringIO()
    terminal = Terminal(out, NAMES, started=time.monotonic())
    card = {"ts": "1.1", "text": "x", "metadata": {"event_payload": {"kind": "card"}}}
    card["blocks"] = [{"type": "section", "text": {"type": "mrkdwn", "text": "Status: queued"}}]
    reply = {"ts": "1.2", "thread_ts": "1.1", "user": "U0BOT", "subtype": "thread_broadcast"}
    reply["blocks"] = [{"type": "section", "text": {"type": "mrkdwn", "text": "ready &amp; done"}}]

    terminal.show(Change("posted", "C0PUBLIC", card))
    terminal.show(Change("edited", "C0PUBLIC", card))  # nothing visible changed: no line
    terminal.show(Change("posted", "C0PUBLIC", reply))
    terminal.show(Change("reaction_added", "C0PUBLIC", {"user": "U0ALICE"}, "arrow_forward"))

    assert out.getvalue().splitlines() == [
        "[00:00] card posted: Status: queued",
        "[00:00]   ↳ motion (also sent to #general):",
        "        ready & done",
        "[00:00] motion reacted ▶️ to alice's message",
    ]


async def test_a_failure_post_ends_the_wait_with_its_words() -> None:
    args = argparse.Namespace(followup=None)
    tryout = Tryout(args, io.StringIO())
    tryout.terminal = Terminal(io.StringIO(), NAMES, started=0.0)
    failed = messages.job_failed(run_number=1, error="Render crashed", sandbox=True).payload()
    failed["ts"], failed["thread_ts"], failed["user"] = "1.2", "1.1", "U0BOT"
    failed["metadata"] = {"event_payload": {"kind": "job_failed", "run": 1}}
    card = {"ts": "1.1", "text": "card", "metadata": {"event_payload": {"kind": "card"}}}
    tryout.changes.put_nowait(Change("posted", "C0PUBLIC", card))
    tryout.changes.put_nowait(Change("posted", "C0PUBLIC", failed))

    card_ts, failure = await tryout.until_result(run=1)

    assert card_ts == "1.1"
    assert failure is not None and "Render crashed" in failure


def said_in(out: str, workspace: str) -> list[str]:
    """Every line printed about one workspace of `try --workspaces`: its stamped lines and the
    lines under them."""
    found: list[str] = []
    current = ""
    for line in out.splitlines():
        if line.startswith("["):
            current = line.split("] ", 1)[-1].split(" · ", 1)[0]
        if current == workspace:
            found.append(line)
    return found


SECRET_SHAPES = (
    r"xox[a-z]-",  # a Slack token: xoxb-, xoxe-1- (a refresh token), xoxe.xoxb-
    r"motion_[0-9a-f]{8}",  # a Motion key (the form shows only its last 4)
    r"[A-Za-z0-9_-]{43}=",  # a Fernet key (SECRET_KEYS)
    "standin-client-secret",
)


def test_try_workspaces_installs_two_workspaces_sets_a_key_in_one_and_runs_a_job_in_each(
    tmp_path: Path,
) -> None:
    done = run_try(tmp_path, "--fast", "--workspaces", "a fox in the snow")

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout
    for workspace, installer in (("Acme", "dana"), ("Globex", "erin")):
        assert f"{workspace} · {installer} opens http://127.0.0.1:" in out
        assert f"Slack's approve page: {installer} allows Motion in {workspace}" in out
        assert f"Motion was added to {workspace}." in out  # the app's page after the redirect
        assert f"{workspace} · {workspace} installed Motion" in out
    assert out.index("Acme installed Motion") < out.index("Globex installed Motion")
    assert "Acme · dana (a workspace admin) opens the app's Home tab:" in out
    assert "[ ⚙️ Settings ]" in out and "▸ Motion API key" in out
    assert re.search(r"Acme · dana pastes a Motion key \(motion_…[0-9a-f]{4}\)", out)
    assert "Acme · the form closes: the app tried the key with Motion (it works)" in out
    jobs = out[out.index("the form closes") :]
    for workspace, requester in (("Acme", "alice"), ("Globex", "bob")):
        assert f"{workspace} · #general · {requester}: /motion a fox in the snow" in jobs
        assert f"{workspace} · card posted: 🎬 Motion video for @{requester}" in jobs
        assert f"{workspace} · card edited:" in jobs
        assert f"✅ @{requester} run 1 of your Motion video is ready." in jobs
        assert "Credits — " in "\n".join(said_in(jobs, workspace))
    # Acme's job ran with Acme's key at "Motion"; Globex, with no key, stayed in the sandbox.
    assert messages.SANDBOX_NOTE in "\n".join(said_in(jobs, "Globex"))
    assert messages.SANDBOX_NOTE not in "\n".join(said_in(jobs, "Acme"))
    assert "Acme's job went to Motion (MOTION_API_URL) with Acme's own key" in out
    for shape in SECRET_SHAPES:
        assert not re.search(shape, out + done.stderr), shape
    assert list(tmp_path.iterdir()) == []


def test_try_workspaces_gives_up_with_a_reason_after_its_timeout(tmp_path: Path) -> None:
    done = run_try(tmp_path, "--workspaces", "--timeout", "1")

    assert done.returncode == 1
    assert done.stderr.startswith("motion-bot try: no result within 1 s")
    assert list(tmp_path.iterdir()) == []


def test_try_help_documents_workspaces_and_refuses_a_followup_with_it(tmp_path: Path) -> None:
    helped = run_try(tmp_path, "--help")
    assert helped.returncode == 0
    assert "--workspaces" in helped.stdout
    assert "many-workspaces mode: install the app in two workspaces" in " ".join(
        helped.stdout.split()
    )
    refused = run_try(tmp_path, "--workspaces", "--followup", "warmer")
    assert refused.returncode == 2 and "--followup is not part of --workspaces" in refused.stderr
    mixed = run_try(tmp_path, "--workspaces", "--workflow")
    assert mixed.returncode == 2 and "not allowed with argument" in mixed.stderr
