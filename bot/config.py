"""Settings read from the environment, checked all at once.

Every problem is collected before anything starts, so an admin fixes the whole list in one go
instead of discovering one missing variable per restart.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlsplit

from cryptography.fernet import Fernet

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_MOTION_API_URL = "https://api.motion.so/api/motion"
DEFAULT_DATABASE_URL = "sqlite:///motion-bot.db"
SANDBOX_API_KEY = "motion_sandbox"
# The settings a workspace's admins may change in Slack (App Home → Settings), by the name of
# the environment variable that is the operator's: set, it locks its setting for every workspace.
WORKSPACE_SETTINGS = (
    "MOTION_API_KEY",
    "MOTION_ALLOWED_CHANNELS",
    "MOTION_ALLOW_DMS",
    "MOTION_NOTIFY_CHANNEL",
    "MOTION_RUNS_PER_USER_PER_DAY",
    "MOTION_RUNS_PER_MONTH",
    "MOTION_CONFIRM",
    "FOLLOWUP_REQUIRES_MENTION",
    "MOTION_ADMINS",
)

WHERE = {
    "SLACK_BOT_TOKEN": (
        "the Slack app's settings page → OAuth & Permissions → Bot User OAuth Token "
        "(create the app from manifest.yml and install it to the workspace first)"
    ),
    "SLACK_SIGNING_SECRET": (
        "the Slack app's settings page → Basic Information → App Credentials → Signing Secret"
    ),
    "SLACK_APP_TOKEN": (
        "the Slack app's settings page → Basic Information → App-Level Tokens "
        "(scope connections:write)"
    ),
    "MOTION_API_KEY": "the Motion web app (motion.so) → Settings → API keys",
    "SECRET_KEYS": "`python -m bot keygen`, which prints a new Fernet key",
    "SLACK_CLIENT_ID": (
        "the Slack app's settings page → Basic Information → App Credentials → Client ID and "
        "Client Secret"
    ),
    "PUBLIC_URL": (
        "the app's public https address, where Slack sends installers back "
        "(PUBLIC_URL/slack/oauth_redirect must be a Redirect URL under OAuth & Permissions)"
    ),
}

_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{6,}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{6,}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
METRICS_TOKEN_MIN_LENGTH = 16
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space: it is sent in a header
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(Exception):
    """Every configuration problem found, each with what to change."""

    def __init__(self, problems: list[str], *, action: str = "start") -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"motion-bot cannot {action}; fix the configuration:\n{lines}")


@dataclass(frozen=True)
class Settings:
    """The app's configuration; secrets are kept out of `repr` so they never reach a log."""

    slack_bot_token: str = field(repr=False)  # "" in many-workspaces mode
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_api_url: str = DEFAULT_SLACK_API_URL
    port: int = 3000
    motion_api_key: str | None = field(default=None, repr=False)
    motion_api_url: str = DEFAULT_MOTION_API_URL
    database_path: str = "motion-bot.db"
    notify_channel: str | None = None
    followup_requires_mention: bool = False
    poll_initial_seconds: float = 3.0
    poll_max_seconds: float = 30.0
    poll_target_p95_seconds: float = 5.0
    log_level: str = "INFO"
    motion_max_in_flight: int = 8
    motion_timeout_seconds: float = 15.0
    allowed_channels: tuple[str, ...] = ()  # empty: every channel
    admins: tuple[str, ...] = ()
    runs_per_user_per_day: int | None = None  # None: no limit
    runs_per_month: int | None = None
    confirm: bool = False
    allow_dms: bool = True  # MOTION_ALLOW_DMS: a DM to the app is a prompt
    instance_name: str | None = None  # MOTION_INSTANCE, else Heroku's DYNO: see Store leases
    lease_seconds: float = 30.0  # MOTION_LEASE_SECONDS: a dead instance's jobs wait this long
    public_url: str | None = None  # PUBLIC_URL without a trailing slash; None: no public links
    upload_max_mb: float = 100.0  # 0: no uploads into the thread
    stuck_after_minutes: float = 60.0
    # SECRET_KEYS: Fernet keys, the first seals every stored secret, any opens (bot/workspaces)
    secret_keys: tuple[str, ...] = field(default=(), repr=False)
    log_format: str = "text"  # LOG_FORMAT: "text" or "json" (one JSON object per line)
    metrics_port: int | None = None  # METRICS_PORT: /metrics on a listener of its own
    metrics_token: str | None = field(default=None, repr=False)  # METRICS_TOKEN: /metrics on PORT
    # Which of WORKSPACE_SETTINGS the environment sets: those are the operator's, read-only in
    # Slack; the others each workspace may change (bot/jobs/settings.py).
    operator_settings: frozenset[str] = frozenset()
    # SLACK_CLIENT_ID + SLACK_CLIENT_SECRET (and no SLACK_BOT_TOKEN): many workspaces
    slack_client_id: str | None = None
    slack_client_secret: str | None = field(default=None, repr=False)

    @property
    def many_workspaces(self) -> bool:
        """Many workspaces ("Add to Slack"): each workspace installs the app and has its own token (SPEC, Many
        workspaces); otherwise the one workspace of SLACK_BOT_TOKEN."""
        return bool(self.slack_client_id and self.slack_client_secret and not self.slack_bot_token)

    @property
    def metrics_enabled(self) -> bool:
        """Metrics are collected only when something serves them."""
        return self.metrics_port is not None or self.metrics_token is not None

    def __repr__(self) -> str:
        shown = {
            "socket_mode": self.socket_mode,
            "many_workspaces": self.many_workspaces,
            "sandbox": self.sandbox,
            "slack_api_url": self.slack_api_url,
            "motion_api_url": self.motion_api_url,
            "database": database_label(self.database_path),
            "port": self.port,
        }
        return f"Settings({shown})"

    @property
    def socket_mode(self) -> bool:
        return bool(self.slack_app_token)

    @property
    def sandbox(self) -> bool:
        """No Motion key means the built-in emulator: the whole flow, no credits spent."""
        return not self.motion_api_key

    @property
    def motion_key(self) -> str:
        return self.motion_api_key or SANDBOX_API_KEY

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: os.environ) or raise one ConfigError listing all.

        Every variable is read whatever the others hold, before any problem is raised: the
        README's configuration table is checked against the names read here
        (tests/test_readme.py), and a read skipped by a condition would go unnoticed."""
        reader = EnvReader(os.environ if env is None else env)
        fields: dict[str, Any] = {}
        concerns = (
            _slack,
            _motion,
            _storage,
            _secrets_at_rest,
            _workspace_policy,
            _polling,
            _public,
        )
        for concern in concerns:
            fields |= concern(reader)
        for concern in (_logs, _metrics):
            fields |= concern(reader)
        fields["operator_settings"] = frozenset(
            name for name in WORKSPACE_SETTINGS if reader.get(name) is not None
        )
        port, metrics_port = fields["port"], fields["metrics_port"]
        if metrics_port is not None and metrics_port == port != 0:
            reader.problem(
                f"METRICS_PORT ({metrics_port}) must differ from PORT: it is a listener of its "
                "own. To serve /metrics on PORT instead, unset METRICS_PORT and set METRICS_TOKEN."
            )
        _many_workspaces_needs(reader, fields)
        if reader.problems:
            raise ConfigError(reader.problems)
        return cls(**fields)


class EnvReader:
    """One environment and the problems found in it so far: each concern below reads its
    variables through it, and `Settings.from_env` raises them all at once."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def get(self, name: str) -> str | None:
        """The value, stripped; None when unset or blank."""
        value = self.env.get(name)
        return value.strip() if value and value.strip() else None

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def number(self, name: str, default: str, kind: type[Any]) -> Any:
        """`kind(value)`, or None (and a problem) when it is not a number of that kind."""
        return _number(self.get(name) or default, name, kind, self.problems)

    def flag(self, name: str, default: bool = False) -> bool:
        """true/false (also 1/0, yes/no, on/off); unset is `default`; anything else is a
        problem, read as `default`."""
        raw = (self.get(name) or ("true" if default else "false")).lower()
        if raw not in _TRUE | _FALSE:
            self.problem(f"{name} must be true or false, got {raw!r}.")
            return default
        return raw in _TRUE


