"""Requests from strangers: refused before their body is parsed, whatever its size on the wire or
after inflating, answered 401/400/413 (never a 500, never a traceback), and a flood of them does
not hold up a signed command's acknowledgement."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import logging
import time
import zlib
from urllib.parse import urlencode

import httpx
import pytest

from bot import http_intake
from bot.local.payloads import signed_headers
from bot.store import DatabaseUnavailable, Reason
from tests.support.harness import SIGNING_SECRET, Harness

FORM = "application/x-www-form-urlencoded"
ACK_LIMIT = 3.0  # Slack's
FAKE_SIGNATURE = "v0=" + "0" * 64


def fresh() -> str:
    return str(int(time.time()))


def bomb(inflated: int = 2 * 1024 * 1024) -> bytes:
    """About 2 KB on the wire, `inflated` bytes once inflated."""
    return gzip.compress(b"a" * inflated, compresslevel=9)


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> bool:
    return not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"X-Slack-Request-Timestamp": "x", "X-Slack-Signature": FAKE_SIGNATURE}, "not a number"),
        ({"X-Slack-Request-Timestamp": "١٢٣", "X-Slack-Signature": FAKE_SIGNATURE}, "not a number"),
        ({"X-Slack-Request-Timestamp": "9" * 40, "X-Slack-Signature": FAKE_SIGNATURE}, "number"),
        ({"X-Slack-Request-Timestamp": "-5", "X-Slack-Signature": FAKE_SIGNATURE}, "number"),
        ({"X-Slack-Signature": FAKE_SIGNATURE}, "no X-Slack-Request-Timestamp"),
        ({"X-Slack-Request-Timestamp": "NOW"}, "no X-Slack-Signature"),
        ({"X-Slack-Request-Timestamp": "NOW", "X-Slack-Signature": "v0=é" + "0" * 63}, "hex"),
        ({"X-Slack-Request-Timestamp": "NOW", "X-Slack-Signature": "v1=abc"}, "hex"),
        ({"X-Slack-Request-Timestamp": "NOW", "X-Slack-Signature": FAKE_SIGNATURE}, "match"),
    ],
)
async def test_garbage_signature_headers_get_401_and_one_log_line(
    harness: Harness, caplog: pytest.LogCaptureFixture, headers: dict[str, str], why: str
) -> None:
    bot = await harness.start()
    headers = {k: fresh() if v == "NOW" else v for k, v in headers.items()}
    body = urlencode(harness.command_fields("a fox"))
    raw = {k: v.encode() for k, v in headers.items()}  # non-ASCII bytes as a stranger sends them
    with caplog.at_level(logging.INFO):
        response = await harness.http.post(
            f"http://127.0.0.1:{bot.port}/slack/events",
            content=body,
            headers={"Content-Type": FORM, **raw},
        )
    assert response.status_code == 401
    assert response.text.strip() == "invalid signature"
    lines = [r.getMessage() for r in caplog.records if "refused a request" in r.getMessage()]
    assert len(lines) == 1 and why in lines[0]
    assert no_tracebacks(caplog)
    assert harness.slack.responses == []


@pytest.mark.parametrize("charset", ["bogus", "utf-7", "latin-1; x=\u00e9"])
async def test_a_bogus_charset_is_401_unsigned_and_harmless_when_signed(
    harness: Harness, caplog: pytest.LogCaptureFixture, charset: str
) -> None:
    bot = await harness.start()
    content_type = f"{FORM}; charset={charset}"
    body = urlencode(harness.command_fields("a fox with a bogus charset"))
    with caplog.at_level(logging.INFO):
        unsigned = await harness.http.post(
            f"http://127.0.0.1:{bot.port}/slack/events",
            content=body,
            headers={"Content-Type": content_type.encode("utf-8")},
        )
        headers = signed_headers(body, SIGNING_SECRET, FORM)
        signed = await harness.http.post(
            harness.events_url,
            content=body,
            headers={**headers, "Content-Type": content_type.encode("utf-8")},
        )
    assert unsigned.status_code == 401
    # Slack sends UTF-8 whatever a header says: the signed command is read as UTF-8.
    assert signed.status_code == 200 and "card will appear" in signed.text
    assert no_tracebacks(caplog)


async def test_a_signed_body_that_is_not_utf8_gets_400(harness: Harness) -> None:
    bot = await harness.start()
    body = b"command=%2Fmotion&text=\xff\xfe"
    ts = fresh()
    digest = hmac.new(SIGNING_SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    response = await harness.http.post(
        f"http://127.0.0.1:{bot.port}/slack/events",
        content=body,
        headers={
            "Content-Type": FORM,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": "v0=" + digest.hexdigest(),
        },
    )
    assert response.status_code == 400


async def test_oversized_bodies_are_413_on_the_wire_and_after_inflating(harness: Harness) -> None:
    bot = await harness.start()
    url = f"http://127.0.0.1:{bot.port}/slack/events"
    big = "text=" + "a" * (http_intake.MAX_BODY_BYTES + 10)
    on_the_wire = await harness.post(big, FORM)
    # Signed over what it inflates to: still refused, by size, before the signature is computed.
    inflated = "x" * (http_intake.MAX_BODY_BYTES * 2)
    headers = signed_headers(inflated, SIGNING_SECRET, FORM)
    bombed = await harness.http.post(
        url, content=bomb(len(inflated)), headers={**headers, "Content-Encoding": "gzip"}
    )
    strange = await harness.http.post(
        url, content=b"abc", headers={**headers, "Content-Encoding": "br"}
    )
    assert (on_the_wire.status_code, bombed.status_code, strange.status_code) == (413, 413, 415)
    assert (await harness.command("still here")).status_code == 200


async def test_a_signed_compressed_command_is_read(harness: Harness) -> None:
    await harness.start()
    body = urlencode(harness.command_fields("a compressed fox"))
    for encoding, packed in [
        ("gzip", gzip.compress(body.encode())),
        ("deflate", zlib.compress(body.encode())),
    ]:
        headers = {**signed_headers(body, SIGNING_SECRET, FORM), "Content-Encoding": encoding}
        response = await harness.http.post(harness.events_url, content=packed, headers=headers)
        assert response.status_code == 200 and "card will appear" in response.text


@pytest.mark.parametrize("secret", [SIGNING_SECRET, "not-the-secret"])
async def test_ssl_check_is_recognised_only_once_signed(harness: Harness, secret: str) -> None:
    await harness.start()
    response = await harness.post("ssl_check=1&token=legacy", FORM, secret=secret)
    assert response.status_code == (200 if secret == SIGNING_SECRET else 401)


async def test_an_inflating_flood_does_not_hold_up_signed_commands(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """4 clients post 2-KB bodies that inflate to 2 MB, unsigned or with a forged signature,
    as fast as they can; meanwhile signed commands are acknowledged well inside Slack's 3 s and
    the flood costs a few log lines, not one per request."""
    bot = await harness.start()
    url = f"http://127.0.0.1:{bot.port}/slack/events"
    payload = bomb()
    stop = asyncio.Event()
    statuses: list[int] = []

    async def flood(forged: bool) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            while not stop.is_set():
                headers = {"Content-Type": FORM, "Content-Encoding": "gzip"}
                if forged:
                    headers |= {
                        "X-Slack-Request-Timestamp": fresh(),
                        "X-Slack-Signature": FAKE_SIGNATURE,
                    }
                statuses.append(
                    (await client.post(url, content=payload, headers=headers)).status_code
                )

    with caplog.at_level(logging.INFO):
        flooders = [asyncio.create_task(flood(forged=i % 2 == 0)) for i in range(4)]
        await asyncio.sleep(0.5)
        acks = []
        for i in range(8):
            started = time.monotonic()
            response = await harness.command(f"during the flood {i}")
            acks.append(time.monotonic() - started)
            assert response.status_code == 200 and "card will appear" in response.text
        stop.set()
        await asyncio.gather(*flooders)
    assert max(acks) < ACK_LIMIT / 2, acks
    assert len(statuses) > 20 and set(statuses) <= {401, 413}
    refused = [r for r in caplog.records if "refused a request" in r.getMessage()]
    assert 1 <= len(refused) <= 5
    assert no_tracebacks(caplog)


async def test_healthz_tells_strangers_only_whether_the_app_is_well(harness: Harness) -> None:
    bot = await harness.start()
    url = f"http://127.0.0.1:{bot.port}/healthz"
    operator = (await harness.http.get(url)).json()
    proxied = await harness.http.get(url, headers={"X-Forwarded-For": "203.0.113.9"})
    forwarded = await harness.http.get(url, headers={"Forwarded": "for=203.0.113.9"})
    assert operator["instance"] == bot.store.owner and operator["jobs_polled"] == 0
    for stranger in (proxied, forwarded):
        assert stranger.status_code == 200
        assert stranger.json() == {"ok": True, "poller": True, "database": True}


async def test_healthz_is_answered_from_a_snapshot_not_a_query_per_request(
    harness: Harness,
) -> None:
    bot = await harness.start()
    probes: list[float] = []
    real_probe = bot.store.probe

    def counted_probe() -> None:
        probes.append(time.monotonic())
        real_probe()

    bot.store.probe = counted_probe  # type: ignore[method-assign]
    url = f"http://127.0.0.1:{bot.port}/healthz"
    answers = await asyncio.gather(*(harness.http.get(url) for _ in range(60)))
    assert [a.status_code for a in answers] == [200] * 60
    assert len(probes) <= 2  # at most the refresher's own looks meanwhile


async def test_healthz_says_503_while_the_database_cannot_be_reached(harness: Harness) -> None:
    """(tests/e2e/test_database_away.py stops a real server; this is the answer's shape.)"""
    bot = await harness.start()
    real_probe = bot.store.probe

    def unreachable() -> None:
        raise DatabaseUnavailable(Reason.UNREACHABLE, "OperationalError: connection refused")

    bot.store.probe = unreachable  # type: ignore[method-assign]
    await bot.health.refresh()
    url = f"http://127.0.0.1:{bot.port}/healthz"
    down = await harness.http.get(url)
    stranger = await harness.http.get(url, headers={"X-Forwarded-For": "203.0.113.9"})
    assert down.status_code == 503 and down.json()["database"] is False
    assert down.json()["reason"] == "database unreachable"
    assert "connection refused" in down.json()["database_error"]
    assert stranger.status_code == 503
    assert stranger.json() == {
        "ok": False, "poller": True, "database": False, "reason": "database unreachable"
    }  # fmt: skip
    bot.store.probe = real_probe  # type: ignore[method-assign]
    await bot.health.refresh()
    back = await harness.http.get(url)
    assert back.status_code == 200 and "reason" not in back.json()
