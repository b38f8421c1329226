"""A single instance killed and restarted on the same host, under its default name (host and
process id): the restart takes back its predecessor's leases at once instead of waiting them
out, so an in-flight create is reported in seconds, not after the lease (30 s)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from bot.sandbox import SandboxThread
from bot.store import Store
from tests.support.harness import FAST_PLAN, ROOT_DIR, until
from tests.support.motion import ScriptedSandbox
from tests.support.slack import SlackDouble
from tests.support.soak_app import MOTION_KEY, AppProcess, SlackSide, app_env, free_port
from tests.unit.test_store import T0, new_job


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def lease_owner(store: Store, job_id: int) -> str | None:
    job = store.job(job_id)
    assert job is not None
    return job.lease_owner


def test_leases_of_a_dead_process_on_this_host_are_taken_back_at_start(database_url: str) -> None:
    path = database_url
    host = socket.gethostname()
    dead, alive = (
        Store(path, instance=f"{host}-pid{dead_pid()}"),
        Store(path, instance=f"{host}-pid{os.getppid()}"),
    )
    elsewhere = Store(path, instance=f"another-host-pid{dead_pid()}")
    named = Store(path, instance="web.1")
    try:
        jobs = {}
        for name, store in (
            ("dead", dead),
            ("alive", alive),
            ("elsewhere", elsewhere),
            ("named", named),
        ):
            job_id, _ = new_job(store, channel=f"C{name.upper()}")
            assert store.claim_job(job_id, T0)
            jobs[name] = job_id
        restarted = Store(path)  # this process, default name
        try:
            assert restarted.release_predecessors() == 1
            owners = {name: lease_owner(restarted, job_id) for name, job_id in jobs.items()}
            assert owners["dead"] is None
            assert owners["alive"] == alive.owner  # a process that runs here keeps its leases
            assert (
                owners["elsewhere"] == elsewhere.owner
            )  # another host's processes are not ours to judge
            assert owners["named"] == named.owner
        finally:
            restarted.close()
    finally:
        for store in (dead, alive, elsewhere, named):
            store.close()


async def test_a_killed_instance_restarted_here_reports_its_in_flight_create_at_once(
    tmp_path: Path, slack: SlackDouble
) -> None:
    sandbox = ScriptedSandbox(default_plan=FAST_PLAN, api_keys={MOTION_KEY})
    with SandboxThread(sandbox):
        port = free_port()
        database = tmp_path / "motion.db"
        env = app_env(slack, sandbox.base_url or "", f"sqlite:///{database}", port)
        env["MOTION_TIMEOUT_SECONDS"] = "30"  # the create is still in flight at the kill
        app = AppProcess(env, ROOT_DIR, tmp_path / "app.log", port, name=None)
        side = SlackSide(slack, sandbox, port)
        try:
            sandbox.fault("create", delay=60)
            app.start()
            await app.wait_healthy(side.http)
            first = app.owner
            assert (await side.command("a fox in the snow")).status_code == 200

            def sending() -> bool:
                store = Store(f"sqlite:///{database}")
                try:
                    return store._value("SELECT COUNT(*) FROM runs WHERE state = 'sending'") == 1
                finally:
                    store.close()

            await until(sending, timeout=20, what="the create in flight")
            app.kill()
            killed_at = time.monotonic()
            app.start()
            await app.wait_healthy(side.http)
            assert app.owner != first and f"{socket.gethostname()}-pid" in (app.owner or "")
            await until(
                lambda: [
                    c
                    for c in slack.calls("chat.postMessage")
                    if "never reached me" in str(c.params)
                ],
                timeout=20,
                what="the thread told the create's answer was lost",
            )
            assert time.monotonic() - killed_at < 15  # not the 30-s lease waited out
        finally:
            app.close()
            await side.aclose()
