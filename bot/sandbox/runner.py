"""Running a sandbox: in a thread beside the caller's event loop, or in the foreground.

``SandboxThread`` is how the app's sandbox mode, ``python -m bot try``, the tests and the
benchmarks run one: on its own loop in a daemon thread, so a blocked or slow bot cannot stall the
emulator. ``main`` is ``python -m bot.sandbox``: it prints the base URL and serves until Ctrl-C or
SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading

from bot.sandbox.lifecycle import JobPlan
from bot.sandbox.server import MotionSandbox


class SandboxThread:
    """Runs a MotionSandbox in a daemon thread with its own event loop.

    Tests drive the bot in their own loop; keeping the sandbox on another loop means a blocked
    or slow bot cannot stall the emulator, which is how the real API behaves.
    """

    def __init__(
        self,
        sandbox: MotionSandbox,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        start_timeout: float = 5.0,
    ) -> None:
        self.sandbox = sandbox
        self.host = host
        self.port = port
        self.start_timeout = start_timeout
        self.base_url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> str:
        """Start serving and return the base URL once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("sandbox thread already started")
        self._thread = threading.Thread(target=self._serve, name="motion-sandbox", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.start_timeout):
            raise RuntimeError("sandbox did not start in time")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError("sandbox failed to start") from self._error
        assert self.base_url is not None
        return self.base_url

    def stop(self) -> None:
        """Stop the server and the loop, and wait for the thread to end."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            try:
                self.base_url = loop.run_until_complete(self.sandbox.start(self.host, self.port))
            except BaseException as exc:  # reported to the starting thread
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()
            loop.run_until_complete(self.sandbox.stop())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """`python -m bot.sandbox`: serve a sandbox until Ctrl-C or SIGTERM."""
    defaults = JobPlan()
    parser = argparse.ArgumentParser(
        prog="python -m bot.sandbox", description="Serve a local Mosaic Motion API emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--running-seconds", type=float, default=defaults.running_s)
    parser.add_argument("--render-seconds", type=float, default=defaults.render_s)
    parser.add_argument(
        "--api-key", action="append", help="accept only these keys (default: any motion_ key)"
    )
    parser.add_argument("--balance", type=int, help="credit balance (default: unlimited)")
    args = parser.parse_args(argv)
    sandbox = MotionSandbox(
        default_plan=JobPlan(running_s=args.running_seconds, render_s=args.render_seconds),
        api_keys=set(args.api_key) if args.api_key else None,
        balance=args.balance,
    )
    asyncio.run(_serve_until_signalled(sandbox, args.host, args.port))


async def _serve_until_signalled(sandbox: MotionSandbox, host: str, port: int) -> None:
    print(await sandbox.start(host, port), flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    try:
        await stopped.wait()
    finally:
        await sandbox.stop()
