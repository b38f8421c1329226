"""Acknowledgement under load: signed /motion commands fired at once at the app in HTTP mode.

The app runs as its own process (`python -m bot`), against the Slack Web API double and the Motion
sandbox with every create call delayed 2 s (the Motion call must never hold up the ack). Reports
ack latency p50/p99 for 50, then 200, concurrent commands, and checks that every command got
exactly one job (one database row, one card, one create call).

Every run then finishes (3 s of generation, 0.5 s of rendering) while the slow creates of the
later commands are still going, and the notification delay of every job is reported: when its
result reached Slack minus when its download URL appeared. Status calls must not wait behind the
slow creates (MotionClient keeps slots for them), so with POLL_MAX_SECONDS=1 the delay stays
within POLL_MAX_SECONDS + 1 s.

The commands are fired from a process of their own (bench/_fire.py), as Slack sends them from
its own machines: the stand-in and the sandbox, answering the app's cards and creates during
the burst, would otherwise share a GIL with the client that times the acks.

Targets: p99 ≤ 50 ms at 50 concurrent on SQLite and ≤ 100 ms on PostgreSQL, ≤ 250 ms at 200 on
both; zero lost, zero duplicated; notification p95 ≤ 2 s.

    python bench/ack.py [--database postgresql://…] [--workspaces N]

With `--workspaces N` the app serves many workspaces (installed through OAuth, "Add to Slack",
one token each): N workspaces are added to the stand-in and installed through the app's
/slack/install, the stand-in's approve page and /slack/oauth_redirect, and the commands of each
round are spread evenly over them, each signed and carrying its workspace's team id. Every
card must then be posted in its own workspace with that workspace's token.

On SQLite (the default) the app gets a new file; given a PostgreSQL URL, a new schema in that
database, dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

import httpx
from _app import BOT_TOKEN, MOTION_KEY, SIGNING_SECRET, fresh_schema, running_app
from _common import percentile, verdict

from bot.local.workspaces import HostedWorkspace
from bot.sandbox import JobPlan, SandboxThread
from bot.store import Store
from tests.support.motion import ScriptedSandbox as MotionSandbox
from tests.support.slack import SlackCall, SlackDouble, signed_headers

ROUNDS = (50, 200)
TARGETS = {"sqlite": {50: 0.050, 200: 0.250}, "postgresql": {50: 0.100, 200: 0.250}}
POLL_MAX_SECONDS = 1.0
PLAN = JobPlan(queued_s=0.5, created_s=0.5, running_s=2, render_s=0.5)


def signed(body: str) -> dict[str, str]:
    return signed_headers(body, SIGNING_SECRET, "application/x-www-form-urlencoded")


def install(port: int, slack: SlackDouble, team_id: str) -> HostedWorkspace:
    """Add a workspace to the stand-in and install the app there as a person would: the app's
    install page, the stand-in's approve page, the redirect back to the app."""
    workspace = slack.add_workspace(team_id)
    slack.oauth.next_approval(team_id, "U0ALICE")
    with httpx.Client() as browser:
        page = browser.get(f"http://127.0.0.1:{port}/slack/install")
        link = re.search(r'href="([^"]+/oauth/v2/authorize[^"]*)"', page.text)
        if page.status_code != 200 or link is None:
            raise RuntimeError(f"no install link: {page.status_code} {page.text[:200]}")
        approve = browser.get(link.group(1).replace("&amp;", "&"))
        done = browser.get(approve.headers["location"])
    if done.status_code != 200 or not slack.oauth.access_tokens(team_id):
        raise RuntimeError(f"install in {team_id} failed: {done.status_code} {done.text[:200]}")
    return workspace


def command_body(slack: SlackDouble, workspace: HostedWorkspace | None, prompt: str) -> str:
    """A `/motion prompt` form from alice in #general: in `workspace` (its team id, its
    response_url), or, with one workspace as the app's own token, as before."""
    if workspace is not None:
        return urlencode(
            workspace.slash_command("/motion", prompt, channel="C0PUBLIC", user="U0ALICE")
        )
    return urlencode(
        {
            "token": "x",
            "team_id": "T0001",
            "team_domain": "sandbox-team",
            "channel_id": "C0PUBLIC",
            "channel_name": "general",
            "user_id": "U0ALICE",
            "user_name": "alice",
            "command": "/motion",
            "text": prompt,
            "api_app_id": "A0APP",
            "is_enterprise_install": "false",
            "response_url": slack.response_url("bench"),
            "trigger_id": "1.2.3",
        }
    )


