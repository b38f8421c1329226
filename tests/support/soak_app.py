"""The soak's processes and wire: the app as a child process killed and restarted on one
database, its environment, and what Slack sends it (signed, on a fixed port, no keep-alive)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

import httpx

from tests.support.harness import BOT_TOKEN, ROOT_DIR, SIGNING_SECRET, Harness, signed_headers
from tests.support.motion import ScriptedSandbox
from tests.support.slack import SlackDouble

MOTION_KEY = "motion_soak"
# Attempts at one delivery (a command, an event, a press) before giving up, as Slack does after
# the original and 3 retries; the app is never down long enough in the soak to need more.
MAX_ATTEMPTS = 6
# Variables of the app's own configuration: never inherited from the caller's environment.
APP_VARIABLES = (
    "SLACK_",
    "MOTION_",
    "DATABASE_URL",
    "POLL_",
    "FOLLOWUP_REQUIRES_MENTION",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "METRICS_",
    "PORT",
    "UPLOAD_MAX_MB",
    "PUBLIC_URL",
)


class SlackSide(Harness):
    """What Slack sends, signed, to the app's fixed port; the payload shapes are Harness's."""

    def __init__(
        self, slack: SlackDouble, sandbox: ScriptedSandbox, port: int, seed: str = "route"
    ) -> None:
        # Harness.__init__ is not called: it would open a client with keep-alive, and a pooled
        # connection to a killed process would blur "not delivered" into "maybe delivered".
        self.env: dict[str, str] = {}
        self.slack = slack
        self.sandbox = sandbox
        self.bots = []
        self._event_seq = 0
        self.port = port
        self.apps: list[AppProcess] = []  # when set, each delivery goes to one of them at random
        self.rng = random.Random(seed)
        self.http = httpx.AsyncClient(
            timeout=10, limits=httpx.Limits(max_connections=64, max_keepalive_connections=0)
        )

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def route(self, avoid: int | None = None) -> int:
        """A port to deliver to, as a load balancer would: a random instance that is up (another
        than `avoid` when there is one)."""
        if not self.apps:
            return self.port
        up = [a for a in self.apps if a.up.is_set()] or self.apps
        choices = [a for a in up if a.port != avoid] or up
        return self.rng.choice(choices).port

    async def post(
        self,
        body: str,
        content_type: str,
        *,
        headers: dict[str, str] | None = None,
        timestamp: int | None = None,
        secret: str = SIGNING_SECRET,
        port: int | None = None,
    ) -> httpx.Response:
        all_headers = {**signed_headers(body, secret, content_type, timestamp), **(headers or {})}
        url = f"http://127.0.0.1:{port or self.route()}/slack/events"
        return await self.http.post(url, content=body, headers=all_headers)

    async def aclose(self) -> None:
        await self.http.aclose()


class AppProcess:
    """`python -m bot` as a child process, on one port and one database across restarts."""

    def __init__(
        self,
        env: dict[str, str],
        cwd: Path,
        log_path: Path,
        port: int,
        *,
        name: str | None = "soak",
        same_name_on_restart: bool = True,
    ) -> None:
        self.env = env
        self.name = name
        # Same name: a restart takes its killed predecessor's leases back at once (a Heroku dyno
        # keeps its DYNO name). A new name per boot: another instance has to take them over.
        self.same_name_on_restart = same_name_on_restart
        self.owner: str | None = None  # the lease owner of the running boot (from /healthz)
        self.cwd = cwd
        self.log_path = log_path
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: TextIO = open(log_path, "a", encoding="utf-8")  # noqa: SIM115
        self.starts = 0
        self.up = asyncio.Event()
        self.up_since = 0.0
        self.lock = asyncio.Lock()
        self.start_seconds: list[float] = []

    def start(self) -> None:
        self.starts += 1
        self.log.write(f"=== soak: start {self.starts} at {time.time():.3f}\n")
        self.log.flush()
        env = {k: v for k, v in self.env.items() if k not in ("MOTION_INSTANCE", "DYNO")}
        if self.name is not None:  # None: the default name, this host and the process id
            same = self.same_name_on_restart
            env["MOTION_INSTANCE"] = self.name if same else f"{self.name}-boot{self.starts}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot"],
            cwd=self.cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    async def wait_healthy(self, http: httpx.AsyncClient, timeout: float = 30.0) -> None:
        began = time.monotonic()
        deadline = began + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the app exited with {self.proc.returncode} at start:\n{self.tail()}"
                )
            with contextlib.suppress(httpx.TransportError):
                answer = await http.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2)
                if answer.status_code == 200:
                    self.owner = answer.json().get("instance")
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app did not answer /healthz in {timeout}s:\n{self.tail()}")
            await asyncio.sleep(0.02)
        self.start_seconds.append(time.monotonic() - began)
        self.up_since = time.monotonic()
        self.up.set()

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed, in-flight calls are cut."""
        assert self.proc is not None
        self.up.clear()
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.log.write(f"=== soak: SIGKILL at {time.time():.3f}\n")
        self.log.flush()

    async def terminate(self, timeout: float = 40.0) -> tuple[int | None, float]:
        """SIGTERM and wait; returns the exit status (None: still running) and the seconds."""
        assert self.proc is not None
        self.up.clear()
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.proc.wait, timeout)
        return self.proc.poll(), time.monotonic() - began

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()

    def tail(self, lines: int = 40) -> str:
        self.log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def bot_sources_digest() -> str:
    """A digest of the app's code, to tell whether it changed while the soak ran."""
    digest = hashlib.sha256()
    for path in sorted((ROOT_DIR / "bot").rglob("*.py")):
        digest.update(path.relative_to(ROOT_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_env(
    slack: SlackDouble,
    motion_url: str,
    database: str,
    port: int,
    lease_seconds: float | None = None,
    uploads: bool = False,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(APP_VARIABLES)}
    path = [str(ROOT_DIR), *filter(None, [env.get("PYTHONPATH")])]
    env.update(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.base_url,
        PORT=str(port),
        MOTION_API_KEY=MOTION_KEY,
        MOTION_API_URL=motion_url,
        DATABASE_URL=database,
        POLL_INITIAL_SECONDS="0.2",
        POLL_MAX_SECONDS="1",
        MOTION_TIMEOUT_SECONDS="1",
        LOG_LEVEL="WARNING",
        PYTHONPATH=os.pathsep.join(path),
        PYTHONUNBUFFERED="1",
        UPLOAD_MAX_MB="5" if uploads else "0",  # the video in the thread: only with --uploads
    )
    if lease_seconds is not None:
        env["MOTION_LEASE_SECONDS"] = str(lease_seconds)
    return env
