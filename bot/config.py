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

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_MOTION_API_URL = "https://api.motion.so/api/motion"
DEFAULT_DATABASE_URL = "sqlite:///motion-bot.db"
SANDBOX_API_KEY = "motion_sandbox"

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
}

_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{6,}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{6,}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(Exception):
    """Every configuration problem found, each with what to change."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"motion-bot cannot start; fix the configuration:\n{lines}")


@dataclass(frozen=True)
class Settings:
    """The app's configuration; secrets are kept out of `repr` so they never reach a log."""

    slack_bot_token: str = field(repr=False)
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
    log_level: str = "INFO"
    motion_max_in_flight: int = 8
    motion_timeout_seconds: float = 15.0
    allowed_channels: tuple[str, ...] = ()  # empty: every channel
    admins: tuple[str, ...] = ()
    runs_per_user_per_day: int | None = None  # None: no limit
    runs_per_month: int | None = None
    confirm: bool = False
    instance_name: str | None = None  # MOTION_INSTANCE, else Heroku's DYNO: see Store leases
    lease_seconds: float = 30.0  # MOTION_LEASE_SECONDS: a dead instance's jobs wait this long
    public_url: str | None = None  # PUBLIC_URL without a trailing slash; None: no public links
    upload_max_mb: float = 100.0  # 0: no uploads into the thread
    stuck_after_minutes: float = 60.0

    def __repr__(self) -> str:
        shown = {
            "socket_mode": self.socket_mode,
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
        env = os.environ if env is None else env
        problems: list[str] = []

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value and value.strip() else None

        bot_token = get("SLACK_BOT_TOKEN")
        if bot_token is None:
            problems.append(f"SLACK_BOT_TOKEN is missing: copy it from {WHERE['SLACK_BOT_TOKEN']}.")
        elif not bot_token.startswith("xoxb-"):
            problems.append(
                "SLACK_BOT_TOKEN must be a bot token starting with xoxb- "
                f"(a user token xoxp- or app token xapp- will not work): {WHERE['SLACK_BOT_TOKEN']}."
            )

        app_token = get("SLACK_APP_TOKEN")
        if app_token is not None and not app_token.startswith("xapp-"):
            problems.append(
                "SLACK_APP_TOKEN must start with xapp- (leave it unset for HTTP mode): "
                f"{WHERE['SLACK_APP_TOKEN']}."
            )

        client_id, client_secret = get("SLACK_CLIENT_ID"), get("SLACK_CLIENT_SECRET")
        if client_id and client_secret:
            problems.append(
                "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are both set: that switches Slack's "
                "framework to multi-workspace OAuth, which ignores SLACK_BOT_TOKEN. This app "
                "serves one workspace: unset them."
            )

        signing_secret = get("SLACK_SIGNING_SECRET")
        if app_token is None and signing_secret is None:
            problems.append(
                "SLACK_SIGNING_SECRET is missing, and HTTP mode (no SLACK_APP_TOKEN) needs it to "
                f"verify every request: copy it from {WHERE['SLACK_SIGNING_SECRET']}."
            )

        slack_api_url = _url(
            get("SLACK_API_URL") or DEFAULT_SLACK_API_URL, "SLACK_API_URL", problems
        )
        if not slack_api_url.endswith("/"):
            slack_api_url += (
                "/"  # slack_sdk urljoins method names: a base without "/" loses its path
            )

        port = _number(get("PORT") or "3000", "PORT", int, problems)
        if port is not None and not 0 <= port <= 65535:
            problems.append(
                f"PORT must be between 1 and 65535 (or 0 for any free port), got {port}."
            )

        motion_key = get("MOTION_API_KEY")
        if motion_key is not None and not motion_key.startswith("motion_"):
            problems.append(
                "MOTION_API_KEY must start with motion_ (unset it to use the sandbox): "
                f"create one in {WHERE['MOTION_API_KEY']}."
            )
        motion_url = _url(
            get("MOTION_API_URL") or DEFAULT_MOTION_API_URL, "MOTION_API_URL", problems
        ).rstrip("/")

        database_path = _database_path(get("DATABASE_URL") or DEFAULT_DATABASE_URL, problems)

        notify = get("MOTION_NOTIFY_CHANNEL")
        if notify is not None and not _CHANNEL_ID.match(notify):
            problems.append(
                f"MOTION_NOTIFY_CHANNEL must be a channel ID such as C0123ABCD, not {notify!r}: "
                "in Slack, open the channel's details; the ID is at the bottom of the About tab."
            )

        mention_raw = (get("FOLLOWUP_REQUIRES_MENTION") or "false").lower()
        if mention_raw not in _TRUE | _FALSE:
            problems.append(
                f"FOLLOWUP_REQUIRES_MENTION must be true or false, got {mention_raw!r}."
            )

        initial = _number(
            get("POLL_INITIAL_SECONDS") or "3", "POLL_INITIAL_SECONDS", float, problems
        )
        maximum = _number(get("POLL_MAX_SECONDS") or "30", "POLL_MAX_SECONDS", float, problems)
        for name, value in (("POLL_INITIAL_SECONDS", initial), ("POLL_MAX_SECONDS", maximum)):
            if value is not None and not 0 < value <= 3600:
                problems.append(
                    f"{name} must be more than 0 and at most 3600 seconds, got {value}."
                )
        if initial is not None and maximum is not None and 0 < maximum < initial:
            problems.append(
                f"POLL_MAX_SECONDS ({maximum}) must not be below POLL_INITIAL_SECONDS ({initial})."
            )

        in_flight = _number(
            get("MOTION_MAX_IN_FLIGHT") or "8", "MOTION_MAX_IN_FLIGHT", int, problems
        )
        if in_flight is not None and not 1 <= in_flight <= 100:
            problems.append(f"MOTION_MAX_IN_FLIGHT must be between 1 and 100, got {in_flight}.")
        motion_timeout = _number(
            get("MOTION_TIMEOUT_SECONDS") or "15", "MOTION_TIMEOUT_SECONDS", float, problems
        )
        if motion_timeout is not None and not 0 < motion_timeout <= 60:
            problems.append(
                f"MOTION_TIMEOUT_SECONDS must be more than 0 and at most 60, got {motion_timeout}."
            )

        allowed_channels = _id_list(
            get("MOTION_ALLOWED_CHANNELS"),
            "MOTION_ALLOWED_CHANNELS",
            _CHANNEL_ID,
            "channel IDs such as C0123ABCD (not names like #general): in Slack, open the "
            "channel's details; the ID is at the bottom of the About tab",
            problems,
        )
        admins = _id_list(
            get("MOTION_ADMINS"),
            "MOTION_ADMINS",
            _USER_ID,
            "user IDs such as U0123ABCD (not names like @alice): in Slack, open the person's "
            "profile, ⋮ → Copy member ID",
            problems,
        )
        per_day = _limit(
            get("MOTION_RUNS_PER_USER_PER_DAY"), "MOTION_RUNS_PER_USER_PER_DAY", problems
        )
        per_month = _limit(get("MOTION_RUNS_PER_MONTH"), "MOTION_RUNS_PER_MONTH", problems)
        confirm_raw = (get("MOTION_CONFIRM") or "false").lower()
        if confirm_raw not in _TRUE | _FALSE:
            problems.append(f"MOTION_CONFIRM must be true or false, got {confirm_raw!r}.")
        lease = _number(
            get("MOTION_LEASE_SECONDS") or "30", "MOTION_LEASE_SECONDS", float, problems
        )
        if lease is not None and not 1 <= lease <= 50:
            problems.append(
                f"MOTION_LEASE_SECONDS must be between 1 and 50 (takeover within 60 s), got {lease}."
            )

        public_url = _public_url(get("PUBLIC_URL"), problems)
        upload_max = _number(get("UPLOAD_MAX_MB") or "100", "UPLOAD_MAX_MB", float, problems)
        if upload_max is not None and not 0 <= upload_max <= 1000:
            problems.append(
                f"UPLOAD_MAX_MB must be between 0 (no uploads) and 1000 megabytes, got {upload_max}."
            )
        stuck = _number(get("STUCK_AFTER_MINUTES") or "60", "STUCK_AFTER_MINUTES", float, problems)
        if stuck is not None and not 0 < stuck <= 10080:
            problems.append(
                f"STUCK_AFTER_MINUTES must be more than 0 and at most 10080 (a week), got {stuck}."
            )

        log_level = (get("LOG_LEVEL") or "INFO").upper()
        if log_level not in _LOG_LEVELS:
            problems.append(
                f"LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, got {log_level!r}."
            )

        instance, dyno = get("MOTION_INSTANCE"), get("DYNO")  # DYNO: Heroku's name for it

        if problems:
            raise ConfigError(problems)
        return cls(
            slack_bot_token=bot_token or "",
            slack_signing_secret=signing_secret,
            slack_app_token=app_token,
            slack_api_url=slack_api_url,
            port=port or 0,
            motion_api_key=motion_key,
            motion_api_url=motion_url,
            database_path=database_path,
            notify_channel=notify,
            followup_requires_mention=mention_raw in _TRUE,
            poll_initial_seconds=initial or 3.0,
            poll_max_seconds=maximum or 30.0,
            log_level=log_level,
            motion_max_in_flight=in_flight or 8,
            motion_timeout_seconds=motion_timeout or 15.0,
            allowed_channels=allowed_channels,
            admins=admins,
            runs_per_user_per_day=per_day,
            runs_per_month=per_month,
            confirm=confirm_raw in _TRUE,
            instance_name=instance or dyno,
            lease_seconds=lease or 30.0,
            public_url=public_url,
            upload_max_mb=100.0 if upload_max is None else upload_max,
            stuck_after_minutes=stuck or 60.0,
        )


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