def _slack(r: EnvReader) -> dict[str, Any]:
    """The Slack app's credentials and where its Web API is."""
    bot_token = r.get("SLACK_BOT_TOKEN")
    client_id, client_secret = r.get("SLACK_CLIENT_ID"), r.get("SLACK_CLIENT_SECRET")
    many = _slack_mode(r, bot_token, client_id, client_secret)
    if bot_token is not None and not bot_token.startswith("xoxb-"):
        r.problem(
            "SLACK_BOT_TOKEN must be a bot token starting with xoxb- "
            f"(a user token xoxp- or app token xapp- will not work): {WHERE['SLACK_BOT_TOKEN']}."
        )
    app_token = r.get("SLACK_APP_TOKEN")
    if app_token is not None and not app_token.startswith("xapp-"):
        r.problem(
            "SLACK_APP_TOKEN must start with xapp- (leave it unset for HTTP mode): "
            f"{WHERE['SLACK_APP_TOKEN']}."
        )
    signing_secret = r.get("SLACK_SIGNING_SECRET")
    if app_token is None and signing_secret is None:
        r.problem(
            "SLACK_SIGNING_SECRET is missing, and HTTP mode (no SLACK_APP_TOKEN) needs it to "
            f"verify every request: copy it from {WHERE['SLACK_SIGNING_SECRET']}."
        )
    api_url = _url(r.get("SLACK_API_URL") or DEFAULT_SLACK_API_URL, "SLACK_API_URL", r.problems)
    if not api_url.endswith("/"):
        api_url += "/"  # slack_sdk urljoins method names: a base without "/" loses its path
    port = r.number("PORT", "3000", int)
    if port is not None and not 0 <= port <= 65535:
        r.problem(f"PORT must be between 1 and 65535 (or 0 for any free port), got {port}.")
    return {
        "slack_bot_token": "" if many else bot_token or "",
        "slack_client_id": client_id if many else None,
        "slack_client_secret": client_secret if many else None,
        "slack_signing_secret": signing_secret,
        "slack_app_token": app_token,
        "slack_api_url": api_url,
        "port": port or 0,
    }


