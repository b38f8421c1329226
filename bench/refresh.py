"""The cost of a token refresh (many workspaces), through the app's own code and the stand-in.

One workspace installs the app with token rotation on (code exchanged through the stand-in's
oauth.v2.access, the installation stored sealed by `StoreInstallations`). Then, `--rounds`
times, its token is made due and `WorkspaceTokens.bot_token` is asked, as the poller or the
outbox ask it: it reads the installation, takes the refresh lease, spends the refresh token at
the stand-in, and stores the new tokens sealed while letting the lease go. For comparison, the
same lookup when nothing is due (a database read, the token opened) and when the token is in
memory. Last, `--instances` keepers (as many instances would) ask at the same moment for a due
token: exactly one refresh must reach the stand-in.

    python bench/refresh.py [--rounds 200] [--database postgresql://…]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
from _app import fresh_schema
from _common import percentile, verdict
from slack_sdk.oauth.installation_store.models.installation import Installation

from bot.local.oauth import CLIENT_ID, CLIENT_SECRET
from bot.slack.out import make_client
from bot.store import Store
from bot.workspaces.installations import StoreInstallations
from bot.workspaces.secrets import Secrets, new_key
from bot.workspaces.tokens import SerializedRotator, WorkspaceTokens
from tests.support.slack import SlackDouble

REDIRECT = "https://motion.example/slack/oauth_redirect"
TEAM = "T0001"


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    if url:
        with fresh_schema(url) as schema_url:
            yield schema_url
        return
    with tempfile.TemporaryDirectory() as folder:
        yield str(Path(folder) / "refresh.db")


async def install(slack: SlackDouble, installations: StoreInstallations) -> None:
    """Approve at the stand-in, exchange the code, store the installation as Bolt's flow does."""
    slack.oauth.next_approval(TEAM)
    async with httpx.AsyncClient() as browser:
        page = await browser.get(
            slack.authorize_url,
            params={
                "client_id": CLIENT_ID,
                "scope": "chat:write",
                "state": "s",
                "redirect_uri": REDIRECT,
            },
        )
    code = httpx.URL(page.headers["location"]).params["code"]
    answer = await make_client(None, slack.base_url).oauth_v2_access(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code, redirect_uri=REDIRECT
    )
    await installations.async_save(
        Installation(
            app_id=answer["app_id"],
            team_id=TEAM,
            user_id="U0ALICE",
            bot_token=answer["access_token"],
            bot_refresh_token=answer.get("refresh_token"),
            bot_token_expires_in=answer.get("expires_in"),
            bot_id="B0BOT",
            bot_user_id="U0BOT",
            bot_scopes=answer["scope"],
        )
    )


def keeper(store: Store, secrets: Secrets, api_url: str) -> WorkspaceTokens:
    installations = StoreInstallations(store, secrets)
    rotator = SerializedRotator(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        client=make_client(None, api_url, retry_writes=False), installations=installations,
    )  # fmt: skip
    return WorkspaceTokens(installations, rotator)


def make_due(store: Store) -> None:
    store.database.change("UPDATE installations SET bot_token_expires_at = ?", (int(time.time()),))


async def timed(rounds: int, step: Callable[[], Awaitable[None]]) -> list[float]:
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        await step()
        took.append(time.perf_counter() - started)
    return took


def report(name: str, took: list[float], figures: dict[str, float]) -> None:
    p50, p99 = percentile(took, 0.5) * 1000, percentile(took, 0.99) * 1000
    print(f"{name:<28} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   ({len(took)} lookups)")
    figures[f"{name.split()[0]}_p50_ms"] = round(p50, 2)
    figures[f"{name.split()[0]}_p99_ms"] = round(p99, 2)


async def main(rounds: int, instances: int, url: str | None) -> int:
    secrets = Secrets([new_key()])
    with SlackDouble() as slack, database(url) as target:
        slack.oauth.token_rotation = True
        store = Store(target, instance="bench")
        await install(slack, StoreInstallations(store, secrets))
        tokens = keeper(store, secrets, slack.base_url)

        async def refresh() -> None:
            make_due(store)
            tokens.forget(TEAM)
            assert await tokens.bot_token(TEAM)

        async def read() -> None:
            tokens.forget(TEAM)
            assert await tokens.bot_token(TEAM)

        async def cached() -> None:
            assert await tokens.bot_token(TEAM)

        figures: dict[str, float] = {}
        before = slack.oauth.refreshes(TEAM)
        report("refresh (due)", await timed(rounds, refresh), figures)
        refreshed = slack.oauth.refreshes(TEAM) - before
        report("read (not due, no cache)", await timed(rounds, read), figures)
        report("cached (in memory)", await timed(rounds, cached), figures)
        others = [keeper(Store(target, instance=f"i{n}"), secrets, slack.base_url)
                  for n in range(instances)]  # fmt: skip
        make_due(store)
        before = slack.oauth.refreshes(TEAM)
        got = await asyncio.gather(*(k.bot_token(TEAM) for k in others))
        raced = slack.oauth.refreshes(TEAM) - before
        for other in others:
            other.installations.store.close()
        store.close()
    print(f"{instances} instances at once on a due token: {raced} refresh(es), "
          f"{len(set(got))} token(s) handed out")  # fmt: skip
    failures = []
    if refreshed != rounds:
        failures.append(f"{refreshed} refreshes for {rounds} due tokens")
    if raced != 1 or len(set(got)) != 1:
        failures.append(f"{raced} refreshes and {len(set(got))} tokens for one due token")
    figures |= {"database": "postgresql" if url else "sqlite", "race_refreshes": raced}
    return verdict("refresh", figures, failures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--database", default=None, help="a PostgreSQL URL (default: SQLite)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.rounds, args.instances, args.database)))
