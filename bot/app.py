"""The only wiring point: settings in, a running app out (HTTP or Socket Mode, plus the poller)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import http_intake, listeners
from bot.config import WHERE, ConfigError, Settings
from bot.file_links import FileLinks
from bot.health import Health
from bot.jobs import JobService
from bot.jobs.context import JobEvents
from bot.jobs.files import FileIntake
from bot.jobs.settings import SettingsFromStore
from bot.jobs.videos import VideoLinks
from bot.links import LinkSigner, signer_for
from bot.metrics import Metrics, MetricsListener
from bot.motion import MotionClient
from bot.poller import Poller
from bot.schedule import PollSchedule
from bot.slack.files import SlackFiles
from bot.slack.out import SlackOut, make_client
from bot.store import DatabaseUnavailable, Store, request_budget
from bot.video_links import VideoLinkRoute
from bot.workspaces.installations import StoreInstallations, StoreOAuthStates
from bot.workspaces.oauth import INSTALL_PATH, REDIRECT_PATH, oauth_settings
from bot.workspaces.rotation import unreadable_secrets
from bot.workspaces.secrets import Secrets
from bot.workspaces.tokens import SerializedRotator, WorkspaceSlack, WorkspaceTokens

log = logging.getLogger(__name__)
# Connections the kernel holds for the app before it accepts them. aiohttp's default (128) is
# overrun by a burst of Slack requests while the loop is busy: the kernel then drops the
# connection's SYN and the sender retries it a whole second later (measured: 200 commands at
# once, p99 ack 1.07 s on PostgreSQL). The kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 2048
SHUTDOWN_SECONDS = 25.0  # platforms send SIGKILL 30 s after SIGTERM
STARTUP_DATABASE_SECONDS = 30.0  # recovery at start, all of its statements together


@dataclass(frozen=True)
class Observers:
    """What each part counts with (bot/metrics.py), as the plain callables it takes; all None
    when metrics are off, so nothing is counted at all."""

    motion: Callable[[str, str], None] | None = None
    slack: Callable[[str, str], None] | None = None
    poll_lag: Callable[[float], None] | None = None
    takeovers: Callable[[int], None] | None = None
    ack: Callable[[float], None] | None = None
    jobs: JobEvents | None = None

    @classmethod
    def of(cls, metrics: Metrics | None) -> Observers:
        if metrics is None:
            return cls()
        events = JobEvents(
            upload=metrics.upload, run_refused=metrics.run_refused, run_ended=metrics.run_ended
        )
        return cls(
            metrics.motion_call, metrics.slack_call, metrics.poll_lag,
            metrics.leases_taken_over, metrics.ack, events,
        )  # fmt: skip


@dataclass(frozen=True)
class SlackSide:
    """The app's Slack clients: Bolt's (`client`, which its requests and OAuth flow call
    through), the service's (`out`, and with many workspaces `per_workspace`, a SlackOut for
    each workspace with its own token), and the file reader. All share one connection pool."""

    client: AsyncWebClient
    out: SlackOut
    files: SlackFiles
    per_workspace: WorkspaceSlack | None = None
    oauth: AsyncOAuthSettings | None = None  # many workspaces: "Add to Slack"
    tokens: WorkspaceTokens | None = None
    installations: StoreInstallations | None = None

    @classmethod
    def of(
        cls,
        settings: Settings,
        store: Store,
        session: aiohttp.ClientSession,
        observe: Callable[[str, str], None] | None,
    ) -> SlackSide:
        api_url = settings.slack_api_url
        if settings.many_workspaces:
            return cls._many(settings, store, session, observe)
        token = settings.slack_bot_token
        client = make_client(token, api_url, session=session)
        outbox = make_client(token, api_url, retry_writes=False, session=session, observe=observe)
        return cls(client, SlackOut(outbox, observe=observe), SlackFiles(token, api_url))

    @classmethod
    def _many(
        cls,
        settings: Settings,
        store: Store,
        session: aiohttp.ClientSession,
        observe: Callable[[str, str], None] | None,
    ) -> SlackSide:
        """Clients without a token of their own: each call names its workspace's. A refresh
        is never retried on a dropped connection (its refresh token may be spent already)."""
        assert settings.slack_client_id and settings.slack_client_secret and settings.public_url
        api_url = settings.slack_api_url
        installations = StoreInstallations(store, Secrets(settings.secret_keys))
        client = make_client(None, api_url, session=session)
        outbox = make_client(None, api_url, retry_writes=False, session=session, observe=observe)
        rotator = SerializedRotator(
            client_id=settings.slack_client_id,
            client_secret=settings.slack_client_secret,
            client=make_client(None, api_url, retry_writes=False, session=session),
            installations=installations,
        )
        tokens = WorkspaceTokens(installations, rotator)
        oauth = oauth_settings(
            client_id=settings.slack_client_id, client_secret=settings.slack_client_secret,
            public_url=settings.public_url, slack_api_url=api_url, installations=installations,
            states=StoreOAuthStates(store), rotator=rotator,
        )  # fmt: skip

        async def no_workspace() -> str | None:
            return None  # a call that names no workspace has no token to use: it fails

        out = SlackOut(outbox, observe=observe, token=no_workspace, workspace="no workspace named")
        per_workspace = WorkspaceSlack(tokens, outbox, observe)
        files = SlackFiles(tokens.bot_token, api_url)
        return cls(client, out, files, per_workspace, oauth, tokens, installations)


@dataclass
class MotionBot:
    settings: Settings
    store: Store
    motion: MotionClient
    service: JobService
    poller: Poller
    app: AsyncApp
    session: aiohttp.ClientSession
    _signing_secret: bytes | None = field(repr=False)
    links: LinkSigner = field(repr=False)
    sandbox_thread: Any = None
    _runner: web.AppRunner | None = None
    _socket_handler: Any = None
    port: int | None = None
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)
    file_links: FileLinks | None = None  # PUBLIC_URL/files/<token>: Slack files for Motion
    _refusals: http_intake.RefusalLog = field(default_factory=http_intake.RefusalLog)
    metrics: Metrics | None = None  # METRICS_PORT or METRICS_TOKEN: bot/metrics.py
    _metrics_listener: MetricsListener | None = None
    slack_side: SlackSide | None = None
    health: Health = field(init=False)

    def __post_init__(self) -> None:
        details = {
            "database_kind": self.store.dialect,
            "mode": "socket" if self.settings.socket_mode else "http",
            "sandbox": self.settings.sandbox,
        }
        self.health = Health(self.store, lambda: self.poller.alive, details)

    @classmethod
    def build(
        cls, settings: Settings, *, concurrency: int = 64, sandbox_plan: Any = None
    ) -> MotionBot:
        """Everything wired, nothing started: no socket is opened until `start`. Called from
        a coroutine (the Slack connection pool belongs to the running loop).

        `sandbox_plan` (a `bot.sandbox.JobPlan`) sets how long sandbox jobs take."""
        store = Store(settings.database_path, instance=settings.instance_name)
        metrics = Metrics(store) if settings.metrics_enabled else None
        told = Observers.of(metrics)
        sandbox_thread, motion_url = start_sandbox(settings, sandbox_plan)
        motion = MotionClient(
            motion_url,
            settings.motion_key,
            max_in_flight=settings.motion_max_in_flight,
            timeout=settings.motion_timeout_seconds,
            observe=told.motion,
        )
        # One pooled session for every Slack call (slack_sdk opens one per call otherwise).
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=50), timeout=aiohttp.ClientTimeout(total=30)
        )
        slack = SlackSide.of(settings, store, session, told.slack)
        schedule = PollSchedule(
            settings.poll_initial_seconds,
            settings.poll_max_seconds,
            target=settings.poll_target_p95_seconds,
            background=True,  # plans are worked out off the event loop, never holding an ack
        )
        links = signer_for(
            settings.slack_signing_secret,
            settings.slack_bot_token or settings.slack_client_secret or "",
        )
        file_links = FileLinks(links, slack.files, settings.public_url)
        service = JobService(
            store,
            motion,
            slack.out,
            schedule=schedule,
            sandbox=settings.sandbox,
            workspaces=SettingsFromStore(store, settings, secrets_of(settings)),
            stuck_after_seconds=settings.stuck_after_minutes * 60,
            files=FileIntake(file_links),
            upload_max_mb=settings.upload_max_mb,
            video_links=VideoLinks(
                links, settings.public_url, require_team=settings.many_workspaces
            ),
            events=told.jobs,
            workspace_slack=slack.per_workspace,
        )
        poller = Poller(
            store, service.advance, concurrency=concurrency, lease_seconds=settings.lease_seconds,
            observe_lag=told.poll_lag, observe_takeovers=told.takeovers,
        )  # fmt: skip
        if metrics is not None:
            metrics.jobs_held = lambda: poller.busy
        service.wake = poller.wake
        service.due_now = poller.due_now
        file_links.forgotten = service.workspace_forgotten
        if not settings.many_workspaces:  # a forgetting holds until a restart (see Uninstalls)
            service.uninstalls.since = time.time()
        app = bolt_app(settings, slack, service)
        secret = None if settings.socket_mode else app_signing_secret(settings).encode()
        return cls(
            settings, store, motion, service, poller, app, session, secret, links, sandbox_thread,
            file_links=file_links, metrics=metrics, slack_side=slack,
        )  # fmt: skip

    async def start(self) -> None:
        """Resume unfinished work, then take requests. Recovery may wait for a database that
        is away for a moment (on the store's workers: nothing else runs yet)."""
        with request_budget(STARTUP_DATABASE_SECONDS):
            resumed = await self.store.off_loop(self.service.recover)
        log.info(
            "instance %s: resuming %d job(s) from %s",
            self.store.owner,
            resumed,
            self.store.description,
        )
        await self._report_unreadable_secrets()
        self.poller.start()
        self.service.uninstalls.start()  # what every instance forgot, kept fresh in memory
        await self.health.refresh()  # the first /healthz is answered from a real look
        self.health.start()
        await self._start_metrics()
        if self.settings.socket_mode:
            self._socket_handler = timed_socket_mode(
                self.app, self.settings.slack_app_token, self._observe_ack
            )
            client = self._socket_handler.client
            try:  # slack_sdk would retry a refused token forever; ask once so it fails loudly
                client.wss_uri = await client.issue_new_wss_url()
            except SlackApiError as exc:
                error = exc.response.get("error")
                raise ConfigError(
                    [
                        f"SLACK_APP_TOKEN was refused by Slack ({error}): create a new one in "
                        f"{WHERE['SLACK_APP_TOKEN']}."
                    ]
                ) from exc
            await self._socket_handler.connect_async()
            log.info("connected to Slack in Socket Mode")
        if not self.settings.socket_mode or self.settings.public_url or self._token_metrics:
            await self._serve_http()

    async def _report_unreadable_secrets(self) -> None:
        """Many workspaces: each stored secret no key in SECRET_KEYS opens, named by workspace
        in the log at start (the app goes on: that workspace's calls fail until it is fixed)."""
        side = self.slack_side
        if side is None or side.installations is None:
            return
        unreadable = await self.store.off_loop(
            unreadable_secrets, self.store, side.installations.secrets
        )
        for item in unreadable:
            log.error("SECRET_KEYS: %s", item.line())

    @property
    def _token_metrics(self) -> bool:
        """METRICS_TOKEN: /metrics is on PORT (served in Socket Mode too, for it)."""
        return self.metrics is not None and self.settings.metrics_token is not None

    @property
    def _observe_ack(self) -> Callable[[float], None] | None:
        return self.metrics.ack if self.metrics is not None else None

    async def _start_metrics(self) -> None:
        """The snapshot read once before anything is served, then kept fresh; with
        METRICS_PORT, its listener."""
        if self.metrics is None:
            return
        await self.metrics.refresh()
        self.metrics.start()
        if self.settings.metrics_port is not None:
            self._metrics_listener = MetricsListener(self.metrics)
            await self._metrics_listener.start(self.settings.metrics_port)

    @property
    def metrics_port(self) -> int | None:
        """The port METRICS_PORT's listener is bound to (METRICS_PORT=0: the one it was given)."""
        return self._metrics_listener.port if self._metrics_listener is not None else None

    async def _serve_http(self) -> None:
        """HTTP mode takes Slack's requests here; in either mode, with PUBLIC_URL, the app's
        own public links (files for Motion, downloads for people) are served on PORT too."""
        web_app = web.Application(client_max_size=http_intake.MAX_BODY_BYTES)
        if not self.settings.socket_mode:
            web_app.router.add_post("/slack/events", self._slack_events)
        web_app.router.add_get("/healthz", self.health.answer)
        if self.metrics is not None and self.settings.metrics_token is not None:
            # Every method, so that only a GET with the token tells /metrics from nothing.
            web_app.router.add_route(
                "*", "/metrics", self.metrics.guarded(self.settings.metrics_token)
            )
        self._add_public_routes(web_app.router)
        if self.settings.many_workspaces:
            web_app.router.add_get(INSTALL_PATH, self._oauth)
            web_app.router.add_get(REDIRECT_PATH, self._oauth)
        # Bodies are read raw: /slack/events inflates them itself, capped (bot/http_intake.py).
        self._runner = web.AppRunner(
            web_app, access_log=None, handle_signals=False, auto_decompress=False
        )
        await self._runner.setup()
        await web.TCPSite(
            self._runner, "0.0.0.0", self.settings.port, backlog=LISTEN_BACKLOG
        ).start()
        address = self._runner.addresses[0] if self._runner.addresses else None
        self.port = int(address[1]) if address else self.settings.port
        if self.settings.socket_mode:
            log.info("serving public links and /metrics on :%s", self.port)
        else:
            log.info("listening for Slack on :%s/slack/events (HTTP mode)", self.port)

    def _add_public_routes(self, router: web.UrlDispatcher) -> None:
        """The routes behind PUBLIC_URL (each answers 404 while PUBLIC_URL is unset)."""
        if self.file_links is not None:
            self.file_links.add_routes(router)  # GET/HEAD /files/{token}
        links = VideoLinks(
            self.links, self.settings.public_url, require_team=self.settings.many_workspaces
        )
        VideoLinkRoute(links, self.service.video_urls).register(router)

    async def _slack_events(self, request: web.Request) -> web.Response:
        """Verified before anything else is read (bot/http_intake.py), then Bolt's; the time
        from arrival to answer of each request Bolt answers is observed (`motion_ack_seconds`).
        The request's budget for the database starts on arrival (bot/store/availability.py)."""
        started = time.perf_counter()
        with request_budget():
            response = await self._take_slack_request(request)
        if self.metrics is not None and response.status < 400:
            self.metrics.ack(time.perf_counter() - started)
        return response

    async def _take_slack_request(self, request: web.Request) -> web.Response:
        assert self._signing_secret is not None  # the route exists in HTTP mode only
        try:
            body = await http_intake.verified_body(request, self._signing_secret)
        except http_intake.Refused as refused:
            self._refusals.refused(request.remote, refused.status, refused.reason)
            return refused.response()
        content_type = request.headers.get("Content-Type", "")
        if http_intake.is_ssl_check(body, content_type):
            return web.Response(status=200)
        try:
            http_intake.check_shape(body, content_type)
        except http_intake.Malformed as exc:
            log.warning("refused a signed request: %s", exc)
            return web.Response(status=400, text=f"malformed request: {exc}")
        bolt_request = AsyncBoltRequest(
            body=body, query=request.query_string, headers=dict(request.headers)
        )
        response = await self.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(response)

    async def _oauth(self, request: web.Request) -> web.Response:
        """ "Add to Slack" (GET /slack/install) and Slack's redirect back (GET
        /slack/oauth_redirect), through Bolt's OAuth flow."""
        flow = self.app.oauth_flow
        if flow is None:
            raise web.HTTPNotFound()
        bolt_request = AsyncBoltRequest(
            body="", query=request.query_string, headers=dict(request.headers)
        )
        with request_budget():
            if request.path == INSTALL_PATH:
                answer = await flow.handle_installation(bolt_request)
            else:
                answer = await flow.handle_callback(bolt_request)
        response = await to_aiohttp_response(answer)
        if (self.settings.public_url or "").startswith("http://"):
            for morsel in response.cookies.values():  # a loopback PUBLIC_URL (local tests)
                morsel["secure"] = ""
        return response

    async def stop(self, timeout: float = SHUTDOWN_SECONDS) -> None:
        """Stop taking work, let in-flight calls finish (or abandon them), leave all resumable."""
        deadline = asyncio.get_running_loop().time() + timeout
        self.service.stopping = True  # no new create or followup from here on
        if self._runner is not None:
            await self._runner.cleanup()
        if self._metrics_listener is not None:
            await self._metrics_listener.stop()
        if self.metrics is not None:
            await self.metrics.stop()
        if self._socket_handler is not None:
            with contextlib.suppress(Exception):
                await self._socket_handler.close_async()
        remaining = deadline - asyncio.get_running_loop().time() - 3.0
        await self.poller.stop(max(0.0, remaining))
        await self.service.uninstalls.stop()
        await self.health.stop()
        await self.service.drain_background(1.0)
        await self.service.aclose()
        await self.motion.aclose()
        if self.file_links is not None:
            await self.file_links.files.aclose()
        await self.session.close()
        if self.sandbox_thread is not None:
            self.sandbox_thread.stop()
        self.store.close()
        self._stopped.set()

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        starting = asyncio.ensure_future(self.start())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
        failure: BaseException | None = None
        if not starting.done():  # SIGTERM while still starting: honour it
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        elif starting.exception() is not None:
            failure = starting.exception()
        else:
            await stopping
        stopping.cancel()
        log.info("stopping: finishing in-flight work (at most %.0f s)", SHUTDOWN_SECONDS)
        await self.stop()
        if failure is not None:
            raise failure


def secrets_of(settings: Settings) -> Secrets | None:
    """SECRET_KEYS' seals, for what the app stores of a workspace (None: it can store none)."""
    return Secrets(settings.secret_keys) if settings.secret_keys else None


def start_sandbox(settings: Settings, plan: Any) -> tuple[Any, str]:
    """Sandbox mode (no MOTION_API_KEY): the Motion emulator on a thread of its own, and its
    address; otherwise no thread and MOTION_API_URL. Without MOTION_API_KEY each workspace may
    set a key of its own (its runs then go to MOTION_API_URL); the others stay in the sandbox,
    so it runs whenever MOTION_API_KEY is unset."""
    if not settings.sandbox:
        return None, settings.motion_api_url
    from bot.sandbox import JobPlan, MotionSandbox, SandboxThread

    plan = plan or JobPlan(queued_s=2, created_s=3, running_s=25, render_s=6)
    thread = SandboxThread(MotionSandbox(default_plan=plan))
    url = thread.start()
    log.warning(
        "SANDBOX MODE: MOTION_API_KEY is not set, so Motion is simulated at %s; "
        "no credits are spent and every Slack message says so.",
        url,
    )
    return thread, url


def timed_socket_mode(
    app: AsyncApp, app_token: str | None, observe_ack: Callable[[float], None] | None
) -> Any:
    """Bolt's Socket Mode handler; with `observe_ack`, each request's time from arrival to the
    answer sent back over the socket is observed (`motion_ack_seconds`)."""
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    if observe_ack is None:
        return AsyncSocketModeHandler(app, app_token)
    observe: Callable[[float], None] = observe_ack

    class Timed(AsyncSocketModeHandler):
        async def handle(self, client: Any, req: Any) -> None:
            started = time.perf_counter()
            await super().handle(client, req)
            observe(time.perf_counter() - started)

    return Timed(app, app_token)


def bolt_app(settings: Settings, slack: SlackSide, service: JobService) -> AsyncApp:
    """Bolt with the app's listeners; its own request verification stays on in HTTP mode
    (after bot/http_intake.py's), and a listener that fails is logged with its traceback.
    Many workspaces: Bolt's OAuth flow, and each request authorized with its workspace's
    installation (bot/workspaces/oauth.py)."""
    app = AsyncApp(
        client=slack.client,
        signing_secret=app_signing_secret(settings),
        request_verification_enabled=not settings.socket_mode,
        process_before_response=True,
        oauth_settings=slack.oauth,
    )
    listeners.register(app, service)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        kind = body.get("type") or "command"
        if isinstance(error, DatabaseUnavailable):
            # Nothing of it was recorded: Slack delivers an event again after an error status
            # (commands and clicks are answered by their listeners and never get here).
            log.info("a %s request found the database away (%s): answered 500", kind, error)
            return
        log.error("listener failed for a %s request", kind, exc_info=error)

    return app


def app_signing_secret(settings: Settings) -> str:
    """Socket Mode needs none (Slack's connection is the proof); HTTP mode's is required."""
    return settings.slack_signing_secret or ""