def _slack_mode(
    r: EnvReader, bot_token: str | None, client_id: str | None, client_secret: str | None
) -> bool:
    """One workspace (SLACK_BOT_TOKEN) or many (SLACK_CLIENT_ID + SLACK_CLIENT_SECRET): True for
    many. Both, half of a client, or neither is one problem that says how to pick."""
    pick = (
        "set SLACK_BOT_TOKEN for one workspace, or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (and "
        "no SLACK_BOT_TOKEN) for many workspaces"
    )
    if bot_token is not None and (client_id or client_secret):
        r.problem(
            "SLACK_BOT_TOKEN and SLACK_CLIENT_ID/SLACK_CLIENT_SECRET are both set, which asks "
            f"for one workspace and for many at once: {pick}."
        )
        return False
    if bool(client_id) != bool(client_secret):
        given, missing = (
            ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET")
            if client_id
            else ("SLACK_CLIENT_SECRET", "SLACK_CLIENT_ID")
        )
        r.problem(
            f"{given} is set without {missing}: many workspaces need both, from "
            f"{WHERE['SLACK_CLIENT_ID']} (or unset it and {pick})."
        )
        return False
    if bot_token is None and not client_id:
        r.problem(
            f"SLACK_BOT_TOKEN is missing: copy it from {WHERE['SLACK_BOT_TOKEN']} (or, to serve "
            'many workspaces with "Add to Slack", set SLACK_CLIENT_ID and SLACK_CLIENT_SECRET '
            "instead)."
        )
        return False
    return bot_token is None


