"""`python -m bot check`: each piece of configuration tried for real, with the fix when it fails."""

from __future__ import annotations

import os
import tempfile
import uuid

from slack_sdk.errors import SlackApiError, SlackClientError

from bot.config import WHERE, Settings, database_label
from bot.motion import PROBE_JOB_ID, AuthenticationError, MotionClient, MotionError, NotFound
from bot.slack.out import make_client
from bot.store import InstalledBot, Store
from bot.workspaces.installations import StoreInstallations, workspace_label
from bot.workspaces.oauth import INSTALL_PATH, REDIRECT_PATH
from bot.workspaces.rotation import unreadable_secrets
from bot.workspaces.secrets import Secrets, SecretUnreadable
from bot.workspaces.tokens import SerializedRotator, WorkspaceTokens


async def run_checks(settings: Settings, out: object = None) -> int:
    slack = (
        await _check_workspaces(settings)
        if settings.many_workspaces
        else [await _check_slack(settings)]
    )
    results: list[tuple[bool, str]] = [
        *slack,
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


async def _check_workspaces(settings: Settings) -> list[tuple[bool, str]]:
    """Many workspaces: the app's credentials, SECRET_KEYS against every stored secret, and each
    installation's token (`auth.test`, refreshed first when it is due, as the app would), by
    workspace id."""
    public = settings.public_url or "PUBLIC_URL"
    results = [
        (
            bool(settings.slack_client_id and settings.slack_client_secret),
            "Slack app credentials: SLACK_CLIENT_ID and SLACK_CLIENT_SECRET present; people "
            f"install at {public}{INSTALL_PATH}, and {public}{REDIRECT_PATH} must be a "
            "Redirect URL (OAuth & Permissions).",
        )
    ]
    try:
        store = Store(settings.database_path)
    except Exception as exc:  # the database check below says what to fix
        return [*results, (False, f"Installations: the database could not be read ({exc}).")]
    try:
        installations = StoreInstallations(store, Secrets(settings.secret_keys))
        unreadable = await store.off_loop(unreadable_secrets, store, installations.secrets)
        results += [(False, f"SECRET_KEYS: {item.line()}.") for item in unreadable]
        if not unreadable:
            results.append((True, "SECRET_KEYS opens every stored secret."))
        installed = await store.off_loop(store.installed_workspaces)
        if not installed:
            results.append(
                (True, f"No workspace has installed the app yet ({public}{INSTALL_PATH}).")
            )
        results += [await _check_installation(settings, installations, row) for row in installed]
    finally:
        store.close()
    return results


async def _check_installation(
    settings: Settings, installations: StoreInstallations, row: InstalledBot
) -> tuple[bool, str]:
    label = workspace_label(row.enterprise_id, row.team_id)
    client = make_client(None, settings.slack_api_url)
    rotator = SerializedRotator(
        client_id=settings.slack_client_id or "",
        client_secret=settings.slack_client_secret or "",
        client=make_client(None, settings.slack_api_url, retry_writes=False),
        installations=installations,
    )
    token = await WorkspaceTokens(installations, rotator).bot_token(
        row.team_id or "", row.enterprise_id
    )
    if token is None:
        return False, f"{label}: no usable bot token (see the log); install the app there again."
    try:
        response = await client.auth_test(token=token)
    except SlackApiError as exc:
        error = exc.response.get("error") or exc.response.status_code
        return False, f"{label}: Slack refused its token ({error}); install the app there again."
    except (SlackClientError, OSError) as exc:
        return False, f"{label}: could not reach {settings.slack_api_url} ({type(exc).__name__})."
    line = f"{label}: its token works (bot user {response.get('user_id')!s})."
    ok, key = await workspace_motion_key_state(
        settings, installations.store, installations.secrets, row
    )
    return ok, f"{line} {key}"


async def workspace_motion_key_state(
    settings: Settings, store: Store, secrets: Secrets, row: InstalledBot
) -> tuple[bool, str]:
    """The workspace's Motion key, as an admin set it in App Home → Settings: set and working
    (a probe for a job that cannot exist answers 404), set and refused (401), unreadable with
    SECRET_KEYS, or absent (its jobs run in the sandbox). MOTION_API_KEY, when set, is every
    workspace's key and is checked once, below."""
    if not settings.sandbox:
        return True, "Motion: MOTION_API_KEY (the operator's, for every workspace)."
    stored = await store.off_loop(store.workspace_settings, row.team_id or "")
    sealed = stored.sealed_motion_api_key
    if sealed is None:
        return (
            True,
            "Motion: no key yet, so sandbox mode (an admin sets one in App Home → Settings).",
        )
    try:
        key = secrets.open(sealed, "its Motion key")
    except SecretUnreadable:
        return (
            False,
            "Motion: its stored key opens with no key in SECRET_KEYS; an admin sets it again.",
        )
    client = MotionClient(settings.motion_api_url, key, timeout=10)
    try:
        await client.status(PROBE_JOB_ID)
    except NotFound:
        return True, "Motion: its key works."
    except AuthenticationError:
        return False, "Motion: its key was refused (401); an admin sets a new one in Settings."
    except MotionError as exc:
        return False, f"Motion: its key could not be tried ({exc.message!r})."
    finally:
        await client.aclose()
    return False, "Motion answered a probe for a job that cannot exist; check MOTION_API_URL."


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
