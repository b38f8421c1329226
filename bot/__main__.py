"""`python -m bot [run | check | try | keygen | rotate-keys]`: one argparse parser, a subcommand
each with its own `--help`; no subcommand runs the app.

`try` keeps its own parser (bot/local/tryout.py): everything after `try` is handed to it
unparsed, so its options and its `--help` are exactly its own.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from dotenv import load_dotenv

from bot.config import ConfigError, KeySettings, Settings

Command = Callable[[argparse.Namespace, list[str]], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="motion-bot: Mosaic Motion videos from Slack. With no command, runs the app.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "run",
        help="run the app (the default)",
        description="Run the app: Socket Mode with SLACK_APP_TOKEN, else HTTP on PORT.",
    )
    commands.add_parser(
        "check",
        help="check the configuration",
        description="Try each piece of configuration for real and say what to fix "
        "(exit 0 only when everything holds).",
    )
    commands.add_parser(
        "try",
        help="run the app against a local Slack stand-in and the sandbox, and watch",
        description="See `python -m bot try --help`.",
        add_help=False,  # its --help is tryout's own
    )
    commands.add_parser(
        "keygen",
        help="print a new key for SECRET_KEYS",
        description="Print a new Fernet key for SECRET_KEYS, and nothing else.",
    )
    commands.add_parser(
        "rotate-keys",
        help="re-encrypt every stored secret under the first key of SECRET_KEYS",
        description="Re-encrypt every stored secret under the first key of SECRET_KEYS (reads "
        "DATABASE_URL and SECRET_KEYS only). Rotating: put a new key first in SECRET_KEYS on "
        "every instance, run this, then drop the old key. Exit 1 when a stored secret no "
        "listed key opens (each named by workspace); nothing is lost then.",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["help"]:
        argv = ["--help"]
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command != "try" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    commands: dict[str | None, Command] = {
        None: _run,
        "run": _run,
        "check": _check,
        "try": _try,
        "keygen": _keygen,
        "rotate-keys": _rotate_keys,
    }
    return commands[args.command](args, rest)


def _try(args: argparse.Namespace, rest: list[str]) -> int:
    from bot.local import tryout  # needs no configuration: it makes up its own

    return tryout.main(rest)


def _keygen(args: argparse.Namespace, rest: list[str]) -> int:
    from bot.workspaces.secrets import new_key

    print(new_key())
    return 0


def _settings() -> Settings | None:
    load_dotenv(".env", override=False)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None
    from bot import logs
    from bot.store.base import instance_name

    logs.configure(
        settings.log_level,
        _secrets(settings),
        log_format=settings.log_format,
        instance=settings.instance_name or instance_name(),
    )
    return settings


def _check(args: argparse.Namespace, rest: list[str]) -> int:
    settings = _settings()
    if settings is None:
        return 2
    from bot.check import run_checks

    return asyncio.run(run_checks(settings))


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    settings = _settings()
    if settings is None:
        return 2
    from bot.app import MotionBot

    async def run() -> None:
        await MotionBot.build(settings).run_forever()

    try:
        asyncio.run(run())
    except ConfigError as exc:  # found only by asking Slack (a refused app-level token)
        print(exc, file=sys.stderr)
        return 2
    return 0


def _rotate_keys(args: argparse.Namespace, rest: list[str]) -> int:
    load_dotenv(".env", override=False)
    try:
        settings = KeySettings.from_env()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    from bot import logs
    from bot.store import Store
    from bot.workspaces.rotation import rotate_keys
    from bot.workspaces.secrets import Secrets

    logs.configure("WARNING", settings.secret_keys)
    store = Store(settings.database_path)
    try:
        report = rotate_keys(store, Secrets(settings.secret_keys))
    finally:
        store.close()
    for line in report.lines():
        print(line)
    return 0 if not report.unreadable else 1


def _secrets(settings: Settings) -> list[str | None]:
    return [
        settings.slack_bot_token,
        settings.slack_signing_secret,
        settings.slack_app_token,
        settings.motion_api_key,
        *settings.secret_keys,
        settings.metrics_token,
        settings.slack_client_secret,
    ]


if __name__ == "__main__":
    sys.exit(main())
