"""The MP4 download goes only over https to public addresses, checked on every hop: a download
URL (or a redirect) aimed at a private, loopback or link-local address is refused before any
connection, the run keeps its link, and one line is logged. Only Motion's own loopback origin
(the sandbox) may serve plain http."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from bot.motion.download import Downloader, DownloadFailed
from bot.motion.download_guard import (
    DownloadRefused,
    Origin,
    address_problem,
    loopback_origin,
    url_problem,
)
from bot.sandbox import SandboxThread
from tests.support.e2e import results, run_command, settle
from tests.support.harness import MOTION_KEY, Harness, until
from tests.support.motion import ScriptedSandbox

# ---------------------------------------------------------------- the checks themselves


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1", "10.255.255.254", "127.0.0.1", "127.8.9.10", "169.254.169.254", "::1",
        "fe80::1", "192.168.1.20", "172.16.0.1", "100.64.0.1", "0.0.0.0", "::", "224.0.0.1",
        "ff02::1", "240.0.0.1", "fc00::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1",
        "64:ff9b::a9fe:a9fe",
    ],
)  # fmt: skip
def test_private_loopback_link_local_and_reserved_addresses_are_refused(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def test_only_a_motion_api_on_loopback_gets_an_exception() -> None:
    assert loopback_origin("http://127.0.0.1:8787/api/motion") == Origin("127.0.0.1", 8787)
    assert loopback_origin("http://[::1]:8787/api/motion") == Origin("::1", 8787)
    assert loopback_origin("http://localhost:8787/api/motion") == Origin("localhost", 8787)
    assert loopback_origin("https://api.motion.so/api/motion") is None
    assert loopback_origin("http://10.0.0.5:8787/api/motion") is None
    assert loopback_origin(None) is None


def test_plain_http_is_allowed_for_exactly_motions_loopback_host_and_port() -> None:
    exempt = Origin("127.0.0.1", 8787)
    assert url_problem(httpx.URL("http://127.0.0.1:8787/cdn/a.mp4"), exempt) is None
    assert url_problem(httpx.URL("http://127.0.0.1:8788/cdn/a.mp4"), exempt) is not None
    assert url_problem(httpx.URL("http://localhost:8787/cdn/a.mp4"), exempt) is not None
    assert url_problem(httpx.URL("http://cdn.example.com/a.mp4"), exempt) == "http is not https"
    assert url_problem(httpx.URL("http://cdn.example.com/a.mp4"), None) == "http is not https"
    assert url_problem(httpx.URL("https://cdn.example.com/a.mp4"), None) is None
    assert url_problem(httpx.URL("ftp://cdn.example.com/a.mp4"), None) is not None


# ---------------------------------------------------------------- the downloader


@pytest.fixture
async def downloader(sandbox: ScriptedSandbox) -> AsyncIterator[Downloader]:
    d = Downloader(sandbox.base_url)
    yield d
    await d.aclose()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://10.0.0.1/v.mp4", "a private address"),
        ("https://127.0.0.1:9/v.mp4", "a loopback address"),
        ("https://169.254.169.254/latest/meta-data/", "a link-local address"),
        ("https://[::1]:8443/v.mp4", "a loopback address"),
        ("https://[::ffff:10.1.2.3]/v.mp4", "a private address"),
        ("https://localhost/v.mp4", "a loopback address"),  # resolved: 127.0.0.1 and ::1
        ("http://cdn.example.invalid/v.mp4", "http is not https"),  # refused before any DNS
    ],
)
async def test_a_download_url_that_is_not_public_https_is_refused_before_connecting(
    downloader: Downloader, url: str, reason: str
) -> None:
    with pytest.raises(DownloadRefused) as refused:
        async with downloader.open(url):
            pass
    assert reason in refused.value.reason
    assert "v.mp4" not in str(refused.value)


async def test_the_sandboxs_own_cdn_is_allowed_only_when_motion_is_the_sandbox(
    sandbox: ScriptedSandbox, downloader: Downloader
) -> None:
    url = sandbox.download_url("no-such-job", 1)  # its own host:port; 404, but reached
    with pytest.raises(DownloadFailed) as reached:
        async with downloader.open(url):
            pass
    assert reached.value.reason == "the CDN answered 404"
    assert sandbox.cdn_requests == [("GET", httpx.URL(url).path)]
    for motion_url in (None, "https://api.motion.so/api/motion"):
        production = Downloader(motion_url)
        try:
            with pytest.raises(DownloadRefused):
                async with production.open(url):
                    pass
        finally:
            await production.aclose()
    assert len(sandbox.cdn_requests) == 1


# ---------------------------------------------------------------- through the app


@pytest.fixture
def elsewhere() -> Iterator[ScriptedSandbox]:
    """Another server on loopback, on another port, that a redirect may point at."""
    other = ScriptedSandbox(api_keys={MOTION_KEY})
    with SandboxThread(other):
        yield other


def upload_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bot.jobs.uploads"]


async def finished_without_video(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> list[logging.LogRecord]:
    """Run one job with uploads on; check the result is posted once and no video follows;
    returns the uploader's log lines."""
    await harness.start(UPLOAD_MAX_MB="1")
    with caplog.at_level(logging.INFO, logger="bot"):
        card = await run_command(harness, "a teaser")
        await until(lambda: results(harness, card["ts"]), what="the result")
        await until(lambda: upload_lines(caplog), what="the upload's log line")
        await settle(1.0)
    assert len(results(harness, card["ts"])) == 1
    [job_id] = harness.sandbox.job_ids
    assert harness.sandbox.job(job_id).download_url in results(harness, card["ts"])[0]["text"]
    assert harness.slack.shared_files("C0PUBLIC", card["ts"]) == []
    assert harness.slack.calls("files.getUploadURLExternal") == []
    job = harness.bot.store.recent_jobs("T0001", "U0ALICE")[0]
    assert harness.bot.store.open_uploads(job.id) == []  # given up, not retried later
    return upload_lines(caplog)


