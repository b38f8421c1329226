"""What a finished run hands out: its signed download URL, the MP4 behind it, its sources.

Each is derived only from the job id and the run number (and, for URLs, the signing
generation), never stored: the same run always answers the same bytes and sources, so a test can
recompute what it should have received, and the CDN can check a URL without remembering it.
"""

from __future__ import annotations

import copy
import hashlib
import random
from typing import Any

DOWNLOAD_BASE = "https://cdn.sandbox.motion.invalid"
DOWNLOAD_URL_LIFETIME_S = 3_600.0
VIDEO_BYTES = 200_000  # the default size of a sandbox MP4


def download_url(
    job_id: str, run_number: int, *, base: str = DOWNLOAD_BASE, generation: int = 0
) -> str:
    """The signed CDN link of a run's MP4. Before the sandbox serves HTTP it points at a
    .invalid host that never resolves; a started sandbox serves it itself (`base`), and each
    `generation` signs a different URL, the way Motion's signed URLs change when they expire."""
    signature = cdn_signature(job_id, run_number, generation)
    query = f"sig={signature}" if generation == 0 else f"g={generation}&sig={signature}"
    return f"{base}/{job_id}/run-{run_number}.mp4?{query}"


def cdn_signature(job_id: str, run_number: int, generation: int) -> str:
    """The `sig` of a run's URL in one generation: what the CDN compares a request against."""
    text = f"{job_id}:{run_number}" if generation == 0 else f"{job_id}:{run_number}:{generation}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def video_bytes(job_id: str, run_number: int, size: int) -> bytes:
    """A run's MP4 as the CDN serves it: an ftyp box then a pattern unique to the run, so a
    test can tell which run's bytes arrived (and that all of them did)."""
    head = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    pattern = hashlib.sha256(f"{job_id}:{run_number}".encode()).digest()
    body = head + pattern * (size // len(pattern) + 1)
    return body[:size]


_SOURCE_KINDS = (
    ("stock_video", "pexels", "Aerial city skyline at dusk"),
    ("stock_image", "unsplash", "Coffee cup on a wooden desk"),
    ("music", "epidemic_sound", "Upbeat corporate track"),
    ("stock_video", "pixabay", "Waves rolling onto a beach"),
    ("sound_effect", "freesound", "Soft whoosh transition"),
    ("generated_image", "mosaic", "Abstract gradient background"),
    ("web_capture", "youtube", "Product launch keynote"),
    ("voiceover", "elevenlabs", "Narration, calm voice"),
)
_RIGHTS = ("cleared", "licensed", "unknown", "restricted", None)
# The last entry leaves the `license` key out (distinct from a null license).
_NO_LICENSE_KEY = object()
_LICENSES: tuple[object, ...] = (
    "Pexels License",
    "CC BY 4.0",
    None,
    {"name": "Epidemic Sound Standard", "url": "https://www.epidemicsound.com/licensing/"},
    _NO_LICENSE_KEY,
)
_PLACEMENTS = ("background", "foreground", "overlay", "audio_bed", "b-roll")


def generated_sources(job_id: str, run_number: int, count: int) -> list[dict[str, Any]]:
    """Deterministic sources whose fields vary and go missing, as the additive array may."""
    rng = random.Random(f"{job_id}:{run_number}")
    return [_source(job_id, index, rng) for index in range(count)]


def _source(job_id: str, index: int, rng: random.Random) -> dict[str, Any]:
    kind, provider, title = _SOURCE_KINDS[index % len(_SOURCE_KINDS)]
    source: dict[str, Any] = {"source_kind": kind, "provider": provider}
    if index % 5 != 3:
        source["title"] = f"{title} ({index + 1})"
    if index % 4 != 2:
        source["source_url"] = f"https://{provider}.example/media/{job_id[:8]}-{index}"
    if index % 3 != 1:
        source["display_url"] = f"https://{provider}.example/m/{index}"
    rights = _RIGHTS[index % len(_RIGHTS)]
    if rights is not None:
        source["rights_status"] = rights
    license_ = _LICENSES[index % len(_LICENSES)]
    if license_ is not _NO_LICENSE_KEY:
        source["license"] = copy.deepcopy(license_)
    if index % 6 != 4:
        source["usages"] = _usages(rng)
    if index % 7 == 5:
        source["confidence"] = round(rng.uniform(0.5, 1.0), 2)
        source["attribution"] = {"author": "Sandbox Studio", "required": index % 2 == 0}
    return source


def _usages(rng: random.Random) -> list[dict[str, Any]]:
    """One or two places the source is used; draws from `rng` in the order sources need."""
    usages = []
    for _ in range(rng.randint(1, 2)):
        start = round(rng.uniform(0, 50), 1)
        usage: dict[str, Any] = {
            "start_seconds": start,
            "end_seconds": round(start + rng.uniform(1, 10), 1),
            "placement": _PLACEMENTS[rng.randrange(len(_PLACEMENTS))],
        }
        if rng.random() < 0.8:
            usage["scene"] = rng.randint(1, 8)
        usages.append(usage)
    return usages