def _many_workspaces_needs(r: EnvReader, fields: dict[str, Any]) -> None:
    """Many workspaces keep every workspace's tokens in the database, sealed with SECRET_KEYS,
    and send installers back to PUBLIC_URL: both are required then."""
    if not fields.get("slack_client_id"):
        return
    if fields.get("public_url") is None and r.get("PUBLIC_URL") is None:
        r.problem(
            "PUBLIC_URL is missing, and many workspaces (SLACK_CLIENT_ID) need it for the "
            f'"Add to Slack" page and its redirect: set it to {WHERE["PUBLIC_URL"]}.'
        )
    if r.get("SECRET_KEYS") is None:
        r.problem(
            "SECRET_KEYS is missing, and many workspaces (SLACK_CLIENT_ID) store each "
            f"workspace's tokens sealed with it: make one with {WHERE['SECRET_KEYS']}."
        )


def _motion(r: EnvReader) -> dict[str, Any]:
    """Motion's key (none: the sandbox), its address, and how hard it may be pressed."""
    key = r.get("MOTION_API_KEY")
    if key is not None and not key.startswith("motion_"):
        r.problem(
            "MOTION_API_KEY must start with motion_ (unset it to use the sandbox): "
            f"create one in {WHERE['MOTION_API_KEY']}."
        )
    url = _url(r.get("MOTION_API_URL") or DEFAULT_MOTION_API_URL, "MOTION_API_URL", r.problems)
    in_flight = r.number("MOTION_MAX_IN_FLIGHT", "8", int)
    if in_flight is not None and not 1 <= in_flight <= 100:
        r.problem(f"MOTION_MAX_IN_FLIGHT must be between 1 and 100, got {in_flight}.")
    timeout = r.number("MOTION_TIMEOUT_SECONDS", "15", float)
    if timeout is not None and not 0 < timeout <= 60:
        r.problem(f"MOTION_TIMEOUT_SECONDS must be more than 0 and at most 60, got {timeout}.")
    return {
        "motion_api_key": key,
        "motion_api_url": url.rstrip("/"),
        "motion_max_in_flight": in_flight or 8,
        "motion_timeout_seconds": timeout or 15.0,
    }


def _storage(r: EnvReader) -> dict[str, Any]:
    """Where state lives, and this instance's name for its leases there."""
    path = _database_path(r.get("DATABASE_URL") or DEFAULT_DATABASE_URL, r.problems)
    instance, dyno = r.get("MOTION_INSTANCE"), r.get("DYNO")  # DYNO: Heroku's name for it
    lease = r.number("MOTION_LEASE_SECONDS", "30", float)
    if lease is not None and not 1 <= lease <= 50:
        r.problem(
            f"MOTION_LEASE_SECONDS must be between 1 and 50 (takeover within 60 s), got {lease}."
        )
    return {
        "database_path": path,
        "instance_name": instance or dyno,
        "lease_seconds": lease or 30.0,
    }


def _secrets_at_rest(r: EnvReader) -> dict[str, Any]:
    """The keys that seal what the app stores of a workspace (tokens, refresh tokens, Motion
    keys): optional while one workspace is served, whose secrets live in the environment."""
    return {"secret_keys": _fernet_keys(r.get("SECRET_KEYS"), r.problems)}