@pytest.mark.parametrize(
    ("scheme", "reason"),
    [("http", "http is not https"), ("https", "resolves to a loopback address")],
)
async def test_a_motion_download_that_redirects_to_another_loopback_port_is_refused(
    harness: Harness, elsewhere: ScriptedSandbox, caplog: pytest.LogCaptureFixture,
    scheme: str, reason: str,
) -> None:  # fmt: skip
    target = elsewhere.download_base.replace("http://", f"{scheme}://", 1)
    harness.sandbox.cdn_redirect = target
    [line] = await finished_without_video(harness, caplog)
    assert "not uploaded: download refused" in line.getMessage() and reason in line.getMessage()
    assert [method for method, _ in harness.sandbox.cdn_requests] == ["GET"]  # the first hop
    assert elsewhere.cdn_requests == []  # the redirect was never followed


async def test_a_plain_http_download_from_a_host_other_than_motions_is_refused(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # The sandbox's own port, named differently: a plain connect would reach it.
    assert harness.sandbox.base_url is not None
    port = httpx.URL(harness.sandbox.base_url).port
    harness.sandbox.download_base = f"http://localhost:{port}/cdn"
    [line] = await finished_without_video(harness, caplog)
    assert "download refused: http is not https" in line.getMessage()
    assert harness.sandbox.cdn_requests == []


async def test_motions_own_loopback_cdn_still_uploads_the_video(harness: Harness) -> None:
    await harness.start(UPLOAD_MAX_MB="1")
    card = await run_command(harness, "a teaser")
    await until(lambda: results(harness, card["ts"]), what="the result")
    [video] = await until(
        lambda: harness.slack.shared_files("C0PUBLIC", card["ts"]), what="the video"
    )
    assert video["files"][0]["name"] == "motion-run-1.mp4"