def fire(port: int, bodies: list[str]) -> list[tuple[int, float]]:
    """Fire the signed bodies at once from a process of its own (bench/_fire.py)."""
    order = {
        "url": f"http://127.0.0.1:{port}/slack/events",
        "requests": [[body, signed(body)] for body in bodies],
    }
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("_fire.py"))],
        input=json.dumps(order), capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return [(status, seconds) for status, seconds in json.loads(done.stdout)]


class Bench:
    """One run: the app, the stand-in, the sandbox; what was sent to which workspace."""

    def __init__(
        self, port: int, slack: SlackDouble, workspaces: list[HostedWorkspace] | None
    ) -> None:
        """`workspaces`: the installed workspaces, or None: one workspace, the app's own
        token (SLACK_BOT_TOKEN)."""
        self.port = port
        self.slack = slack
        self.workspaces = workspaces
        self.sent: dict[str, str] = {}  # prompt → team id

    def send(self, prompts: list[str]) -> list[tuple[int, float]]:
        """Fire these commands at once, spread evenly over the workspaces."""
        spread = self.workspaces or [None]
        bodies = []
        for i, prompt in enumerate(prompts):
            workspace = spread[i % len(spread)]
            self.sent[prompt] = workspace.team_id if workspace else "T0001"
            bodies.append(command_body(self.slack, workspace, prompt))
        return fire(self.port, bodies)

    def round(self, n: int, database: str, failures: list[str]) -> dict[str, float]:
        prompts = [f"bench {n} #{i:03d}" for i in range(n)]
        results = self.send(prompts)
        latencies = [t for _, t in results]
        ok = sum(1 for status, _ in results if status == 200)
        p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
        if ok != n:
            failures.append(f"{n - ok} of {n} commands not acknowledged with 200")
        target = TARGETS[database][n]
        if p99 > target:
            failures.append(f"p99 {p99 * 1000:.0f} ms at {n} concurrent > {target * 1000:.0f} ms")
        return {
            "acked_200": ok,
            "ack_p50_ms": round(p50 * 1000, 1),
            "ack_p99_ms": round(p99 * 1000, 1),
            "ack_max_ms": round(max(latencies) * 1000, 1),
        }

    def cards(self) -> Counter[str]:
        """Cards posted, per team id. A card that has replies carries its own ts as
        thread_ts, as in Slack."""
        workspaces = self.workspaces or [self.slack.workspace("T0001")]
        return Counter(
            {
                w.team_id: sum(
                    1
                    for m in w.messages("C0PUBLIC")
                    if m.get("thread_ts") in (None, m.get("ts")) and not m.get("subtype")
                )
                for w in workspaces
            }
        )

    def foreign_tokens(self) -> list[SlackCall]:
        """The app's chat.postMessage calls not made with their own workspace's token."""

        def own(team_id: str | None) -> set[str]:
            if self.workspaces is None:
                return {BOT_TOKEN}
            return set(self.slack.oauth.access_tokens(team_id)) if team_id else set()

        return [c for c in self.slack.calls("chat.postMessage") if c.token not in own(c.team_id)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default=None, help="postgresql://… (default: SQLite)")
    parser.add_argument(
        "--workspaces", type=int, default=None,
        help="N workspaces installed through OAuth (default: one, the app's own token)",
    )  # fmt: skip
    args = parser.parse_args()
    sandbox = MotionSandbox(default_plan=PLAN, api_keys={MOTION_KEY})
    sandbox.fault("create", delay=2.0, times=10**6)
    figures: dict[str, object] = {"create_delay_s": 2.0, "workspaces": args.workspaces or 1}
    failures: list[str] = []
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(fresh_schema(args.database)) if args.database else None
        figures["database"] = "postgresql" if database_url else "sqlite"
        slack = stack.enter_context(SlackDouble(bot_token=BOT_TOKEN))
        motion_url = stack.enter_context(SandboxThread(sandbox))
        poll = {"POLL_INITIAL_SECONDS": "1", "POLL_MAX_SECONDS": str(POLL_MAX_SECONDS)}
        port, db = stack.enter_context(
            running_app(
                slack.base_url, motion_url, database_url=database_url,
                many_workspaces=args.workspaces is not None, MOTION_MAX_IN_FLIGHT="50", **poll,
            )
        )  # fmt: skip
        workspaces = None
        if args.workspaces is not None:
            workspaces = [install(port, slack, f"T{1001 + i}") for i in range(args.workspaces)]
        bench = Bench(port, slack, workspaces)
        # One warm-up command per workspace: its first request also makes Bolt call auth.test.
        bench.send([f"warm-up {i}" for i in range(len(workspaces or [None]))])
        for n in ROUNDS:
            figures[f"concurrent_{n}"] = bench.round(n, str(figures["database"]), failures)
        figures |= settle(bench, sandbox, db, failures)
    return verdict("ack", figures, failures)


