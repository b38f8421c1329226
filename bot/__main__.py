"""`python -m bot` runs the app; `check` checks its configuration; `try` shows it locally."""

from __future__ import annotations

import asyncio
import sys

from dotenv import load_dotenv

from bot.config import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "try":  # needs no configuration: it makes up its own
        from bot.local import tryout

        return tryout.main(argv[1:])
    load_dotenv(".env", override=False)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(
            "usage: python -m bot [check | try [PROMPT] [--followup TEXT] [--file PATH | --with-file]]\n"
            "  (no argument) run the app\n"
            "  check  check the configuration\n"
            "  try    run the app against a local Slack stand-in and the sandbox, and watch"
        )
        return 0
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    from bot import logs
    from bot.store.base import instance_name

    logs.configure(
        settings.log_level,
        _secrets(settings),
        log_format=settings.log_format,
        instance=settings.instance_name or instance_name(),
    )
    if argv and argv[0] == "check":
        from bot.check import run_checks

        return asyncio.run(run_checks(settings))
    if argv:
        print(f"unknown argument {argv[0]!r}; usage: python -m bot [check | try]", file=sys.stderr)
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


def _secrets(settings: Settings) -> list[str | None]:
    return [
        settings.slack_bot_token,
        settings.slack_signing_secret,
        settings.slack_app_token,
        settings.motion_api_key,
        settings.metrics_token,
    ]


if __name__ == "__main__":
    sys.exit(main())
