"""LOG_FORMAT=json through a real run of `python -m bot`: every line it writes, from start to
SIGTERM, is one JSON object with the fields, the lines about a job say which job, run and
workspace, and no line holds a secret — also when Motion's own words quote one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bot.sandbox import SandboxThread
from tests.support.harness import BOT_TOKEN, FAST_PLAN, ROOT_DIR, SIGNING_SECRET, until
from tests.support.motion import ScriptedSandbox
from tests.support.slack import SlackDouble
from tests.support.soak_app import MOTION_KEY, AppProcess, SlackSide, app_env, free_port

METRICS_TOKEN = "metrics-token-0123456789abcdef"
SECRETS = (BOT_TOKEN, SIGNING_SECRET, MOTION_KEY, METRICS_TOKEN)
MARKER = "=== soak:"  # the lines AppProcess itself writes into the log


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text().splitlines() if not line.startswith(MARKER)]
    assert lines, "the app wrote nothing"
    parsed = []
    for line in lines:
        entry = json.loads(line)  # every line: one JSON object, nothing else
        assert isinstance(entry, dict), line
        parsed.append(entry)
    return parsed


async def test_every_line_of_a_real_run_is_json_with_its_fields_and_no_secret(
    tmp_path: Path, slack: SlackDouble, database_url: str
) -> None:
    sandbox = ScriptedSandbox(default_plan=FAST_PLAN, api_keys={MOTION_KEY})
    # Motion's words on a failed status call quote the key: logged (as repr), redacted.
    body = json.dumps({"error": "unavailable", "message": f"key {MOTION_KEY} is throttled"})
    sandbox.fault("status", status=503, body=body)
    log_path = tmp_path / "app.log"
    with SandboxThread(sandbox):
        port = free_port()
        env = app_env(slack, sandbox.base_url or "", database_url, port)
        env |= {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "METRICS_TOKEN": METRICS_TOKEN}
        app = AppProcess(env, ROOT_DIR, log_path, port, name="web.1")
        side = SlackSide(slack, sandbox, port)
        try:
            app.start()
            await app.wait_healthy(side.http)
            assert (await side.command("a teaser")).status_code == 200
            await until(
                lambda: [c for c in slack.calls("chat.postMessage") if "is ready" in str(c.params)],
                timeout=20,
                what="the result",
            )
            status, _ = await app.terminate()
            assert status == 0
        finally:
            app.close()
            await side.aclose()
    entries = json_lines(log_path)
    for entry in entries:
        assert {"time", "level", "logger", "message", "instance"} <= entry.keys(), entry
        assert entry["instance"] == "web.1" and entry["time"].endswith("Z")
    text = log_path.read_text()
    assert [secret for secret in SECRETS if secret in text] == []
    messages = [e["message"] for e in entries]
    assert any("listening for Slack" in m for m in messages)
    assert any("stopping" in m for m in messages)  # SIGTERM's lines too
    [accepted] = [e for e in entries if "accepted from" in e["message"]]
    assert accepted["job"] >= 1 and accepted["team"] == "T0001" and "run" not in accepted
    [throttled] = [e for e in entries if "is throttled" in e["message"]]
    assert "[redacted]" in throttled["message"]
    assert throttled["job"] >= 1 and throttled["run"] == 1 and throttled["team"] == "T0001"


def test_an_unknown_log_format_stops_the_app_at_start_with_a_clear_message(
    slack: SlackDouble, tmp_path: Path
) -> None:
    env = app_env(slack, "http://127.0.0.1:9/api", f"sqlite:///{tmp_path / 'm.db'}", 0)
    env |= {"LOG_FORMAT": "yaml", "METRICS_PORT": "70000", "METRICS_TOKEN": "too-short"}
    done = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=ROOT_DIR, env=env, capture_output=True, timeout=30
    )
    assert done.returncode == 2
    err = done.stderr.decode()
    assert "LOG_FORMAT must be text" in err and "'yaml'" in err
    assert "METRICS_PORT must be between 1 and 65535" in err
    assert "METRICS_TOKEN must be at least 16 characters" in err and "too-short" not in err