def settle(bench: Bench, sandbox: MotionSandbox, db: str, failures: list[str]) -> dict[str, object]:
    """Wait for every job to be created and its result posted; count jobs, creates and cards
    (per workspace, each with its own token) and the notification delays."""
    slack, sent = bench.slack, bench.sent
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(sandbox.creates) < len(sent):
        time.sleep(0.5)
    time.sleep(1.0)  # anything extra would show up now
    results = lambda: [c for c in slack.calls("chat.postMessage") if _is_result(c)]  # noqa: E731
    while time.monotonic() < deadline + 60 and len(results()) < len(sent):
        time.sleep(0.5)
    reader = Store(db, instance="bench-reader")  # the app's own schema, read only
    try:
        rows = Counter(p for (p,) in reader.backend.execute("SELECT prompt FROM jobs"))
        threads = reader.backend.execute("SELECT team_id, thread_ts, motion_job_id FROM jobs").rows
    finally:
        reader.close()
    posted = {(c.team_id, c.params.get("thread_ts")): c.at for c in results()}
    delays = [
        posted[(team, ts)] - sandbox.timeline(mid)[1]
        for team, ts, mid in threads
        if (team, ts) in posted
    ]
    creates = Counter(body["prompt"] for body in sandbox.creates)
    cards, expected = bench.cards(), Counter(sent.values())
    foreign = bench.foreign_tokens()
    lost = [p for p in sent if rows[p] == 0 or creates[p] == 0]
    doubled = [p for p in sent if rows[p] > 1 or creates[p] > 1]
    notify_p95 = percentile(delays, 0.95)
    if lost or doubled or cards != expected:
        failures.append(
            f"{len(lost)} lost, {len(doubled)} duplicated, cards {dict(cards)} for {dict(expected)}"
        )
    if foreign:
        failures.append(f"{len(foreign)} messages posted without their workspace's own token")
    if len(delays) != len(sent):
        failures.append(f"{len(sent) - len(delays)} results not posted")
    if notify_p95 > POLL_MAX_SECONDS + 1:
        failures.append(f"notification p95 {notify_p95:.2f} s > {POLL_MAX_SECONDS + 1:.0f} s")
    return {
        "poll_max_seconds": POLL_MAX_SECONDS,
        "results_posted": len(delays),
        "notification_p50_s": round(percentile(delays, 0.50), 2),
        "notification_p95_s": round(notify_p95, 2),
        "notification_max_s": round(max(delays, default=0.0), 2),
        "commands": len(sent),
        "jobs_in_database": sum(rows.values()),
        "create_calls": sum(creates.values()),
        "cards_posted": sum(cards.values()),
        "cards_per_workspace": dict(cards),
        "posted_with_another_token": len(foreign),
        "lost": len(lost),
        "duplicated": len(doubled),
    }


def _is_result(call: SlackCall) -> bool:
    about = (call.params.get("metadata") or {}).get("event_payload") or {}
    return about.get("kind") == "result"


if __name__ == "__main__":
    sys.exit(main())