def _fernet_keys(value: str | None, problems: list[str]) -> tuple[str, ...]:
    """SECRET_KEYS: comma-separated Fernet keys, the one to seal with first. A problem names an
    entry by its position, never by its value (it is a key)."""
    if value is None:
        return ()
    entries = [entry.strip() for entry in value.split(",")]
    fix = f"keys are comma-separated Fernet keys ({WHERE['SECRET_KEYS']})"
    empty = [str(n) for n, entry in enumerate(entries, start=1) if not entry]
    if empty:
        problems.append(
            f"SECRET_KEYS has an empty entry (entry {', '.join(empty)} of {len(entries)}): "
            f"remove the extra comma; {fix}."
        )
    keys: list[str] = []
    for position, entry in enumerate(entries, start=1):
        if not entry:
            continue
        try:
            Fernet(entry)
        except (ValueError, TypeError):
            problems.append(
                f"SECRET_KEYS entry {position} is not a Fernet key (44 characters of url-safe "
                f"base64 holding 32 bytes); {fix}."
            )
            continue
        if entry in keys:
            problems.append(
                f"SECRET_KEYS entry {position} repeats entry {keys.index(entry) + 1}: list each "
                "key once."
            )
            continue
        keys.append(entry)
    return tuple(keys)


@dataclass(frozen=True)
class KeySettings:
    """What `python -m bot rotate-keys` needs, and nothing else: the database and SECRET_KEYS
    (no Slack or Motion credentials, so an operator can rotate from any shell)."""

    database_path: str
    secret_keys: tuple[str, ...] = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KeySettings:
        reader = EnvReader(os.environ if env is None else env)
        path = _storage(reader)["database_path"]
        keys = _fernet_keys(reader.get("SECRET_KEYS"), reader.problems)
        if reader.get("SECRET_KEYS") is None:
            reader.problem(
                "SECRET_KEYS is missing: list the new key first, then the old ones "
                f"({WHERE['SECRET_KEYS']})."
            )
        if reader.problems:
            raise ConfigError(reader.problems, action="rotate keys")
        return cls(database_path=path, secret_keys=keys)


def _workspace_policy(r: EnvReader) -> dict[str, Any]:
    """What a workspace decides about its jobs: where they may start and be announced, who
    administers them, how many runs, whether followups need a mention or a confirmation, and
    whether a direct message to the app is a prompt."""
    notify = r.get("MOTION_NOTIFY_CHANNEL")
    if notify is not None and not _CHANNEL_ID.match(notify):
        r.problem(
            f"MOTION_NOTIFY_CHANNEL must be a channel ID such as C0123ABCD, not {notify!r}: "
            "in Slack, open the channel's details; the ID is at the bottom of the About tab."
        )
    requires_mention = r.flag("FOLLOWUP_REQUIRES_MENTION")
    allowed = _id_list(
        r.get("MOTION_ALLOWED_CHANNELS"),
        "MOTION_ALLOWED_CHANNELS",
        _CHANNEL_ID,
        "channel IDs such as C0123ABCD (not names like #general): in Slack, open the "
        "channel's details; the ID is at the bottom of the About tab",
        r.problems,
    )
    admins = _id_list(
        r.get("MOTION_ADMINS"),
        "MOTION_ADMINS",
        _USER_ID,
        "user IDs such as U0123ABCD (not names like @alice): in Slack, open the person's "
        "profile, ⋮ → Copy member ID",
        r.problems,
    )
    per_day = _limit(
        r.get("MOTION_RUNS_PER_USER_PER_DAY"), "MOTION_RUNS_PER_USER_PER_DAY", r.problems
    )
    per_month = _limit(r.get("MOTION_RUNS_PER_MONTH"), "MOTION_RUNS_PER_MONTH", r.problems)
    return {
        "notify_channel": notify,
        "followup_requires_mention": requires_mention,
        "allowed_channels": allowed,
        "admins": admins,
        "runs_per_user_per_day": per_day,
        "runs_per_month": per_month,
        "confirm": r.flag("MOTION_CONFIRM"),
        "allow_dms": r.flag("MOTION_ALLOW_DMS", default=True),
    }


