"""Reading an MP4 from the sandbox's CDN (bot/motion/download.py) over a real socket: the length
first, then the body in bounded chunks; an expired signed URL and a short body are failures."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest

from bot.motion.download import CHUNK_BYTES, Downloader, DownloadFailed
from bot.sandbox import JobPlan, video_bytes
from tests.support.harness import FAST_PLAN, MOTION_KEY, until
from tests.support.motion import ScriptedSandbox

SIZE = 1_300_000


@pytest.fixture
async def downloader(sandbox: ScriptedSandbox) -> AsyncIterator[Downloader]:
    d = Downloader(sandbox.base_url)  # its CDN is on its own loopback host and port
    yield d
    await d.aclose()


async def finished_job(sandbox: ScriptedSandbox) -> str:
    sandbox.plan_next(JobPlan(**{**FAST_PLAN.__dict__, "video_bytes": SIZE}))
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {MOTION_KEY}"}) as api:
        created = await api.post(f"{sandbox.base_url}/sessions", json={"prompt": "a teaser"})
    job_id = str(created.json()["job_id"])
    await until(lambda: sandbox.job(job_id).download_url, what="the MP4")
    return job_id


async def test_the_body_arrives_in_bounded_chunks_after_its_length(
    sandbox: ScriptedSandbox, downloader: Downloader
) -> None:
    job_id = await finished_job(sandbox)
    digest, sizes = hashlib.sha256(), []
    async with downloader.open(sandbox.download_url(job_id, 1)) as download:
        assert download.length == SIZE and download.content_type == "video/mp4"
        async for chunk in download.chunks():
            sizes.append(len(chunk))
            digest.update(chunk)
    assert sum(sizes) == SIZE and len(sizes) > 1 and max(sizes) <= CHUNK_BYTES
    assert digest.hexdigest() == hashlib.sha256(video_bytes(job_id, 1, SIZE)).hexdigest()


async def test_an_expired_url_is_a_failure_that_names_no_url(
    sandbox: ScriptedSandbox, downloader: Downloader
) -> None:
    job_id = await finished_job(sandbox)
    old = sandbox.download_url(job_id, 1)
    sandbox.expire_download_urls()
    with pytest.raises(DownloadFailed) as failed:
        async with downloader.open(old):
            pass
    assert failed.value.reason == "the CDN answered 403"
    assert "sig=" not in str(failed.value)
    async with downloader.open(sandbox.download_url(job_id, 1)) as download:
        assert download.length == SIZE  # the new URL works
