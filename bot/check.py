"""`python -m bot check`: each piece of configuration tried for real, with the fix when it fails."""

from __future__ import annotations

import os
import tempfile
import uuid

from slack_sdk.errors import SlackApiError, SlackClientError

from bot.config import WHERE, Settings, database_label
from bot.motion import PROBE_JOB_ID, AuthenticationError, MotionClient, MotionError, NotFound
from bot.slack.out import make_client
from bot.store import Store


async def run_checks(settings: Settings, out: object = None) -> int:
    results: list[tuple[bool, str]] = [
        await _check_slack(settings),
        await _check_transport(settings),
        await _check_motion(settings),
        _check_database(settings),
    ]
    for ok, line in results:
        print(("✓ " if ok else "✗ ") + line)
    failed = sum(1 for ok, _ in results if not ok)
    print(
        "All checks passed." if not failed else f"{failed} check(s) failed: fix them and run again."
    )
    return 0 if not failed else 1


async def _check_slack(settings: Settings) -> tuple[bool, str]:
    client = make_client(settings.slack_bot_token, settings.slack_api_url)
    try:
        response = await client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error") or exc.response.status_code
        return False, (
            f"Slack bot token: Slack answered {error}. Copy a fresh token from "
            f"{WHERE['SLACK_BOT_TOKEN']}."
        )
    except (SlackClientError, OSError) as exc:
        return (
            False,
            f"Slack bot token: could not reach {settings.slack_api_url} ({type(exc).__name__}).",
        )
    return True, (
        f"Slack bot token works: team {response.get('team')!s}, bot user "
        f"{response.get('user')!s} ({response.get('user_id')!s})."
    )


async def _check_transport(settings: Settings) -> tuple[bool, str]:
    if settings.socket_mode:
        client = make_client(settings.slack_bot_token, settings.slack_api_url)
        try:
            await client.apps_connections_open(app_token=settings.slack_app_token or "")
        except SlackApiError as exc:
            error = exc.response.get("error") or exc.response.status_code
            return False, (
                f"Socket Mode: Slack refused SLACK_APP_TOKEN ({error}); create a new one in "
                f"{WHERE['SLACK_APP_TOKEN']}."
            )
        except (SlackClientError, OSError) as exc:
            return False, f"Socket Mode: could not reach Slack ({type(exc).__name__})."
        return True, "Socket Mode: SLACK_APP_TOKEN works (no public URL needed)."
    if settings.slack_signing_secret:
        return True, (
            f"HTTP mode: signing secret present; Slack must send requests to "
            f"https://<your host>/slack/events (port {settings.port})."
        )
    return False, f"HTTP mode needs SLACK_SIGNING_SECRET: {WHERE['SLACK_SIGNING_SECRET']}."


async def _check_motion(settings: Settings) -> tuple[bool, str]:
    if settings.sandbox:
        return (
            True,
            "Motion: no MOTION_API_KEY, so the built-in sandbox will be used (no credits spent).",
        )
    client = MotionClient(settings.motion_api_url, settings.motion_key, timeout=10)
    try:
        await client.status(PROBE_JOB_ID)
    except NotFound:
        return True, "Motion API key works (a probe for a job that cannot exist answered 404)."
    except AuthenticationError:
        return (
            False,
            f"Motion API key was refused (401): create a new one in {WHERE['MOTION_API_KEY']}.",
        )
    except MotionError as exc:
        return False, f"Motion: could not verify the key ({exc.message!r}); check MOTION_API_URL."
    finally:
        await client.aclose()
    return False, "Motion answered a probe for a job that cannot exist; check MOTION_API_URL."


def _check_database(settings: Settings) -> tuple[bool, str]:
    """Reach the database, migrate it as the app would at start, write and delete a row."""
    target = settings.database_path
    label = database_label(target)
    try:
        store = Store(target)
        try:
            key = f"check:{uuid.uuid4()}"
            store.claim_event(key, 0.0)
            store.forget_event(key)
            current = store.schema_is_current()
            version = store.schema_version()
        finally:
            store.close()
    except Exception as exc:
        if target.split(":", 1)[0] in ("postgres", "postgresql"):
            return False, (
                f"Database {label} could not be used ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); check DATABASE_URL's host, "
                "port, user, password and database name, and that the server accepts connections."
            )
        folder = (
            os.path.dirname(os.path.abspath(target))
            if target != ":memory:"
            else tempfile.gettempdir()
        )
        return False, (
            f"Database {label} is not writable ({type(exc).__name__}: {exc}); check that "
            f"{folder} exists and is writable, or change DATABASE_URL."
        )
    if not current:
        return False, f"Database {label}: the schema is not current after migrating ({version})."
    mode = "WAL mode, " if not target.split(":", 1)[0].startswith("postgres") else ""
    return True, f"Database {label} is writable ({mode}schema up to date: {version})."