def _polling(r: EnvReader) -> dict[str, Any]:
    """How often a job is looked at, and when a run counts as stuck."""
    initial = r.number("POLL_INITIAL_SECONDS", "3", float)
    maximum = r.number("POLL_MAX_SECONDS", "30", float)
    target = r.number("POLL_TARGET_P95_SECONDS", "5", float)
    for name, value in (
        ("POLL_INITIAL_SECONDS", initial),
        ("POLL_MAX_SECONDS", maximum),
        ("POLL_TARGET_P95_SECONDS", target),
    ):
        if value is not None and not 0 < value <= 3600:
            r.problem(f"{name} must be more than 0 and at most 3600 seconds, got {value}.")
    if initial is not None and maximum is not None and 0 < maximum < initial:
        r.problem(
            f"POLL_MAX_SECONDS ({maximum}) must not be below POLL_INITIAL_SECONDS ({initial})."
        )
    stuck = r.number("STUCK_AFTER_MINUTES", "60", float)
    if stuck is not None and not 0 < stuck <= 10080:
        r.problem(
            f"STUCK_AFTER_MINUTES must be more than 0 and at most 10080 (a week), got {stuck}."
        )
    return {
        "poll_initial_seconds": initial or 3.0,
        "poll_max_seconds": maximum or 30.0,
        "poll_target_p95_seconds": target or 5.0,
        "stuck_after_minutes": stuck or 60.0,
    }


def _public(r: EnvReader) -> dict[str, Any]:
    """The app's public address (files for Motion, lasting links) and the video uploads."""
    public_url = _public_url(r.get("PUBLIC_URL"), r.problems)
    upload_max = r.number("UPLOAD_MAX_MB", "100", float)
    if upload_max is not None and not 0 <= upload_max <= 1000:
        r.problem(
            f"UPLOAD_MAX_MB must be between 0 (no uploads) and 1000 megabytes, got {upload_max}."
        )
    return {"public_url": public_url, "upload_max_mb": 100.0 if upload_max is None else upload_max}


def _logs(r: EnvReader) -> dict[str, Any]:
    level = (r.get("LOG_LEVEL") or "INFO").upper()
    if level not in _LOG_LEVELS:
        r.problem(f"LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, got {level!r}.")
    log_format = (r.get("LOG_FORMAT") or "text").lower()
    if log_format not in LOG_FORMATS:
        r.problem(
            f"LOG_FORMAT must be text (lines for people) or json (one JSON object per line), "
            f"got {log_format[:40]!r}."
        )
    return {"log_level": level, "log_format": log_format}


def _metrics(r: EnvReader) -> dict[str, Any]:
    """Where Prometheus metrics are served, if anywhere: never open by accident, so each way
    is refused at start when it is not clearly meant."""
    port: int | None = None
    raw_port = r.get("METRICS_PORT")
    if raw_port is not None:
        port = _number(raw_port, "METRICS_PORT", int, r.problems)
        if port is not None and not 0 <= port <= 65535:
            r.problem(
                f"METRICS_PORT must be between 1 and 65535 (or 0 for any free port), got {port}."
            )
            port = None
    token = r.get("METRICS_TOKEN")
    if token is not None:
        if len(token) < METRICS_TOKEN_MIN_LENGTH:
            r.problem(
                f"METRICS_TOKEN must be at least {METRICS_TOKEN_MIN_LENGTH} characters (it is "
                f"all that guards /metrics on PORT), got {len(token)}: make one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'."
            )
        elif not _HEADER_SAFE.fullmatch(token):
            r.problem(
                "METRICS_TOKEN must be printable ASCII without spaces (it is sent in the "
                "Authorization header): make one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'."
            )
    return {"metrics_port": port, "metrics_token": token}


def _url(value: str, name: str, problems: list[str]) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        problems.append(f"{name} must be an http(s) URL such as https://host/path, got {value!r}.")
    return value


