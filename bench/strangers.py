"""Signed commands beside a flood of requests from strangers.

The app runs as its own process (`python -m bot`, HTTP mode) against the Slack Web API double and
the Motion sandbox. Signed `/motion` commands are sent one after another, first alone, then while
`--flooders` clients post, as fast as they can, 2-KB bodies that inflate to 2 MB
(`Content-Encoding: gzip`) — half unsigned, half with a fresh timestamp and a forged signature.
Reports the commands' ack p50/p99/max in both phases and how many flood requests the app refused
(all must be 401 or 413, or a connection the app closed after a 413).

Target: ack p99 under the flood < 300 ms (Slack gives up at 3 s); zero commands lost.

    python bench/strangers.py [--commands 40] [--flooders 4]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import sys
import time
from collections import Counter
from urllib.parse import urlencode

import aiohttp
from _app import SIGNING_SECRET, running_app
from _common import percentile, verdict

from bot.local.payloads import signed_headers
from bot.sandbox import SandboxThread
from tests.support.motion import ScriptedSandbox
from tests.support.slack import SlackDouble

FORM = "application/x-www-form-urlencoded"
TARGET_P99 = 0.300
BOMB = gzip.compress(b"a" * (2 * 1024 * 1024), compresslevel=9)


def command_body(slack: SlackDouble, prompt: str) -> str:
    return urlencode(
        {
            "token": "x", "team_id": "T0001", "team_domain": "sandbox-team",
            "channel_id": "C0PUBLIC", "channel_name": "general", "user_id": "U0ALICE",
            "user_name": "alice", "command": "/motion", "text": prompt, "api_app_id": "A0APP",
            "is_enterprise_install": "false", "response_url": slack.response_url("bench"),
            "trigger_id": "1.2.3",
        }
    )  # fmt: skip


async def commands(url: str, slack: SlackDouble, count: int, tag: str) -> list[float]:
    """`count` signed commands, one after another; each one's ack time."""
    acks: list[float] = []
    async with aiohttp.ClientSession() as client:
        for i in range(count):
            body = command_body(slack, f"{tag} {i}")
            began = time.perf_counter()
            async with client.post(
                url, data=body, headers=signed_headers(body, SIGNING_SECRET, FORM)
            ) as answer:
                await answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"a signed command got {answer.status}")
            acks.append(time.perf_counter() - began)
    return acks


async def flood(url: str, stop: asyncio.Event, forged: bool, statuses: Counter[int]) -> None:
    async with aiohttp.ClientSession() as client:
        while not stop.is_set():
            headers = {"Content-Type": FORM, "Content-Encoding": "gzip"}
            if forged:
                headers["X-Slack-Request-Timestamp"] = str(int(time.time()))
                headers["X-Slack-Signature"] = "v0=" + "0" * 64
            with_errors = False
            try:
                async with client.post(url, data=BOMB, headers=headers) as answer:
                    await answer.read()
                    statuses[answer.status] += 1
            except aiohttp.ClientError:
                with_errors = True  # a 413 closes the connection: count it and go on
            if with_errors:
                statuses[0] += 1


def summary(acks: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(acks, 0.50) * 1000, 1),
        "p99_ms": round(percentile(acks, 0.99) * 1000, 1),
        "max_ms": round(max(acks) * 1000, 1),
    }


async def measure(count: int, flooders: int) -> int:
    sandbox = ScriptedSandbox(api_keys={"motion_bench"})
    with (
        SlackDouble(bot_token="xoxb-bench-token") as slack,
        SandboxThread(sandbox),
        running_app(slack.base_url, sandbox.base_url or "") as (port, _database),
    ):
        url = f"http://127.0.0.1:{port}/slack/events"
        quiet = await commands(url, slack, count, "quiet")
        stop, statuses = asyncio.Event(), Counter[int]()
        tasks = [
            asyncio.create_task(flood(url, stop, i % 2 == 0, statuses)) for i in range(flooders)
        ]
        await asyncio.sleep(0.5)
        loud = await commands(url, slack, count, "flooded")
        stop.set()
        await asyncio.gather(*tasks)
    figures = {
        "commands": count,
        "flooders": flooders,
        "alone": summary(quiet),
        "under_flood": summary(loud),
        "flood_answers": dict(statuses),
    }
    failures = []
    if percentile(loud, 0.99) >= TARGET_P99:
        failures.append(f"ack p99 under the flood {percentile(loud, 0.99):.3f} s ≥ {TARGET_P99} s")
    if set(statuses) - {401, 413, 0}:
        failures.append(f"flood answered with {sorted(statuses)}")
    return verdict("strangers", figures, failures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=40)
    parser.add_argument("--flooders", type=int, default=4)
    args = parser.parse_args()
    return asyncio.run(measure(args.commands, args.flooders))


if __name__ == "__main__":
    sys.exit(main())