_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _public_url(value: str | None, problems: list[str]) -> str | None:
    """PUBLIC_URL: an https base Motion and browsers can reach; plain http only on loopback
    (local tests), since Motion fetches files from it and people click its links."""
    if value is None:
        return None
    parts = urlsplit(value)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        problems.append(
            f"PUBLIC_URL must be the app's public https address such as "
            f"https://motion.example.com, got {value!r}."
        )
        return None
    if parts.scheme == "http" and host not in _LOOPBACK_HOSTS:
        problems.append(
            f"PUBLIC_URL must use https (plain http only on localhost for local tests), "
            f"got {value!r}."
        )
        return None
    if parts.query or parts.fragment:
        problems.append(f"PUBLIC_URL must be a plain base address without ? or #, got {value!r}.")
        return None
    return value.rstrip("/")


def _number(value: str, name: str, kind: type[Any], problems: list[str]) -> Any:
    try:
        return kind(value)
    except ValueError:
        what = "a whole number" if kind is int else "a number (decimals allowed)"
        problems.append(f"{name} must be {what}, got {value!r}.")
        return None


def _id_list(
    value: str | None, name: str, pattern: re.Pattern[str], what: str, problems: list[str]
) -> tuple[str, ...]:
    """A comma-separated list of Slack IDs; blanks between commas are ignored."""
    if value is None:
        return ()
    items = [item.strip() for item in value.split(",") if item.strip()]
    wrong = [item for item in items if not pattern.match(item)]
    if wrong:
        shown = ", ".join(repr(item) for item in wrong[:5])
        problems.append(f"{name} must be comma-separated {what}; not {shown}.")
    elif not items:
        problems.append(f"{name} names nothing: list at least one ID, or unset it.")
    return tuple(dict.fromkeys(items))


def _limit(value: str | None, name: str, problems: list[str]) -> int | None:
    """A run limit: a whole number of at least 1; unset means no limit."""
    if value is None:
        return None
    try:
        limit = int(value)
    except ValueError:
        problems.append(
            f"{name} must be a whole number of runs such as 20 (unset it for no limit), "
            f"got {value!r}."
        )
        return None
    if limit < 1:
        problems.append(f"{name} must be at least 1 (unset it for no limit), got {limit}.")
        return None
    return limit


def _database_path(url: str, problems: list[str]) -> str:
    """Accept sqlite:///relative.db, sqlite:////absolute.db and PostgreSQL URLs
    (postgresql://… or Heroku's postgres://…, kept whole); refuse every other scheme."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() in ("postgres", "postgresql"):
        if not urlsplit(url).path.strip("/") and "dbname=" not in url:
            problems.append(
                "DATABASE_URL names no PostgreSQL database: use postgresql://user:password@host:5432/db."
            )
        return scheme.lower() + "://" + rest
    if not sep or scheme.lower() != "sqlite":
        problems.append(
            f"DATABASE_URL must be a SQLite URL such as sqlite:///motion-bot.db or a PostgreSQL "
            f"URL such as postgresql://user:password@host:5432/db, got {_scheme_only(scheme, sep)}."
        )
        return ""
    path = rest[1:] if rest.startswith("/") else rest
    if not path:
        problems.append("DATABASE_URL names no file: use sqlite:///motion-bot.db.")
        return ""
    if path != ":memory:" and not Path(path).parent.exists():
        problems.append(
            f"DATABASE_URL points into {str(Path(path).parent)!r}, which does not exist: "
            "create the folder or choose another path."
        )
    return path


def _scheme_only(scheme: str, sep: str) -> str:
    """What a refused DATABASE_URL is called in the message: its scheme, never the rest (a
    malformed URL may still hold a password)."""
    if not sep:
        return "a value with no scheme://"
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,19}", scheme):
        return f"scheme {scheme!r}"
    return "an unreadable scheme"


def database_label(target: str) -> str:
    """The database for a log line or a message: never its password."""
    if target.split(":", 1)[0] in ("postgres", "postgresql"):
        parts = urlsplit(target)
        return f"PostgreSQL {parts.hostname or 'localhost'}{parts.path or ''}"
    return repr(target)
